"""Prompt Schedule in a real ComfyUI server: the same latent as CLIP Text Encode for an unchanging schedule,
and a changed keyframe prompt reaching exactly the frames of its span, with and without context windows.
Plain SD1.5 without a motion model: frames are independent, so a prompt change can only show where that
frame's prompt row changed. 64x64, 1 step."""
from __future__ import annotations

import copy

import pytest
import torch

from comfy_graphs import add_windows, base, changed_frames, latent

pytestmark = pytest.mark.comfyui
PROMPT = "a cat walking"  # base()'s positive prompt


def scheduled(g, text, frames, interpolation="hold"):
    """The graph with its positive CLIPTextEncode replaced by a Prompt Schedule."""
    g = copy.deepcopy(g)
    g["6"] = {"class_type": "MotionKitPromptSchedule", "inputs": {
        "clip": ["4", 1], "text": text, "frames": frames, "interpolation": interpolation}}
    return g


def keyframes(*pairs):
    return "\n".join(f"{frame}: {prompt}" for frame, prompt in pairs)


def test_node_is_registered_with_tooltips(comfy_server):
    spec = comfy_server.object_info()["MotionKitPromptSchedule"]
    assert spec["category"] == "MotionKit" and spec["display_name"] == "Prompt Schedule 🎞️"
    required = spec["input"]["required"]
    assert required["frames"][1]["default"] == 16 and required["interpolation"][0] == ["linear", "hold"]
    for name, (_, opts) in required.items():
        assert opts.get("tooltip"), f"{name} has no tooltip"


def test_unchanging_schedule_equals_clip_text_encode(comfy_server):
    """Every keyframe holds base()'s prompt: one row per frame, each the CLIP Text Encode embedding, bit for bit
    (cfg 2, so the negative is batched with the per-frame rows too)."""
    g = base(frames=4, cfg=2.0)
    plain = latent(comfy_server, g)
    sched = latent(comfy_server, scheduled(g, keyframes((0, PROMPT), (2, PROMPT)), 4, "linear"))
    assert sched.shape == plain.shape and torch.equal(sched, plain)


def test_changed_keyframe_changes_exactly_its_frames(comfy_server):
    g = base(frames=8)
    before = keyframes((0, PROMPT), (3, "a dog running"), (6, "a bird flying"))
    after = keyframes((0, PROMPT), (3, "a red sports car"), (6, "a bird flying"))
    a, b = (latent(comfy_server, scheduled(g, t, 8)) for t in (before, after))
    assert changed_frames(a, b) == {3, 4, 5}


def test_changed_keyframe_changes_exactly_its_frames_in_context_windows(comfy_server):
    """20 frames in static windows 0-7, 6-13, 12-19: the keyframe at 9 must reach frames 9-14, across window
    borders. Without each window getting its own prompt rows (ComfyUI 0.3.64 by itself), window 6-13 would
    sample frames 6-13 with the rows of frames 0-7 and window 12-19 with those of 0-7 too."""
    g = add_windows(base(frames=20), length=8, overlap=2, schedule="static", fuse="flat")
    before = keyframes((0, PROMPT), (9, "a dog running"), (15, "a bird flying"))
    after = keyframes((0, PROMPT), (9, "a red sports car"), (15, "a bird flying"))
    a, b = (latent(comfy_server, scheduled(g, t, 20)) for t in (before, after))
    assert changed_frames(a, b) == set(range(9, 15))


def test_bad_schedule_is_a_clear_error_and_comfyui_stays_usable(comfy_server):
    g = base(frames=2)
    res = comfy_server.run(scheduled(g, keyframes((0, PROMPT)) + "\na dog", 2))
    assert res.status == "error"
    for phrase in ("Prompt schedule", "'a dog'", "'frame: prompt'", "'0: a cat sitting'"):
        assert phrase in res.error_message, f"{phrase!r} not in {res.error_message!r}"
    assert latent(comfy_server, g).shape == (2, 4, 8, 8)  # the plain graph still runs
