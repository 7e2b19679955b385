"""Trajectory -> flow -> colour video, as Tora's inference makes it (diffusers-version/inference.py, tora/traj_utils.py;
its app, sat/app.py, maps the points a user draws).

1. Points drawn on a W x H canvas go to Tora's 256 x 256 canvas: `int(x * (256 / W))` (app.scale_traj_list_to_256).
2. `read_points`: whole numbers; more points than frames -> every (len // frames)-th, at most `frames`.
3. `process_points`: exactly `frames` points; fewer are filled in by straight-line interpolation (truncated with
   int()), the inserts spread over the segments, earlier segments first; more are subsampled keeping the last.
4. To the video's pixels: `int(w * x / 256)`; there, frame i + 1 holds the step from point i to point i + 1 at point
   i's pixel (frame 0 stays zero); several paths on one pixel: the later one wins.
5. Every frame but the first blurred with the peak-1 99x99 Gaussian, sigma 10, mirrored borders (cv2.filter2D's
   default BORDER_REFLECT_101): trajectory.encoding.blur, the blur MotionKit's trajectories already use.
6. torchvision's flow_to_image over the whole clip at once (ONE maximum norm for all frames), then /127.5 - 1:
   the [-1, 1] video the VAE encodes (frame 0 comes out all +1: white).
The flow is made at the video's size directly; nothing is resized.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from einops import rearrange

from ..trajectory.encoding import Path, blur, check_paths, sparse_flow
from .errors import ToraError

CANVAS = 256  # Tora's points live on a 256 x 256 canvas


def to_canvas(points, width: int, height: int) -> list[list[int]]:
    """Points in pixels of a width x height canvas -> Tora's 256 canvas (sat/app.py scale_traj_list_to_256)."""
    sx, sy = CANVAS / width, CANVAS / height
    return [[int(x * sx), int(y * sy)] for x, y in points]


def read_points(points, frames: int) -> list[tuple[int, int]]:
    """Tora's read_points(_from_list): whole numbers, at most `frames`, every (len // frames)-th when there are more."""
    points = [(int(x), int(y)) for x, y in points]
    if len(points) > frames:
        points = points[:: len(points) // frames]
    return points[:frames]


def process_points(points, frames: int) -> list:
    """Tora's process_points: exactly `frames` points, the first and last kept.

    One point stays where it is (Tora puts such a path at (512, 512), off its 256 canvas, where get_flow fails)."""
    if len(points) < 2:
        return [list(points[0])] * frames
    if len(points) >= frames:
        skip = len(points) // frames
        return points[::skip][: frames - 1] + points[-1:]
    segments = len(points) - 1
    inserts = [(frames - len(points)) // segments + (i < (frames - len(points)) % segments) for i in range(segments)]
    out = []
    for i, n in enumerate(inserts):
        (x0, y0), (x1, y1) = points[i], points[i + 1]
        out += points[i: i + 1]
        out += [[int(x0 + (j + 1) / (n + 1) * (x1 - x0)), int(y0 + (j + 1) / (n + 1) * (y1 - y0))] for j in range(n)]
    return out + points[-1:]


def to_video(points, width: int, height: int) -> np.ndarray:
    """Tora-canvas points -> the video's pixels, [frames, 2] whole numbers."""
    return np.array([[int(width * x / CANVAS), int(height * y / CANVAS)] for x, y in points], dtype=np.float64)


def frame_points(paths, frames: int, width: int, height: int, canvas: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Per path its [frames, 2] pixel positions in the width x height video, Tora's way. `paths`: trajectory.encoding
    Paths or point lists, in pixels of `canvas` (width, height; default the video's size), which Tora's app maps
    to its 256 canvas, and its inference from there onto the video."""
    cw, ch = canvas or (width, height)
    paths = [p if isinstance(p, Path) else Path([tuple(q) for q in p]) for p in paths]
    for i, (p, first, last) in enumerate(check_paths(paths, frames, cw, ch)):
        if (first, last) != (0, frames - 1):
            raise ToraError(f"Path {i + 1} runs over frames {first}-{last}; Tora spreads every path over the whole "
                            f"clip (frames 0-{frames - 1}). Set its start_frame to 0 and end_frame to -1.")
    return [to_video(process_points(read_points(to_canvas(p.points, cw, ch), frames), frames), width, height)
            for p in paths]


def tora_flow(paths, frames: int, width: int, height: int, canvas: tuple[int, int] | None = None) -> torch.Tensor:
    """[frames, height, width, 2] float32: Tora's blurred sparse flow (traj_utils.process_traj)."""
    flow = sparse_flow(frame_points(paths, frames, width, height, canvas), frames, width, height)
    return torch.from_numpy(blur(flow)).float()


def _colorwheel() -> torch.Tensor:
    """[55, 3] Middlebury colour wheel (Baker et al. 2007), as torchvision.utils._make_colorwheel."""
    ramps = [(15, 0, 1, True), (6, 1, 0, False), (4, 1, 2, True), (11, 2, 1, False), (13, 2, 0, True), (6, 0, 2, False)]
    rows = []
    for n, full, moving, rising in ramps:  # one channel full, one ramping up or down
        row = torch.zeros(n, 3)
        ramp = torch.floor(255 * torch.arange(n) / n)
        row[:, full] = 255
        row[:, moving] = ramp if rising else 255 - ramp
        rows.append(row)
    return torch.cat(rows)


def flow_to_image(flow: torch.Tensor) -> torch.Tensor:
    """Flow (N, 2, H, W) float32 -> uint8 (N, 3, H, W), normalised by the largest norm over all N (torchvision's)."""
    if flow.dtype != torch.float32 or flow.ndim != 4 or flow.shape[1] != 2:
        raise ToraError(f"Tora: flow_to_image takes a float32 flow (N, 2, H, W), got {flow.dtype} {list(flow.shape)}.")
    flow = flow / (torch.sum(flow.pow(2), dim=1).sqrt().max() + torch.finfo(flow.dtype).eps)
    wheel = _colorwheel().to(flow.device)
    cols = wheel.shape[0]
    norm = torch.sum(flow.pow(2), dim=1).sqrt()
    fk = (torch.atan2(-flow[:, 1], -flow[:, 0]) / math.pi + 1) / 2 * (cols - 1)  # angle -> position on the wheel
    k0 = torch.floor(fk).long()
    k1 = torch.where(k0 + 1 == cols, 0, k0 + 1)
    f = fk - k0
    col = (1 - f)[..., None] * (wheel[k0] / 255.0) + f[..., None] * (wheel[k1] / 255.0)  # (N, H, W, 3)
    col = 1 - norm[..., None] * (1 - col)  # towards white at small motion
    return rearrange(torch.floor(255 * col), "n h w c -> n c h w").to(torch.uint8)


def flow_video(flow: torch.Tensor) -> torch.Tensor:
    """Tora's flow [F, H, W, 2] -> the colour video [F, 3, H, W] in [-1, 1] its pipeline encodes (inference.py)."""
    return flow_to_image(rearrange(flow, "f h w c -> f c h w").float()).float() / (255.0 / 2) - 1


def flow_images(flow: torch.Tensor) -> torch.Tensor:
    """The same video as ComfyUI IMAGE frames [F, H, W, 3] in [0, 1] (its VAE encodes 2·x − 1: the same values)."""
    return rearrange(flow_to_image(rearrange(flow, "f h w c -> f c h w").float()), "f c h w -> f h w c").float() / 255.0
