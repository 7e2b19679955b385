"""FreeNoise and FreeInit in a real ComfyUI server: workflow JSON through ComfyUI's HTTP API, with the
random SD1.5 checkpoint and a random motion model (64x64, 8 frames, 1 step)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import comfy_graphs as cg
from model_cache import cached, module_server
from motionkit.sampling.noise import SHUFFLE, FreeNoise, derived_generator, free_noise

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parent.parent
MOTION = "mm_v2_random.safetensors"
FRAMES = 8
STEPS = 1


server = module_server({"animatediff_models": {MOTION: cached(MOTION)}})


def custom_graph(noise: dict, seed=7, motion=True, steps=STEPS):
    """SamplerCustomAdvanced with the given NOISE node (id 21) on EmptyLatentImage; the model optionally animated."""
    g = cg.base_graph(frames=FRAMES, seed=seed, steps=steps)
    del g["3"]
    g.update({
        "21": noise,
        "22": {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 1.0}},  # cond only: the noise is the subject
        "23": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "24": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": steps, "denoise": 1.0}},
        "25": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["21", 0], "guider": ["22", 0], "sampler": ["23", 0], "sigmas": ["24", 0], "latent_image": ["5", 0]}},
    })
    g["9"]["inputs"]["samples"] = ["25", 0]
    return cg.with_motion(g, MOTION, sampler_node="22") if motion else g


def random_noise(seed=7):
    return {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}


def free_noise_node(seed=7, length=4, stride=2, mode=SHUFFLE):
    return {"class_type": "MotionKitFreeNoise", "inputs": {
        "noise_seed": seed, "context_length": length, "context_stride": stride, "mode": mode}}


def with_free_init(graph, iterations=2, model_from="11", into=("3",), **options):
    g = copy.deepcopy(graph)
    inputs = {"model": [model_from, 0], "iterations": iterations, "filter": "butterworth", "d_s": 0.25, "d_t": 0.25,
              "order": 4}
    inputs.update(options)
    g["30"] = {"class_type": "MotionKitFreeInit", "inputs": inputs}
    for node in into:
        g[node]["inputs"]["model"] = ["30", 0]
    return g


# ---------------------------------------------------------------------------------------------
# FreeNoise

def test_freenoise_layout_reaches_the_sampler(server):
    """Without a motion model SD1.5 samples every frame on its own, so frames with the same noise come out
    the same: the output shows which frame's noise each frame got."""
    plain = cg.latent(server, custom_graph(random_noise(), motion=False))
    shuffled = cg.latent(server, custom_graph(free_noise_node(length=4, stride=2), motion=False))
    assert torch.equal(shuffled[:4], plain[:4]), "the first window is RandomNoise's noise for the seed"
    # which base frame each frame's noise is: the pure function on frame labels, with the node's generator
    labels = torch.arange(FRAMES, dtype=torch.float32).reshape(FRAMES, 1, 1, 1)
    src = [int(v) for v in free_noise(labels, 4, 2, SHUFFLE, derived_generator(7, FreeNoise.SALT)).flatten()]
    assert src[:4] == [0, 1, 2, 3] and sorted(src[4:6]) == [0, 1] and sorted(src[6:8]) == [2, 3]
    torch.testing.assert_close(shuffled, plain[src], rtol=0, atol=1e-5)
    assert (shuffled[4:] - plain[4:]).abs().amax() > 0.1, "later frames must not keep RandomNoise's noise"

    repeated = cg.latent(server, custom_graph(free_noise_node(length=3, mode="repeat_context"), motion=False))
    torch.testing.assert_close(repeated, plain[torch.arange(FRAMES) % 3], rtol=0, atol=1e-5)


def test_freenoise_with_motion_is_deterministic_and_one_window_is_random_noise(server):
    plain = cg.latent(server, custom_graph(random_noise()))
    a = cg.latent(server, custom_graph(free_noise_node()))
    one_window = cg.latent(server, custom_graph(free_noise_node(length=16, stride=4)))  # also re-executes the sampler
    a_again = cg.latent(server, custom_graph(free_noise_node()))
    assert torch.equal(one_window, plain), "context_length >= frames must be exactly RandomNoise"
    assert torch.equal(a, a_again), "same seed, same animation"
    changed = (a - plain).abs().amax(dim=(1, 2, 3))
    assert torch.all(changed > 1e-3), f"with motion, every frame feels the rearranged noise: {changed}"


def test_freenoise_bad_stride_is_a_clear_error(server):
    res = server.run(custom_graph(free_noise_node(length=4, stride=6)))
    assert res.status == "error"
    assert "context_stride (6)" in res.error_message and "context_length (4)" in res.error_message


# ---------------------------------------------------------------------------------------------
# FreeInit

def test_freeinit_changes_the_animation_deterministically(server):
    graph = cg.with_motion(cg.base_graph(frames=4, steps=STEPS), MOTION)  # KSampler; 4 frames keep it cheap
    plain = cg.latent(server, graph)
    refined = cg.latent(server, with_free_init(graph))
    once = cg.latent(server, with_free_init(graph, iterations=1))  # also re-executes the sampler
    refined_again = cg.latent(server, with_free_init(graph))
    assert torch.equal(once, plain), "one iteration is plain sampling"
    assert torch.equal(refined, refined_again), "same seed, same animation"
    changed = (refined - plain).abs().amax(dim=(1, 2, 3))
    assert torch.all(changed > 1e-3), f"every frame must change: {changed}"


def test_freeinit_keeps_the_areas_a_noise_mask_keeps(server):
    """Inpainting: every pass must keep the masked-off area of the input latent (here the empty latent's 0)."""
    graph = with_free_init(cg.with_motion(cg.base_graph(frames=4, steps=STEPS), MOTION))
    graph.update({
        "40": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}},
        "41": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 32, "height": 64}},
        "42": {"class_type": "MaskComposite", "inputs": {
            "destination": ["40", 0], "source": ["41", 0], "x": 0, "y": 0, "operation": "multiply"}},
        "43": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["5", 0], "mask": ["42", 0]}},
    })
    graph["3"]["inputs"]["latent_image"] = ["43", 0]
    out = cg.latent(server, graph)
    # ComfyUI's own masked sampling leaves ~1e-5 there; a pass restarted from the mixed latent leaves ~50
    assert out[..., :3].abs().amax() < 1e-3, "the kept (left) half must stay the input"
    assert out[..., 5:].abs().amin(dim=-1).amax() > 1e-2, "the right half is sampled"


# ---------------------------------------------------------------------------------------------
# Example workflow

def test_example_workflow_matches_its_ui_version(server):
    ui = json.loads((REPO / "example_workflows" / "freenoise_freeinit_sd15.json").read_text())
    api = json.loads((REPO / "example_workflows" / "api" / "freenoise_freeinit_sd15_api.json").read_text())
    assert cg.ui_to_api(ui, server.object_info()) == {
        k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


@pytest.mark.example  # FreeNoise, FreeInit through SamplerCustomAdvanced: the tests above; windows: test_comfy_context.py
def test_example_workflow_runs(server):
    api = json.loads((REPO / "example_workflows" / "api" / "freenoise_freeinit_sd15_api.json").read_text())
    by_type = {v["class_type"]: v for v in api.values()}
    assert by_type["EmptyLatentImage"]["inputs"]["batch_size"] == 32
    assert {"MotionKitFreeNoise", "MotionKitFreeInit", "SamplerCustomAdvanced"} <= set(by_type)
    by_type["CheckpointLoaderSimple"]["inputs"]["ckpt_name"] = cg.CKPT
    by_type["MotionKitLoadMotionModel"]["inputs"]["model_name"] = MOTION
    by_type["EmptyLatentImage"]["inputs"].update(width=64, height=64)
    by_type["BasicScheduler"]["inputs"]["steps"] = 1
    # 12 frames in windows of 8 (overlap 4, FreeNoise stride 4): every part at work, at a test's cost
    by_type["EmptyLatentImage"]["inputs"]["batch_size"] = 12
    by_type["MotionKitContextWindows"]["inputs"]["context_length"] = 8
    by_type["MotionKitFreeNoise"]["inputs"]["context_length"] = 8
    res = server.run(api).raise_for_status()
    (video,) = res.images(next(k for k, v in api.items() if v["class_type"] == "MotionKitSaveAnimation"))
    import av
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12
