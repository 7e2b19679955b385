"""Context windows over the frame axis: the parts ComfyUI core does not provide. Pure torch.

Core (comfy/context_windows.py) already has the window schedules (static, uniform, looped uniform,
batched) and the pyramid / flat / relative / overlap-linear fuse weights; MotionKit uses those as they
are (sampling/context_handler.py). Here: the names artists pick from, the settings check, the gaussian
fuse weights and Moore-AnimateAnyone's fixed wrapping windows core lacks, and three repairs of core 0.3.64's windows: the strides that fit
(usable_stride), the frames its strided schedule misses (fill_gaps), and which sampling step a sigma
belongs to (step_index: core's lookup fails when the frames ride in the batch).
"""
from __future__ import annotations

import math

import torch

from .errors import ContextWindowError

# what the artist picks -> core's schedule name (comfy.context_windows.ContextSchedules); the last is MotionKit's
FIXED_UNIFORM = "uniform fixed (Animate Anyone)"
SCHEDULES = {
    "uniform": "standard_uniform",
    "uniform looped": "looped_uniform",
    "static": "standard_static",
    "batched": "batched",
    FIXED_UNIFORM: "motionkit_fixed_uniform",
}
WRAPPING = ("uniform looped", FIXED_UNIFORM)  # schedules whose windows run from the last frame to the first
GAUSSIAN = "gaussian"
FUSE_METHODS = ["pyramid", "flat", GAUSSIAN, "relative", "overlap-linear"]  # all but gaussian are core's


def check_settings(context_length: int, context_overlap: int, schedule: str, fuse_method: str) -> None:
    if schedule not in SCHEDULES:
        raise ContextWindowError(f"Unknown context schedule '{schedule}'. Choose one of: {', '.join(SCHEDULES)}.")
    if fuse_method not in FUSE_METHODS:
        raise ContextWindowError(f"Unknown fuse_method '{fuse_method}'. Choose one of: {', '.join(FUSE_METHODS)}.")
    if fuse_method == "relative" and schedule in WRAPPING:
        raise ContextWindowError("fuse_method 'relative' weighs frames by their distance to a window's centre, which "
                                 "is undefined for windows that wrap from the last frame to the first: use pyramid, "
                                 f"flat or gaussian with the '{schedule}' schedule.")
    if context_length < 1:
        raise ContextWindowError(f"context_length is {context_length}: set it to the frames the motion model sees "
                                 f"at once (16 for AnimateDiff).")
    if context_overlap < 0 or context_overlap >= context_length:
        raise ContextWindowError(
            f"context_overlap ({context_overlap}) must be at least 0 and smaller than context_length "
            f"({context_length}), or the windows never move on. Set context_overlap to at most {context_length - 1}; "
            f"about a quarter of the length (e.g. 4 for 16) is typical.")


def usable_stride(frames: int, context_length: int, context_stride: int) -> int:
    """The largest context_stride (at most the one set) whose windows fit in the frames.

    A uniform schedule's stride s adds windows that take every 2**(s-1)-th frame, spanning
    context_length * 2**(s-1) frames. Core 0.3.64 allows one stride more than fits (40 frames, length 16:
    stride 3, a span of 64) and then returns frames past the end (standard) or the same frames twice
    (looped), and its standard schedule can leave frames uncovered."""
    stride = 1
    while stride < context_stride and context_length * 2 ** stride <= frames:
        stride += 1
    return stride


def fixed_uniform_windows(frames: int, context_length: int, context_overlap: int, stride: int = 1) -> list[list[int]]:
    """Moore-AnimateAnyone's windows (src/pipelines/context.py `uniform`, as pipeline_pose2vid_long.py calls it).

    Its pipeline asks the uniform schedule for step 0 at every timestep, with closed_loop on, so the windows never
    move: they start at 0 and every context_length - context_overlap frames after, up to the last frame, and the
    last ones wrap round to the first frames (48 frames, 24/4: 0-23, 20-43, 40-47 + 0-15). Core's uniform
    schedules shift the windows every step (the step's `ordered_halving` offset), and its standard one never
    wraps. `stride` (at most usable_stride) adds windows over every 2nd, 4th, ... frame as the original's does;
    its pipeline uses 1. No frame is left out, so no fill_gaps."""
    if frames <= context_length:
        return [list(range(frames))]
    windows = []
    for step in (2 ** i for i in range(stride)):
        for start in range(0, frames, context_length * step - context_overlap):
            windows.append([f % frames for f in range(start, start + context_length * step, step)])
    return windows


def fill_gaps(windows: list[list[int]], frames: int, context_length: int) -> list[list[int]]:
    """`windows` plus a window for each run of frames none of them holds.

    Core 0.3.64's standard uniform schedule with a stride can skip frames (38 frames, length 16, overlap 4,
    stride 2, step 2: frames 1, 3 and 5), and a frame no window holds would come out as 0/0."""
    covered = set().union(*map(set, windows)) if windows else set()
    out = list(windows)
    for frame in range(frames):
        if frame not in covered:
            start = max(0, min(frame, frames - context_length))
            window = list(range(start, min(start + context_length, frames)))
            out.append(window)
            covered.update(window)
    return out


def gaussian_weights(length: int) -> list[float]:
    """Bell-shaped weights over a window's positions (sigma = length / 4): frames near a window's middle
    count most, its edges (about 0.14 of the middle) least, never zero, so every covered frame keeps a weight."""
    if length == 1:
        return [1.0]
    centre, sigma = (length - 1) / 2, length / 4
    return [math.exp(-0.5 * ((p - centre) / sigma) ** 2) for p in range(length)]


def step_index(sample_sigmas: torch.Tensor | None, timestep: torch.Tensor, previous: int) -> int:
    """The sampling step whose sigma this model call is at (uniform schedules shift their windows by step).

    Every frame of the batch has the same sigma, so the first is enough (core 0.3.64 compares all of them
    with the sigma list and fails on the shape). A sub-step of a multi-step sampler (heun, dpm_2, ...)
    sits between two listed sigmas: it keeps the windows of its step."""
    if sample_sigmas is None:
        return previous
    sigma = timestep.reshape(-1)[0].to(sample_sigmas)
    matches = torch.nonzero(torch.isclose(sample_sigmas, sigma, rtol=1e-4))
    return int(matches[0].item()) if matches.numel() else previous
