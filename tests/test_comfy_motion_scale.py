"""Motion strength over frames (Motion Scale Schedule) and over sampling progress (start/end percent, two
motion models in one chain), in a real ComfyUI server.

Frames are independent in plain SD; a motion model's modules are the only thing that couples them. A frame
whose motion scale is 0 at every module therefore comes out bit-identical to plain SD, whatever the other
frames do. Random-weight v2 motion models; schedule 'use model's own', so plain SD is the reference.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

import motion_files as mf
from comfy_graphs import CKPT, REPO, base_graph, changed_frames, latent, with_motion
from model_cache import MOTION_FILES, cached, module_server

pytestmark = pytest.mark.comfyui

A = "mm_v2_random.safetensors"
B = "animatediff_lightning_4step_diffusers.safetensors"  # another random v2 (seed 0), diffusers layout
FILES = {A: MOTION_FILES[A], B: lambda: mf.lightning_diffusers(seed=0)}
FRAMES = 4


server = module_server({"animatediff_models": {name: cached(name, build) for name, build in FILES.items()}})


def with_schedule(graph, text):
    g = copy.deepcopy(graph)
    g["14"] = {"class_type": "MotionKitMotionScaleSchedule", "inputs": {"schedule": text}}
    g["11"]["inputs"]["motion_scale_schedule"] = ["14", 0]
    return g


def with_range(graph, start, end, node="11"):
    g = copy.deepcopy(graph)
    g[node]["inputs"].update(start_percent=start, end_percent=end)
    return g


def then_motion(graph, name, start, end):
    """A second Apply Motion Model after the first one (nodes 12, 13)."""
    g = copy.deepcopy(graph)
    g["12"] = {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": name}}
    g["13"] = {"class_type": "MotionKitApplyMotionModel", "inputs": {
        "model": ["11", 0], "motion_model": ["12", 0], "motion_scale": 1.0,
        "start_percent": start, "end_percent": end, "noise_schedule": "use model's own"}}
    g["3"]["inputs"]["model"] = ["13", 0]
    return g


def test_node_is_registered(server):
    info = server.object_info()
    spec = info["MotionKitMotionScaleSchedule"]
    assert spec["category"] == "MotionKit" and spec["output"] == ["MOTION_SCALE"]
    assert spec["input"]["required"]["schedule"][1]["multiline"] is True
    assert info["MotionKitApplyMotionModel"]["input"]["optional"]["motion_scale_schedule"][0] == "MOTION_SCALE"


def test_all_zero_schedule_gives_plain_sd(server):
    plain = latent(server, base_graph(frames=FRAMES))
    anim = with_motion(base_graph(frames=FRAMES), A, scale=1.5)
    assert torch.equal(latent(server, with_schedule(anim, "0")), plain)


def test_zero_on_one_frame_keeps_that_frame_plain(server):
    """Keyframes 0:1, 2:0, 3:1: frame 1 interpolates (0.5), frame 2 has no motion, frame 3 full motion.
    cfg 7: cond and uncond share the batch, each chunk gets the schedule."""
    plain = latent(server, base_graph(frames=FRAMES))
    anim = latent(server, with_schedule(with_motion(base_graph(frames=FRAMES), A), "0:1, 2:0, 3:1"))
    assert changed_frames(plain, anim) == {0, 1, 3}


def test_schedule_follows_absolute_frames_in_context_windows(server):
    """12 frames in static windows of 8 with overlap 4 ([0..7], [4..11]). Only absolute frame 10 has scale 0,
    so frame 10 stays plain (it is in the second window only, at position 6, where a schedule read by window
    position would give it scale 1); plain SD also runs in the same windows, so fusion rounds the same way."""
    def windows(g):
        g["15"] = {"class_type": "MotionKitContextWindows", "inputs": {
            "model": g["3"]["inputs"]["model"], "context_length": 8, "context_overlap": 4, "schedule": "static",
            "context_stride": 1, "fuse_method": "pyramid", "closed_loop": False}}
        g["3"]["inputs"]["model"] = ["15", 0]
        return g

    g = base_graph(frames=12, steps=1)
    g["3"]["inputs"]["cfg"] = 1.0
    plain = latent(server, windows(copy.deepcopy(g)))
    anim = latent(server, windows(with_schedule(with_motion(g, A), "9:1, 10:0, 11:1")))
    assert changed_frames(plain, anim) == set(range(12)) - {10}


def test_two_motion_models_in_a_chain_act_in_their_own_ranges(server):
    """2 steps ('normal': at 0 and 1/2 of sampling). A acts on the first step (0-0.4), B on the second (0.4-1)."""
    g = base_graph(frames=FRAMES, steps=2)
    g["3"]["inputs"]["cfg"] = 1.0
    plain = latent(server, g)
    a_first = with_range(with_motion(g, A), 0.0, 0.4)
    chain = latent(server, then_motion(a_first, B, 0.4, 1.0))
    a_only = latent(server, a_first)
    b_only = latent(server, with_range(with_motion(g, B), 0.4, 1.0))
    for other in (plain, a_only, b_only):
        assert changed_frames(chain, other) == set(range(FRAMES))
    # a range that never comes (start = end = 1.0): the motion model changes nothing
    assert torch.equal(latent(server, with_range(with_motion(g, B), 1.0, 1.0)), plain)


def with_region(graph, mask_value=None, down=1.0, mid=1.0, up=1.0, attention=1.0):
    """Regional Motion (node 16) into Apply Motion Model; the mask from core's Solid Mask (node 17), 64x64."""
    g = copy.deepcopy(graph)
    g["16"] = {"class_type": "MotionKitRegionalMotion", "inputs": {
        "down_scale": down, "mid_scale": mid, "up_scale": up, "attention_scale": attention}}
    if mask_value is not None:
        g["17"] = {"class_type": "SolidMask", "inputs": {"value": mask_value, "width": 64, "height": 64}}
        g["16"]["inputs"]["motion_scale_mask"] = ["17", 0]
    g["11"]["inputs"]["regional_motion"] = ["16", 0]
    return g


def test_regional_motion_in_a_workflow(server):
    """A black mask (or every block at 0) is plain SD, a white mask with every scale at 1 is the motion model as
    it was; a grey mask or a block scale moves the frames differently."""
    plain = latent(server, base_graph(frames=FRAMES))
    anim = with_motion(base_graph(frames=FRAMES), A, scale=1.5)
    full = latent(server, anim)
    assert torch.equal(latent(server, with_region(anim, mask_value=0.0)), plain)
    assert torch.equal(latent(server, with_region(anim, down=0.0, mid=0.0, up=0.0)), plain)
    assert torch.equal(latent(server, with_region(anim, mask_value=1.0)), full)
    for other in (latent(server, with_region(anim, mask_value=0.5)), latent(server, with_region(anim, up=0.3)),
                  latent(server, with_region(anim, attention=0.5))):
        assert changed_frames(other, full) == set(range(FRAMES)) and changed_frames(other, plain) == set(range(FRAMES))


REGIONAL_EXAMPLE = REPO / "example_workflows" / "api" / "regional_motion_sd15_api.json"


def regional_example(sky=1.0, region=True, motion=True):
    """The regional-motion example's own graph (its API twin) with the test models at 64x64, FRAMES frames, 1 step.
    `sky`: the white Solid Mask's value (0 = nothing moves); `region`/`motion`: keep Regional Motion / the motion
    model's effect at all."""
    api = json.loads(REGIONAL_EXAMPLE.read_text())
    g = {k: {"class_type": v["class_type"], "inputs": copy.deepcopy(v["inputs"])} for k, v in api.items()}
    g["4"]["inputs"]["ckpt_name"] = CKPT
    g["10"]["inputs"]["model_name"] = A
    g["5"]["inputs"].update(width=64, height=64, batch_size=FRAMES)
    g["3"]["inputs"]["steps"] = 1
    g["13"]["inputs"]["value"] = sky
    del g["8"]
    g["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "t/regional"}}
    if not region:
        del g["11"]["inputs"]["regional_motion"], g["13"], g["14"], g["15"], g["16"]
    if not motion:  # motion_scale 0: the model's frames are plain SD's on the example's (autoselected) schedule
        g["11"]["inputs"]["motion_scale"] = 0.0
    return g


@pytest.mark.example
def test_regional_example_moves_the_sky_and_keeps_the_house(server):
    """The example as shipped: the sky (top 288 of 512 rows, white) moves, the house (bottom, black) stays: an
    all-black mask is plain SD, the example's mask differs from both plain SD and motion everywhere, and its frames
    change more in the sky than in the house (which only the spatial layers around it reach)."""
    plain = latent(server, regional_example(motion=False))
    assert torch.equal(latent(server, regional_example(sky=0.0)), plain)
    everywhere = latent(server, regional_example(region=False))
    moving = latent(server, regional_example())
    assert changed_frames(moving, plain) == set(range(FRAMES))
    assert changed_frames(moving, everywhere) == set(range(FRAMES))
    change = (moving - plain).abs()
    sky, house = change[:, :, :4].mean(), change[:, :, 5:].mean()  # latent rows 0-3 are sky, 5-7 house (8x8)
    # random weights mix regions strongly through the spatial layers at 8x8 (measured: 1.77x, not more)
    assert sky > 1.3 * house, (sky, house)


def with_keyframes(graph, *keyframes):
    """Motion Keyframe nodes (20, 21, ...) chained into Apply Motion Model's motion_keyframes: (start, motion_scale)."""
    g = copy.deepcopy(graph)
    prev = None
    for i, (start, scale) in enumerate(keyframes):
        node = str(20 + i)
        g[node] = {"class_type": "MotionKitMotionKeyframe", "inputs": {
            "start_percent": start, "motion_scale": scale, "attention_scale": -1.0, "inherit_missing": True,
            "guarantee_steps": 1}}
        if prev is not None:
            g[node]["inputs"]["prev_keyframes"] = [prev, 0]
        prev = node
    g["11"]["inputs"]["motion_keyframes"] = [prev, 0]
    return g


def test_motion_keyframes_in_a_workflow(server):
    """2 steps ('normal': at 0 and 1/2 of sampling). Motion scale 0 from the start is plain SD; 0 from halfway keeps
    the first step's motion only (unlike both); a keyframe that sets nothing (-1) changes nothing."""
    g = base_graph(frames=FRAMES, steps=2)
    g["3"]["inputs"]["cfg"] = 1.0
    plain = latent(server, g)
    anim = with_motion(g, A)
    full = latent(server, anim)
    assert torch.equal(latent(server, with_keyframes(anim, (0.0, 0.0))), plain)
    assert torch.equal(latent(server, with_keyframes(anim, (0.0, -1.0))), full)
    half = latent(server, with_keyframes(anim, (0.0, -1.0), (0.5, 0.0)))
    assert changed_frames(half, full) == set(range(FRAMES)) and changed_frames(half, plain) == set(range(FRAMES))
