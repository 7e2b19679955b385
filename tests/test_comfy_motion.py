"""Motion models in a real ComfyUI server: workflow JSON through ComfyUI's own HTTP API and executor.

The pack is loaded the way ComfyUI loads custom nodes (it sits in custom_nodes/ of the server's base
directory); the SD1.5 checkpoint and motion models are random weights in the real file formats.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

import motion_files as mf

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parent.parent
CKPT = "sd15_random.safetensors"
FRAMES = 8


# ---------------------------------------------------------------------------------------------
# Motion-model files (cached: deterministic seeds)

def _cache_dir() -> Path:
    d = Path(os.environ.get("MOTIONKIT_TEST_CACHE", Path.home() / ".cache" / "motionkit" / "test_models"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def cached_file(name: str, build) -> Path:
    path = _cache_dir() / name
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp")
        sd = build()
        if name.endswith(".safetensors"):
            from safetensors.torch import save_file
            save_file(sd, str(tmp))
        else:
            torch.save(sd, str(tmp))
        os.replace(tmp, path)
    return path


MOTION_FILES = {
    "mm_v2_random.safetensors": lambda: mf.v2(seed=1, dtype=torch.float16),
    "mm_v2_zero_out.safetensors": lambda: mf.v2(seed=1, dtype=torch.float16, zero_proj_out=True),
    "mm_sdxl_random.safetensors": lambda: mf.sdxl_beta(seed=2, dtype=torch.float16),
    "v2_lora_ZoomIn.ckpt": lambda: mf.motion_lora(rank=8),
    "v3_sd15_adapter.ckpt": lambda: mf.domain_adapter(device="cpu"),
    "v3_sd15_sparsectrl_rgb.ckpt": lambda: {"controlnet": mf.sparsectrl_rgb(device="cpu")},
}


@pytest.fixture(scope="module")
def server(comfy_server):
    for name, build in MOTION_FILES.items():
        comfy_server.add_model("animatediff_models", name, cached_file(name, build))
    truncated = _cache_dir() / "mm_truncated.safetensors"
    if not truncated.exists():
        data = cached_file("mm_v2_random.safetensors", MOTION_FILES["mm_v2_random.safetensors"]).read_bytes()
        truncated.write_bytes(data[: len(data) // 3])
    comfy_server.add_model("animatediff_models", "mm_truncated.safetensors", truncated)
    unknown = _cache_dir() / "mystery.safetensors"
    if not unknown.exists():
        from safetensors.torch import save_file
        save_file({"encoder.layers.0.weight": torch.zeros(4, 4), "encoder.layers.1.weight": torch.zeros(4, 4)}, str(unknown))
    comfy_server.add_model("animatediff_models", "mystery.safetensors", unknown)
    return comfy_server


# ---------------------------------------------------------------------------------------------
# Workflows (API format)

def base_graph(frames=FRAMES, seed=7, steps=1):
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat walking", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": frames}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "t/plain"}},
    }


def with_motion(graph, motion_name, schedule="use model's own", scale=1.0, sampler_node="3"):
    g = copy.deepcopy(graph)
    g["10"] = {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion_name}}
    g["11"] = {"class_type": "MotionKitApplyMotionModel", "inputs": {
        "model": ["4", 0], "motion_model": ["10", 0], "motion_scale": scale,
        "start_percent": 0.0, "end_percent": 1.0, "noise_schedule": schedule}}
    g[sampler_node]["inputs"]["model"] = ["11", 0]
    g["9"]["inputs"]["filename_prefix"] = "t/anim"
    return g


def latent(server, graph) -> torch.Tensor:
    res = server.run(graph).raise_for_status()
    (out,) = res.latents("9")
    assert torch.isfinite(out).all()
    return out


def custom_noise_graph(latent_file: str):
    """SamplerCustomAdvanced from a given x_T (DisableNoise): lets a test change one frame's noise."""
    g = base_graph()
    del g["5"], g["3"]
    g.update({
        "20": {"class_type": "LoadLatent", "inputs": {"latent": latent_file}},
        "21": {"class_type": "DisableNoise", "inputs": {}},
        "22": {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 7.0}},
        "23": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "24": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": 1, "denoise": 1.0}},
        "25": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["21", 0], "guider": ["22", 0], "sampler": ["23", 0], "sigmas": ["24", 0], "latent_image": ["20", 0]}},
    })
    g["9"]["inputs"]["samples"] = ["25", 0]
    return g


def write_latent(server, name: str, tensor: torch.Tensor):
    from safetensors.torch import save_file
    path = server.input_dir / name
    # latent_format_version_0 marks the tensor as already scaled (LoadLatent multiplies by 1.0)
    save_file({"latent_tensor": tensor.contiguous(), "latent_format_version_0": torch.tensor([])}, str(path))


# ---------------------------------------------------------------------------------------------
# Tests

def test_pack_loads_as_custom_node(server):
    assert server.pack_loaded(), server.log_tail()
    info = server.object_info()
    for node in ("MotionKitLoadMotionModel", "MotionKitApplyMotionModel"):
        assert node in info
    choices = info["MotionKitLoadMotionModel"]["input"]["required"]["model_name"][0]
    assert "mm_v2_random.safetensors" in choices


def test_zero_proj_out_gives_plain_frames_and_random_motion_changes_them(server):
    plain = latent(server, base_graph())
    zero = latent(server, with_motion(base_graph(), "mm_v2_zero_out.safetensors"))
    assert torch.equal(zero, plain), "a motion model whose proj_out is zero must be an exact identity"
    anim = latent(server, with_motion(base_graph(), "mm_v2_random.safetensors"))
    assert (anim - plain).abs().amax(dim=(1, 2, 3)).min() > 1e-3, "every frame must change"
    again = latent(server, base_graph(seed=8))  # re-execute the sampler with plain SD...
    plain_after = latent(server, base_graph())  # ...and again with the first seed
    assert not torch.equal(again, plain_after)
    assert torch.equal(plain_after, plain), "plain SD after an animation run must be unchanged"


@pytest.mark.parametrize("frame", [3])
def test_frames_are_coupled_with_samplercustomadvanced(server, frame):
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(FRAMES, 4, 8, 8, generator=g) * 80.0
    x_t2 = x_t.clone()
    x_t2[frame] = torch.randn(4, 8, 8, generator=g) * 80.0
    write_latent(server, "noise_a.latent", x_t)
    write_latent(server, "noise_b.latent", x_t2)
    a, b = (latent(server, custom_noise_graph(n)) for n in ("noise_a.latent", "noise_b.latent"))
    changed = (a - b).abs().amax(dim=(1, 2, 3))
    assert changed[frame] > 1e-3
    assert torch.all(changed[torch.arange(FRAMES) != frame] == 0), "plain SD: frames are independent"

    ma, mb = (latent(server, with_motion(custom_noise_graph(n), "mm_v2_random.safetensors", sampler_node="22"))
              for n in ("noise_a.latent", "noise_b.latent"))
    changed = (ma - mb).abs().amax(dim=(1, 2, 3))
    assert torch.all(changed > 1e-4), f"with motion, every frame must feel frame {frame}'s noise: {changed}"


def test_ksampler_advanced_and_auto_schedule(server):
    g = base_graph()
    g["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "add_noise": "enable", "noise_seed": 7, "steps": 1, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
        "start_at_step": 0, "end_at_step": 10000, "return_with_leftover_noise": "disable",
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}}
    zero_keep = latent(server, with_motion(g, "mm_v2_zero_out.safetensors"))
    zero_auto = latent(server, with_motion(g, "mm_v2_zero_out.safetensors", schedule="autoselect"))
    # autoselect installs sqrt_linear for AnimateDiff v2: a different schedule, so different frames
    assert zero_keep.shape == zero_auto.shape == (FRAMES, 4, 8, 8)
    assert not torch.equal(zero_keep, zero_auto)


def test_example_workflow_runs(server):
    api = json.loads((REPO / "example_workflows" / "api" / "txt2anim_sd15_api.json").read_text())
    api["4"]["inputs"]["ckpt_name"] = CKPT
    api["10"]["inputs"]["model_name"] = "mm_v2_random.safetensors"
    api["5"]["inputs"].update(width=64, height=64)
    api["3"]["inputs"]["steps"] = 1
    frames = api["5"]["inputs"]["batch_size"]
    assert frames == 16
    res = server.run(api).raise_for_status()
    (webp,) = res.images("9")
    from PIL import Image
    with Image.open(webp) as im:
        assert im.n_frames == frames and im.size == (64, 64)


ERRORS = [
    # (motion file, frames, expected phrases in the error)
    ("mm_sdxl_random.safetensors", FRAMES, ["SDXL motion model", "MODEL is SD1.5"]),
    ("v2_lora_ZoomIn.ckpt", FRAMES, ["MotionLoRA", "not a motion model"]),
    ("v3_sd15_adapter.ckpt", FRAMES, ["domain adapter", "LoraLoaderModelOnly"]),
    ("v3_sd15_sparsectrl_rgb.ckpt", FRAMES, ["SparseCtrl"]),
    ("mm_truncated.safetensors", FRAMES, ["mm_truncated.safetensors", "download it again"]),
    ("mystery.safetensors", FRAMES, ["Key patterns seen", "encoder.layers.N.weight"]),
    ("mm_v2_random.safetensors", 33, ["at most 32 frames", "33 frames", "context windows"]),
]


def test_errors_are_clear_and_leave_comfyui_usable(server):
    plain = latent(server, base_graph(frames=2))
    for name, frames, phrases in ERRORS:
        res = server.run(with_motion(base_graph(frames=frames), name))
        assert res.status == "error", f"{name}: expected an error"
        for phrase in phrases:
            assert phrase in res.error_message, f"{name}: {phrase!r} not in {res.error_message!r}"
    # anything an error left patched stays patched: one plain run after all of them shows it
    latent(server, base_graph(frames=2, seed=99))  # force the plain sampler to run again
    assert torch.equal(latent(server, base_graph(frames=2)), plain), "an error left ComfyUI patched"


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """What frontend 1.27 queues for a UI workflow: widget values in INPUT_TYPES order (plus the upload button
    it adds after the required inputs of a video_upload/image_upload combo, and "control_after_generate" after
    an input that asks for it or, by the frontend's legacy rule, any INT named seed or noise_seed), where a
    linked widget keeps its value in widgets_values but sends the link, and an optional widget missing from
    widgets_values sends its default. tests/test_templates_browser.py checks the templates with the frontend's
    own graphToPrompt instead."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node["type"] in ("Note", "MarkdownNote"):
            continue  # frontend-only nodes (an example's description): never queued
        spec = object_info[node["type"]]["input"]
        required = dict(spec.get("required", {}))
        if any(isinstance(v[0], list) and len(v) > 1 and (v[1].get("video_upload") or v[1].get("image_upload"))
               for v in required.values()):
            required["upload"] = ("UPLOAD_BUTTON", {})
        linked = {i["name"]: i["link"] for i in node.get("inputs", []) if i.get("link") is not None}
        inputs, values = {}, list(node.get("widgets_values", []))
        for name, cfg in [*required.items(), *spec.get("optional", {}).items()]:
            kind, opts = cfg[0], (cfg[1] if len(cfg) > 1 else {})
            if opts.get("forceInput"):
                continue  # a socket only, never a widget
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "UPLOAD_BUTTON"):
                if values:
                    value = values.pop(0)
                else:
                    assert name in spec.get("optional", {}), \
                        f"node {node['id']} ({node['type']}) has no widget value for {name} (a value missing before it?)"
                    # an optional widget newer than the workflow: the frontend sends its default
                    value = opts.get("default", kind[0] if isinstance(kind, list) else None)
                if opts.get("control_after_generate", kind == "INT" and name in ("seed", "noise_seed")) and values:
                    values.pop(0)
                if kind != "UPLOAD_BUTTON" and name not in linked:
                    inputs[name] = value
        assert not values, f"node {node['id']} ({node['type']}) has extra widget values {values}"
        for name, link_id in linked.items():
            link = links[link_id]
            inputs[name] = [str(link[1]), link[2]]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def test_ui_workflow_matches_api_workflow(server):
    ui = json.loads((REPO / "example_workflows" / "txt2anim_sd15.json").read_text())
    api = json.loads((REPO / "example_workflows" / "api" / "txt2anim_sd15_api.json").read_text())
    converted = ui_to_api(ui, server.object_info())
    assert converted == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
