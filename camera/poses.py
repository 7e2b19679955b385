"""Camera poses for CameraCtrl: RealEstate10K pose files, presets, combining; and the two things the Plücker
embedding needs from them (plucker.py): intrinsics in pixels and camera-to-world matrices relative to frame 0.

A pose file (RealEstate10K, as CameraCtrl's assets/pose_files) is text: the first line is the source video's URL
(skipped); every other line is one frame of 19 numbers separated by spaces:

    timestamp  fx fy cx cy  a b  r11 r12 r13 t1  r21 r22 r23 t2  r31 r32 r33 t3

fx fy cx cy are fractions of the frame's width/height; a b are unused (zeros in RealEstate10K; AnimateDiff-Evolved
writes the source video size there); the last 12 are the 3x4 world-to-camera matrix, row by row, in OpenCV axes
(x right, y down, z forward).

The source video's size (default 1280x720, CameraCtrl's `--original_pose_width/height`) is used to correct fx or
fy when the sample's aspect ratio differs (inference.py). Presets follow AnimateDiff-Evolved's CameraCtrl pose
nodes (nodes_cameractrl.py), whose numbers users already know; orbit is ours.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import numpy as np

from .errors import CameraPoseError

COLUMNS = 19
SOURCE_WIDTH, SOURCE_HEIGHT = 1280, 720
# AnimateDiff-Evolved's defaults for generated poses: the intrinsics of RealEstate10K's example files
DEFAULT_FX, DEFAULT_FY, DEFAULT_CX, DEFAULT_CY = 0.474812461, 0.844111024, 0.5, 0.5
# at speed 1 a preset turns 60 degrees / moves 1.5 units over 16 frames (ADE's CAM.BASE_ANGLE, BASE_T_NORM)
BASE_ANGLE = math.pi / 3
BASE_DISTANCE = 1.5
BASE_FRAMES = 16
ORBIT_RADIUS = 1.5

FORMAT_HELP = ("Each line after the first (a URL or comment, skipped) must hold 19 numbers separated by spaces: "
               "timestamp, fx fy cx cy (fractions of the frame size), two unused numbers, then the 3x4 "
               "world-to-camera matrix row by row (RealEstate10K's format, as CameraCtrl's assets/pose_files)")


@dataclass(frozen=True)
class CameraPose:
    """One frame's camera: intrinsics as fractions of the frame size and the 3x4 world-to-camera matrix."""
    fx: float
    fy: float
    cx: float
    cy: float
    w2c: tuple[float, ...]  # 12 numbers, row-major 3x4
    timestamp: float = 0.0

    def w2c_4x4(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :] = np.array(self.w2c, dtype=np.float64).reshape(3, 4)
        return m

    def row(self) -> list[float]:
        """The pose file's 19 numbers (the two unused ones written as zeros)."""
        return [self.timestamp, self.fx, self.fy, self.cx, self.cy, 0.0, 0.0, *self.w2c]


@dataclass(frozen=True)
class CameraPoses:
    """A camera path, one pose per frame. `source_width/height`: the size of the video the intrinsics were
    measured on (fx/fy are corrected for the sample's aspect ratio against it). `name`: where it came from."""
    poses: tuple[CameraPose, ...]
    source_width: int = SOURCE_WIDTH
    source_height: int = SOURCE_HEIGHT
    name: str = "camera poses"

    def __len__(self) -> int:
        return len(self.poses)

    def for_frames(self, frames: int, pad: bool = False) -> "CameraPoses":
        """The first `frames` poses. Fewer poses than frames is an error, or with `pad` the last pose repeats (as
        AnimateDiff-Evolved does: the camera stops)."""
        if frames <= len(self.poses):
            return replace(self, poses=self.poses[:frames])
        if not pad or not self.poses:
            raise CameraPoseError(
                f"{self.name} has {len(self.poses)} camera poses but the animation has {frames} frames. Give a pose "
                f"file with at least {frames} poses (one line per frame after the first), make a longer preset "
                f"(frames = {frames}), or render {len(self.poses)} frames.")
        return replace(self, poses=self.poses + (self.poses[-1],) * (frames - len(self.poses)))

    def with_source_size(self, width: int, height: int) -> "CameraPoses":
        if width <= 0 or height <= 0:
            raise CameraPoseError(f"{self.name}: the source video size must be positive, got {width}x{height}.")
        return replace(self, source_width=int(width), source_height=int(height))

    def with_intrinsics(self, fx: float, fy: float, cx: float, cy: float) -> "CameraPoses":
        return replace(self, poses=tuple(replace(p, fx=fx, fy=fy, cx=cx, cy=cy) for p in self.poses))

    def to_text(self, first_line: str = "# MotionKit camera poses") -> str:
        """The pose-file text (read back by parse_pose_text)."""
        rows = [" ".join(repr(float(v)) for v in p.row()) for p in self.poses]
        return "\n".join([first_line, *rows]) + "\n"


# ---------------------------------------------------------------------------------------------
# Pose files

def parse_pose_text(text: str, name: str = "the pose text", frames: int | None = None) -> CameraPoses:
    """Parse a pose file's text (format in the module doc). `frames`: require at least this many poses."""
    lines = text.splitlines()[1:]
    poses = []
    for number, line in enumerate(lines, start=2):
        fields = line.split()
        if not fields:
            continue  # blank lines (a trailing newline) carry no pose
        if len(fields) != COLUMNS:
            raise CameraPoseError(
                f"{name}, line {number}: {len(fields)} numbers, but a camera pose has {COLUMNS}. {FORMAT_HELP}.")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not _is_number(f))
            raise CameraPoseError(f"{name}, line {number}: '{bad}' is not a number. {FORMAT_HELP}.") from None
        if not all(math.isfinite(v) for v in values):
            raise CameraPoseError(f"{name}, line {number}: holds inf or nan. {FORMAT_HELP}.")
        pose = CameraPose(values[1], values[2], values[3], values[4], tuple(values[7:]), values[0])
        if pose.fx <= 0 or pose.fy <= 0:
            raise CameraPoseError(f"{name}, line {number}: focal lengths fx={pose.fx}, fy={pose.fy} must be "
                                  f"positive (columns 2 and 3, fractions of the frame width and height).")
        if abs(np.linalg.det(pose.w2c_4x4())) < 1e-12:
            raise CameraPoseError(f"{name}, line {number}: the world-to-camera matrix (the last 12 numbers) is "
                                  f"singular, so it is no camera pose. {FORMAT_HELP}.")
        poses.append(pose)
    if not poses:
        raise CameraPoseError(f"{name} holds no camera poses. {FORMAT_HELP}.")
    result = CameraPoses(tuple(poses), name=name)
    return result if frames is None else result.for_frames(frames)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_pose_file(path: str, frames: int | None = None) -> CameraPoses:
    """A RealEstate10K / CameraCtrl pose file. `frames`: require at least this many poses."""
    name = f"pose file '{os.path.basename(path)}'"
    if not os.path.isfile(path):
        raise CameraPoseError(f"Camera {name} does not exist. Put the .txt file in ComfyUI's input folder and "
                              f"pick it.")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise CameraPoseError(f"{name} is not a text file. {FORMAT_HELP}.") from None
    except OSError as e:  # the OS's words only (no path): a folder, no permission
        raise CameraPoseError(f"{name} could not be read ({e.strerror}).") from None
    return parse_pose_text(text, name, frames)


# ---------------------------------------------------------------------------------------------
# What the Plücker embedding needs (CameraCtrl inference.py, exactly)

def relative_c2w(poses: CameraPoses) -> np.ndarray:
    """[F, 4, 4] float32 camera-to-world matrices relative to frame 0: frame 0 is the identity, frame i is
    w2c_0 · c2w_i (inference.py get_relative_pose, with cam_to_origin 0)."""
    w2cs = [p.w2c_4x4() for p in poses.poses]
    c2ws = [np.linalg.inv(m) for m in w2cs]
    first = np.eye(4)
    return np.array([first] + [w2cs[0] @ c2w for c2w in c2ws[1:]], dtype=np.float32)


def intrinsics(poses: CameraPoses, width: int, height: int) -> np.ndarray:
    """[F, 4] float32 fx fy cx cy in pixels of a width x height sample. The source video is resized to cover the
    sample (then centre-cropped), so the focal length along the cropped axis grows (inference.py)."""
    sample_ratio = width / height
    source_ratio = poses.source_width / poses.source_height
    rows = []
    for p in poses.poses:
        fx, fy = p.fx, p.fy
        if source_ratio > sample_ratio:
            fx = height * source_ratio * fx / width
        else:
            fy = width / source_ratio * fy / height
        rows.append([fx * width, fy * height, p.cx * width, p.cy * height])
    return np.asarray(rows, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Presets (AnimateDiff-Evolved's CameraCtrl pose nodes) and orbit

STATIC, PAN_UP, PAN_DOWN, PAN_LEFT, PAN_RIGHT = "Static", "Pan Up", "Pan Down", "Pan Left", "Pan Right"
ZOOM_IN, ZOOM_OUT = "Zoom In", "Zoom Out"
ROLL_CLOCKWISE, ROLL_ANTICLOCKWISE = "Roll Clockwise", "Roll Anticlockwise"
TILT_UP, TILT_DOWN, TILT_LEFT, TILT_RIGHT = "Tilt Up", "Tilt Down", "Tilt Left", "Tilt Right"
ORBIT_LEFT, ORBIT_RIGHT = "Orbit Left", "Orbit Right"

# (rotation about x, y, z; translation) of the world-to-camera matrix per unit of progress; ADE's table
LINEAR_MOTIONS = {
    STATIC: ((0., 0., 0.), (0., 0., 0.)),
    PAN_UP: ((0., 0., 0.), (0., 1., 0.)),
    PAN_DOWN: ((0., 0., 0.), (0., -1., 0.)),
    PAN_LEFT: ((0., 0., 0.), (1., 0., 0.)),
    PAN_RIGHT: ((0., 0., 0.), (-1., 0., 0.)),
    ZOOM_IN: ((0., 0., 0.), (0., 0., -2.)),
    ZOOM_OUT: ((0., 0., 0.), (0., 0., 2.)),
    ROLL_CLOCKWISE: ((0., 0., -1.), (0., 0., 0.)),
    ROLL_ANTICLOCKWISE: ((0., 0., 1.), (0., 0., 0.)),
    TILT_DOWN: ((1., 0., 0.), (0., 0., 0.)),
    TILT_UP: ((-1., 0., 0.), (0., 0., 0.)),
    TILT_LEFT: ((0., 1., 0.), (0., 0., 0.)),
    TILT_RIGHT: ((0., -1., 0.), (0., 0., 0.)),
}
ORBITS = {ORBIT_LEFT: 1.0, ORBIT_RIGHT: -1.0}
MOTIONS = (*LINEAR_MOTIONS, *ORBITS)


def rotation_xyz(angles) -> np.ndarray:
    """Rz · Ry · Rx (ADE's compute_R_from_rad_angle)."""
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ (ry @ rx)


def _check_motion(motion: str) -> None:
    if motion not in MOTIONS:
        raise CameraPoseError(f"Unknown camera motion '{motion}'. Choose one of: {', '.join(MOTIONS)}.")


def _check_frames(frames: int) -> None:
    if int(frames) < 1:
        raise CameraPoseError(f"A camera motion needs at least 1 frame, got {frames}.")


def _from_w2c(matrices, name: str) -> CameraPoses:
    poses = tuple(CameraPose(DEFAULT_FX, DEFAULT_FY, DEFAULT_CX, DEFAULT_CY,
                             tuple(float(v) for v in np.asarray(m)[:3, :4].reshape(-1))) for m in matrices)
    return CameraPoses(poses, name=name)


def linear_w2c(rotate, translate, speed: float, frames: int) -> np.ndarray:
    """[frames, 3, 4]: frame i turns by (i/16)·speed·60° per unit of `rotate` and moves by (i/16)·speed·1.5 per unit
    of `translate` (ADE's get_camera_motion: the pace does not depend on the frame count)."""
    out = []
    for i in range(frames):
        progress = i / BASE_FRAMES * speed
        r = rotation_xyz(progress * BASE_ANGLE * np.asarray(rotate, dtype=np.float64))
        t = progress * BASE_DISTANCE * np.asarray(translate, dtype=np.float64).reshape(3, 1)
        out.append(np.concatenate([r, t], axis=1))
    return np.stack(out)


def orbit_w2c(direction: float, speed: float, frames: int, radius: float = ORBIT_RADIUS) -> np.ndarray:
    """[frames, 3, 4]: the camera circles a point `radius` ahead of its start, always facing it, turning (i/16)·speed·60°
    by frame i; direction +1 moves it left (the view turns right), -1 right."""
    target = np.array([0.0, 0.0, radius])
    out = []
    for i in range(frames):
        angle = direction * i / BASE_FRAMES * speed * BASE_ANGLE
        r_c2w = rotation_xyz((0.0, angle, 0.0))
        centre = target + r_c2w @ (-target)
        r_w2c = r_c2w.T
        out.append(np.concatenate([r_w2c, (-r_w2c @ centre).reshape(3, 1)], axis=1))
    return np.stack(out)


def preset(motion: str, speed: float = 1.0, frames: int = 16, radius: float = ORBIT_RADIUS) -> CameraPoses:
    """A camera path of `frames` poses: one of MOTIONS at `speed` (1 = ADE's pace; negative reverses)."""
    _check_motion(motion)
    _check_frames(frames)
    if motion in ORBITS:
        if radius <= 0:
            raise CameraPoseError(f"Orbit radius must be positive, got {radius}.")
        w2c = orbit_w2c(ORBITS[motion], speed, int(frames), radius)
    else:
        w2c = linear_w2c(*LINEAR_MOTIONS[motion], speed, int(frames))
    return _from_w2c(w2c, f"camera preset '{motion}'")


def mix(motions, speed: float = 1.0, frames: int = 16) -> CameraPoses:
    """Several motions at once, each (name, strength): their rotations and translations add up, each times its strength
    (negative: the opposite way), then move at `speed` as one preset does (ADE's CameraCtrl Pose Combo / Advanced,
    whose poses these equal). Orbits are not a constant turn-and-move, so they cannot be mixed; chain them with
    `append`."""
    _check_frames(frames)
    rotate, translate = np.zeros(3), np.zeros(3)
    for motion, strength in motions:
        _check_motion(motion)
        if motion in ORBITS:
            raise CameraPoseError(f"'{motion}' cannot be mixed with other motions (an orbit moves along a circle); "
                                  f"make it on its own and chain it before or after the others.")
        r, t = LINEAR_MOTIONS[motion]
        rotate += np.asarray(r) * strength
        translate += np.asarray(t) * strength
    names = " + ".join(f"{m}×{s:g}" for m, s in motions if m != STATIC and s != 0) or STATIC
    return _from_w2c(linear_w2c(rotate, translate, speed, int(frames)), f"camera motion '{names}'")


def append(first: CameraPoses, then: CameraPoses) -> CameraPoses:
    """`then` continues from where `first` ends: each of its world-to-camera matrices is composed with `first`'s last
    one (ADE's combine_poses). The frame counts add up; `then`'s frame 0 (usually a standstill) repeats the join.
    Each pose keeps its own intrinsics; the result keeps `first`'s source size."""
    last = first.poses[-1].w2c_4x4()
    moved = tuple(replace(p, w2c=tuple(float(v) for v in (p.w2c_4x4() @ last)[:3, :4].reshape(-1)))
                  for p in then.poses)
    return replace(first, poses=first.poses + moved, name=f"{first.name} then {then.name}")
