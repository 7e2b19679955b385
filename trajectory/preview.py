"""A TRAJECTORY as pictures: flow colours (the Middlebury colour wheel, as Tora's flow_to_image) and the paths.

Per frame the flow is scaled by its largest vector (so faint blurred flow still shows), the direction picks
the hue and the length the saturation: no motion is white. Over a background image, the colour is laid on
with the flow's relative length as opacity. The drawn paths are lines with a dot at each frame's position.
"""
from __future__ import annotations

import numpy as np
import torch

from .encoding import Trajectory

# hue segments of the wheel (Baker et al., ICCV 2007): red-yellow, yellow-green, green-cyan, cyan-blue,
# blue-magenta, magenta-red
_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))
PATH_COLOURS = ((255, 64, 64), (64, 160, 255), (64, 200, 64), (255, 180, 0), (200, 64, 255), (0, 200, 200))


def colour_wheel() -> np.ndarray:
    """[55, 3] RGB in 0..255: from red through yellow, green, cyan, blue, magenta back to red."""
    rows = []
    for name, n in _SEGMENTS:
        ramp = np.floor(255 * np.arange(n) / n)
        up, down, full, zero = ramp, 255 - ramp, np.full(n, 255.0), np.zeros(n)
        rows.append({"RY": (full, up, zero), "YG": (down, full, zero), "GC": (zero, full, up),
                     "CB": (zero, down, full), "BM": (up, zero, full), "MR": (full, zero, down)}[name])
    return np.concatenate([np.stack(r, axis=1) for r in rows])


def flow_colours(flow: np.ndarray) -> np.ndarray:
    """[H, W, 2] flow -> [H, W, 3] uint8 colours, scaled by the frame's largest vector."""
    u, v = flow[..., 0], flow[..., 1]
    rad_max = np.sqrt(u * u + v * v).max()
    u, v = u / (rad_max + 1e-5), v / (rad_max + 1e-5)
    wheel = colour_wheel()
    n = len(wheel)
    rad = np.sqrt(u * u + v * v)
    fk = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (n - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % n
    f = (fk - k0)[..., None]
    col = (1 - f) * wheel[k0] / 255.0 + f * wheel[k1] / 255.0
    inside = (rad <= 1)[..., None]
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
    return np.floor(255 * col).astype(np.uint8)


def _background(image: torch.Tensor | None, frame: int, width: int, height: int) -> np.ndarray | None:
    if image is None:
        return None
    img = image[min(frame, image.shape[0] - 1)].float()
    if img.shape[0] != height or img.shape[1] != width:
        img = torch.nn.functional.interpolate(img.movedim(-1, 0)[None], size=(height, width), mode="bilinear",
                                              align_corners=False)[0].movedim(0, -1)
    return img[..., :3].clamp(0, 1).cpu().numpy()


def render(traj: Trajectory, background: torch.Tensor | None = None, draw_paths: bool = True) -> torch.Tensor:
    """IMAGE [F, H, W, 3] in 0..1."""
    from PIL import Image, ImageDraw

    flow = traj.flow.cpu().numpy()
    frames = []
    radius = max(2, round(min(traj.width, traj.height) / 80))
    for k in range(traj.frames):
        colours = flow_colours(flow[k]).astype(np.float32) / 255.0
        bg = _background(background, k, traj.width, traj.height)
        if bg is not None:
            rad = np.linalg.norm(flow[k], axis=-1)
            alpha = (rad / (rad.max() + 1e-5))[..., None]
            colours = bg * (1 - alpha) + colours * alpha
        img = Image.fromarray(np.round(colours * 255).astype(np.uint8))
        if draw_paths:
            draw = ImageDraw.Draw(img)
            for i, pos in enumerate(traj.positions):
                colour = PATH_COLOURS[i % len(PATH_COLOURS)]
                pts = [tuple(map(float, p)) for p in pos.tolist() if not np.isnan(p).any()]
                if len(pts) > 1:
                    draw.line(pts, fill=colour, width=max(1, radius // 2))
                if not np.isnan(pos[k].numpy()).any():
                    x, y = map(float, pos[k].tolist())
                    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour, outline=(0, 0, 0))
        frames.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0))
    return torch.stack(frames)
