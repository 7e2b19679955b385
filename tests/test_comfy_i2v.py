"""AnimateLCM-I2V in a real ComfyUI server: Load Motion Model → Apply Motion Model → Apply AnimateLCM-I2V
Image → KSampler (lcm), as workflow JSON through ComfyUI's HTTP API (MOTION_FORMATS.md §4.7).

Motion files are random weights in the published layout (tests/motion_files.py): one with a random image
encoder, one whose encoder outputs exactly zero when the frame embedding is off (motion_scale 0).
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

import motion_files as mf
from comfy_graphs import CKPT, REPO, latent, png, ui_to_api
from model_cache import cached, module_server

pytestmark = pytest.mark.comfyui

FRAMES = 6
I2V = "alcm_i2v_random.safetensors"
I2V_ZERO = "alcm_i2v_zero_encoder.safetensors"
MOTION_FILES = {
    I2V: lambda: mf.animatelcm_i2v(seed=11, dtype=torch.float16),
    # same motion weights, encoder features exactly 0 at motion_scale 0
    I2V_ZERO: lambda: mf.animatelcm_i2v(seed=11, dtype=torch.float16, zero_encoder_output=True),
    "mm_v2_random.safetensors": lambda: mf.v2(seed=1, dtype=torch.float16),  # as model_cache.MOTION_FILES
}


server = module_server(
    {"animatediff_models": {name: cached(name, build) for name, build in MOTION_FILES.items()}},
    inputs={"i2v_a.png": lambda: png(80, 64),  # not the latent's size: resized and center-cropped
            "i2v_b.png": lambda: png(64, 64, flip=True)})


def graph(motion=None, image=None, motion_scale=0.8, seed=5, frames=FRAMES, cfg=1.5):
    """SD1.5 (+ motion model (+ image)) → KSampler lcm/sgm_uniform, 1 step; cfg 1.5 runs cond and uncond."""
    g = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a boat on a lake", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": frames}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": 1, "cfg": cfg, "sampler_name": "lcm", "scheduler": "sgm_uniform", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "t/i2v"}},
    }
    if motion is not None:
        g["10"] = {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion}}
        g["11"] = {"class_type": "MotionKitApplyMotionModel", "inputs": {
            "model": ["4", 0], "motion_model": ["10", 0], "motion_scale": 1.0, "start_percent": 0.0,
            "end_percent": 1.0, "noise_schedule": "autoselect"}}
        g["3"]["inputs"]["model"] = ["11", 0]
    if image is not None:
        g["12"] = {"class_type": "LoadImage", "inputs": {"image": image}}
        g["13"] = {"class_type": "MotionKitI2VImage", "inputs": {
            "model": g["3"]["inputs"]["model"], "image": ["12", 0], "vae": ["4", 2], "motion_scale": motion_scale}}
        g["3"]["inputs"]["model"] = ["13", 0]
    return g


def changed_frames(a, b):
    return (a - b).abs().amax(dim=(1, 2, 3))


def windowed(g, node_info: dict, length=4, overlap=2):
    """The graph with the pack's context windows between the I2V node and the sampler (defaults from object_info)."""
    inputs = {name: spec[1]["default"] for name, spec in node_info["input"]["required"].items()
              if len(spec) > 1 and "default" in spec[1]}
    inputs.update(model=g["3"]["inputs"]["model"], context_length=length, context_overlap=overlap)
    g["14"] = {"class_type": "MotionKitContextWindows", "inputs": inputs}
    g["3"]["inputs"]["model"] = ["14", 0]
    return g


def test_zero_encoder_is_exactly_t2v_and_the_image_steers_the_animation(server):
    t2v = latent(server, graph(I2V_ZERO))
    zero = latent(server, graph(I2V_ZERO, "i2v_a.png", motion_scale=0.0))
    assert zero.shape == (FRAMES, 4, 8, 8)
    assert torch.equal(zero, t2v), "image features that are exactly 0 must leave the t2v result untouched"
    embedded = latent(server, graph(I2V_ZERO, "i2v_a.png", motion_scale=0.8))
    assert changed_frames(embedded, t2v).min() > 1e-4, "the frame embedding reaches the motion modules"

    a = latent(server, graph(I2V, "i2v_a.png"))
    b = latent(server, graph(I2V, "i2v_b.png"))
    assert changed_frames(a, b).min() > 1e-3, "the encoder's features of another image change every frame"

    # context windows: a call holds one window, so features are made for its 4 frames, not all 6
    in_windows = latent(server, windowed(graph(I2V, "i2v_a.png"), server.object_info("MotionKitContextWindows")))
    assert in_windows.shape == (FRAMES, 4, 8, 8)
    assert changed_frames(in_windows, a).min() > 1e-4, "the windows were used"


ERRORS = [
    # (graph, phrases in the error)
    (lambda: graph("mm_v2_random.safetensors", "i2v_a.png"),
     ["'mm_v2_random.safetensors' (AnimateDiff v2)", "no image encoder", "AnimateLCM_sd15_i2v.ckpt"]),
    (lambda: graph(None, "i2v_a.png"), ["no motion model", "Apply Motion Model", "AnimateLCM_sd15_i2v.ckpt"]),
]


def test_errors_are_clear_and_leave_comfyui_usable(server):
    plain = latent(server, graph(frames=2, cfg=1.0))
    for build, phrases in ERRORS:
        res = server.run(build())
        assert res.status == "error" and res.execution_error["node_type"] == "MotionKitI2VImage"
        for phrase in phrases:
            assert phrase in res.error_message, f"{phrase!r} not in {res.error_message!r}"
    latent(server, graph(frames=2, seed=99, cfg=1.0))  # run the sampler again, then the first graph
    assert torch.equal(latent(server, graph(frames=2, cfg=1.0)), plain), "an error left ComfyUI patched"


def test_example_workflow_runs_and_matches_its_ui_version(server):
    api = json.loads((REPO / "example_workflows" / "api" / "animatelcm_i2v_sd15_api.json").read_text())
    ui = json.loads((REPO / "example_workflows" / "animatelcm_i2v_sd15.json").read_text())
    assert ui_to_api(ui, server.object_info()) == {
        k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    types = {v["class_type"] for v in api.values()}
    assert {"LoadImage", "MotionKitI2VImage", "KSampler", "LoraLoaderModelOnly"} <= types
    sampler = next(v for v in api.values() if v["class_type"] == "KSampler")
    assert sampler["inputs"]["sampler_name"] == "lcm"

    api = copy.deepcopy(api)
    # no AnimateLCM-I2V spatial LoRA in the test models: wire the LoRA loader's input straight through
    lora = next(k for k, v in api.items() if v["class_type"] == "LoraLoaderModelOnly")
    source = api.pop(lora)["inputs"]["model"]
    for node in api.values():
        for name, value in node["inputs"].items():
            if value == [lora, 0]:
                node["inputs"][name] = source
    for node in api.values():
        inputs = node["inputs"]
        if node["class_type"] == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = CKPT
        elif node["class_type"] == "MotionKitLoadMotionModel":
            inputs["model_name"] = I2V
        elif node["class_type"] == "LoadImage":
            inputs["image"] = "i2v_a.png"
        elif node["class_type"] == "EmptyLatentImage":
            inputs.update(width=64, height=64, batch_size=FRAMES)
        elif node["class_type"] == "KSampler":
            inputs["steps"] = 1
    res = server.run(api).raise_for_status()
    assert res.outputs, "the example workflow produced no output"
