"""Trajectory control in a real ComfyUI server: the Trajectory node's outputs, MotionCtrl OMCM (random weights in
the published layout) reaching the sampler (strength 0 = no control, bit for bit; a changed path changes exactly
the frames whose flow changed, also across context windows), training-free trajectory attention, and the error
messages. Plain SD1.5 where a test needs frames to be independent. 64x64, 1 step."""
from __future__ import annotations

import copy
import json

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import motion_files
from omcm_files import cached_omcm_file
from comfy_graphs import assert_nodes_explained, CKPT, REPO, add_motion, add_windows, base, changed_frames, latent, ui_to_api
from model_cache import cached, module_server

pytestmark = pytest.mark.comfyui
OMCM_NAME = "motionctrl_animatediff_omcm.ckpt"
MM = "mm_v2_random.safetensors"
LORA = "v2_lora_ZoomIn_random.ckpt"  # a MotionLoRA in the published layout, for MM's v2 layers
NODES = ("MotionKitTrajectory", "MotionKitTrajectoryFromVideo", "MotionKitLoadOMCM", "MotionKitApplyOMCM",
         "MotionKitTrajectoryAttention")
PATH_A = {"points": [[8, 8], [56, 20], [30, 56]]}
PATH_LATE = {"points": [[60, 60], [4, 40]], "start_frame": 9, "end_frame": 11}


server = module_server({
    "motionctrl": {OMCM_NAME: cached_omcm_file,
                   "mm_in_wrong_folder.safetensors": cached(MM)},  # a motion model given to the OMCM loader
    "animatediff_models": {MM: cached(MM),
                           "omcm_in_wrong_folder.ckpt": cached_omcm_file},  # the OMCM given to the motion-model loader
    "animatediff_motion_lora": {LORA: cached(LORA, lambda: motion_files.motion_lora(
        rank=8, seed=11, scale=0.03))},  # the same file test_comfy_lora builds
})


def add_trajectory(g, paths, frames, node="40"):
    g = copy.deepcopy(g)
    g[node] = {"class_type": "MotionKitTrajectory", "inputs": {
        "paths": json.dumps(paths), "width": 64, "height": 64, "frames": frames, "spacing": "even by arc length"}}
    return g


def add_omcm(g, paths, frames, strength=1.0, end_percent=1.0):
    g = add_trajectory(g, paths, frames)
    g["41"] = {"class_type": "MotionKitLoadOMCM", "inputs": {"omcm_name": OMCM_NAME}}
    g["42"] = {"class_type": "MotionKitApplyOMCM", "inputs": {
        "model": g["3"]["inputs"]["model"], "omcm": ["41", 0], "trajectory": ["40", 0], "strength": strength,
        "start_percent": 0.0, "end_percent": end_percent}}
    g["3"]["inputs"]["model"] = ["42", 0]
    return g


def add_box_attention(g, paths, frames, strength=2.0):
    g = add_trajectory(g, paths, frames)
    g["43"] = {"class_type": "MotionKitTrajectoryAttention", "inputs": {
        "model": g["3"]["inputs"]["model"], "clip": ["4", 1], "trajectory": ["40", 0], "prompt": "a cat walking",
        "words": "cat", "strength": strength, "box_width": 0.3, "box_height": 0.3, "start_percent": 0.0,
        "end_percent": 1.0}}
    g["3"]["inputs"]["model"] = ["43", 0]
    return g


def test_nodes_are_registered_with_tooltips(server):
    info = server.object_info()
    assert_nodes_explained(info, NODES)
    assert info["MotionKitApplyOMCM"]["input"]["required"]["end_percent"][1]["default"] == 0.3


def test_trajectory_node_outputs_the_drawn_and_wantrack_paths(server):
    track = json.dumps([[{"x": 60, "y": 4}, {"x": 4, "y": 4}]])  # WanTrackToVideo's format, as a STRING input
    g = {
        "50": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": track}},
        "40": {"class_type": "MotionKitTrajectory", "inputs": {
            "paths": json.dumps([PATH_A]), "width": 64, "height": 64, "frames": 5, "spacing": "per point",
            "points_json": ["50", 0], "background": ["51", 0]}},
        "51": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0}},
        "52": {"class_type": "SaveImage", "inputs": {"images": ["40", 1], "filename_prefix": "t/traj"}},
    }
    res = server.run(g).raise_for_status()
    frames = [np.asarray(Image.open(p)) for p in res.images("52")]
    assert len(frames) == 5 and frames[0].shape == (64, 64, 3)
    # frame 2 of 5, per point: the drawn path's middle point (56, 20), the track's (32, 4): dots in path colours
    assert frames[2][20, 56].tolist() == [255, 64, 64] and frames[2][4, 32].tolist() == [64, 160, 255]
    assert res.outputs["40"]["motionkit_background"][0]["type"] == "temp"  # the editor shows it after the run


def test_omcm_strength_zero_is_exactly_no_control_and_strength_one_changes_every_frame(server):
    g = base(frames=3, cfg=2.0)
    plain = latent(server, g)
    off = latent(server, add_omcm(g, [PATH_A], 3, strength=0.0))
    on = latent(server, add_omcm(g, [PATH_A], 3, strength=1.0))
    assert torch.equal(off, plain)
    assert changed_frames(on, plain) == {0, 1, 2}  # every frame gets features (zero-flow ones too)


def test_changed_path_changes_exactly_its_frames_in_context_windows(server):
    """Plain SD (frames independent): adding a path that moves on frames 10-11 changes exactly those frames. In
    static windows 0-5, 4-9, 6-11 that holds only when each window takes its own frames' flow (given frames
    0-5's flow, window 6-11 would see no difference at all)."""
    g = add_windows(base(frames=12), length=6, overlap=2, schedule="static", fuse="flat")
    a = latent(server, add_omcm(g, [PATH_A], 12))
    b = latent(server, add_omcm(g, [PATH_A, PATH_LATE], 12))
    assert changed_frames(a, b) == {10, 11}


def test_omcm_with_a_motion_model_and_a_motion_lora_in_windows(server):
    """OMCM on a motion model that carries a MotionLoRA, in context windows: each acts on the other's result (the
    OMCM clone keeps the LoRA's weight patches, the LoRA does not drop OMCM's block patches), every frame."""
    g = add_windows(add_motion(base(frames=6), MM), length=4, overlap=2, schedule="static", fuse="flat")
    with_lora = copy.deepcopy(g)
    with_lora["30"] = {"class_type": "MotionKitLoadMotionLoRA", "inputs": {"lora_name": LORA, "strength": 1.0}}
    with_lora["11"]["inputs"]["motion_lora"] = ["30", 0]
    both = latent(server, add_omcm(with_lora, [PATH_A], 6))
    assert both.shape == (6, 4, 8, 8)
    assert changed_frames(both, latent(server, add_omcm(g, [PATH_A], 6))) == set(range(6)), "the LoRA was lost"
    assert changed_frames(both, latent(server, with_lora)) == set(range(6)), "OMCM was lost"


def test_trajectory_attention_strength_zero_is_plain_and_strength_changes_the_result(server):
    g = add_motion(base(frames=3, cfg=2.0), MM)
    plain = latent(server, g)
    assert torch.equal(latent(server, add_box_attention(g, [PATH_A], 3, strength=0.0)), plain)
    assert not torch.equal(latent(server, add_box_attention(g, [PATH_A], 3, strength=3.0)), plain)


def with_words(g, words):
    g["43"]["inputs"]["words"] = words
    return g


@pytest.mark.parametrize("change, phrases", [
    (lambda g: add_omcm(g, [], 2), ["There is no path", "draw one"]),
    (lambda g: add_omcm(g, [{"points": [[10, 10], [90, 10]]}], 2), ["outside the 64x64 canvas", "(90, 10)"]),
    (lambda g: add_omcm(g, [{"points": [[10, 10]], "start_frame": 5}], 2), ["frame 5", "frames 0-1"]),
    (lambda g: with_words(add_box_attention(g, [PATH_A], 2), "dog"), ["'dog' not found in the prompt"]),
])
def test_bad_input_is_a_clear_error_and_comfyui_stays_usable(server, change, phrases):
    g = base(frames=2)
    res = server.run(change(g))
    assert res.status == "error"
    for phrase in phrases:
        assert phrase in res.error_message, f"{phrase!r} not in {res.error_message!r}"
    assert latent(server, g).shape == (2, 4, 8, 8)


def test_wrong_files_name_the_right_loader(server):
    g = add_omcm(base(frames=2), [PATH_A], 2)
    g["41"]["inputs"]["omcm_name"] = "mm_in_wrong_folder.safetensors"
    res = server.run(g)
    assert res.status == "error" and "a motion model, not MotionCtrl's object-motion module" in res.error_message
    g = add_motion(base(frames=2), "omcm_in_wrong_folder.ckpt")
    res = server.run(g)
    assert res.status == "error" and "Load MotionCtrl OMCM" in res.error_message


EXAMPLES = ("trajectory_omcm_sd15", "trajectory_attention_sd15", "trajectory_video_flow_sd15")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_ui_matches_api(server, name):
    ui = json.loads((REPO / "example_workflows" / f"{name}.json").read_text())
    api = json.loads((REPO / "example_workflows" / "api" / f"{name}_api.json").read_text())
    assert ui_to_api(ui, server.object_info()) == {k: {"class_type": v["class_type"], "inputs": v["inputs"]}
                                                   for k, v in api.items()}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_runs_small(server, name):
    """The API example with the test models at 64x64, 2 frames, 1 step: the 512x512x16 trajectory is resampled
    (the video-flow example reads a 2-frame test video in place of the artist's footage)."""
    from motionkit.media.animation import AnimationSettings, write_animation
    g = json.loads((REPO / "example_workflows" / "api" / f"{name}_api.json").read_text())
    server.add_input("trajectory_reference.png", _png())
    if any(node["class_type"] == "MotionKitLoadVideo" for node in g.values()):
        frames = torch.stack([torch.roll(torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0)), 4 * f, 1)
                              for f in range(4)])
        write_animation(frames, str(server.input_dir / "input_video.mp4"), AnimationSettings(format="mp4", fps=8))
    for node in g.values():
        i = node["inputs"]
        if node["class_type"] == "CheckpointLoaderSimple":
            i["ckpt_name"] = CKPT
        elif node["class_type"] == "MotionKitLoadMotionModel":
            i["model_name"] = MM
        elif node["class_type"] == "EmptyLatentImage":
            i.update(width=64, height=64, batch_size=2)
        elif node["class_type"] == "KSampler":
            i["steps"] = 1
        elif node["class_type"] == "MotionKitSaveAnimation":
            i.update(filename_prefix="t/traj_example", format="gif")
        elif node["class_type"] == "MotionKitLoadOMCM":
            i["omcm_name"] = OMCM_NAME
        elif node["class_type"] == "MotionKitLoadVideo":
            i.update(frame_cap=2, width=64, height=64)
    res = server.run(g).raise_for_status()
    assert "resampled to fit" in server.log_tail(200)
    assert [Path(i["filename"]).suffix for i in res.outputs["9"]["images"]] == [".gif"]


def _png() -> bytes:
    import io
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (40, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()
