"""CameraCtrl (camera/): poses, Plücker embedding, camera encoder, qkv_merge routing, the two published layouts.

The oracles here are CameraCtrl's math written out independently in plain float64 torch (explicit pixel unshuffle,
convolutions by F.conv2d on the state dict, per-head softmax attention); the original code itself was run on the
same random weights outside the repo (report of feat/cameractrl: 0.0 for the Plücker embedding and the encoder,
≤1.2e-6 for every motion module of a tiny original UNet3DConditionModelPoseCond). cameractrl_keys.json holds the
names and shapes of both published layouts, generated from the original classes on the meta device.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pack_package  # noqa: F401  (registers the pack as `motionkit`)
from unet_helpers import comfy  # noqa: F401  (the fixture: ComfyUI on the CPU)
from motionkit.camera import poses as P
from motionkit.camera.encoder import CameraCtrl, CameraEncoder, merge_paths
from motionkit.camera.errors import CameraCtrlFileError, CameraPoseError
from motionkit.camera.files import (ORIGINAL, PRUNED, build_cameractrl, detect_layout, expected_shapes,
                                    internal_layout, read_cameractrl, to_module_keys)
from motionkit.camera.merge import CameraInput, camera_inputs, check_motion_model
from motionkit.camera.plucker import plucker_embedding
from motionkit.common.errors import WrongFileTypeError
from motionkit.motion.errors import TooManyFramesError
from motionkit.motion.model import PER_FRAME, MotionArchitecture, MotionModel, MotionModule

KEYS = json.loads((Path(__file__).parent / "cameractrl_keys.json").read_text())
TINY = (32, 64, 128, 128)  # heads stay 8: head size 4 / 8 / 16


# ---------------------------------------------------------------------------------------------
# Poses

def random_pose_text(frames: int, seed: int = 0, fx=0.474812461, fy=0.844111024) -> str:
    rng = np.random.default_rng(seed)
    lines = ["https://www.youtube.com/watch?v=example"]
    for i in range(frames):
        r = P.rotation_xyz(rng.normal(scale=0.3, size=3))
        t = rng.normal(size=3)
        w2c = np.concatenate([r, t[:, None]], axis=1).reshape(-1)
        lines.append(" ".join(str(v) for v in [1000 * i, fx, fy, 0.5, 0.48, 0, 0, *w2c]))
    return "\n".join(lines) + "\n"


def test_pose_file_round_trip(tmp_path):
    path = tmp_path / "poses.txt"
    path.write_text(random_pose_text(5))
    poses = P.read_pose_file(str(path))
    assert len(poses) == 5 and poses.poses[0].cy == 0.48 and poses.source_width == 1280
    again = P.parse_pose_text(poses.to_text(), "again")
    assert again.poses == poses.poses


@pytest.mark.parametrize("text, words", [
    ("url\n1 2 3\n", ["line 2", "3 numbers", "19"]),
    ("url\n" + " ".join(["1"] * 18) + " x\n", ["line 2", "'x' is not a number"]),
    ("url\n\n", ["holds no camera poses"]),
    ("url\n" + " ".join(["0", "0.5", "0.5", "0.5", "0.5", "0", "0"] + ["0"] * 12) + "\n", ["singular"]),
    ("url\n" + " ".join(["0", "-0.5", "0.5", "0.5", "0.5", "0", "0", "1", "0", "0", "0", "0", "1", "0", "0", "0", "0",
                         "1", "0"]) + "\n", ["focal lengths", "positive"]),
])
def test_bad_pose_text_says_line_and_format(text, words, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(CameraPoseError) as e:
        P.read_pose_file(str(path))
    assert "bad.txt" in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_fewer_poses_than_frames_names_file_and_fix(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text(random_pose_text(4))
    with pytest.raises(CameraPoseError) as e:
        P.read_pose_file(str(path), frames=16)
    message = str(e.value)
    assert "short.txt" in message and "4 camera poses" in message and "16 frames" in message and "at least 16" in message
    padded = P.read_pose_file(str(path)).for_frames(7, pad=True)
    assert len(padded) == 7 and padded.poses[-1] == padded.poses[3]
    assert len(P.read_pose_file(str(path)).for_frames(2)) == 2


def test_missing_pose_file(tmp_path):
    with pytest.raises(CameraPoseError, match="does not exist"):
        P.read_pose_file(str(tmp_path / "nope.txt"))


def camera_centre(pose: P.CameraPose) -> np.ndarray:
    m = pose.w2c_4x4()
    return -m[:3, :3].T @ m[:3, 3]


def forward_axis(pose: P.CameraPose) -> np.ndarray:
    return pose.w2c_4x4()[:3, :3].T @ np.array([0.0, 0.0, 1.0])


def test_presets_move_the_camera_as_named():
    for motion in P.MOTIONS:
        first = P.preset(motion, 1.0, 16).poses[0]
        np.testing.assert_allclose(first.w2c_4x4(), np.eye(4), atol=1e-12)
    # OpenCV axes: x right, y down, z forward; at speed 1, 1.5 units / 60 degrees per 16 frames (ADE's pace)
    np.testing.assert_allclose(camera_centre(P.preset(P.PAN_LEFT, 1.0, 16).poses[8]), [-0.75, 0, 0], atol=1e-12)
    np.testing.assert_allclose(camera_centre(P.preset(P.PAN_UP, 2.0, 16).poses[8]), [0, -1.5, 0], atol=1e-12)
    np.testing.assert_allclose(camera_centre(P.preset(P.ZOOM_IN, 1.0, 16).poses[4]), [0, 0, 0.75], atol=1e-12)
    np.testing.assert_allclose(camera_centre(P.preset(P.ZOOM_OUT, 1.0, 16).poses[4]), [0, 0, -0.75], atol=1e-12)
    assert forward_axis(P.preset(P.TILT_LEFT, 1.0, 16).poses[8])[0] < 0  # looks left
    assert forward_axis(P.preset(P.TILT_UP, 1.0, 16).poses[8])[1] < 0  # looks up (y down)
    roll = P.preset(P.ROLL_CLOCKWISE, 1.0, 16).poses[16 // 2].w2c_4x4()[:3, :3]
    assert math.isclose(math.degrees(math.atan2(roll[1, 0], roll[0, 0])), -30.0, abs_tol=1e-9)
    assert len(P.preset(P.STATIC, 1.0, 5)) == 5


def test_orbit_circles_a_point_and_keeps_it_centred():
    radius = 2.0
    orbit = P.preset(P.ORBIT_LEFT, 1.0, 16, radius=radius)
    target = np.array([0.0, 0.0, radius])
    for pose in orbit.poses:
        m = pose.w2c_4x4()
        in_camera = m[:3, :3] @ target + m[:3, 3]
        np.testing.assert_allclose(in_camera, [0, 0, radius], atol=1e-12)  # straight ahead, at the same distance
    assert camera_centre(orbit.poses[8])[0] < 0  # moved left
    assert camera_centre(P.preset(P.ORBIT_RIGHT, 1.0, 16).poses[8])[0] > 0


def test_mix_adds_motions_and_append_continues():
    mixed = P.mix([(P.PAN_LEFT, 1.0), (P.ZOOM_IN, 0.5)], speed=1.0, frames=9)
    np.testing.assert_allclose(camera_centre(mixed.poses[8]), [-0.75, 0, 0.75], atol=1e-12)
    with pytest.raises(CameraPoseError, match="cannot be mixed"):
        P.mix([(P.ORBIT_LEFT, 1.0), (P.PAN_LEFT, 1.0)])
    with pytest.raises(CameraPoseError, match="Unknown camera motion 'Spin'"):
        P.preset("Spin")
    first, then = P.preset(P.PAN_LEFT, 1.0, 8), P.preset(P.TILT_LEFT, 1.0, 8)
    both = P.append(first, then)
    assert len(both) == 16
    np.testing.assert_allclose(both.poses[8].w2c_4x4(), first.poses[7].w2c_4x4(), atol=1e-12)  # the join repeats
    # the tilt happens where the pan ended: same centre, turned
    np.testing.assert_allclose(camera_centre(both.poses[12]), camera_centre(first.poses[7]), atol=1e-12)
    assert forward_axis(both.poses[12])[0] < 0


# AnimateDiff-Evolved 90fb133's Create CameraCtrl Poses (Combo) / (Adv.), written out (nodes_cameractrl.py: CAM._PAIRS,
# CameraMotion.multiply/combine, get_camera_motion, combine_RTs): the mix's (rotation, translation) per motion, the
# motions' vectors times their strengths summed, frame i turns by Rz·Ry·Rx of (i/16)·speed·(π/3)·rotation and moves
# by (i/16)·speed·1.5·translation; after prev_poses, each new [R|T] becomes [R·R₀ | T + R·R₀·R₀ᵀ·T₀] with [R₀|T₀]
# the previous last pose. ADE's original ran on 603 random cases (a scratch run at 2d845b5) (≤6 motions, strengths 0-10, speeds -100..12.5,
# 1-33 frames, no / preset / file prev_poses) outside the repo: max abs diff to mix()+append() 1.4e-14 (0 without a
# file before it).
ADE_MOTIONS = {"Static": ((0, 0, 0), (0, 0, 0)), "Pan Up": ((0, 0, 0), (0, 1, 0)), "Pan Down": ((0, 0, 0), (0, -1, 0)),
               "Pan Left": ((0, 0, 0), (1, 0, 0)), "Pan Right": ((0, 0, 0), (-1, 0, 0)),
               "Zoom In": ((0, 0, 0), (0, 0, -2)), "Zoom Out": ((0, 0, 0), (0, 0, 2)),
               "Roll Clockwise": ((0, 0, -1), (0, 0, 0)), "Roll Anticlockwise": ((0, 0, 1), (0, 0, 0)),
               "Tilt Down": ((1, 0, 0), (0, 0, 0)), "Tilt Up": ((-1, 0, 0), (0, 0, 0)),
               "Tilt Left": ((0, 1, 0), (0, 0, 0)), "Tilt Right": ((0, -1, 0), (0, 0, 0))}


def ade_combo_oracle(motions, strengths, speed, frames, prev_w2c=None) -> np.ndarray:
    """[frames, 3, 4] world-to-camera matrices of ADE's combo node (after `prev_w2c` [N, 3, 4] if given)."""
    rot = sum(np.array(ADE_MOTIONS[m][0], float) * s for m, s in zip(motions, strengths))
    move = sum(np.array(ADE_MOTIONS[m][1], float) * s for m, s in zip(motions, strengths))
    out = []
    for i in range(frames):
        ax, ay, az = (i / 16) * speed * (math.pi / 3) * rot
        rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
        ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
        rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
        r, t = rz @ ry @ rx, (i / 16) * speed * 1.5 * move
        if prev_w2c is not None:
            r0, t0 = prev_w2c[-1][:, :3], prev_w2c[-1][:, 3]
            r = r @ r0
            t = t + r @ r0.T @ t0
        out.append(np.concatenate([r, t[:, None]], axis=1))
    out = np.stack(out)
    return out if prev_w2c is None else np.concatenate([prev_w2c, out])


def w2c_of(poses: P.CameraPoses) -> np.ndarray:
    return np.array([np.reshape(p.w2c, (3, 4)) for p in poses.poses])


@pytest.mark.parametrize("motions, strengths, speed, frames", [
    (["Pan Left", "Zoom In"], [1.0, 0.5], 1.0, 16),
    (["Tilt Up", "Roll Clockwise", "Pan Right", "Zoom Out", "Tilt Left", "Pan Down"], [2.0, 0.3, 1.0, 1.7, 9.5, 0.01],
     -0.5, 24),
    (["Pan Left", "Pan Left", "Static", "Tilt Down"], [1.0, 1.0, 4.0, 0.0], 3.25, 7),  # ADE's Combo: strengths 1
    (["Roll Anticlockwise", "Pan Up"], [-1.5, 2.0], 100.0, 3),
    (["Zoom In"], [1.0], 1.0, 1),
])
@pytest.mark.parametrize("before", [None, "preset", "file"])
def test_mix_matches_ade_combo(motions, strengths, speed, frames, before):
    prev = {None: None, "preset": P.preset(P.TILT_RIGHT, 0.8, 5),
            "file": P.parse_pose_text(random_pose_text(6, seed=7, fx=0.41, fy=0.73))}[before]
    mixed = P.mix(list(zip(motions, strengths)), speed, frames)
    ours = mixed if prev is None else P.append(prev, mixed)
    expected = ade_combo_oracle(motions, strengths, speed, frames, None if prev is None else w2c_of(prev))
    np.testing.assert_allclose(w2c_of(ours), expected, rtol=0, atol=1e-12)
    made = ours.poses[-frames:]
    assert all((p.fx, p.fy, p.cx, p.cy) == (0.474812461, 0.844111024, 0.5, 0.5) for p in made)  # ADE's defaults
    if prev is not None:
        assert ours.poses[:len(prev)] == prev.poses  # the earlier poses keep their intrinsics and matrices


# ---------------------------------------------------------------------------------------------
# Plücker embedding: per-pixel float64 oracle

def plucker_oracle(poses: P.CameraPoses, width: int, height: int) -> np.ndarray:
    """Per frame: relative c2w = w2c_0 · w2c_i⁻¹; per pixel centre, d = R·normalise((u+½−cx)/fx, (v+½−cy)/fy, 1)
    and o = the camera centre; output (o × d, d) as [F, 6, H, W]. fx or fy is corrected for a source video
    (1280x720) resized to cover the sample."""
    w2c0 = poses.poses[0].w2c_4x4()
    out = np.zeros((len(poses), 6, height, width))
    src = poses.source_width / poses.source_height
    for f, pose in enumerate(poses.poses):
        c2w = np.eye(4) if f == 0 else w2c0 @ np.linalg.inv(pose.w2c_4x4())
        fx, fy = pose.fx * width, pose.fy * height
        if src > width / height:
            fx = pose.fx * height * src
        else:
            fy = pose.fy * width / src
        cx, cy = pose.cx * width, pose.cy * height
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        d = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
        d = d / np.linalg.norm(d, axis=-1, keepdims=True)
        d = d @ c2w[:3, :3].T
        o = np.broadcast_to(c2w[:3, 3], d.shape)
        out[f] = np.concatenate([np.cross(o, d), d], axis=-1).transpose(2, 0, 1)
    return out


@pytest.mark.parametrize("width, height, frames", [(48, 32, 5), (32, 64, 3), (64, 36, 4)])
def test_plucker_matches_oracle(width, height, frames):
    poses = P.parse_pose_text(random_pose_text(frames, seed=frames), "random")
    ours = plucker_embedding(poses, width, height)
    assert ours.shape == (frames, 6, height, width) and ours.dtype == torch.float32
    ref = plucker_oracle(poses, width, height)
    np.testing.assert_allclose(ours.numpy(), ref, atol=2e-5, rtol=0)  # float32 vs float64
    assert abs(ours[0, :3]).max() == 0  # frame 0 is the origin: o × d = 0


def test_plucker_source_size_changes_focal_length():
    poses = P.parse_pose_text(random_pose_text(2), "random")
    a = plucker_embedding(poses, 48, 32)
    b = plucker_embedding(poses.with_source_size(48, 32), 48, 32)
    assert (a - b).abs().max() > 1e-3
    np.testing.assert_allclose(b.numpy(), plucker_oracle(poses.with_source_size(48, 32), 48, 32), atol=2e-5)


# ---------------------------------------------------------------------------------------------
# Camera encoder and merges: written-out oracle on a tiny random CameraCtrl

def randomised(channels=TINY, seed=0) -> CameraCtrl:
    torch.manual_seed(seed)
    model = CameraCtrl(channels)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.5 / math.sqrt(max(p[0].numel(), 1)) if p.ndim > 1 else 0.1))
    return model.eval()


def layer_norm(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + eps) * w + b


def sinusoid(frames, c):
    pe = torch.zeros(frames, c, dtype=torch.float64)
    for p in range(frames):
        for i in range(0, c, 2):
            pe[p, i] = math.sin(p * 10000.0 ** (-i / c))
            pe[p, i + 1] = math.cos(p * 10000.0 ** (-i / c))
    return pe


def attention(n, sd, p, heads=8):
    q, k, v = (n @ sd[f"{p}.to_{x}.weight"].T for x in "qkv")
    d = q.shape[-1] // heads
    outs = []
    for h in range(heads):
        s = slice(h * d, (h + 1) * d)
        scores = q[..., s] @ k[..., s].transpose(-1, -2) / math.sqrt(d)
        outs.append(torch.softmax(scores, -1) @ v[..., s])
    return torch.cat(outs, -1) @ sd[f"{p}.to_out.0.weight"].T + sd[f"{p}.to_out.0.bias"]


def feed_forward(h, sd, p):
    n = layer_norm(h, sd[f"{p}.ff_norm.weight"], sd[f"{p}.ff_norm.bias"])
    value, gate = (n @ sd[f"{p}.ff.net.0.proj.weight"].T + sd[f"{p}.ff.net.0.proj.bias"]).chunk(2, -1)
    return h + (value * 0.5 * gate * (1 + torch.erf(gate / math.sqrt(2)))) @ sd[f"{p}.ff.net.2.weight"].T \
        + sd[f"{p}.ff.net.2.bias"]


def encoder_oracle(sd: dict, plucker: torch.Tensor, batch: int, frames: int, channels) -> list[torch.Tensor]:
    """plucker [B·F, 6, H, W] -> features: unshuffle 8 (channel = c·64 + row·8 + col), 3x3 conv in, per level
    (avg-pool 2 first if level > 0) two blocks of [1x1 in_conv if widths differ; x + 1x1(relu(3x3 x));
    temporal block: x + attn(LN(x) + PE); x + FF(LN(x))]."""
    sd = {k: v.double() for k, v in sd.items()}
    x = plucker.double()
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 8, 8, w // 8, 8).permute(0, 1, 3, 5, 2, 4).reshape(n, c * 64, h // 8, w // 8)
    x = F.conv2d(x, sd["encoder_conv_in.weight"], sd["encoder_conv_in.bias"], padding=1)
    features = []
    for i in range(len(channels)):
        for j in range(2):
            p = f"encoder_down_conv_blocks.{i}.{j}"
            if i > 0 and j == 0:
                x = F.avg_pool2d(x, 2)
            if f"{p}.in_conv.weight" in sd:
                x = F.conv2d(x, sd[f"{p}.in_conv.weight"], sd[f"{p}.in_conv.bias"])
            r = F.relu(F.conv2d(x, sd[f"{p}.block1.weight"], sd[f"{p}.block1.bias"], padding=1))
            x = x + F.conv2d(r, sd[f"{p}.block2.weight"], sd[f"{p}.block2.bias"])
            a = f"encoder_down_attention_blocks.{i}.{j}"
            cc, hh, ww = x.shape[1:]
            t = x.reshape(batch, frames, cc, hh, ww).permute(0, 3, 4, 1, 2).reshape(-1, frames, cc)
            nrm = layer_norm(t, sd[f"{a}.norms.0.weight"], sd[f"{a}.norms.0.bias"]) + sinusoid(frames, cc)
            t = t + attention(nrm, sd, f"{a}.attention_blocks.0")
            t = feed_forward(t, sd, a)
            x = t.reshape(batch, hh, ww, frames, cc).permute(0, 3, 4, 1, 2).reshape(batch * frames, cc, hh, ww)
        features.append(x)
    return features


def internal(model: CameraCtrl) -> dict:
    return {k.split(".", 1)[1]: v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("frames", [4, 16])
def test_encoder_matches_oracle(frames):
    model = randomised()
    torch.manual_seed(1)
    plucker = torch.randn(2 * frames, 6, 64, 96)
    with torch.no_grad():
        ours = model.encoder(plucker, frames)
    ref = encoder_oracle(internal(model), plucker, 2, frames, TINY)
    for level, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == (2 * frames, TINY[level], 8 >> level, 12 >> level)
        torch.testing.assert_close(a.double(), b, atol=2e-5, rtol=1e-5)


def test_encoder_refuses_more_frames_than_its_position_encoding():
    with pytest.raises(TooManyFramesError, match="at most 16 frames"):
        CameraEncoder(TINY)(torch.zeros(17, 6, 16, 16), 17)


def motion_oracle(sd: dict, x: torch.Tensor, frames: int, merge=None, feature=None, strength=1.0) -> torch.Tensor:
    """One AnimateDiff motion module (per-frame GroupNorm) with CameraCtrl's merge in attention block 0:
    n = LN(h) + PE; n ← n + s·(W·(n + f) + b); q, k, v from n."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    bf, c, hh, ww = x.shape
    b = bf // frames
    g = x.reshape(bf, 32, -1)
    g = (g - g.mean(-1, keepdim=True)) / torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + 1e-6)
    h = g.reshape(x.shape) * sd["temporal_transformer.norm.weight"].view(1, c, 1, 1) \
        + sd["temporal_transformer.norm.bias"].view(1, c, 1, 1)
    h = h.reshape(b, frames, c, hh, ww).permute(0, 3, 4, 1, 2).reshape(-1, frames, c)
    h = h @ sd["temporal_transformer.proj_in.weight"].T + sd["temporal_transformer.proj_in.bias"]
    t = "temporal_transformer.transformer_blocks.0"
    for a in range(2):
        n = layer_norm(h, sd[f"{t}.norms.{a}.weight"], sd[f"{t}.norms.{a}.bias"]) + sinusoid(frames, c)
        if a == 0 and merge is not None:
            f = feature.double().reshape(b, frames, c, hh, ww).permute(0, 3, 4, 1, 2).reshape(-1, frames, c)
            m = (n + f) @ merge.weight.double().T + merge.bias.double()
            if isinstance(strength, torch.Tensor):  # per pixel and frame, (B·H·W, F, 1): ADE's form of the merge
                n = (m + n) * strength + n * (1 - strength)
            else:
                n = n + strength * m
        h = h + attention(n, sd, f"{t}.attention_blocks.{a}")
    h = feed_forward(h, sd, t)
    h = h @ sd["temporal_transformer.proj_out.weight"].T + sd["temporal_transformer.proj_out.bias"]
    return x + h.reshape(b, hh, ww, frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, hh, ww)


def random_motion(has_mid: bool, seed: int) -> MotionModel:
    """A TINY-width motion model with every parameter ~ N(0, 0.2²) from torch's global generator seeded `seed`."""
    torch.manual_seed(seed)
    motion = MotionModel(MotionArchitecture(TINY, has_mid=has_mid))
    with torch.no_grad():
        for p in motion.parameters():
            p.normal_(std=0.2)
    return motion


def test_camera_inputs_route_features_and_merges_as_the_original():
    """Down block i: feature i and its own qkv_merge per module; up block i: feature 3 − i; no mid block."""
    camera = randomised(TINY, seed=2)
    motion = random_motion(has_mid=True, seed=3)
    frames, batch = 4, 2
    features = [torch.randn(batch * frames, c, 8 >> i, 8 >> i) for i, c in enumerate(TINY)]
    inputs = camera_inputs(camera, motion, features, frames, strength=0.7)
    assert len(inputs) == 20 and motion.mid_block.motion_modules[0] not in inputs
    for group, level, index, feature_level in [("down_blocks", 0, 1, 0), ("down_blocks", 2, 0, 2),
                                               ("up_blocks", 0, 2, 3), ("up_blocks", 3, 1, 0)]:
        module = getattr(motion, group)[level].motion_modules[index]
        feature = features[feature_level]
        x = torch.randn_like(feature)
        with torch.no_grad():
            ours = module(x, frames, PER_FRAME, attention_inputs=inputs[module])
            plain = module(x, frames, PER_FRAME)
        merge = camera.merges.layer(group, level, index)
        ref = motion_oracle(module.state_dict(), x, frames, merge, feature, 0.7)
        torch.testing.assert_close(ours.double(), ref, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(plain.double(), motion_oracle(module.state_dict(), x, frames), atol=2e-5, rtol=1e-5)
        assert (ours - plain).abs().max() > 1e-3


def test_attention_inputs_leave_other_math_alone():
    torch.manual_seed(4)
    module = MotionModule(64)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(std=0.2)
    x = torch.randn(8, 64, 3, 3)
    with torch.no_grad():
        plain = module(x, 4, PER_FRAME)
        identity = module(x, 4, PER_FRAME, attention_inputs={0: lambda n: n, 1: lambda n: n})
        zero = module(x, 4, PER_FRAME, attention_inputs={0: CameraInput(torch.nn.Linear(64, 64), torch.randn(8, 64, 3, 3), 4, 0.0)})
    assert torch.equal(plain, identity) and torch.equal(plain, zero)


def test_camera_needs_an_sd15_motion_model():
    camera = CameraCtrl(TINY)
    check_motion_model(camera, MotionModel(MotionArchitecture(TINY, has_mid=False)))
    with pytest.raises(CameraCtrlFileError, match="SD1.5 AnimateDiff motion model"):
        check_motion_model(camera, MotionModel(MotionArchitecture((32, 64, 128), has_mid=False)))


# ---------------------------------------------------------------------------------------------
# Published layouts (names and shapes from the original classes) and files

def meta_tensors(shapes: dict) -> dict:
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


def test_fixture_matches_what_we_build():
    encoder, merges = KEYS["pose_encoder_state_dict"], KEYS["attention_processor_state_dict"]
    assert len(encoder) == 150 and len(merges) == 40
    assert sum(math.prod(s) for k, s in encoder.items() if not k.endswith(".pe")) == 199_262_400
    assert all(s == [1, 16, encoder[k.replace("pos_encoder.pe", "to_q.weight")][0]]
               for k, s in encoder.items() if k.endswith(".pe"))
    ours = expected_shapes()
    wanted = {k: tuple(s) for k, s in {**encoder, **merges}.items() if not k.endswith(".pe")}
    assert ours == wanted
    assert sorted(merges) == sorted(f"{p}.{w}" for p, *_ in merge_paths() for w in ("weight", "bias"))


def test_both_layouts_detected_and_converted():
    encoder = meta_tensors(KEYS["pose_encoder_state_dict"])
    merges = meta_tensors(KEYS["attention_processor_state_dict"])
    original = {"pose_encoder_state_dict": encoder, "attention_processor_state_dict": merges, "epoch": 3,
                "global_step": 50000}
    pruned = {**encoder, **merges}
    assert detect_layout(original) == ORIGINAL and detect_layout(pruned) == PRUNED
    a, b = internal_layout(original, "CameraCtrl.ckpt"), internal_layout(pruned, "CameraCtrl_pruned.safetensors")
    assert list(a) == list(b) == list(expected_shapes())
    with torch.device("meta"):
        model = CameraCtrl()
    model.load_state_dict(to_module_keys(a), strict=True, assign=True)


def tiny_file_content(layout: str, seed=5):
    model = randomised(TINY, seed)
    sd = internal(model)
    encoder = {k: v for k, v in sd.items() if k.startswith("encoder_")}
    for i, c in enumerate(TINY):  # the original files carry the encoder's PE buffers
        for j in range(2):
            encoder[f"encoder_down_attention_blocks.{i}.{j}.attention_blocks.0.pos_encoder.pe"] = \
                sinusoid(16, c).float()[None]
    merges = {k: v for k, v in sd.items() if not k.startswith("encoder_")}
    if layout == ORIGINAL:
        return model, {"pose_encoder_state_dict": encoder, "attention_processor_state_dict": merges,
                       "epoch": 1, "global_step": 10}
    return model, {**encoder, **merges}


@pytest.mark.parametrize("layout", [ORIGINAL, PRUNED])
def test_file_round_trip(layout, tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from motionkit.camera import files
    model, content = tiny_file_content(layout)
    path = tmp_path / ("CameraCtrl.ckpt" if layout == ORIGINAL else "CameraCtrl_pruned.safetensors")
    if layout == ORIGINAL:
        torch.save(content, path)
    else:
        save_file(content, str(path))
    monkeypatch.setattr(files, "expected_shapes", lambda channels=TINY: expected_shapes(TINY))
    sd = read_cameractrl(str(path))
    loaded = build_cameractrl(sd, path.name, channels=TINY)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_other_files_refused_naming_what_they_are():
    motion = {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": torch.zeros(320)}
    with pytest.raises(WrongFileTypeError, match="is a motion model, not CameraCtrl.*CameraCtrl_pruned"):
        internal_layout(motion, "mm_sd_v15_v2.ckpt")
    sparse = {"controlnet_cond_embedding.weight": torch.zeros(320, 5, 3, 3)}
    with pytest.raises(WrongFileTypeError, match="SparseCtrl"):
        internal_layout({"controlnet": sparse}, "v3_sd15_sparsectrl_rgb.ckpt")
    with pytest.raises(WrongFileTypeError, match="not a CameraCtrl model"):
        internal_layout({"x": torch.zeros(1)}, "random.safetensors")
    encoder_only = {k: v for k, v in meta_tensors(KEYS["pose_encoder_state_dict"]).items()}
    with pytest.raises(CameraCtrlFileError, match="only part of CameraCtrl.*no qkv_merge"):
        internal_layout(encoder_only, "half.safetensors")
    pruned = {**meta_tensors(KEYS["pose_encoder_state_dict"]), **meta_tensors(KEYS["attention_processor_state_dict"])}
    pruned["encoder_conv_in.weight"] = torch.empty(320, 128, 3, 3, device="meta")
    with pytest.raises(CameraCtrlFileError, match=r"wrong shapes: encoder_conv_in.weight \(320, 128, 3, 3\)"):
        internal_layout(pruned, "svd.safetensors")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CameraCtrlFileError, match="does not exist"):
        read_cameractrl(str(tmp_path / "none.safetensors"))
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"<html>not found</html>")
    with pytest.raises(CameraCtrlFileError, match="broken.safetensors"):
        read_cameractrl(str(bad))


# ---------------------------------------------------------------------------------------------
# Strength mask: ADE's cameractrl_multival mask math written out (ADE 90fb133 utils_motion.prepare_mask_batch /
# extend_to_batch_size, motion_module_ad.py TemporalTransformer3DModel.get_cameractrl_effect, VersatileAttention's
# merge); ADE's own code was run against ours outside the repo (branch report: ≤2.3e-6 of the camera's effect)

def ade_cameractrl_effect(multival: torch.Tensor, full_length: int, height: int, width: int, chunks: int,
                          sub_idxs=None) -> torch.Tensor:
    """multival = float_val · mask [frames, H, W] -> the effect (chunks·h·w, frames of the call, 1)."""
    mask = F.interpolate(multival.reshape(-1, 1, *multival.shape[-2:]), size=(height, width), mode="bilinear")
    if mask.shape[0] > full_length:
        mask = mask[:full_length]
    elif mask.shape[0] < full_length:
        mask = torch.cat([mask] + [mask[-1:]] * (full_length - mask.shape[0]), dim=0)
    n = mask.shape[0]
    mask = mask.permute(0, 2, 3, 1).reshape(n, height * width, 1).permute(1, 0, 2)
    mask = torch.cat([mask] * chunks, dim=0)
    return mask if sub_idxs is None else mask[:, sub_idxs, :]


def masked_run(mask, strength=1.0):
    from motionkit.camera.apply import CameraRun, strength_mask
    return CameraRun(CameraCtrl(TINY), P.preset(P.PAN_LEFT, 1.0, 2), strength, mask=strength_mask(mask, strength))


@pytest.mark.parametrize("mask_frames, mask_size, strength, full, window", [
    (4, (13, 10), 1.0, 4, None),        # one mask frame per frame, another shape than the latent
    (1, (24, 40), 0.6, 4, None),        # one mask frame for all, times the strength
    (2, (16, 16), 1.5, 8, [3, 4, 5, 6]),  # a context window of 8 frames: mask frame 1 held for frames 2..7
    (12, (8, 8), 0.8, 8, [4, 5, 6, 7]),   # a longer mask: cut
])
def test_strength_mask_follows_ade(mask_frames, mask_size, strength, full, window):
    """Per motion-module resolution, frame and cond chunk: the strength tensor is ADE's effect, and the module's
    output is the written-out motion module with ADE's merge (qkv_merge(n + f) + n)·e + n·(1 − e)."""
    camera = randomised(TINY, seed=8)
    motion = random_motion(has_mid=False, seed=9)
    frames, chunks = 4, 2
    frames_of_call = window or list(range(frames))
    mask = torch.rand(mask_frames, *mask_size)
    run = masked_run(mask, strength)
    features = [torch.randn(frames, c, 6 >> i, 5 >> i) for i, c in enumerate(TINY[:3])] + [torch.randn(frames, 128, 1, 1)]
    strengths = run.strengths(frames_of_call, features, chunks, features[0])
    for level, (feature, s) in enumerate(zip(features, strengths)):
        h, w = feature.shape[-2:]
        ade = ade_cameractrl_effect(mask * strength, full, h, w, chunks, window)
        assert s.shape == ade.shape == (chunks * h * w, frames, 1)
        torch.testing.assert_close(s, ade, atol=1e-6, rtol=1e-6)
    inputs = camera_inputs(camera, motion, [f.repeat(chunks, 1, 1, 1) for f in features], frames, strengths)
    for group, level, index in [("down_blocks", 0, 1), ("down_blocks", 2, 0), ("up_blocks", 1, 2)]:
        module = getattr(motion, group)[level].motion_modules[index]
        feature_level = level if group == "down_blocks" else 3 - level
        feature = features[feature_level].repeat(chunks, 1, 1, 1)
        x = torch.randn_like(feature)
        with torch.no_grad():
            ours = module(x, frames, PER_FRAME, attention_inputs=inputs[module])
            full_strength = module(x, frames, PER_FRAME, attention_inputs=camera_inputs(
                camera, motion, [feature] * 4, frames, strength)[module])
        effect = ade_cameractrl_effect(mask * strength, full, *feature.shape[-2:], chunks, window).double()
        ref = motion_oracle(module.state_dict(), x, frames, camera.merges.layer(group, level, index), feature, effect)
        torch.testing.assert_close(ours.double(), ref, atol=2e-5, rtol=1e-5)
        assert (ours - full_strength).abs().max() > 1e-3, "the mask must change the camera's effect"


def test_ones_mask_is_no_mask_and_black_frames_skip_the_camera():
    """All white: the same numbers as no mask, bit for bit (a constant mask frame stays exact when resized); all black
    on a call's frames: the call runs without the camera; a mask black on some frames only still acts."""
    camera = randomised(TINY, seed=10)
    motion = random_motion(has_mid=False, seed=11)
    frames = 4
    features = [torch.randn(2 * frames, c, size, size) for c, size in zip(TINY, (6, 3, 2, 1))]
    ones = masked_run(torch.ones(1, 48, 40), 0.7).strengths(list(range(frames)), features, 2, features[0])
    module = motion.up_blocks[1].motion_modules[0]
    x = torch.randn_like(features[2])
    with torch.no_grad():
        a = module(x, frames, PER_FRAME, attention_inputs=camera_inputs(camera, motion, features, frames, ones)[module])
        b = module(x, frames, PER_FRAME, attention_inputs=camera_inputs(camera, motion, features, frames, 0.7)[module])
    assert torch.equal(a, b)
    black_first = torch.ones(3, 8, 8)
    black_first[:2] = 0
    run = masked_run(black_first)
    assert not run.acts_on([0, 1]) and run.acts_on([1, 2]) and run.acts_on([5, 6])  # frame 2's mask holds after it
    assert not masked_run(torch.ones(1, 8, 8), 0.0).acts_on([0])
    assert not masked_run(torch.zeros(8, 8)).acts_on([0, 1, 2])


def test_bad_strength_masks_are_refused_with_the_input_named():
    from motionkit.motion.errors import MotionMaskError
    with pytest.raises(MotionMaskError, match="strength_mask has negative"):
        masked_run(torch.full((1, 8, 8), -1.0))
    with pytest.raises(MotionMaskError, match=r"strength_mask has shape \[2, 3, 4, 5\]"):
        masked_run(torch.ones(2, 3, 4, 5))


# ---------------------------------------------------------------------------------------------
# The per-call features of camera/apply.py (its ComfyUI wrapper itself is not tested here)

def test_run_features_per_window_and_size():
    from motionkit.camera.apply import CameraRun, unet_sizes
    assert unet_sizes(9, 12, 4) == [(9, 12), (5, 6), (3, 3), (2, 2)]
    camera = randomised(TINY, seed=6)
    poses = P.parse_pose_text(random_pose_text(6, seed=3), "random")
    run = CameraRun(camera, poses)
    window = run.features([2, 3, 4], 8, 12, torch.device("cpu"), torch.float32)
    assert [tuple(f.shape) for f in window] == [(3, 32, 8, 12), (3, 64, 4, 6), (3, 128, 2, 3), (3, 128, 1, 2)]
    # a window starts at its own frame 0: the same as a path that begins at pose 2
    alone = CameraRun(camera, P.CameraPoses(poses.poses[2:5])).features([0, 1, 2], 8, 12, torch.device("cpu"),
                                                                       torch.float32)
    for a, b in zip(window, alone):
        torch.testing.assert_close(a, b)
    odd = run.features([0, 1], 9, 12, torch.device("cpu"), torch.float32)  # not a multiple of 8 latents: resized
    assert [tuple(f.shape[-2:]) for f in odd] == unet_sizes(9, 12, 4)


@pytest.mark.comfyui
def test_comfy_layers_give_the_same_features_and_merge():
    """Under ComfyUI the nodes may build CameraCtrl on comfy.ops layers with ComfyUI's attention: same keys, same
    numbers."""
    import comfy_env
    comfy_env.comfy_on_cpu()
    from motionkit.motion.injection import comfy_layers
    operations, attention = comfy_layers()
    plain = randomised(TINY, seed=7)
    comfy_model = build_cameractrl(internal(plain), "tiny", operations, attention, channels=TINY)
    assert list(comfy_model.state_dict()) == list(plain.state_dict())
    plucker = torch.randn(8, 6, 64, 96)
    with torch.no_grad():
        for a, b in zip(comfy_model.encoder(plucker, 4), plain.encoder(plucker, 4)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        n, f = torch.randn(6, 4, 32), torch.randn(8, 32, 1, 3)
        merge = ("down_blocks", 0, 1)
        torch.testing.assert_close(CameraInput(comfy_model.merges.layer(*merge), f, 4, 0.5)(n),
                                   CameraInput(plain.merges.layer(*merge), f, 4, 0.5)(n))


def test_motion_model_loader_names_cameractrl_files():
    from motionkit.motion.formats import classify, clean_state_dict
    encoder = meta_tensors(KEYS["pose_encoder_state_dict"])
    merges = meta_tensors(KEYS["attention_processor_state_dict"])
    for content in ({**encoder, **merges}, {"pose_encoder_state_dict": encoder, "attention_processor_state_dict": merges,
                                            "epoch": 1, "global_step": 2}):
        with pytest.raises(WrongFileTypeError, match="is CameraCtrl .*not a motion model"):
            classify(clean_state_dict(content, "CameraCtrl.ckpt"), "CameraCtrl.ckpt")


@pytest.mark.comfyui
def test_apply_camera_hands_features_to_every_down_and_up_motion_layer(comfy):
    """apply.py's DIFFUSION_MODEL wrapper on a ModelPatcher with v3 applied (meta device: wiring only): every down and
    up motion module gets a CameraInput with the feature of its level for all cond/uncond rows; the mid block none."""
    from comfy.patcher_extension import WrappersMP
    import motion_files as mf
    from unet_helpers import meta_sd15_patcher
    from motionkit.camera.apply import KEY, apply_camera
    from motionkit.motion.formats import build_motion_model, classify
    from motionkit.motion.injection import ATTENTION_INPUTS, MotionSettings, applications, apply_motion_model

    patcher = meta_sd15_patcher(comfy)
    info, weights = classify(mf.v2(device="meta"), "mm_sd_v15_v2.ckpt")
    m = apply_motion_model(patcher, build_motion_model(info, weights, "mm_sd_v15_v2.ckpt"), info, "mm_sd_v15_v2.ckpt",
                           MotionSettings())
    with torch.device("meta"):
        camera = CameraCtrl()
    with pytest.raises(CameraPoseError, match="start_percent"):
        apply_camera(m, camera, P.preset(P.PAN_LEFT), start_percent=0.8, end_percent=0.2)
    applied = apply_camera(m, camera, P.preset(P.PAN_LEFT, 1.0, 16), strength=0.5)
    (wrapper,) = applied.get_wrappers(WrappersMP.DIFFUSION_MODEL, KEY)
    seen = {}

    def executor(*args, **kwargs):
        seen.update(args[5])
        return "ran"

    x = torch.empty(32, 4, 8, 8, device="meta")  # cond and uncond, 16 frames each
    assert wrapper(executor, x, None, None, None, None, {"cond_or_uncond": [1, 0]}) == "ran"
    (app,) = applications(applied)
    inputs = seen[ATTENTION_INPUTS]
    motion = app.motion_model
    assert len(inputs) == 20 and motion.mid_block.motion_modules[0] not in inputs
    for group, blocks in (("down", motion.down_blocks), ("up", motion.up_blocks)):
        for level, block in enumerate(blocks):
            for module in block.motion_modules:
                (index, camera_input), = inputs[module].items()
                feature_level = level if group == "down" else 3 - level
                assert index == 0 and camera_input.strength == 0.5 and camera_input.frames == 16
                assert tuple(camera_input.feature.shape) == (32, (320, 640, 1280, 1280)[feature_level],
                                                             8 >> feature_level, 8 >> feature_level)
    with pytest.raises(CameraCtrlFileError, match="no motion model"):
        apply_camera(patcher, camera, P.preset(P.PAN_LEFT))


def test_camera_path_picture_shows_where_the_camera_goes():
    """Top view of a pan left: the last camera (red dot) is left of the first (blue ring); zoom in: above it
    (forward is up the picture). A static camera still gives a picture (its view arrows)."""
    from motionkit.camera.preview import PANEL, camera_path_picture

    def ends(motion):
        top = camera_path_picture(P.preset(motion, 1.0, 16))[:, :PANEL].astype(int)
        red = np.argwhere((top[..., 0] > 200) & (top[..., 2] < 100))
        blue = np.argwhere((top[..., 2] > 200) & (top[..., 0] < 100))
        return red.mean(0), blue.mean(0)  # (row, column)

    red, blue = ends(P.PAN_LEFT)
    assert red[1] < blue[1] - 20 and abs(red[0] - blue[0]) < 5
    red, blue = ends(P.ZOOM_IN)
    assert red[0] < blue[0] - 20
    picture = camera_path_picture(P.preset(P.STATIC, 1.0, 4))
    assert picture.shape == (PANEL, 3 * PANEL, 3) and picture.dtype == np.uint8
