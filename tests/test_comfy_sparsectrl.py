"""SparseCtrl in a real ComfyUI server, applied with core's Apply ControlNet (ControlNetApplyAdvanced).

Random full-size SparseCtrl files in the published layout (tests/sparsectrl_files.py) sit in
models/controlnet. Placement is read from the result: without a motion model the SD UNet treats frames
independently, so with `nonhint_multiplier` 0 exactly the hint frames may differ from the run without
SparseCtrl, and every hint frame must. 64x64, one step, cfg 1.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from controlnet_file import cached_controlnet
from sparsectrl_files import cached_file as cached_sparsectrl
from comfy_graphs import CKPT, add_motion, add_windows, base, changed_frames, latent, ui_to_api
from model_cache import cached, module_server

pytestmark = pytest.mark.comfyui

RGB, SCRIBBLE = "v3_sd15_sparsectrl_rgb.ckpt", "v3_sd15_sparsectrl_scribble.ckpt"
CONTROLNET = "control_sd15_random.safetensors"
RANDOM = "mm_v2_random.safetensors"
EXAMPLES = Path(__file__).resolve().parent.parent / "example_workflows"
COLORS = (0xFF2010, 0x10FF40, 0x2040FF)


server = module_server({
    "controlnet": {RGB: lambda: cached_sparsectrl("rgb"), SCRIBBLE: lambda: cached_sparsectrl("scribble"),
                   CONTROLNET: cached_controlnet},
    "animatediff_models": {RGB: lambda: cached_sparsectrl("rgb"),  # the wrong folder: refused
                           RANDOM: cached(RANDOM)},
})


def add_sparsectrl(g, name=RGB, images=2, indices="0, 15", placement="indices", strength=1.0, vae=True,
                   keyframes=True, hint=1.0, nonhint=0.0, motion=1.0, empty="no control", loader="MotionKitLoadSparseCtrl"):
    """SparseCtrl on both conds through core's Apply ControlNet, `images` keyframes of different colours."""
    g = copy.deepcopy(g)
    batch = None
    for i in range(images):
        g[f"4{i}"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1,
                                                           "color": COLORS[i % len(COLORS)]}}
        batch = [f"4{i}", 0] if batch is None else batch
        if i:
            g[f"5{i}"] = {"class_type": "ImageBatch", "inputs": {"image1": batch, "image2": [f"4{i}", 0]}}
            batch = [f"5{i}", 0]
    g["60"] = ({"class_type": loader, "inputs": {"sparsectrl_name": name}} if loader == "MotionKitLoadSparseCtrl"
               else {"class_type": loader, "inputs": {"control_net_name": name}})
    control = ["60", 0]
    if keyframes:
        g["61"] = {"class_type": "MotionKitSparseCtrlKeyframes", "inputs": {
            "control_net": control, "placement": placement, "indices": indices, "hint_multiplier": hint,
            "nonhint_multiplier": nonhint, "motion_strength": motion, "window_without_hint": empty}}
        control = ["61", 0]
    g["62"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
        "positive": ["6", 0], "negative": ["7", 0], "control_net": control, "image": batch,
        "strength": strength, "start_percent": 0.0, "end_percent": 1.0}}
    if vae:
        g["62"]["inputs"]["vae"] = ["4", 2]
    g["3"]["inputs"].update(positive=["62", 0], negative=["62", 1])
    return g


@pytest.fixture(scope="module")
def plain8(server):
    return latent(server, base(frames=8))


def test_nodes_are_registered(server):
    info = server.object_info()
    for node in ("MotionKitLoadSparseCtrl", "MotionKitSparseCtrlKeyframes"):
        spec = info[node]
        assert spec["category"] == "MotionKit/SparseCtrl" and spec["display_name"].endswith(" 🎞️")
        for name, (_, opts) in spec["input"]["required"].items():
            assert opts.get("tooltip"), f"{node}.{name} has no tooltip"
    assert {RGB, SCRIBBLE} <= set(info["MotionKitLoadSparseCtrl"]["input"]["required"]["sparsectrl_name"][0])


def test_rgb_hints_reach_their_frames(server, plain8):
    """RGB keyframes on the first and last frame through core's Apply ControlNet with the VAE: exactly those
    frames change when the other frames' residuals are scaled to 0; strength 0 (core's) and both multipliers
    0 (the encoder runs, its residuals are zeroed) are exactly no control."""
    g = base(frames=8)
    assert changed_frames(plain8, latent(server, add_sparsectrl(g, indices="0, -1"))) == {0, 7}
    assert torch.equal(latent(server, add_sparsectrl(g, indices="0, -1", strength=0.0, nonhint=1.0)), plain8)
    assert torch.equal(latent(server, add_sparsectrl(g, indices="0, -1", hint=0.0, nonhint=0.0)), plain8)


@pytest.mark.example  # hints through Apply ControlNet: test_rgb_hints_reach_their_frames, test_scribble_hints_follow_their_windows
@pytest.mark.parametrize("name, placement", [("sparsectrl_rgb_interpolation", ("indices", "0, -1")),
                                             ("sparsectrl_scribble_storyboard", ("uniform", "0, 8, 15"))])
def test_examples_run(server, name, placement):
    """Each SparseCtrl example as shipped (API twin), with the test models, 64x64, 8 frames, one step: a motion
    model, keyframes placed as shipped (RGB first + last frame through the VAE; three scribbles spread uniformly)
    through core's Apply ControlNet, saved as MP4."""
    import io

    from PIL import Image
    g = json.loads((EXAMPLES / "api" / f"{name}_api.json").read_text())
    loads = [k for k, v in g.items() if v["class_type"] == "LoadImage"]
    for node, color in zip(loads, [(200, 60, 20), (20, 60, 200), (240, 240, 240)]):
        buf = io.BytesIO()
        Image.new("RGB", (96, 64), color).save(buf, format="PNG")  # another aspect ratio: cover + centre-crop
        server.add_input(g[node]["inputs"]["image"], buf.getvalue())
    keyframes = next(v["inputs"] for v in g.values() if v["class_type"] == "MotionKitSparseCtrlKeyframes")
    assert (keyframes["placement"], keyframes["indices"]) == placement and g["5"]["inputs"]["batch_size"] == 16
    g["4"]["inputs"]["ckpt_name"] = CKPT
    g["10"]["inputs"]["model_name"] = RANDOM
    g["5"]["inputs"].update(width=64, height=64, batch_size=8)
    g["3"]["inputs"].update(steps=1, cfg=1.0)
    res = server.run(g).raise_for_status()
    (video,) = res.files("9", "images")
    assert video.suffix == ".mp4" and video.stat().st_size > 0


@pytest.mark.parametrize("name", ["sparsectrl_rgb_interpolation", "sparsectrl_scribble_storyboard"])
def test_example_workflow_ui_matches_api(server, name):
    ui = json.loads((EXAMPLES / f"{name}.json").read_text())
    api = json.loads((EXAMPLES / "api" / f"{name}_api.json").read_text())
    assert ui_to_api(ui, server.object_info()) == {
        k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def test_scribble_hints_follow_their_windows(server):
    """20 frames in static windows 8/2 (0-7, 6-13, 12-19): scribbles at 0, 10, 19 each reach their own frame
    in whichever window holds it (re-indexed: 10 is the window 6-13's frame 4). At 2 and 19 with 'nearest
    hint', the window 6-13 (no hint inside) gets the nearer one (2, 4 frames away; 19 is 6) on its frame 6."""
    g = add_windows(base(frames=20), length=8, overlap=2, schedule="static", fuse="flat")
    plain = latent(server, g)
    three = latent(server, add_sparsectrl(g, SCRIBBLE, images=3, indices="0, 10, -1"))
    assert changed_frames(plain, three) == {0, 10, 19}
    nearest = latent(server, add_sparsectrl(g, SCRIBBLE, images=2, indices="2, 19", empty="nearest hint"))
    assert changed_frames(plain, nearest) == {2, 6, 19}


def test_a_window_without_hint_is_not_controlled(server):
    """Windows 0-7, 6-13, 12-19 and keyframes at 0 and 19, with nonhint_multiplier 1 (the non-hint frames' residuals
    are added): frames 8-11 lie only in the window 6-13, which holds no keyframe. 'no control' leaves them exactly as
    without SparseCtrl; 'zero condition' (the encoder run with no hint there, Advanced-ControlNet's way) changes them."""
    g = add_windows(base(frames=20), length=8, overlap=2, schedule="static", fuse="flat")
    plain = latent(server, g)
    only_middle = set(range(8, 12))
    none = latent(server, add_sparsectrl(g, SCRIBBLE, images=2, indices="0, -1", nonhint=1.0, empty="no control"))
    assert changed_frames(plain, none) == set(range(20)) - only_middle
    zero = latent(server, add_sparsectrl(g, SCRIBBLE, images=2, indices="0, -1", nonhint=1.0, empty="zero condition"))
    assert changed_frames(plain, zero) == set(range(20))


ERRORS = [  # (graph, phrases in the error)
    (add_sparsectrl(base(frames=16), vae=False), ["RGB SparseCtrl", "VAE", "Apply ControlNet"]),
    (add_sparsectrl(base(frames=16), indices="0, 8, 15"), ["3 indices", "2 hint images", "more indices than images"]),
    (add_sparsectrl(base(frames=16), images=3), ["2 indices", "3 hint images", "more images than indices"]),
    (add_sparsectrl(base(frames=16), indices="0, 20"), ["index 20 is outside the animation of 16 frames"]),
    (add_sparsectrl(base(frames=16), indices="0, x"), ["'x'", "not a whole number"]),
    (add_sparsectrl(base(frames=16), name=CONTROLNET), ["ordinary ControlNet", "Load ControlNet Model"]),
    (add_sparsectrl(base(frames=16), name=CONTROLNET, loader="ControlNetLoader"), ["needs a SparseCtrl", "Load SparseCtrl"]),
    (add_sparsectrl(base(frames=40), placement="uniform", nonhint=1.0), ["at most 32 frames", "Context Windows"]),
    (add_motion(base(frames=8), RGB), ["SparseCtrl", "Load SparseCtrl", "models/controlnet"]),
]


def test_errors_are_clear_and_leave_comfyui_usable(server, plain8):
    for graph, phrases in ERRORS:
        res = server.run(graph)
        assert res.status == "error", f"expected an error for {phrases}"
        for phrase in phrases:
            assert phrase in res.error_message, f"{phrase!r} not in {res.error_message!r}"
    latent(server, base(frames=8, seed=99))  # the plain sampler runs again, not from ComfyUI's cache
    assert torch.equal(latent(server, base(frames=8)), plain8), "an error left ComfyUI patched"


def test_sdxl_model_is_refused():
    """check_model runs in the control's pre_run, before any sampling: an SDXL UNet is refused by name."""
    import comfy_env
    comfy_env.comfyui_on_syspath()
    import comfy.latent_formats
    from types import SimpleNamespace
    from motionkit.control.sparsectrl.apply import check_model
    from motionkit.control.sparsectrl.errors import SparseCtrlError

    class SDXL:
        unet_config = {"context_dim": 2048}

    with pytest.raises(SparseCtrlError, match="SD1.5 models only.*SDXL model.*SD1.5 checkpoint"):
        check_model(SimpleNamespace(latent_format=comfy.latent_formats.SDXL(), model_config=SDXL()))

    class SD15:
        unet_config = {"context_dim": 768}

    check_model(SimpleNamespace(latent_format=comfy.latent_formats.SD15(), model_config=SD15()))
