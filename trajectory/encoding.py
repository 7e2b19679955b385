"""Paths -> a TRAJECTORY: per-frame flow maps [F, H, W, 2] in pixels of the output size.

The encoding Tora (alibaba/Tora, traj_utils.process_traj) and MotionCtrl (OMCM data pipeline) share:
* each path gives one position per frame;
* frame k >= 1 holds, at the pixel of the path's position in frame k-1 (truncated to an integer, as both do),
  the displacement p_k - p_{k-1}; everything else, and all of frame 0, is zero (several paths on one pixel:
  the later path wins, as in both);
* every frame but the first is blurred with a 99x99 isotropic Gaussian, sigma 10, mirrored at the borders
  (cv2.filter2D's default, BORDER_REFLECT_101), with the kernel's *peak* normalised to 1 (Tora's
  `blur_kernel / blur_kernel[49, 49]`): a single point keeps its displacement at its centre.
  MotionCtrl divides its kernel by its *sum* instead; that is one constant factor (KERNEL_SUM), applied by
  its adapter (control.motionctrl), so one TRAJECTORY serves both.

Positions per frame: a path's points are a polyline; its frames (start..end, default the whole animation)
are spread evenly along it by arc length (constant speed), or, with spacing "per point", the points are
spread evenly over the frames (a point list sampled in time, as spline editors produce) with straight
lines in between.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .errors import TrajectoryError

LOG = logging.getLogger("MotionKit")

KERNEL_SIZE = 99
SIGMA = 10.0
ARC_LENGTH, PER_POINT = "even by arc length", "per point"
SPACINGS = (ARC_LENGTH, PER_POINT)
SPARSE, DENSE = "sparse", "dense"  # drawn paths (blurred) / optical flow from a video (as measured)


def gaussian_1d(size: int = KERNEL_SIZE, sigma: float = SIGMA) -> np.ndarray:
    """exp(-d^2 / 2 sigma^2) for d in -(size//2)..size//2: one axis of the peak-normalised kernel."""
    d = np.arange(size, dtype=np.float64) - size // 2
    return np.exp(-d * d / (2.0 * sigma * sigma))


# sum of the 2-D peak-normalised kernel: MotionCtrl's sum-normalised blur = this blur / KERNEL_SUM
KERNEL_SUM = float(gaussian_1d().sum() ** 2)


@dataclass
class Path:
    points: list  # [(x, y)] in pixels of the canvas
    start_frame: int = 0
    end_frame: int = -1  # inclusive; -1 = the last frame


@dataclass
class Trajectory:
    flow: torch.Tensor  # [F, H, W, 2] float32: (u, v) in pixels
    width: int
    height: int
    paths: list = field(default_factory=list)  # the Paths it was made from (empty for a video's flow)
    positions: list = field(default_factory=list)  # per path: [F, 2] float positions, NaN where it is inactive
    kind: str = SPARSE
    spacing: str = ARC_LENGTH

    @property
    def frames(self) -> int:
        return int(self.flow.shape[0])

    def describe(self) -> str:
        return f"{self.frames} frames at {self.width}x{self.height}"


# ---------------------------------------------------------------------------------------------
# Reading paths

def _point(p, where: str):
    if isinstance(p, dict) and "x" in p and "y" in p:
        p = (p["x"], p["y"])
    if not isinstance(p, (list, tuple)) or len(p) < 2:
        raise TrajectoryError(f"{where}: a point must be [x, y] or {{\"x\": .., \"y\": ..}}, got {json.dumps(p)[:60]}.")
    try:
        x, y = float(p[0]), float(p[1])
    except (TypeError, ValueError):
        raise TrajectoryError(f"{where}: point {json.dumps(p)[:60]} is not two numbers.") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise TrajectoryError(f"{where}: point {json.dumps(p)[:60]} is not a finite number.")
    return (x, y)


def parse_paths(text: str, source: str = "paths") -> list[Path]:
    """Paths from JSON: MotionKit's editor value `[{"points": [[x, y], ...], "start_frame": 0, "end_frame": -1}]`,
    or the point lists of core's WanTrackToVideo and spline editors: `[{"x": .., "y": ..}, ...]` (one path) or a
    list of such lists (single quotes accepted, as core does). Empty text / `[]` = no paths."""
    text = (text or "").strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = json.loads(text.replace("'", '"'))
        except json.JSONDecodeError as e:
            raise TrajectoryError(f"The {source} are not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}). "
                                  f"Expected [{{\"points\": [[x, y], ...]}}] or WanTrackToVideo's "
                                  f"[[{{\"x\": .., \"y\": ..}}, ...]].") from None
    if isinstance(data, dict):
        data = data.get("paths", [data])
    if not isinstance(data, list):
        raise TrajectoryError(f"The {source} must be a JSON list of paths, got {type(data).__name__}.")
    if data and isinstance(data[0], dict) and "x" in data[0]:
        data = [data]  # one WanTrack-style track
    paths = []
    for i, item in enumerate(data):
        where = f"{source}, path {i + 1}"
        if isinstance(item, dict):
            pts = item.get("points", [])
            start, end = item.get("start_frame", 0), item.get("end_frame", -1)
        elif isinstance(item, list):
            pts, start, end = item, 0, -1
        else:
            raise TrajectoryError(f"{where}: expected an object with \"points\" or a list of points, got "
                                  f"{json.dumps(item)[:60]}.")
        if not isinstance(pts, list):
            raise TrajectoryError(f"{where}: \"points\" must be a list of [x, y].")
        try:
            start, end = int(start), int(end)
        except (TypeError, ValueError):
            raise TrajectoryError(f"{where}: start_frame/end_frame must be whole numbers.") from None
        paths.append(Path([_point(p, where) for p in pts], start, end))
    return paths


def paths_to_json(paths: list[Path]) -> str:
    return json.dumps([{"points": [[round(x, 2), round(y, 2)] for x, y in p.points],
                        "start_frame": p.start_frame, "end_frame": p.end_frame} for p in paths])


def check_paths(paths: list[Path], frames: int, width: int, height: int) -> list[tuple[Path, int, int]]:
    """(path, first frame, last frame) for each path; errors for what cannot work, warnings for what is clipped."""
    if not paths:
        raise TrajectoryError("There is no path: draw one on the canvas (click to add points), or connect a point "
                              "list (e.g. from a spline editor) to 'points_json'.")
    checked = []
    for i, p in enumerate(paths):
        name = f"Path {i + 1}"
        if not p.points:
            raise TrajectoryError(f"{name} has no points: click on the canvas to add some, or delete the path.")
        outside = [(x, y) for x, y in p.points if not (0 <= x <= width and 0 <= y <= height)]
        if outside:
            x, y = outside[0]
            raise TrajectoryError(
                f"{name} has {len(outside)} point(s) outside the {width}x{height} canvas, e.g. ({x:g}, {y:g}). "
                f"Move them inside, or set width/height to the size the points were drawn for.")
        first = p.start_frame
        last = frames - 1 if p.end_frame < 0 else p.end_frame
        if first < 0 or first >= frames or last < first:
            raise TrajectoryError(
                f"{name} runs from frame {p.start_frame} to {p.end_frame}, outside the animation's frames 0-{frames - 1}"
                f"{' (its end is before its start)' if last < first else ''}. Set start_frame/end_frame within "
                f"0-{frames - 1} (end -1 = the last frame).")
        if last >= frames:
            LOG.warning(f"MotionKit trajectory: {name} ends at frame {last} but the animation has {frames} frames; "
                        f"it is cut at frame {frames - 1}.")
            last = frames - 1
        checked.append((p, first, last))
    return checked


# ---------------------------------------------------------------------------------------------
# Positions per frame

def path_positions(points, count: int, spacing: str = ARC_LENGTH) -> np.ndarray:
    """[count, 2] positions along the polyline `points`, frame 0 at the first point, the last at the last."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 1 or count == 1:
        return np.repeat(pts[:1], count, axis=0)
    t = np.arange(count, dtype=np.float64) / (count - 1)
    if spacing == PER_POINT:
        param = np.arange(len(pts), dtype=np.float64) / (len(pts) - 1)
    elif spacing == ARC_LENGTH:
        lengths = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        if lengths[-1] == 0:
            return np.repeat(pts[:1], count, axis=0)
        param = lengths / lengths[-1]
    else:
        raise TrajectoryError(f"Unknown spacing '{spacing}': choose one of {', '.join(SPACINGS)}.")
    # parameter of each frame -> position, linear within the segment it falls in (zero-length segments skipped)
    return np.stack([np.interp(t, param, pts[:, 0]), np.interp(t, param, pts[:, 1])], axis=1)


def frame_positions(paths: list[Path], frames: int, width: int, height: int, spacing: str = ARC_LENGTH) -> list[np.ndarray]:
    out = []
    for p, first, last in check_paths(paths, frames, width, height):
        pos = np.full((frames, 2), np.nan)
        pos[first:last + 1] = path_positions(p.points, last - first + 1, spacing)
        out.append(pos)
    return out


# ---------------------------------------------------------------------------------------------
# Flow maps

def sparse_flow(positions: list[np.ndarray], frames: int, width: int, height: int) -> np.ndarray:
    """[F, H, W, 2]: the displacement into frame k at the (integer) pixel of frame k-1's position."""
    flow = np.zeros((frames, height, width, 2), dtype=np.float64)
    for pos in positions:
        for k in range(1, frames):
            a, b = pos[k - 1], pos[k]
            if np.isnan(a).any() or np.isnan(b).any():
                continue
            x, y = min(int(a[0]), width - 1), min(int(a[1]), height - 1)  # as Tora/MotionCtrl: int(), border clipped
            flow[k, y, x] = b - a
    return flow


def reflect_101(i: np.ndarray, n: int) -> np.ndarray:
    """cv2's BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba), repeated for offsets beyond one image."""
    if n == 1:
        return np.zeros_like(i)
    period = 2 * n - 2
    m = np.mod(i, period)
    return np.where(m >= n, period - m, m)


def blur_matrix(n: int, kernel: np.ndarray) -> np.ndarray:
    """[n, n] M with (M @ column) = the column filtered by `kernel` with reflect-101 borders."""
    r = len(kernel) // 2
    m = np.zeros((n, n), dtype=np.float64)
    rows = np.arange(n)
    for d in range(-r, r + 1):
        np.add.at(m, (rows, reflect_101(rows + d, n)), kernel[d + r])
    return m


def blur(flow: np.ndarray, size: int = KERNEL_SIZE, sigma: float = SIGMA) -> np.ndarray:
    """Each frame but the first filtered with the peak-normalised Gaussian (separable: rows, then columns)."""
    frames, height, width, _ = flow.shape
    g = gaussian_1d(size, sigma)
    my, mx = blur_matrix(height, g), blur_matrix(width, g)
    out = flow.copy()
    out[1:] = np.einsum("ya,fabc,xb->fyxc", my, flow[1:], mx, optimize=True)
    return out


def encode_paths(paths: list[Path], frames: int, width: int, height: int, spacing: str = ARC_LENGTH) -> Trajectory:
    positions = frame_positions(paths, frames, width, height, spacing)
    flow = blur(sparse_flow(positions, frames, width, height))
    return Trajectory(torch.from_numpy(flow).float(), width, height, list(paths),
                      [torch.from_numpy(p).float() for p in positions], SPARSE, spacing)


# ---------------------------------------------------------------------------------------------
# Another frame count or size

def resized(traj: Trajectory, frames: int, width: int, height: int) -> Trajectory:
    """The trajectory for another frame count / size: paths are encoded again (points scaled, frame ranges
    stretched); a video's flow is interpolated (and its vectors scaled with the size)."""
    if (frames, width, height) == (traj.frames, traj.width, traj.height):
        return traj
    sx, sy = width / traj.width, height / traj.height
    if traj.paths:
        def stretch(f):
            return f if f < 0 else round(f * (frames - 1) / max(traj.frames - 1, 1))
        paths = [replace(p, points=[(min(x * sx, width), min(y * sy, height)) for x, y in p.points],
                         start_frame=stretch(p.start_frame), end_frame=stretch(p.end_frame)) for p in traj.paths]
        return encode_paths(paths, frames, width, height, traj.spacing)
    flow = traj.flow.permute(3, 0, 1, 2).unsqueeze(0)  # [1, 2, F, H, W]
    flow = torch.nn.functional.interpolate(flow, size=(frames, height, width), mode="trilinear", align_corners=False)
    flow = flow[0].permute(1, 2, 3, 0) * torch.tensor([sx, sy])
    if frames != traj.frames:  # a displacement per frame: more frames, smaller steps
        flow = flow * ((traj.frames - 1) / max(frames - 1, 1))
    flow[0] = 0
    return Trajectory(flow.contiguous(), width, height, [], [], traj.kind, traj.spacing)


def fit(traj: Trajectory, frames: int, width: int, height: int, user: str = "MotionKit") -> Trajectory:
    """`resized`, with a warning that says so (the artist made it for another animation)."""
    if (frames, width, height) != (traj.frames, traj.width, traj.height):
        LOG.warning(f"{user}: the trajectory was made for {traj.describe()}, the animation has {frames} frames at "
                    f"{width}x{height}; it is resampled to fit. Set the Trajectory node's frames/width/height to "
                    f"the animation's to see exactly what is used.")
    return resized(traj, frames, width, height)
