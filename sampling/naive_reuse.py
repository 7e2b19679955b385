"""NaiveReuse (AnimateDiff-Evolved's context extra): every window's result pulled towards the first window's. Pure torch.

With context windows each window denoises its frames on its own, so colours and faces can wander from one window
to the next. NaiveReuse keeps the first window's model output of the step and lays it over the whole animation,
tiled every window length from the first window's first frame (frame f takes the first window's frame at position
(f - start) mod length), then blends it into the fused result: `w * first + (1 - w) * fused`, w = weighted_mean.
It runs only in the early steps (ADE's defaults: the first 15 %), where the layout and colours are decided.

ADE (animatediff/context_extras.py, NaiveReuseHandler) blends into the fused sums before they are divided by the
window weights; `w * first * counts + (1 - w) * sums`, divided by `counts`, is this blend after the division.
ADE caches `sums / counts` after the first window, which is the first window's output; here the output itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NaiveReuse:
    weighted_mean: float = 0.95
    start_percent: float = 0.0
    end_percent: float = 0.15

    def runs(self, sigma: float, start_sigma: float, end_sigma: float) -> bool:
        """ADE's ContextExtra.should_run (sigma inside the percent range) and weighted_mean above 0."""
        return end_sigma <= sigma <= start_sigma and self.weighted_mean > 0.0


def tiled_frames(first_window: list[int], frames: int) -> list[tuple[list[int], int]]:
    """(frames of the animation, how many of the first window's frames they take) per tile, as ADE's apply_cached."""
    length, start = len(first_window), first_window[0]
    tiles = []
    for z in range(0, frames, length):
        target = [(f + start) % frames for f in range(z, min(z + length, frames))]
        tiles.append((target, len(target)))
    return tiles


def reuse_first_window(fused: torch.Tensor, first: torch.Tensor, first_window: list[int],
                       weighted_mean: float) -> torch.Tensor:
    """`fused` (all frames on dim 0, already divided by the window weights) with the first window's output
    `first` (its frames on dim 0) tiled over the animation and blended in with weight `weighted_mean`."""
    out = fused.clone()
    for target, count in tiled_frames(first_window, fused.size(0)):
        out[target] = weighted_mean * first[:count].to(fused) + (1.0 - weighted_mean) * fused[target]
    return out
