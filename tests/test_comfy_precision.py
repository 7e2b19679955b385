"""Apply Motion Model's `precision` and Load Motion Model's progress bar in a real ComfyUI server.

The motion model is the fp16 random v2 file of test_comfy_motion.py (tests/model_cache.py) under a name only this module loads, so
its Load Motion Model node really runs here (not answered from ComfyUI's cache). On CPU the UNet runs in fp32:
auto and fp32 are the same computation, bf16 a slightly different one. (The numbers themselves: test_precision.py.)
"""
from __future__ import annotations

import json

import pytest
import torch

import comfy_graphs as cg
from model_cache import cached, module_server

pytestmark = pytest.mark.comfyui

MOTION = "mm_v2_random_precision.safetensors"
FRAMES = 4


server = module_server({"animatediff_models": {MOTION: cached("mm_v2_random.safetensors")}})


def graph(precision=None, frames=FRAMES):
    """The motion graph of test_comfy_motion.py; without `precision` it is a workflow saved before the input existed."""
    g = cg.with_motion(cg.base_graph(frames=frames), MOTION)
    if precision is not None:
        g["11"]["inputs"]["precision"] = precision
    return g


def run_watching_progress(server, prompt):
    """(latents of SaveLatent "9", [(node, value, max)] of the 'progress' messages ComfyUI sent the browser)."""
    res, progress = server.run_watching_progress(prompt)
    (out,) = res.raise_for_status().latents("9")
    assert torch.isfinite(out).all()
    return out, progress


def test_precision_input_is_optional_with_auto_default(server):
    info = server.object_info("MotionKitApplyMotionModel")["input"]
    assert "precision" not in info["required"]
    choices, opts = info["optional"]["precision"]
    assert choices == ["auto", "fp32", "bf16", "fp16"] and opts["default"] == "auto"
    assert all(word in opts["tooltip"] for word in ("auto", "bf16", "fp16", "GPU"))


def test_bf16_differs_slightly_from_auto_and_fp32_is_auto(server):
    auto, progress = run_watching_progress(server, graph())  # no precision input: auto
    assert [p for p in progress if p[0] == "10"] == [("10", 1, 3), ("10", 2, 3), ("10", 3, 3)], progress
    plain = cg.latent(server, cg.base_graph(frames=FRAMES))
    fp32 = cg.latent(server, graph("fp32"))
    bf16 = cg.latent(server, graph("bf16"))
    assert torch.equal(fp32, auto), "the UNet runs in fp32 here: fp32 is auto"
    motion = float((auto - plain).abs().amax())
    diff = float((bf16 - auto).abs().amax())
    assert motion > 1e-2, "the motion model must change the frames"
    assert 0 < diff < 0.05 * motion, f"bf16 moved the result by {diff}, the motion model itself by {motion}"
    again = server.run(graph()).raise_for_status()  # auto again: the sampler runs again (its inputs changed twice)
    assert "3" not in again.cached_nodes and "10" in again.cached_nodes
    assert torch.equal(again.latents("9")[0], auto), "the bf16 run changed the shared motion model"


def test_example_workflow_without_the_input_still_runs(server):
    api = json.loads((cg.REPO / "example_workflows" / "api" / "txt2anim_sd15_api.json").read_text())
    apply = next(n for n in api.values() if n["class_type"] == "MotionKitApplyMotionModel")
    del apply["inputs"]["precision"]  # as saved before the input existed
    api["4"]["inputs"]["ckpt_name"] = cg.CKPT
    api["10"]["inputs"]["model_name"] = MOTION
    api["5"]["inputs"].update(width=64, height=64, batch_size=2)
    api["3"]["inputs"]["steps"] = 1
    server.run(api).raise_for_status()
