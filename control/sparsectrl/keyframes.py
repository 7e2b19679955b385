"""Where SparseCtrl's keyframe images go in an animation, and what each (window of) frames gets. Pure python/torch.

The original pipeline (AnimateDiff v3 `controlnet_image_index`) puts image i at frame index[i] (negative
indices count from the end), gives those frames the condition and mask 1, and every other frame a zero
condition and mask 0. Here the indices can also be spread over the animation, and a context window gets
the hints inside it, re-indexed to the window.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import SparseCtrlError

INDICES, UNIFORM, FROM_START, TO_END, CENTRED = "indices", "uniform", "from start", "to end", "centred"
PLACEMENTS = (INDICES, UNIFORM, FROM_START, TO_END, CENTRED)
# What a context window with no hint inside gets: nothing (the encoder is not run, no residual is added); the
# nearest hint; or the encoder run on a zero condition and mask 0 for every frame, its residuals added (scaled by
# nonhint_multiplier): Advanced-ControlNet's behaviour, and MotionKit's before "no control" meant none.
NO_CONTROL, NEAREST_HINT, ZERO_CONDITION = "no control", "nearest hint", "zero condition"
EMPTY_WINDOW = (NO_CONTROL, NEAREST_HINT, ZERO_CONDITION)


@dataclass(frozen=True)
class KeyframeSettings:
    """What the SparseCtrl Keyframes node sets on a SparseCtrl control (defaults: the loader's own)."""
    placement: str = UNIFORM
    indices: tuple[int, ...] = ()
    hint_multiplier: float = 1.0      # scales the encoder's residuals on frames with a hint
    nonhint_multiplier: float = 1.0   # ... and on the other frames
    motion_strength: float = 1.0      # the encoder's own motion modules (1 = as trained, 0 = none)
    empty_window: str = NO_CONTROL    # a context window with no hint inside it


def parse_indices(text: str) -> tuple[int, ...]:
    """'0, 8, -1' -> (0, 8, -1). Commas or spaces separate; negative counts from the end."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts:
        raise SparseCtrlError("SparseCtrl Keyframes: 'indices' is empty. Give one frame per hint image, e.g. '0, -1' "
                              "for the first and last frame, or choose a spread placement.")
    out = []
    for p in parts:
        if not re.fullmatch(r"[+-]?\d+", p):
            raise SparseCtrlError(f"SparseCtrl Keyframes: '{p}' in indices '{text}' is not a whole number. Write frame "
                                  f"numbers from 0 separated by commas, e.g. '0, 8, -1' (-1 = the last frame).")
        out.append(int(p))
    return tuple(out)


def spread(method: str, images: int, frames: int) -> list[int]:
    """`images` frames spread over `frames`: uniform (first and last frame included), from start (every
    frames/n from 0), to end (the same, ending on the last frame), centred (the same, centred)."""
    step = frames / images
    if method == UNIFORM:
        if images == 1:
            return [0]
        return [math.floor(i * (frames - 1) / (images - 1) + 0.5) for i in range(images)]
    if method == FROM_START:
        return [math.floor(i * step + 0.5) for i in range(images)]
    if method == TO_END:
        return [frames - 1 - math.floor((images - 1 - i) * step + 0.5) for i in range(images)]
    if method == CENTRED:
        return [min(frames - 1, math.floor((i + 0.5) * step)) for i in range(images)]
    raise SparseCtrlError(f"Unknown SparseCtrl placement '{method}'; choose one of {', '.join(PLACEMENTS)}.")


def hint_frames(settings: KeyframeSettings, images: int, frames: int) -> list[int]:
    """The frame of each hint image (image i -> result[i]) in an animation of `frames` frames."""
    if images == 0:
        raise SparseCtrlError("SparseCtrl got no hint images. Connect the keyframe images to Apply ControlNet's image input.")
    if settings.placement != INDICES:
        if images > frames:
            raise SparseCtrlError(f"SparseCtrl got {images} hint images for an animation of {frames} frames. Give at "
                                  f"most one image per frame, or make the animation longer (the latent batch size).")
        return spread(settings.placement, images, frames)
    indices = settings.indices
    if len(indices) != images:
        more = "indices than images" if len(indices) > images else "images than indices"
        raise SparseCtrlError(
            f"SparseCtrl Keyframes has {len(indices)} indices ({', '.join(map(str, indices))}) for {images} hint images "
            f"(more {more}). Give exactly one index per image in the batch connected to Apply ControlNet.")
    out = []
    for i in indices:
        frame = i + frames if i < 0 else i
        if not 0 <= frame < frames:
            raise SparseCtrlError(
                f"SparseCtrl Keyframes: index {i} is outside the animation of {frames} frames (use 0..{frames - 1}, "
                f"or -1..-{frames} from the end). Change the index or the latent batch size.")
        if frame in out:
            raise SparseCtrlError(f"SparseCtrl Keyframes: index {i} puts a second image on frame {frame}. Give each "
                                  f"image its own frame.")
        out.append(frame)
    return out


def window_hints(frames_of_hints: list[int], window: list[int], empty: str = NO_CONTROL) -> list[tuple[int, int]]:
    """(position in the window, image index) of each hint inside `window` (frame numbers of the animation).
    A window with none gets no hint (`no control`, `zero condition`) or the hint nearest to it, on the window
    frame nearest to that hint (`nearest hint`; ties go to the earlier hint)."""
    position = {f: j for j, f in enumerate(window)}
    pairs = [(position[f], i) for i, f in enumerate(frames_of_hints) if f in position]
    if pairs or empty != NEAREST_HINT or not frames_of_hints:
        return pairs
    distance, image = min((min(abs(f - w) for w in window), i) for i, f in enumerate(frames_of_hints))
    f = frames_of_hints[image]
    j = min(range(len(window)), key=lambda j: (abs(window[j] - f), j))
    return [(j, image)]


def place(images: torch.Tensor, pairs: list[tuple[int, int]], frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(condition, mask) for `frames` frames: image i on position j for each (j, i), zeros and mask 0 elsewhere."""
    cond = images.new_zeros((frames,) + tuple(images.shape[1:]))
    mask = images.new_zeros((frames, 1) + tuple(images.shape[2:]))
    for j, i in pairs:
        cond[j] = images[i]
        mask[j] = 1.0
    return cond, mask


def frame_multipliers(pairs, frames: int, hint: float, nonhint: float) -> torch.Tensor | None:
    """Per-frame factor for the encoder's residuals; None when both are 1 (nothing to scale)."""
    if hint == 1.0 and nonhint == 1.0:
        return None
    m = torch.full((frames,), float(nonhint))
    for j, _ in pairs:
        m[j] = float(hint)
    return m


def cover_resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, c, h, w) -> (n, c, height, width): scaled to cover, centre-cropped, bilinear with antialiasing
    (the original's RandomResizedCrop at scale 1 and the animation's aspect ratio, centred)."""
    n, c, h, w = images.shape
    if (h, w) == (height, width):
        return images
    scale = max(height / h, width / w)
    sh, sw = max(height, round(h * scale)), max(width, round(w * scale))
    out = F.interpolate(images.float(), size=(sh, sw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (sh - height) // 2, (sw - width) // 2
    return out[:, :, top:top + height, left:left + width].to(images.dtype)
