"""Animate Anyone in a real ComfyUI server: the example workflow (reference image + pose video → Load /
Apply Animate Anyone → SamplerCustom with ddim and the Trailing Scheduler → VAE Decode → Save Animation) at
64×64, 8 frames, and at 40 frames in context windows of 24/4; errors. Random weights in the published layouts
(tests/animate_anyone_files.py)."""
from __future__ import annotations

import copy
import json

import pytest
import torch

import animate_anyone_files as aaf
import media_files
from comfy_graphs import REPO, png, ui_to_api
from model_cache import place

pytestmark = pytest.mark.comfyui

EXAMPLE = "animate_anyone"
CLIP = "sd_image_variations_image_encoder.safetensors"
VAE = "vae-ft-mse-840000-ema-pruned.safetensors"


@pytest.fixture(scope="module")
def server(comfy_server, sd15_checkpoint):
    comfy_server.free()  # earlier modules' models out: two SD1.5-sized UNets come in here
    place(comfy_server, {
        "animate_anyone": {**{aaf.FILE_NAMES[role]: path for role, path in aaf.published_files(seed=3).items()},
                           "sd15_random.safetensors": sd15_checkpoint},  # the wrong kind of file
        "clip_vision": {CLIP: lambda: aaf.cached("clip_vitl_random.safetensors", aaf.clip_vision_vitl)},
        "vae": {VAE: lambda: aaf.cached("sd15_random_vae.safetensors", lambda: aaf.sd15_vae(sd15_checkpoint))},
    }, inputs={"animate_anyone_reference.png": lambda: png(48, 64), "pose_video.mp4": pose_video})
    yield comfy_server
    comfy_server.free()


def pose_video() -> bytes:
    video = aaf.cache_dir() / "aa_pose_video_40.mp4"
    if not video.exists():
        media_files.write_video(video, frames=40, width=48, height=64, fps=8)
    return video.read_bytes()


def example_api() -> dict:
    return json.loads((REPO / "example_workflows" / "api" / f"{EXAMPLE}_api.json").read_text())


def small(frames: int, steps: int = 1, cfg: float | None = None, windows: bool = True) -> dict:
    """The example at test size: 64×64, `frames` poses from the video, `steps` steps; latent saved too."""
    g = copy.deepcopy(example_api())
    g["2"]["inputs"].update(frame_cap=frames, width=64, height=64)
    g["6"]["inputs"].update(width=64, height=64)
    g["13"]["inputs"]["steps"] = steps  # the Trailing Scheduler
    if cfg is not None:
        g["8"]["inputs"]["cfg"] = cfg  # SamplerCustom
    if not windows:
        g["8"]["inputs"]["model"] = g["13"]["inputs"]["model"] = ["6", 0]
    g["10"]["inputs"]["format"] = "webp"
    g["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": "t/aa"}}
    return g


def test_example_workflow_ui_matches_api(server):
    ui = json.loads((REPO / "example_workflows" / f"{EXAMPLE}.json").read_text())
    assert ui_to_api(ui, server.object_info()) == {
        k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in example_api().items()}


@pytest.mark.example  # the same example graph end to end: test_40_frames_in_context_windows_of_24
def test_example_runs_end_to_end_8_frames(server):
    res = server.run(small(8)).raise_for_status()
    (out,) = res.latents("11")
    assert out.shape == (8, 4, 8, 8) and torch.isfinite(out).all()
    assert (out[1:] - out[:-1]).abs().amax() > 0  # the frames differ (the poses move)
    assert res.files("10", "images") or res.images("10")


def test_40_frames_in_context_windows_of_24(server):
    res = server.run(small(40, steps=1, cfg=1.0)).raise_for_status()
    (out,) = res.latents("11")
    # 40 frames are more than the motion module's 32: without the windows this run would be refused
    assert out.shape == (40, 4, 8, 8) and torch.isfinite(out).all()


def test_errors_name_the_file_and_fix_and_leave_comfyui_usable(server):
    no_clip = small(8, windows=False)
    del no_clip["6"]["inputs"]["clip_vision"]
    sd_as_unet = small(8, windows=False)
    sd_as_unet["3"]["inputs"]["denoising_unet"] = "sd15_random.safetensors"
    for graph, phrases in [(no_clip, ["needs a CLIP vision model", "models/clip_vision", "Load CLIP Vision"]),
                           (sd_as_unet, ["'sd15_random.safetensors'", "full Stable Diffusion checkpoint",
                                         "denoising_unet.pth", "models/animate_anyone"])]:
        res = server.run(graph)
        assert res.status == "error"
        for phrase in phrases:
            assert phrase in res.error_message, f"{phrase!r} not in {res.error_message!r}"
