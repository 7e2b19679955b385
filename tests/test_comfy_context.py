"""Context windows in a real ComfyUI server: long animations, exact fusion, ControlNet images per window, errors.

Workflows are API-format JSON run through ComfyUI's HTTP API with core nodes (KSampler, ControlNetLoader,
ControlNetApplyAdvanced, EmptyImage/ImageBatch for per-frame hint batches). 64x64, 1-2 steps, cfg 1
(one cond per window: half the UNet work; cfg does not touch what is tested here).
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

from controlnet_file import cached_controlnet
from comfy_graphs import REPO, add_motion, add_windows, base, changed_frames, latent, ui_to_api
from model_cache import module_server, motion_models

pytestmark = pytest.mark.comfyui

ZERO, RANDOM = "mm_v2_zero_out.safetensors", "mm_v2_random.safetensors"
CONTROLNET = "control_sd15_random.safetensors"
FRAMES = 40
# the ControlNet tests: 20 frames in core's static windows of 8 with overlap 2
CN_FRAMES, CN_WINDOWS, WHITE = 20, [range(0, 8), range(6, 14), range(12, 20)], 13


server = module_server({"animatediff_models": motion_models(ZERO, RANDOM),
                        "controlnet": {CONTROLNET: cached_controlnet}})


# ---------------------------------------------------------------------------------------------
# Workflows (API format; base/add_motion/add_windows: tests/comfy_graphs.py). add_controlnet puts its node
# between the sampler and the model it had.

def add_controlnet(g, frames=FRAMES, white_frame=None):
    """ControlNet on both conds with one hint image per frame: black, but white on `white_frame`."""
    g = copy.deepcopy(g)

    def empty(node, batch, color):
        g[node] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": batch, "color": color}}
        return [node, 0]

    if white_frame is None:
        hint = empty("30", frames, 0)
    else:
        before = empty("30", white_frame, 0)
        white = empty("31", 1, 0xFFFFFF)
        after = empty("32", frames - white_frame - 1, 0)
        g["33"] = {"class_type": "ImageBatch", "inputs": {"image1": before, "image2": white}}
        g["34"] = {"class_type": "ImageBatch", "inputs": {"image1": ["33", 0], "image2": after}}
        hint = ["34", 0]
    g["35"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": CONTROLNET}}
    g["36"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
        "positive": ["6", 0], "negative": ["7", 0], "control_net": ["35", 0], "image": hint,
        "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
    g["3"]["inputs"].update(positive=["36", 0], negative=["36", 1])
    return g


# ---------------------------------------------------------------------------------------------
# Tests

def test_node_is_registered(server):
    spec = server.object_info()["MotionKitContextWindows"]
    assert spec["category"] == "MotionKit"
    required = spec["input"]["required"]
    assert required["context_length"][1]["default"] == 16 and required["context_overlap"][1]["default"] == 4
    assert required["schedule"][0] == ["uniform", "uniform looped", "static", "batched",
                                       "uniform fixed (Animate Anyone)"]  # new options only appended
    for name, (_, opts) in required.items():
        assert opts.get("tooltip"), f"{name} has no tooltip"


def test_long_animation_with_zero_motion_equals_plain_sd(server):
    """40 frames, windows 16/4. With a motion model that adds nothing, every window's frames are plain SD frames
    (the UNet gives a frame the same numbers in any batch), and every frame is in one or two windows, so flat
    fusion is x/1 or (x+x)/2: bit-exact. (Other weights, or three windows on a frame, give the same up to the
    float rounding of sum(w*x)/sum(w), about 1e-7 relative: tested in-process, with the windows moving
    between steps.)"""
    plain = latent(server, base())
    windowed = latent(server, add_windows(add_motion(base(), ZERO), schedule="uniform", fuse="flat"))
    assert windowed.shape == (FRAMES, 4, 8, 8)
    assert torch.equal(windowed, plain)


def test_controlnet_image_follows_its_frame_into_every_window(server):
    """Plain SD (frames independent) in windows: hint images that differ on one frame only may change that frame
    only. ComfyUI 0.3.64 by itself gives every window hint images 0..7, so a white frame 13 would change nothing
    (and a white frame 3 would change frames 3, 9 and 15)."""
    g = add_windows(base(frames=CN_FRAMES), length=8, overlap=2)
    black = latent(server, add_controlnet(g, frames=CN_FRAMES))
    white = latent(server, add_controlnet(g, frames=CN_FRAMES, white_frame=WHITE))
    assert changed_frames(black, white) == {WHITE}


def test_controlnet_changes_only_windows_holding_its_frame(server):
    """With a random motion model (windows couple their frames) and one step: hint frame 13 sits in windows
    6-13 and 12-19, so frames 6-19 may change, 0-5 must not; frame 13 itself must. The context node is
    applied before the motion model here (the other tests: after)."""
    g = add_motion(add_windows(base(frames=CN_FRAMES), length=8, overlap=2, fuse="pyramid"), RANDOM)
    black = latent(server, add_controlnet(g, frames=CN_FRAMES))
    white = latent(server, add_controlnet(g, frames=CN_FRAMES, white_frame=WHITE))
    changed = changed_frames(black, white)
    allowed = set().union(*(set(w) for w in CN_WINDOWS if WHITE in w))
    assert WHITE in changed and changed <= allowed, sorted(changed)
    assert len(changed) > 4, "the motion model must carry the change to the other frames of its windows"


def test_fewer_frames_than_a_window_run_in_one_pass(server):
    g = add_motion(base(frames=8), RANDOM)
    assert torch.equal(latent(server, add_windows(g, schedule="uniform", fuse="pyramid")), latent(server, g))


def test_sampler_progress_moves_with_every_window(server):
    """The 'progress' messages ComfyUI sends the browser for the KSampler: 3 windows x 2 steps, not only the 2
    steps; never backwards, and ending at the whole run (in-process details: tests/test_window_progress.py)."""
    from fractions import Fraction

    res, progress = server.run_watching_progress(
        add_windows(base(frames=10, steps=2, seed=4242), length=4, overlap=1))  # 3 windows
    res.raise_for_status()
    assert {node for node, _, _ in progress} == {"3"}  # all on the sampler node
    windows = [(v, m) for _, v, m in progress if m != 2]
    assert windows == [(v, 6) for v in range(1, 7)]
    seen = [Fraction(v, m) for _, v, m in progress]
    assert seen == sorted(seen) and seen[-1] == 1 and len(progress) == 6 + 2


ERRORS = [
    # (graph, phrases in the error)
    (add_windows(add_motion(base(frames=48), RANDOM), length=40, overlap=8),
     ["at most 32 frames", "40 frames at once", "context_length", "32 or less"]),
    (add_motion(add_windows(base(frames=48), length=40, overlap=8), RANDOM),  # the other node order
     ["at most 32 frames", "40 frames at once", "context_length", "32 or less"]),
    (add_windows(base(), length=16, overlap=16), ["context_overlap (16)", "smaller than context_length (16)", "at most 15"]),
    (add_windows(base(), schedule="uniform looped", fuse="relative"), ["relative", "uniform looped", "pyramid"]),
]


def test_errors_are_clear_and_leave_comfyui_usable(server):
    small = base(frames=2)
    plain = latent(server, small)
    for graph, phrases in ERRORS:
        res = server.run(graph)
        assert res.status == "error", f"expected an error for {phrases}"
        for phrase in phrases:
            assert phrase in res.error_message, f"{phrase!r} not in {res.error_message!r}"
    latent(server, base(frames=2, seed=99))  # force the plain sampler to run again
    assert torch.equal(latent(server, small), plain), "an error left ComfyUI patched"


EXAMPLES = ["long_animation_context_windows", "seamless_loop", "controlnet_per_frame", "prompt_schedule_sd15",
            "long_animation_motion_windows", "converted_from_ade"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_ui_matches_api(server, name):
    ui = json.loads((REPO / "example_workflows" / f"{name}.json").read_text())
    api = json.loads((REPO / "example_workflows" / "api" / f"{name}_api.json").read_text())
    assert ui_to_api(ui, server.object_info()) == {
        k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


LONG_EXAMPLE = "long_animation_motion_windows"


def long_example(frames=24, motion_windows=True, reference=True):
    """The long-animation example's own graph (its API twin) with the test models: 64x64, 1 step, `frames` frames in
    Context Windows of 16/4, Motion-Only Windows of 8/2 inside them; optionally without either node."""
    api = json.loads((REPO / "example_workflows" / "api" / f"{LONG_EXAMPLE}_api.json").read_text())
    g = {k: {"class_type": v["class_type"], "inputs": copy.deepcopy(v["inputs"])} for k, v in api.items()}
    g["4"]["inputs"]["ckpt_name"] = "sd15_random.safetensors"
    g["10"]["inputs"]["model_name"] = RANDOM
    g["5"]["inputs"].update(width=64, height=64, batch_size=frames)
    g["3"]["inputs"]["steps"] = 1
    g["12"]["inputs"].update(context_length=16, context_overlap=4)
    g["13"]["inputs"].update(context_length=8, context_overlap=2, spatial_batch_limit=4)
    del g["8"]
    g["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "t/long_mw"}}
    for node, keep in (("14", reference), ("13", motion_windows)):
        if not keep:  # take the node out of the MODEL chain
            upstream = g.pop(node)["inputs"]["model"]
            for other in g.values():
                if other["inputs"].get("model") == [node, 0]:
                    other["inputs"]["model"] = upstream
    return g


@pytest.mark.example
def test_long_animation_example_with_motion_windows_and_context_reference(server):
    """The example as shipped, small: it runs; Motion-Only Windows and Context Reference each change every window after
    the first (Context Reference leaves the frames only the first window holds as they were)."""
    full = latent(server, long_example())
    assert full.shape == (24, 4, 8, 8)
    no_reference = latent(server, long_example(reference=False))
    no_motion_windows = latent(server, long_example(motion_windows=False))
    assert changed_frames(full, no_motion_windows) == set(range(24))
    changed = changed_frames(full, no_reference)
    # core's uniform windows of 16 over 24 frames at step 0: 0-15 (the reference) and 8-23; frames 0-7 lie only in the
    # reference window, which Context Reference writes but does not change
    assert changed == set(range(8, 24)), changed


def converted_example(frames=24, windows=True):
    """The converted-ADE example's own graph (its API twin) with the test models: 64x64, 1 step, `frames` frames in
    its Context Windows of 16/4 (or without that node)."""
    api = json.loads((REPO / "example_workflows" / "api" / "converted_from_ade_api.json").read_text())
    g = {k: {"class_type": v["class_type"], "inputs": copy.deepcopy(v["inputs"])} for k, v in api.items()}
    g["1"]["inputs"]["ckpt_name"] = "sd15_random.safetensors"
    g["5"]["inputs"]["model_name"] = RANDOM
    g["4"]["inputs"].update(width=64, height=64, batch_size=frames)
    g["10"]["inputs"]["steps"] = 1
    if not windows:
        g["10"]["inputs"]["model"] = g.pop("8")["inputs"]["model"]
    del g["11"], g["12"]
    g["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "t/converted"}}
    return g


@pytest.mark.example
def test_converted_from_ade_example(server):
    """The example as shipped, small: it runs, and its converted context windows act (without them every frame
    changes: 24 frames in one pass instead of windows of 16)."""
    windowed = latent(server, converted_example())
    assert windowed.shape == (24, 4, 8, 8)
    assert changed_frames(windowed, latent(server, converted_example(windows=False))) == set(range(24))
