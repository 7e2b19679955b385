"""PIA's motion strength: one mask value per frame, fed to its UNet beside the image latent.

From the paper code (open-mmlab/PIA, animatediff/utils/util.py `RANGE_LIST` and
`prepare_mask_coef_by_statistics`; inference.py for how presets are chosen):
* frame f gets `table[|f − cond_frame|]`, the table extended with its last value when the video is longer;
  1.0 at the image's frame, lower values = less like the image = more motion;
* presets are rows of `RANGE_LIST`: animation 0 (small), 1 (moderate), 2 (large); loop = animation + 3 (rows
  that climb back to 1.0 at frame 15, so a 16-frame clip from frame 0 ends on the image); style transfer of
  animation m = row −m−1 (small = the last row, large = [0.5, 0.2]), values from 0.5 down.

Explicit values: one per frame (frame 0 first), the last repeated for frames beyond them.
Pure Python/torch, no ComfyUI.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from .errors import PIAError

# Exactly the paper code's table (animatediff/utils/util.py), row order kept: rows are indexed as the original does,
# negative indices included.
RANGE_LIST = (
    (1.0, 0.9, 0.85, 0.85, 0.85, 0.8),  # 0 small motion
    (1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75),  # 1 moderate motion
    (1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5),  # 2 large motion
    (1.0, 0.9, 0.85, 0.85, 0.85, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.85, 0.85, 0.9, 1.0),  # 3 loop (small)
    (1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75, 0.75, 0.75, 0.75, 0.75, 0.78, 0.79, 0.8, 0.8, 1.0),  # 4 loop (moderate)
    (1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.8, 1.0),  # 5 loop (large)
    (0.5, 0.2),  # 6 = -3: style transfer, large motion
    (0.5, 0.4, 0.4, 0.4, 0.35, 0.35, 0.3, 0.25, 0.2),  # 7 = -2: style transfer, moderate motion
    (0.5, 0.4, 0.4, 0.4, 0.35, 0.3),  # 8 = -1: style transfer, small motion
)

SMALL, MODERATE, LARGE = 0, 1, 2  # inference.py's --magnitude


def animation(magnitude: int) -> int:
    return magnitude


def loop(magnitude: int) -> int:
    return magnitude + 3  # inference.py --loop


def style_transfer(magnitude: int) -> int:
    return -magnitude - 1  # inference.py --style_transfer


# name shown to the artist: RANGE_LIST row (as the original indexes it)
PRESETS = {
    "animation, small motion": animation(SMALL),
    "animation, moderate motion": animation(MODERATE),
    "animation, large motion": animation(LARGE),
    "loop, small motion": loop(SMALL),
    "loop, moderate motion": loop(MODERATE),
    "loop, large motion": loop(LARGE),
    "style transfer, small motion": style_transfer(SMALL),
    "style transfer, moderate motion": style_transfer(MODERATE),
    "style transfer, large motion": style_transfer(LARGE),
}
DEFAULT_PRESET = "animation, moderate motion"


@dataclass(frozen=True)
class MotionStrength:
    """Where the mask values come from: a RANGE_LIST row around the image's frame, or explicit values per frame."""
    row: int | None = None                       # RANGE_LIST index (a preset)
    cond_frame: int = 0                          # the frame that is the image (presets only)
    values: tuple[float, ...] | None = None      # explicit values, frame 0 first

    def mask_values(self, frames, total: int) -> list[float]:
        """The mask value of each of `frames` (absolute frame indices) of a video of `total` frames."""
        if self.values is not None:
            return [self.values[min(f, len(self.values) - 1)] for f in frames]
        table = RANGE_LIST[self.row]
        cond = self.cond_frame if self.cond_frame >= 0 else total + self.cond_frame
        if not 0 <= cond < total:
            raise PIAError(f"PIA: the image's frame is {self.cond_frame}, but the animation has {total} frames "
                           f"(0 to {total - 1}; negative counts from the end). Choose a frame inside the animation.")
        return [table[min(abs(f - cond), len(table) - 1)] for f in frames]

    def mask(self, frames, total: int, height: int, width: int) -> torch.Tensor:
        """[len(frames), 1, height, width]: each frame's value everywhere."""
        values = torch.tensor(self.mask_values(frames, total), dtype=torch.float32)
        return values[:, None, None, None].expand(-1, 1, height, width)


def preset_strength(preset: str, cond_frame: int = 0) -> MotionStrength:
    if preset not in PRESETS:
        raise PIAError(f"PIA: unknown motion preset '{preset}'. Choose one of: {', '.join(PRESETS)}.")
    return MotionStrength(row=PRESETS[preset], cond_frame=cond_frame)


def parse_values(text: str) -> tuple[float, ...]:
    """'1.0, 0.8, 0.75' (commas, spaces or new lines between) -> the values, each checked to lie in [0, 1]."""
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    values = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise PIAError(f"PIA: '{p}' in the per-frame values is not a number. Write one value per frame, frame 0 "
                           f"first, e.g. '1.0, 0.8, 0.8, 0.75' (1 = the image, lower = more motion).") from None
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise PIAError(f"PIA: per-frame value {p} lies outside 0 to 1. PIA was trained with values from 0.2 "
                           f"(style transfer, most motion) to 1.0 (the image itself).")
        values.append(v)
    if not values:
        raise PIAError("PIA: the per-frame values are empty. Write one value per frame, e.g. '1.0, 0.8, 0.75', or "
                       "leave them empty and choose a preset.")
    return tuple(values)


def strength_of(preset: str, cond_frame: int = 0, values: str = "") -> MotionStrength:
    """A preset, unless explicit values are given (they win)."""
    if values.strip():
        return MotionStrength(values=parse_values(values))
    return preset_strength(preset, cond_frame)
