"""A converted ADE workflow gives the ADE workflow's output: AnimateDiff-Evolved (ADE) 90fb133 is installed beside
MotionKit in one real ComfyUI server (never in the repo: tests/ade_pack.py), each ADE workflow (UI format, built
from ADE's node definitions as its users save them) is queued as the real frontend queues it (its own
graphToPrompt in Chromium), then converted by the server's /motionkit/ade_import route, opened in the frontend and
queued the same way. Same random SD1.5 checkpoint, motion files in the published layouts, seed and noise: the two
latents must agree to 1e-4 of the output's size (fp32, CPU; measured 3.2e-5 to 4.7e-5 here, the floating-point
spread of two implementations of the same sums, as in bench/bench_ade.py's rows).

This is also the check against ADE on CameraCtrl_pruned.safetensors, the CameraCtrl layout only ADE reads: ADE's
CameraCtrl workflow on the pruned random file against MotionKit's on the same file. PIA is compared over one frame
(see pia_preset: over more frames ADE departs from the original PIA's GroupNorm, and MotionKit follows the original).

What can fail: any value the converter drops or misplaces (a scale, a window length, a LoRA strength, the pose
motion, the PIA preset, a start percent) changes the motion and so the latent, by far more than the tolerance
(each case also checks that its motion matters: SD1.5 alone differs from it by more than 100x the tolerance).
Marker `ade`: its own step (`python -m pytest tests -m ade`), skipped with the reason without ADE or Chromium.
"""
from __future__ import annotations

import pytest
import torch

import motion_files as mf
from ade_graphs import UIGraph
from ade_pack import FOLDER, ade_root, missing
from browser import APP, MARKS, diagnostics, page  # noqa: F401  (page: the fixture, on this module's server)
from cameractrl_files import PRUNED as CAMERACTRL, pruned_file
from comfy_graphs import CKPT, png
from model_cache import cached, place
from pia_files import PRUNED as PIA, pruned as pia_pruned

pytestmark = [*MARKS, pytest.mark.ade, pytest.mark.skipif(bool(missing()), reason=missing() or "-")]

V2, V3, LORA = "mm_v2_random.safetensors", "mm_v3_random.safetensors", "v2_lora_ZoomIn.ckpt"
TOLERANCE = 1e-4  # of max|ADE's latent|
FRAMES, LONG = 8, 12


@pytest.fixture(scope="module")
def comfy_server(comfyui_root, sd15_checkpoint):
    """This module's own server (browser.page uses it): MotionKit and ADE in custom_nodes. Its own step runs it
    without the session's server, so only one process holds the full-size SD1.5."""
    from comfy_server import ComfyServer
    server = ComfyServer(comfyui_root, checkpoint=sd15_checkpoint, extra_packs={FOLDER: ade_root()})
    place(server, {"animatediff_models": {V2: cached(V2), V3: cached(V3, lambda: mf.v3(seed=4, dtype=torch.float16)),
                                          CAMERACTRL: cached(CAMERACTRL, pruned_file), PIA: cached(PIA, pia_pruned)},
                   "animatediff_motion_lora": {LORA: cached(LORA)}},
          inputs={"ade_pia.png": lambda: png(64, 64)})
    try:
        server.start()
        assert not server.import_failures(), server.import_failures()
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------
# ADE workflows as its users save them: core nodes around ADE's

def sd_graph(frames: int, seed=5, steps=2, cfg=6.0):
    """(graph, checkpoint loader, KSampler): SD1.5 64x64 -> KSampler -> SaveLatent."""
    g = UIGraph()
    ckpt = g.node("CheckpointLoaderSimple", {}, ["MODEL", "CLIP", "VAE"], [CKPT])
    pos = g.node("CLIPTextEncode", {"clip": "CLIP"}, ["CONDITIONING"], ["a lighthouse on a cliff, waves"])
    neg = g.node("CLIPTextEncode", {"clip": "CLIP"}, ["CONDITIONING"], ["blurry"])
    lat = g.node("EmptyLatentImage", {}, ["LATENT"], [64, 64, frames])
    ks = g.node("KSampler", {"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING",
                             "latent_image": "LATENT"}, ["LATENT"], [seed, "fixed", steps, cfg, "euler", "normal", 1.0])
    save = g.node("SaveLatent", {"samples": "LATENT"}, [], ["ade_equal/latent"])
    for a, slot, b, name in ((ckpt, 1, pos, "clip"), (ckpt, 1, neg, "clip"), (pos, 0, ks, "positive"),
                             (neg, 0, ks, "negative"), (lat, 0, ks, "latent_image"), (ks, 0, save, "samples")):
        g.link(a, slot, b, name)
    return g, ckpt, ks


def use_evolved(g, ckpt, ks, m_models, **links):
    use = g.ade("ADE_UseEvolvedSampling")
    g.link(ckpt, 0, use, "model")
    g.link(m_models, 0, use, "m_models")
    for name, node in links.items():
        g.link(node, 0, use, name)
    g.link(use, 0, ks, "model")
    return use


def gen2_scale_effect():
    """Gen2: Load AnimateDiff Model -> Apply AnimateDiff Model (start/end, scale and effect multivals)."""
    g, ckpt, ks = sd_graph(FRAMES)
    load = g.ade("ADE_LoadAnimateDiffModel", model_name=V2)
    app = g.ade("ADE_ApplyAnimateDiffModel", start_percent=0.0, end_percent=0.8)
    scale, effect = g.ade("ADE_MultivalDynamic", float_val=1.3), g.ade("ADE_MultivalDynamic", float_val=0.7)
    for a, name in ((load, "motion_model"), (scale, "scale_multival"), (effect, "effect_multival")):
        g.link(a, 0, app, name)
    use_evolved(g, ckpt, ks, app)
    return g


def gen1_lora_context_freenoise():
    """Gen1 loader with a motion LoRA, standard uniform context windows 8/1/4 over 12 frames and FreeNoise."""
    g, ckpt, ks = sd_graph(LONG)
    gen1 = g.ade("ADE_AnimateDiffLoaderGen1", model_name=V2, beta_schedule="autoselect")
    lora = g.ade("ADE_AnimateDiffLoRALoader", name=LORA, strength=0.8)
    ctx = g.ade("ADE_StandardUniformContextOptions", context_length=8, context_stride=1, context_overlap=4,
                fuse_method="pyramid")
    settings = g.ade("ADE_AnimateDiffSamplingSettings", noise_type="FreeNoise")
    g.link(ckpt, 0, gen1, "model")
    for a, name in ((lora, "motion_lora"), (ctx, "context_options"), (settings, "sample_settings")):
        g.link(a, 0, gen1, name)
    g.link(gen1, 0, ks, "model")
    return g


def gen2_keyframes():
    """Gen2 with two AnimateDiff keyframes: effect 0.6 from the start, 1.4 from 40% (the second of the 2 steps)."""
    g, ckpt, ks = sd_graph(FRAMES)
    load = g.ade("ADE_LoadAnimateDiffModel", model_name=V2)
    app = g.ade("ADE_ApplyAnimateDiffModel")
    first = g.ade("ADE_AnimateDiffKeyframe", start_percent=0.0)
    then = g.ade("ADE_AnimateDiffKeyframe", start_percent=0.4)
    low, high = g.ade("ADE_MultivalDynamic", float_val=0.6), g.ade("ADE_MultivalDynamic", float_val=1.4)
    for a, b, name in ((low, first, "effect_multival"), (high, then, "effect_multival"), (first, then, "prev_ad_keyframes"),
                       (load, app, "motion_model"), (then, app, "ad_keyframes")):
        g.link(a, 0, b, name)
    use_evolved(g, ckpt, ks, app)
    return g


def seed_options_noise_layer():
    """Sample settings with seed options (auto1111 generator, seed offset, batch offset) and an added noise layer."""
    g, ckpt, ks = sd_graph(FRAMES)
    load = g.ade("ADE_LoadAnimateDiffModel", model_name=V2)
    app = g.ade("ADE_ApplyAnimateDiffModelSimple")
    settings = g.ade("ADE_AnimateDiffSamplingSettings", seed_gen="auto1111", seed_offset=2, batch_offset=1)
    layer = g.ade("ADE_NoiseLayerAdd", noise_weight=0.3, seed_offset=4)
    g.link(load, 0, app, "motion_model")
    g.link(layer, 0, settings, "noise_layers")
    use_evolved(g, ckpt, ks, app, sample_settings=settings)
    return g


def views_only():
    """Views-only context options: the UNet sees all 12 frames, the motion modules windows of 8 (overlap 4)."""
    g, ckpt, ks = sd_graph(LONG)
    load = g.ade("ADE_LoadAnimateDiffModel", model_name=V2)
    app = g.ade("ADE_ApplyAnimateDiffModelSimple")
    view = g.ade("ADE_StandardUniformViewOptions", view_length=8, view_stride=1, view_overlap=4,
                 fuse_method="pyramid")
    ctx = g.ade("ADE_ViewsOnlyContextOptions")
    g.link(load, 0, app, "motion_model")
    g.link(view, 0, ctx, "view_opts_req")
    use_evolved(g, ckpt, ks, app, context_options=ctx)
    return g


def cameractrl_pruned():
    """v3 + CameraCtrl_pruned.safetensors (ADE's layout): Pan Left, then Zoom In and Tilt Left at once (Combo ->
    Camera Poses Mix), strength 0.9."""
    g, ckpt, ks = sd_graph(FRAMES)
    load = g.ade("ADE_LoadAnimateDiffModelWithCameraCtrl", model_name=V3, camera_ctrl=CAMERACTRL)
    app = g.ade("ADE_ApplyAnimateDiffModelWithCameraCtrl")
    first = g.ade("ADE_CameraPoseBasic", motion_type="Pan Left", speed=1.0, frame_length=4)
    then = g.ade("ADE_CameraPoseCombo", motion_type1="Zoom In", motion_type2="Tilt Left", speed=1.5,
                 frame_length=FRAMES - 4)
    strength = g.ade("ADE_MultivalDynamic", float_val=0.9)
    for a, b, name in ((load, app, "motion_model"), (first, then, "prev_poses"), (then, app, "cameractrl_poses"),
                       (strength, app, "cameractrl_multival")):
        g.link(a, 0, b, name)
    use_evolved(g, ckpt, ks, app)
    return g


def cameractrl_mask():
    """CameraCtrl with a strength mask: the left half of the picture follows the camera at 0.8, the right half not
    (a mask from two core Solid Masks, into ADE's multival -> Apply CameraCtrl's strength_mask)."""
    g, ckpt, ks = sd_graph(FRAMES)
    load = g.ade("ADE_LoadAnimateDiffModelWithCameraCtrl", model_name=V3, camera_ctrl=CAMERACTRL)
    app = g.ade("ADE_ApplyAnimateDiffModelWithCameraCtrl")
    poses = g.ade("ADE_CameraPoseBasic", motion_type="Pan Right", speed=1.0, frame_length=FRAMES)
    black = g.node("SolidMask", {}, ["MASK"], [0.0, 64, 64])
    white = g.node("SolidMask", {}, ["MASK"], [1.0, 32, 64])
    half = g.node("MaskComposite", {"destination": "MASK", "source": "MASK"}, ["MASK"], [0, 0, "add"])
    strength = g.ade("ADE_MultivalDynamic", float_val=0.8)
    for a, b, name in ((black, half, "destination"), (white, half, "source"), (half, strength, "mask_optional"),
                       (load, app, "motion_model"), (poses, app, "cameractrl_poses"),
                       (strength, app, "cameractrl_multival")):
        g.link(a, 0, b, name)
    use_evolved(g, ckpt, ks, app)
    return g


def pia_preset():
    """PIA (ADE's pruned file) on a loaded image, style-transfer preset (mask 0.5 on the image's frame).

    One frame: ADE pools every GroupNorm over the frames for PIA (spatial transformers' and motion modules' too),
    where open-mmlab/PIA (and MotionKit) pools only the UNet's resnet norms (MOTION_FORMATS.md §7, and
    bench/bench_camera_pia.py --ade-pool-resnet-norms-only); over one frame both are per frame,
    so what is compared is everything else: the image latent, the mask, the widened conv_in, the schedule. Over 8
    frames the two differ by that norm (a run of this case at 8 frames with the medium-motion preset: max diff 48.3
    against max|ADE| 719, 6.7%); MotionKit follows the original."""
    g, ckpt, ks = sd_graph(1)
    load = g.ade("ADE_LoadAnimateDiffModel", model_name=PIA)
    image = g.node("LoadImage", {}, ["IMAGE", "MASK"], ["ade_pia.png", "image"])
    app = g.ade("ADE_ApplyAnimateDiffModelWithPIA")
    preset = g.ade("ADE_InputPIA_PaperPresets", preset="Style Transfer (Large Motion)")
    g.link(load, 0, app, "motion_model")
    g.link(image, 0, app, "image")
    g.link(ckpt, 2, app, "vae")
    g.link(preset, 0, app, "pia_input")
    use_evolved(g, ckpt, ks, app)
    return g


CASES = {"gen2_scale_effect": gen2_scale_effect, "gen2_keyframes": gen2_keyframes,
         "seed_options_noise_layer": seed_options_noise_layer, "gen1_lora_context_freenoise": gen1_lora_context_freenoise,
         "views_only": views_only, "cameractrl_pruned": cameractrl_pruned, "cameractrl_mask": cameractrl_mask,
         "pia_preset": pia_preset}


# ---------------------------------------------------------------------------------------------
# Running a UI workflow as the frontend does

def frontend_prompt(page, workflow: dict) -> dict:
    """The API prompt the real frontend queues for this UI workflow (load it, then its own graphToPrompt)."""
    page.evaluate(f"async (wf) => {{ await {APP}.loadGraphData(wf, true, false, null, "
                  "{showMissingNodesDialog: false, showMissingModelsDialog: false}); }", workflow)
    types = page.evaluate(f"() => {APP}.graph.nodes.map(n => n.type).sort()")
    assert types == sorted(n["type"] for n in workflow["nodes"]), diagnostics(page)
    return page.evaluate(f"async () => (await {APP}.graphToPrompt()).output")


def run_latent(page, workflow: dict) -> torch.Tensor:
    prompt = frontend_prompt(page, workflow)
    (save,) = [nid for nid, node in prompt.items() if node["class_type"] == "SaveLatent"]
    res = page.server.run(prompt).raise_for_status()
    (out,) = res.latents(save)
    assert torch.isfinite(out).all()
    return out


def convert(server, workflow: dict) -> dict:
    reply = server.post_json("/motionkit/ade_import", {"workflow": workflow})
    assert reply["kept"] == 0, reply["report_text"]
    converted = reply["workflow"]
    assert not [n["type"] for n in converted["nodes"] if n["type"].startswith("ADE_")], reply["report_text"]
    return converted


@pytest.fixture(scope="module")
def plain(page):
    """frames -> the latent of the same SD1.5 graph with no motion at all (the KSampler on the checkpoint)."""
    found = {}

    def latent(frames: int) -> torch.Tensor:
        if frames not in found:
            g, ckpt, ks = sd_graph(frames)
            g.link(ckpt, 0, ks, "model")
            found[frames] = run_latent(page, g.workflow())
        return found[frames]
    return latent


@pytest.mark.parametrize("case", list(CASES))
def test_converted_workflow_gives_ades_output(page, plain, case):
    ade_workflow = CASES[case]().workflow()
    ade = run_latent(page, ade_workflow)
    ours = run_latent(page, convert(page.server, ade_workflow))
    scale = ade.abs().max().item()
    diff = (ours - ade).abs().max().item()
    print(f"[ade_equal] {case}: max|MotionKit - ADE| {diff:.3g}, max|ADE| {scale:.3g}, ratio {diff / scale:.3g}")
    assert diff <= TOLERANCE * scale, f"{case}: max|MotionKit - ADE| = {diff:.4g} (max|ADE| {scale:.4g})"
    assert (plain(ade.shape[0]) - ade).abs().max().item() > 100 * TOLERANCE * scale, f"{case}: no motion in it"
