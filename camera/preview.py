"""A small picture of a camera path, to check poses before sampling: three views of the camera relative to its first
pose (what CameraCtrl sees, poses.relative_c2w), each scaled to fit and drawn with PIL.

* top view:   x (right) across, z (forward) up the picture; an arrow per frame shows where the camera looks;
* side view:  z (forward) across, y up the picture (OpenCV's y points down, so it is flipped); arrows as above;
* back view:  x across, y up, seen from behind the camera; a tick per frame shows the camera's up direction, so a
  roll (which moves nothing) shows as ticks turning.

Colour runs from blue (first frame) to red (last); the first camera is a ring.
"""
from __future__ import annotations

import numpy as np

from .poses import CameraPoses, relative_c2w

PANEL = 192
MARGIN = 18
BACKGROUND, AXIS, TEXT = (24, 24, 28), (70, 70, 80), (200, 200, 210)
VIEWS = (  # title, (horizontal axis, sign), (vertical axis, sign; + = up the picture), what the marks show
    ("top (x, z)", (0, 1), (2, 1), "forward"),
    ("side (z, -y)", (2, 1), (1, -1), "forward"),
    ("back (x, -y)", (0, 1), (1, -1), "up"),
)


def _colour(t: float) -> tuple[int, int, int]:
    return int(60 + 195 * t), int(110 - 40 * t), int(255 - 195 * t)


def camera_path_picture(poses: CameraPoses, panel: int = PANEL) -> np.ndarray:
    """[H, W, 3] uint8: the three views side by side."""
    from PIL import Image, ImageDraw

    c2w = relative_c2w(poses).astype(np.float64)
    centres = c2w[:, :3, 3]
    forward = c2w[:, :3, 2]
    up = -c2w[:, :3, 1]
    extent = float(np.abs(centres - centres.mean(0)).max()) if len(centres) else 0.0
    # the marks' length: a fifth of the path's size, at least enough to read on a still camera
    span = max(extent, 0.5)
    mark = 0.35 * span
    frames = len(centres)
    image = Image.new("RGB", (panel * len(VIEWS), panel), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for v, (title, (h_axis, h_sign), (v_axis, v_sign), marks) in enumerate(VIEWS):
        left = v * panel
        mid = centres.mean(0)
        scale = (panel / 2 - MARGIN) / (span + mark)

        def to_px(p):
            return (left + panel / 2 + h_sign * (p[h_axis] - mid[h_axis]) * scale,
                    panel / 2 - v_sign * (p[v_axis] - mid[v_axis]) * scale)

        draw.rectangle([left, 0, left + panel - 1, panel - 1], outline=AXIS)
        draw.text((left + 5, 3), title, fill=TEXT)
        vectors = forward if marks == "forward" else up
        for i in range(frames):
            t = i / max(frames - 1, 1)
            a = to_px(centres[i])
            b = to_px(centres[i] + vectors[i] * mark)
            draw.line([a, b], fill=_colour(t), width=1)
        path = [to_px(c) for c in centres]
        if len(path) > 1:
            for i in range(len(path) - 1):
                draw.line([path[i], path[i + 1]], fill=_colour((i + 0.5) / (frames - 1)), width=2)
        x, y = path[0]
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline=_colour(0.0), width=2)
        x, y = path[-1]
        draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=_colour(1.0))
    draw.text((4, panel - 14), f"{frames} frames", fill=TEXT)
    return np.asarray(image, dtype=np.uint8)
