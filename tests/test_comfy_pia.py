"""PIA in a real ComfyUI server: SD1.5 checkpoint → Load Motion Model (pia.ckpt) → Apply Motion Model → Apply PIA
Image (Load Image, the checkpoint's VAE, a preset) → KSampler 64×64, 1 step → SaveLatent.

Motion files: random weights at SD1.5 widths in both published layouts, names and shapes from tests/pia_keys.json
(open-mmlab/PIA's own classes): ADE's pruned copy (the "temporal" keys and conv_in, as safetensors) and the whole
flat UNet (pia.ckpt as train.py saves it). The whole UNet's other 684 tensors are never read by the server (the
artist's checkpoint supplies them), so in the test file each is one zero expanded to its shape (a pickle stores the
one-element storage): the layout is the published one at the pruned file's size. Both hold the same motion weights
and conv_in, so they must give the same latents.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from comfy_graphs import base_graph, changed_frames, latent, png, with_motion
from model_cache import cached, module_server
from pia_files import FULL, PRUNED, full, pruned

pytestmark = pytest.mark.comfyui

PLAIN_MM = "mm_v2_random.safetensors"
FRAMES = 6
LORA = "v2_lora_ZoomIn.ckpt"


server = module_server(
    {"animatediff_models": {PRUNED: cached(PRUNED, pruned), FULL: cached(FULL, full),
                            PLAIN_MM: cached(PLAIN_MM)},
     "animatediff_motion_lora": {LORA: cached(LORA)}},
    inputs={"pia_a.png": lambda: png(80, 64),  # not the latent's size: resized and center-cropped
            "pia_b.png": lambda: png(64, 64, flip=True)})


def pia_graph(motion_file=PRUNED, image="pia_a.png", preset="animation, small motion", image_frame=0, values="",
              frames=FRAMES, seed=7, start=0.0, end=1.0):
    g = with_motion(base_graph(frames=frames, seed=seed), motion_file)
    g["11"]["inputs"].update(start_percent=start, end_percent=end)
    g["12"] = {"class_type": "LoadImage", "inputs": {"image": image}}
    g["13"] = {"class_type": "MotionKitApplyPIAImage", "inputs": {
        "model": ["11", 0], "image": ["12", 0], "vae": ["4", 2], "motion": preset, "image_frame": image_frame,
        "values": values}}
    g["3"]["inputs"]["model"] = ["13", 0]
    g["9"]["inputs"]["filename_prefix"] = "t/pia"
    return g


def windowed(g, length=4, overlap=0):
    g = copy.deepcopy(g)
    g["15"] = {"class_type": "MotionKitContextWindows", "inputs": {
        "model": g["3"]["inputs"]["model"], "context_length": length, "context_overlap": overlap,
        "schedule": "static", "context_stride": 1, "fuse_method": "flat", "closed_loop": False}}
    g["3"]["inputs"]["model"] = ["15", 0]
    return g


def all_frames(frames=FRAMES):
    return set(range(frames))


def test_node_is_registered(server):
    spec = server.object_info()["MotionKitApplyPIAImage"]
    assert spec["output"] == ["MODEL"]
    required = spec["input"]["required"]
    assert list(required) == ["model", "image", "vae", "motion", "image_frame", "values"]
    assert required["motion"][1]["default"] == "animation, moderate motion"
    assert {PRUNED, FULL} <= set(server.object_info()["MotionKitLoadMotionModel"]["input"]["required"]["model_name"][0])


def test_pia_runs_and_both_layouts_agree(server):
    """cfg 7 (cond and uncond in one batch). The image, the motion model and PIA's input channels each change every
    frame; the whole pia.ckpt and ADE's pruned copy (same weights) give the same latents."""
    plain = latent(server, base_graph(frames=FRAMES))
    motion_only = latent(server, with_motion(base_graph(frames=FRAMES), PRUNED))
    pia = latent(server, pia_graph())
    assert pia.shape == (FRAMES, 4, 8, 8)
    for other in (plain, motion_only):
        assert changed_frames(pia, other) == all_frames()
    assert torch.equal(latent(server, pia_graph(motion_file=FULL)), pia)
    other_image = latent(server, pia_graph(image="pia_b.png"))
    assert changed_frames(other_image, pia) == all_frames()


def test_presets_are_their_mask_values(server):
    """A preset is exactly its RANGE_LIST row around image_frame (pia/presets.py): the same values written out give
    the same latents, a negative image_frame counts from the end, and other presets or values change the frames.
    'animation, large motion' at image_frame 2 of 6: frame f gets row 2 = [1.0, 0.8, 0.7, ...] at |f − 2|."""
    large2 = latent(server, pia_graph(preset="animation, large motion", image_frame=2))
    assert torch.equal(latent(server, pia_graph(values="0.7, 0.8, 1.0, 0.8, 0.7")), large2)  # last value repeats
    assert torch.equal(latent(server, pia_graph(preset="animation, large motion", image_frame=-4)), large2)
    small2 = latent(server, pia_graph(preset="animation, small motion", image_frame=2))
    assert changed_frames(small2, large2) == all_frames()
    moved = latent(server, pia_graph(preset="animation, large motion", image_frame=3))
    assert changed_frames(moved, large2) == all_frames()
    # style transfer's values start at 0.5: no frame is the image
    style = latent(server, pia_graph(preset="style transfer, small motion", image_frame=2))
    assert torch.equal(latent(server, pia_graph(values="0.4, 0.4, 0.5, 0.4, 0.4, 0.4")), style)


def test_context_windows_give_each_window_its_frames_values(server):
    """8 frames in static windows of 4 without overlap: [0..3] and [4..7] never meet, so a value of frame 5
    changes frames 4-7 only, and the second window reads frames 4-7's values (not the first four, as a window-relative
    reading would: the values repeated per window then differ)."""
    values = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    text = lambda v: ", ".join(map(str, v))  # noqa: E731
    base = latent(server, windowed(pia_graph(values=text(values), frames=8)))
    one = values.copy()
    one[5] = 0.2
    assert changed_frames(latent(server, windowed(pia_graph(values=text(one), frames=8))), base) == {4, 5, 6, 7}
    relative = values[:4] * 2
    assert changed_frames(latent(server, windowed(pia_graph(values=text(relative), frames=8))), base) == {4, 5, 6, 7}
    # a preset's image frame in the second window: the first window's frames get their distance's values
    at5 = latent(server, windowed(pia_graph(preset="animation, large motion", image_frame=5, frames=8)))
    at5_values = latent(server, windowed(pia_graph(values="0.7, 0.7, 0.7, 0.7, 0.8, 1.0, 0.8, 0.7", frames=8)))
    assert torch.equal(at5, at5_values)


def test_combines_with_a_motion_lora_and_a_prompt_schedule(server):
    """PIA's motion modules take MotionLoRAs (pia.ckpt's temporal layers are AnimateDiff v3's), and a Prompt Schedule
    gives its frames their own prompts: each changes every frame, and the schedule with one prompt is the plain
    prompt (the image's conditioning is untouched by either)."""
    plain = latent(server, pia_graph())
    lora = pia_graph()
    lora["20"] = {"class_type": "MotionKitLoadMotionLoRA", "inputs": {"lora_name": LORA, "strength": 1.0}}
    lora["11"]["inputs"]["motion_lora"] = ["20", 0]
    assert changed_frames(plain, latent(server, lora)) == all_frames()

    def scheduled(text):
        g = pia_graph()
        g["6"] = {"class_type": "MotionKitPromptSchedule", "inputs": {
            "clip": ["4", 1], "text": text, "frames": FRAMES, "interpolation": "hold"}}
        return g
    same = latent(server, scheduled("0: a cat walking"))  # base_graph's positive prompt
    assert torch.equal(same, plain)
    assert changed_frames(plain, latent(server, scheduled("0: a cat walking\n3: a dog running"))) == all_frames()


def test_outside_the_motion_range_it_is_plain_sd(server):
    """Apply Motion Model's range never comes (start = end = 1.0): the motion modules stay off and PIA's extra input
    channels are zero, so the widened conv_in is the checkpoint's own: plain SD, bit for bit (measured; the zero
    channels add exact zeros)."""
    plain = latent(server, base_graph(frames=FRAMES))
    assert torch.equal(latent(server, pia_graph(start=1.0, end=1.0)), plain)
    assert changed_frames(latent(server, pia_graph()), plain) == all_frames()


ERRORS = [  # (graph, node type, phrases)
    (lambda: pia_graph(motion_file=PLAIN_MM), "MotionKitApplyPIAImage", ["is not PIA", "pia.ckpt"]),
    (lambda: pia_graph(image_frame=FRAMES), "KSampler", ["image's frame is 6", "6 frames", "inside the animation"]),
    (lambda: pia_graph(image_frame=-FRAMES - 1), "KSampler", ["image's frame is -7", "6 frames"]),
    (lambda: pia_graph(values="1.0, 1.5"), "MotionKitApplyPIAImage", ["1.5", "outside 0 to 1"]),
]


def test_errors_are_clear_and_leave_comfyui_usable(server):
    plain = latent(server, base_graph(frames=FRAMES))
    latent(server, pia_graph())  # a PIA run first: its widened conv_in must not outlive it
    for build, node_type, phrases in ERRORS:
        res = server.run(build())
        assert res.status == "error" and res.execution_error["node_type"] == node_type, res.execution_error
        for phrase in phrases:
            assert phrase in res.error_message, f"{phrase!r} not in {res.error_message!r}"
    latent(server, base_graph(frames=FRAMES, seed=99))  # run the sampler again, then the first graph
    assert torch.equal(latent(server, base_graph(frames=FRAMES)), plain), "an error left ComfyUI patched"


PIA_EXAMPLE = Path(__file__).resolve().parent.parent / "example_workflows" / "api" / "pia_image_animation_api.json"


def pia_example(preset=None):
    """The PIA example's own graph (its API twin) with the test files: 64x64, FRAMES frames, 1 step."""
    api = json.loads(PIA_EXAMPLE.read_text())
    g = {k: {"class_type": v["class_type"], "inputs": copy.deepcopy(v["inputs"])} for k, v in api.items()}
    g["4"]["inputs"]["ckpt_name"] = "sd15_random.safetensors"
    g["10"]["inputs"]["model_name"] = PRUNED
    g["12"]["inputs"]["image"] = "pia_a.png"
    if preset is not None:
        g["16"]["inputs"]["motion"] = preset
    g["5"]["inputs"].update(width=64, height=64, batch_size=FRAMES)
    g["3"]["inputs"]["steps"] = 1
    del g["8"]
    g["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "t/pia_example"}}
    return g


@pytest.mark.example
def test_pia_example(server):
    """The example as shipped, small: it runs, and its preset matters (another preset changes every frame)."""
    moderate = latent(server, pia_example())
    assert moderate.shape == (FRAMES, 4, 8, 8)
    large = latent(server, pia_example("animation, large motion"))
    assert changed_frames(moderate, large) == set(range(FRAMES))
