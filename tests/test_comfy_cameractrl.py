"""CameraCtrl through the real nodes in a real ComfyUI server: Load Motion Model (random v3) -> Apply Motion Model ->
Apply CameraCtrl (preset, pose file, a mix of motions, chained) -> KSampler at 64x64, 1 step.

The CameraCtrl files are full SD1.5 size (the merge layers must fit the motion modules' 320/640/1280 widths), random,
written in both published layouts from one set of values (cameractrl_keys.json names and shapes), and cached.
What can fail: strength 0 (or an all-black strength_mask) must be bit-identical to no CameraCtrl (the camera
touches nothing else), an all-white mask to no mask; a camera must change every frame (every frame's motion-module
input gets a feature); the two layouts must give identical latents; context windows must let more frames than the
encoder's 16 through; bad inputs must fail clearly and leave the server as it was. The numbers against the original
code are in test_cameractrl.py (tiny) and the branch report (full size)."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import motion_files as mf
from comfy_graphs import assert_nodes_explained, base, add_windows, changed_frames, latent
from cameractrl_files import ORIGINAL, PRUNED, original_file, pruned_file
from model_cache import cached, module_server

pytestmark = pytest.mark.comfyui

V3 = "mm_v3_random.safetensors"
V2 = "mm_v2_random.safetensors"
FRAMES = 6
NODES = ("MotionKitLoadCameraCtrl", "MotionKitCameraPosesFromFile", "MotionKitCameraPosesPreset",
         "MotionKitCameraPosesMix", "MotionKitCameraPathPicture", "MotionKitApplyCameraCtrl")


def pose_text(frames: int, seed=0) -> str:
    """A RealEstate10K-style file: a URL line, then a drifting, turning camera."""
    rng = np.random.default_rng(seed)
    lines = ["https://www.youtube.com/watch?v=example"]
    for i in range(frames):
        a = 0.05 * i + 0.02 * rng.normal(size=3)
        cx, sx, cy, sy = math.cos(a[0]), math.sin(a[0]), math.cos(a[1]), math.sin(a[1])
        r = np.array([[cy, 0, sy], [sx * sy, cx, -sx * cy], [-cx * sy, sx, cx * cy]])
        t = [0.1 * i, 0.02 * i, -0.05 * i]
        w2c = np.concatenate([r, np.array(t)[:, None]], axis=1).reshape(-1)
        lines.append(" ".join(str(float(v)) for v in [33366 * i, 0.474812461, 0.844111024, 0.5, 0.5, 0, 0, *w2c]))
    return "\n".join(lines) + "\n"


server = module_server(
    {"animatediff_models": {V3: cached(V3, lambda: mf.v3(seed=4, dtype=torch.float16)), V2: cached(V2),
                            PRUNED: cached(PRUNED, pruned_file), ORIGINAL: cached(ORIGINAL, original_file)}},
    inputs={"orbit_poses.txt": lambda: pose_text(24).encode(),
            "bad_poses.txt": lambda: b"https://example\n1 0.5 0.5 0.5 0.5 0 0 1 0 0\n"})


def graph(frames=FRAMES, motion=V3, cfg=1.0, seed=11):
    g = base(frames=frames, cfg=cfg, seed=seed)
    g["10"] = {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion}}
    g["11"] = {"class_type": "MotionKitApplyMotionModel", "inputs": {
        "model": ["4", 0], "motion_model": ["10", 0], "motion_scale": 1.0, "start_percent": 0.0,
        "end_percent": 1.0, "noise_schedule": "use model's own"}}
    g["3"]["inputs"]["model"] = ["11", 0]
    return g


def preset(g, motion="Pan Left", frames=FRAMES, speed=1.0, node="31", previous=None):
    g = copy.deepcopy(g)
    g[node] = {"class_type": "MotionKitCameraPosesPreset", "inputs": {"motion": motion, "speed": speed,
                                                                      "frames": frames}}
    if previous is not None:
        g[node]["inputs"]["previous"] = [previous, 0]
    return g


def mixed(g, *pairs, frames=FRAMES, node="35"):
    """Camera Poses Mix of (motion, strength) pairs, the other slots Static."""
    g = copy.deepcopy(g)
    pairs = list(pairs) + [("Static", 1.0)] * (4 - len(pairs))
    g[node] = {"class_type": "MotionKitCameraPosesMix", "inputs": {"speed": 1.0, "frames": frames}}
    for i, (motion, strength) in enumerate(pairs, 1):
        g[node]["inputs"].update({f"motion_{i}": motion, f"strength_{i}": strength})
    return g


def pose_file(g, name="orbit_poses.txt", node="32"):
    g = copy.deepcopy(g)
    g[node] = {"class_type": "MotionKitCameraPosesFromFile", "inputs": {
        "pose_file": name, "source_width": 1280, "source_height": 720}}
    return g


def camera(g, poses="31", name=PRUNED, strength=1.0, pad=False):
    """Load CameraCtrl (30) and Apply CameraCtrl (33) between Apply Motion Model and the sampler."""
    g = copy.deepcopy(g)
    g["30"] = {"class_type": "MotionKitLoadCameraCtrl", "inputs": {"cameractrl_name": name}}
    g["33"] = {"class_type": "MotionKitApplyCameraCtrl", "inputs": {
        "model": g["3"]["inputs"]["model"], "cameractrl": ["30", 0], "poses": [poses, 0], "strength": strength,
        "start_percent": 0.0, "end_percent": 1.0, "repeat_last_pose": pad}}
    g["3"]["inputs"]["model"] = ["33", 0]
    return g


@pytest.fixture(scope="module")
def plain(server):
    return latent(server, graph())


def test_nodes_registered_and_explained(server):
    info = server.object_info()
    assert_nodes_explained(info, NODES)
    assert info["MotionKitApplyCameraCtrl"]["input"]["required"]["cameractrl"][0] == "CAMERACTRL"
    assert info["MotionKitCameraPosesPreset"]["output"] == ["CAMERA_POSES"]
    assert {PRUNED, ORIGINAL} <= set(info["MotionKitLoadCameraCtrl"]["input"]["required"]["cameractrl_name"][0])
    files = info["MotionKitCameraPosesFromFile"]["input"]["required"]["pose_file"][0]
    assert "orbit_poses.txt" in files and all(f.endswith(".txt") for f in files)


@pytest.fixture(scope="module")
def pan(server):
    return latent(server, camera(preset(graph(), "Pan Left")))


@pytest.fixture(scope="module")
def zoom(server):
    return latent(server, camera(preset(graph(), "Zoom In")))


def test_strength_zero_is_no_camera_and_a_preset_moves_every_frame(server, plain, pan, zoom):
    g = preset(graph(), "Pan Left")
    assert torch.equal(latent(server, camera(g, strength=0.0)), plain)
    assert changed_frames(plain, pan) == set(range(FRAMES))
    assert changed_frames(pan, zoom) == set(range(FRAMES)), "temporal attention carries the camera to frame 0 too"


def test_a_mix_of_one_motion_is_its_preset_and_two_motions_move_otherwise(server, pan, zoom):
    """Pan Left at strength 1 in Camera Poses Mix gives exactly the Pan Left preset's latents; Pan Left + Zoom In
    differs from the pan and from the zoom on every frame."""
    assert torch.equal(latent(server, camera(mixed(graph(), ("Pan Left", 1.0)), poses="35")), pan)
    both = latent(server, camera(mixed(graph(), ("Pan Left", 1.0), ("Zoom In", 1.0)), poses="35"))
    assert changed_frames(pan, both) == set(range(FRAMES)) and changed_frames(zoom, both) == set(range(FRAMES))


def masked(g, width=64, height=64, value=1.0, half_black=False):
    """Apply CameraCtrl's strength_mask from Solid Mask (50), its left half blacked out by Mask Composite (52)."""
    g = copy.deepcopy(g)
    g["50"] = {"class_type": "SolidMask", "inputs": {"value": value, "width": width, "height": height}}
    mask = "50"
    if half_black:
        g["51"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": width // 2, "height": height}}
        g["52"] = {"class_type": "MaskComposite", "inputs": {"destination": ["50", 0], "source": ["51", 0], "x": 0,
                                                             "y": 0, "operation": "multiply"}}
        mask = "52"
    g["33"]["inputs"]["strength_mask"] = [mask, 0]
    return g


def frame_masks(g, white: int, black: int):
    """strength_mask of `white` white then `black` black frames (Empty Image batches -> Image To Mask)."""
    g = copy.deepcopy(g)
    g["55"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": white,
                                                      "color": 0xFFFFFF}}
    g["56"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": black, "color": 0}}
    g["57"] = {"class_type": "ImageBatch", "inputs": {"image1": ["55", 0], "image2": ["56", 0]}}
    g["58"] = {"class_type": "ImageToMask", "inputs": {"image": ["57", 0], "channel": "red"}}
    g["33"]["inputs"]["strength_mask"] = ["58", 0]
    return g


def test_strength_mask_white_is_the_camera_black_is_none_half_is_between(server, plain, pan):
    """White everywhere: the camera as without a mask, bit for bit, also from a mask of another size (resized like
    ADE, with a log note); black: no CameraCtrl, bit for bit; the left half black: another animation than both;
    a mask twice the size gives the same numbers (bilinear to each motion layer's size, as ADE)."""
    g = camera(preset(graph(), "Pan Left"))
    assert torch.equal(latent(server, masked(g)), pan)
    assert torch.equal(latent(server, masked(g, width=48, height=40)), pan)
    assert "strength_mask is 48x40 but the latent is 8x8" in server.log_text()
    assert torch.equal(latent(server, masked(g, value=0.0)), plain)
    half = latent(server, masked(g, half_black=True))
    assert changed_frames(half, pan) == set(range(FRAMES)) and changed_frames(half, plain) == set(range(FRAMES))
    assert torch.equal(latent(server, masked(g, 128, 128, half_black=True)), half)


def test_strength_mask_frames_hold_the_last_and_windows_take_theirs(server, pan):
    """A 2-frame mask (white, black) acts as white then black for frames 1..5 (the last mask frame held, as ADE);
    with context windows of 4 (frames 0..3 and 2..5) each window takes its frames' masks: the window of black frames
    2..5 runs without the camera, so frames 4 and 5 (in no other window) are those of no CameraCtrl."""
    g = camera(preset(graph(), "Pan Left"))
    short = latent(server, frame_masks(g, 1, 1))
    assert torch.equal(latent(server, frame_masks(g, 1, FRAMES - 1)), short)
    assert changed_frames(short, pan) == set(range(FRAMES))
    first_only = latent(server, frame_masks(add_windows(g, length=4, overlap=2), 2, FRAMES - 2))
    assert changed_frames(first_only, latent(server, add_windows(graph(), length=4, overlap=2))) == {0, 1, 2, 3}


def test_both_layouts_and_pose_file_and_chaining(server, plain):
    g = pose_file(graph(cfg=7.0))  # cond and uncond in one call: both get the features
    assert torch.equal(latent(server, camera(g, poses="32", name=PRUNED)),
                       latent(server, camera(g, poses="32", name=ORIGINAL))), "the layouts hold the same weights"
    g = pose_file(graph())
    a = latent(server, camera(g, poses="32", name=ORIGINAL))
    assert changed_frames(plain, a) == set(range(FRAMES))
    # the file's first 4 poses, then an orbit continuing from there; and a pan, then the file
    chained = preset(pose_file(graph()), "Orbit Left", frames=4, previous="32", node="34")
    chained["32"]["inputs"]["frames"] = 4
    c = latent(server, camera(chained, poses="34"))
    assert changed_frames(a, c) == set(range(FRAMES)), "temporal attention carries the orbit to every frame"
    after = pose_file(preset(graph(), "Pan Left", frames=2), node="32")
    after["32"]["inputs"]["previous"] = ["31", 0]
    d = latent(server, camera(after, poses="32"))
    assert changed_frames(a, d) == set(range(FRAMES))


def test_camera_path_picture_previews(server):
    from PIL import Image
    g = preset({}, "Orbit Right", frames=16)
    g = preset(g, "Roll Clockwise", frames=8, previous="31", node="34")
    g["40"] = {"class_type": "MotionKitCameraPathPicture", "inputs": {"poses": ["34", 0]}}
    g["41"] = {"class_type": "PreviewImage", "inputs": {"images": ["40", 0]}}
    res = server.run(g).raise_for_status()
    (path,) = res.files("41", "images")
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape == (192, 576, 3) and picture.std() > 5


def test_context_windows_give_each_window_its_poses(server):
    """20 frames: more than the camera encoder's 16 at once, so without windows it is refused; with windows of 8
    every window's own 8 poses are encoded and every frame moves."""
    frames = 20
    g = preset(graph(frames=frames), "Pan Right", frames=frames)
    res = server.run(camera(g))
    assert res.status == "error" and "at most 16 frames" in res.error_message
    windowed = add_windows(g, length=8, overlap=2)
    plain = latent(server, windowed)
    moved = latent(server, camera(windowed))
    assert changed_frames(plain, moved) == set(range(frames))


def test_another_motion_model_runs_with_a_warning(server):
    g = camera(preset(graph(motion=V2), "Pan Up"))
    latent(server, g)
    assert "trained with AnimateDiff v3" in server.log_text()


ERRORS = [  # (graph, phrases in the error)
    (camera(pose_file(graph()), poses="32", name=V3), ["is a motion model, not CameraCtrl", "Load Motion Model"]),
    (camera(pose_file(graph(), name="bad_poses.txt"), poses="32"), ["bad_poses.txt", "line 2", "10 numbers", "19"]),
    (camera(preset(graph(), frames=4)), ["4 camera poses", f"{FRAMES} frames"]),
    (camera(preset(base(frames=FRAMES, cfg=1.0, seed=11))), ["no motion model", "Apply Motion Model"]),
]


def test_errors_are_clear_and_leave_comfyui_usable(server, plain):
    g = graph()
    g["10"]["inputs"]["model_name"] = PRUNED
    res = server.run(g)
    assert res.status == "error" and "is CameraCtrl" in res.error_message
    for graph_, phrases in ERRORS:
        res = server.run(graph_)
        assert res.status == "error", f"expected an error for {phrases}"
        for phrase in phrases:
            assert phrase in res.error_message, f"{phrase!r} not in {res.error_message!r}"
    latent(server, graph(seed=99))  # the sampler runs again, not from ComfyUI's cache
    assert torch.equal(latent(server, graph()), plain), "an error left ComfyUI patched"


def test_pose_file_outside_the_allowed_folders_is_refused_without_its_path(server):
    from comfy_server import PromptRejected
    for name in ("../../../etc/hostname.txt", "/etc/hostname.txt"):
        with pytest.raises(PromptRejected) as info:
            server.queue(camera(pose_file(graph(), name=name), poses="32"))
        text = json.dumps(info.value.response)
        assert "outside ComfyUI's input" in text and str(server.input_dir) not in text


CAMERA_EXAMPLE = Path(__file__).resolve().parent.parent / "example_workflows" / "api" / "camera_pan_cameractrl_api.json"


def camera_example(strength=1.0, motion="Pan Left"):
    """The camera-pan example's own graph (its API twin) with the test files: 64x64, FRAMES frames, 1 step; the camera
    path picture is kept (Preview Image), the animation saved as a latent."""
    api = json.loads(CAMERA_EXAMPLE.read_text())
    g = {k: {"class_type": v["class_type"], "inputs": copy.deepcopy(v["inputs"])} for k, v in api.items()}
    g["4"]["inputs"]["ckpt_name"] = "sd15_random.safetensors"
    g["10"]["inputs"]["model_name"] = V3
    g["12"]["inputs"]["cameractrl_name"] = PRUNED
    g["13"]["inputs"].update(frames=FRAMES, motion=motion)
    g["16"]["inputs"]["strength"] = strength
    g["5"]["inputs"].update(width=64, height=64, batch_size=FRAMES)
    g["3"]["inputs"]["steps"] = 1
    del g["8"]
    g["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "t/camera_pan"}}
    return g


@pytest.mark.example
def test_camera_pan_example(server):
    """The example as shipped, small: it runs and shows its path picture; the pan moves every frame against strength
    0 (which is the motion model alone), and a zoom differs from the pan on every frame."""
    res = server.run(camera_example()).raise_for_status()
    (pan,) = res.latents("9")
    assert res.images("15") or res.files("15", "images")
    still = latent(server, camera_example(strength=0.0))
    zoom = latent(server, camera_example(motion="Zoom In"))
    assert changed_frames(pan, still) == set(range(FRAMES))
    assert changed_frames(pan, zoom) == set(range(FRAMES))
