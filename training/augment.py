"""Reference clips without footage: AnimateDiff's "rule-based augmentation" of camera moves (OpenCV warps).

Frame i of F shows the picture through a camera at progress t = i / (F − 1):
* zoom_in: scale 1 → 1 + amount about the centre; zoom_out: the reverse (always filling the frame);
* pan / tilt: the picture is enlarged by 1 + amount and slid across its margin, so the camera moves by `amount`
  of the frame width (height) in all: pan_left = the camera turns left, the scene moves right in the frame;
  tilt_up = the camera tilts up, the scene moves down;
* roll: rotation by up to 45°·amount about the centre, enlarged to hide the corners (clockwise camera roll turns
  the scene anticlockwise in the frame).
Out-of-frame areas are filled by reflection. A still makes every frame from the same picture; a video clip warps
its own frame i with camera i (its motion plus the camera move). `variations` > 1 jitters amount (±25 %) and the
zoom/roll centre per clip, seeded, so several clips from one image differ.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .errors import TrainingError

MOVES = ("zoom_in", "zoom_out", "pan_left", "pan_right", "tilt_up", "tilt_down", "roll_clockwise",
         "roll_anticlockwise")


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise TrainingError("Making camera-move clips needs OpenCV: run `pip install opencv-python-headless` in "
                            "ComfyUI's Python environment (it is in MotionKit's requirements.txt).") from e
    return cv2


def camera_matrix(move: str, t: float, amount: float, width: int, height: int, center=(0.5, 0.5)) -> np.ndarray:
    """2×3 affine map from picture to frame coordinates for camera progress t ∈ [0, 1]."""
    if move not in MOVES:
        raise TrainingError(f"Unknown camera move '{move}'; choose one of {', '.join(MOVES)}.")
    cx, cy = center[0] * width, center[1] * height
    angle, scale, tx, ty = 0.0, 1.0, 0.0, 0.0
    if move == "zoom_in":
        scale = 1 + amount * t
    elif move == "zoom_out":
        scale = 1 + amount * (1 - t)
    elif move.startswith(("pan", "tilt")):
        scale = 1 + amount
        cx, cy = width / 2, height / 2
        travel = (t - 0.5) * amount * (width if move.startswith("pan") else height)
        sign = 1 if move in ("pan_left", "tilt_up") else -1
        tx, ty = (sign * travel, 0.0) if move.startswith("pan") else (0.0, sign * travel)
    else:
        angle = 45.0 * amount * t * (1 if move == "roll_clockwise" else -1)  # cv2: positive = anticlockwise content
        rad = math.radians(abs(angle))
        scale = math.cos(rad) + math.sin(rad) * max(width / height, height / width)
    m = _cv2().getRotationMatrix2D((cx, cy), angle, scale)
    m[0, 2] += tx
    m[1, 2] += ty
    return m


def cover(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to cover width × height, then centre-crop."""
    cv2 = _cv2()
    h, w = rgb.shape[:2]
    s = max(width / w, height / h)
    size = (max(width, round(w * s)), max(height, round(h * s)))
    resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    y0, x0 = (size[1] - height) // 2, (size[0] - width) // 2
    return resized[y0:y0 + height, x0:x0 + width]


def camera_move_clip(frames_in: np.ndarray, move: str, frames: int, amount: float, width: int, height: int,
                     center=(0.5, 0.5)) -> np.ndarray:
    """[frames, height, width, 3] float32 from [N, H, W, 3] float32 (N = 1: a still)."""
    cv2 = _cv2()
    out = []
    for i in range(frames):
        src = cover(frames_in[min(i, len(frames_in) - 1)], width, height)
        m = camera_matrix(move, i / max(frames - 1, 1), amount, width, height, center)
        out.append(cv2.warpAffine(src, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101))
    return np.stack(out)


def make_clips(images: torch.Tensor, moves: list[str], frames: int, amount: float, width: int, height: int,
               variations: int = 1, seed: int = 0) -> torch.Tensor:
    """IMAGE [clips·frames, height, width, 3]: for each move and variation, one clip. `images` [N, H, W, 3]: N = 1 a
    still, else a video whose frame i gets camera i (it needs at least `frames` frames)."""
    if frames < 2:
        raise TrainingError(f"frames must be at least 2 (got {frames}); 16 is what AnimateDiff trains on.")
    if images.shape[0] not in (1,) and images.shape[0] < frames:
        raise TrainingError(f"The video has {images.shape[0]} frames, fewer than the {frames} of a clip. Use a still "
                            f"image (one frame), load more frames, or lower frames.")
    rng = np.random.default_rng(seed)
    src = images.float().cpu().numpy().astype(np.float32)
    clips = []
    for move in moves:
        for v in range(variations):
            a, center = amount, (0.5, 0.5)
            if v > 0:
                a = amount * float(rng.uniform(0.75, 1.25))
                center = tuple(float(c) for c in rng.uniform(0.35, 0.65, 2))
            clips.append(camera_move_clip(src, move, frames, a, width, height, center))
    return torch.from_numpy(np.clip(np.concatenate(clips), 0, 1))
