"""Motion-only windows: the spatial UNet sees every frame of a UNet call at once, and only the motion modules'
temporal attention runs in overlapping windows of those frames (AnimateDiff-Evolved's "view options"). Pure torch.

Written from ADE's definition (Kosinkadink/ComfyUI-AnimateDiff-Evolved at 90fb133):
* windows: animatediff/context.py, `get_context_windows` over the frames of the UNet call (under context windows:
  the context window's frames, numbered 0..n-1 within it), at the sampling step (`ordered_halving(step)` shifts the
  uniform schedules); `create_windows_*` below follow its code line by line.
* where they act: motion_module_ad.py TemporalTransformerBlock.forward. GroupNorm and proj_in run over all frames;
  per window, the attention sublayers (`h = h + attention(norm(h) + pe)`, the positional encoding 0..len-1 of the
  window, attention-scale masks cut to the window's frames); the windows' results are averaged per frame with the
  fuse weights (`get_context_weights(len(window), frames, window, ...)`); then the feed-forward and proj_out over
  all frames. Windows are active only when the call holds more frames than one window (ADE's view options
  without use_on_equal_length).
* fuse weights: context.py FUSE_MAPPING (the sigma-dependent ones take the call's sigma).
The sampling step is the index of the call's sigma in the sampling run's sigmas, as core's context handler finds it
(sampling.context.step_index); ADE counts steps from KSamplerAdvanced's start_at_step instead, so with a start step
above 0 its uniform windows are those of a later step.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from einops import rearrange

from .errors import MotionWindowsError
from .model import PER_FRAME, sinusoidal_table

# transformer_options entry: the MotionWindows a MODEL's motion modules run in (set by the Motion-Only Windows node)
KEY = "motionkit_motion_windows"

# what the artist picks -> ADE's schedule (context.py ContextSchedules); names as on 'Context Windows (Motion)'
SCHEDULES = {
    "uniform": "standard_uniform",
    "uniform looped": "looped_uniform",
    "static": "standard_static",
    "batched": "batched",
}
# ADE's view-options fuse methods (ContextFuseMethod.LIST), without "random" (not reproducible)
FUSE_METHODS = ["pyramid", "flat", "overlap-linear", "delayed reverse sawtooth", "pyramid-sigma",
                "pyramid-sigma inverse", "gauss-sigma", "gauss-sigma inverse"]


@dataclass(frozen=True)
class MotionWindows:
    """How the motion modules window the frames of each UNet call (and how the spatial pass is batched)."""
    context_length: int = 16
    context_overlap: int = 4
    schedule: str = "uniform"
    fuse_method: str = "pyramid"
    context_stride: int = 1
    closed_loop: bool = False
    spatial_batch_limit: int = 0  # frames per spatial-transformer pass (0 = all at once): motion.spatial_batch

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise MotionWindowsError(f"Unknown motion-window schedule '{self.schedule}'. Choose one of: "
                                     f"{', '.join(SCHEDULES)}.")
        if self.fuse_method not in FUSE_METHODS:
            raise MotionWindowsError(f"Unknown motion-window fuse_method '{self.fuse_method}'. Choose one of: "
                                     f"{', '.join(FUSE_METHODS)}.")
        if self.context_length < 1:
            raise MotionWindowsError(f"Motion-Only Windows: context_length is {self.context_length}; set it to the "
                                     f"frames the motion model sees at once (16 for AnimateDiff).")
        if self.schedule != "batched" and not 0 <= self.context_overlap < self.context_length:
            raise MotionWindowsError(
                f"Motion-Only Windows: context_overlap ({self.context_overlap}) must be at least 0 and smaller than "
                f"context_length ({self.context_length}), or the windows never move on. Set it to at most "
                f"{self.context_length - 1}; about a quarter of the length (e.g. 4 for 16) is typical.")
        if self.context_stride < 1 or self.spatial_batch_limit < 0:
            raise MotionWindowsError("Motion-Only Windows: context_stride must be at least 1 and spatial_batch_limit "
                                     "at least 0 (0 = all frames at once).")

    @property
    def overlap(self) -> int:
        return 0 if self.schedule == "batched" else self.context_overlap  # ADE's batched windows never overlap

    def active(self, frames: int) -> bool:
        """Whether a call of `frames` frames is windowed (more frames than one window holds)."""
        return frames > self.context_length

    def frames_per_pass(self, frames: int) -> int:
        """The most frames one motion-module pass sees in a call of `frames` frames."""
        return min(frames, self.context_length)


# ---- ADE's schedules (context.py), over frames 0..n-1 of the call -------------------------------------------------

def ordered_halving(val: int) -> float:
    """val's 64 bits reversed, as a fraction of 2**64: 0, 1/2, 1/4, 3/4, 1/8, ... (ADE's / neggles')."""
    return int(f"{val:064b}"[::-1], 2) / (1 << 64)


def _stride(frames: int, s: MotionWindows) -> int:
    return min(s.context_stride, int(np.ceil(np.log2(frames / s.context_length))) + 1)


def _uniform(frames: int, s: MotionWindows, step: int, end_extra: int) -> list[list[int]]:
    windows = []
    for context_step in 1 << np.arange(_stride(frames, s)):
        pad = int(round(frames * ordered_halving(step)))
        for j in range(int(ordered_halving(step) * context_step) + pad, frames + pad + end_extra,
                       (s.context_length * context_step - s.overlap)):
            windows.append([e % frames for e in range(j, j + s.context_length * context_step, context_step)])
    return windows


def _rolls_over(window: list[int], frames: int) -> tuple[bool, int]:
    previous = -1
    for i, value in enumerate(window):
        value = value % frames
        if value < previous:
            return True, i
        previous = value
    return False, -1


def _shift_to_end(window: list[int], frames: int) -> None:
    start = window[0]
    for i in range(len(window)):
        window[i] = ((window[i] - start) + frames) % frames
    end_delta = frames - window[-1] - 1
    for i in range(len(window)):
        window[i] = window[i] + end_delta


def uniform_looped(frames: int, s: MotionWindows, step: int) -> list[list[int]]:
    if frames < s.context_length:
        return [list(range(frames))]
    return _uniform(frames, s, step, 0 if s.closed_loop else -s.overlap)


def uniform_standard(frames: int, s: MotionWindows, step: int) -> list[list[int]]:
    """The looped windows, those that wrap shifted flush with the end (plus a window from the frame they wrapped
    at, when the next window lacks it), and repeated windows dropped."""
    if frames <= s.context_length:
        return [list(range(frames))]
    windows = _uniform(frames, s, step, -s.overlap)
    delete = []
    i = 0
    while i < len(windows):
        rolls, at = _rolls_over(windows[i], frames)
        if rolls:
            value = windows[i][at]
            _shift_to_end(windows[i], frames)
            if value not in windows[(i + 1) % len(windows)]:
                windows.insert(i + 1, list(range(value, value + s.context_length)))
        if any(windows[i] == windows[p] for p in range(i)):
            delete.append(i)
        i += 1
    for i in reversed(delete):
        windows.pop(i)
    return windows


def static_standard(frames: int, s: MotionWindows, step: int = 0) -> list[list[int]]:
    if frames <= s.context_length:
        return [list(range(frames))]
    windows = []
    for start in range(0, frames, s.context_length - s.overlap):
        if start + s.context_length >= frames:  # the last window, moved back to end on the last frame
            start -= start + s.context_length - frames
            windows.append(list(range(start, start + s.context_length)))
            break
        windows.append(list(range(start, start + s.context_length)))
    return windows


def batched(frames: int, s: MotionWindows, step: int = 0) -> list[list[int]]:
    return [list(range(start, min(start + s.context_length, frames))) for start in range(0, frames, s.context_length)]


SCHEDULE_FUNCTIONS = {"uniform": uniform_standard, "uniform looped": uniform_looped, "static": static_standard,
                      "batched": batched}


def valid(windows: list[list[int]], frames: int) -> bool:
    """Every frame in some window, and no window past the last frame."""
    return all(0 <= f < frames for w in windows for f in w) and len({f for w in windows for f in w}) == frames


def windows_of(frames: int, s: MotionWindows, step: int) -> list[list[int]]:
    """ADE's windows. One repair: ADE's uniform (standard) schedule with a stride above 1 can make windows past the
    last frame (its sampling then fails with an IndexError) or leave frames in no window (0/0); there the largest
    smaller stride whose windows are whole is used (stride 1 always is)."""
    if s.schedule != "uniform":
        return SCHEDULE_FUNCTIONS[s.schedule](frames, s, step)
    for stride in range(s.context_stride, 0, -1):
        windows = uniform_standard(frames, replace(s, context_stride=stride), step)
        if stride == 1 or valid(windows, frames):
            return windows


# ---- ADE's fuse weights (context.py FUSE_MAPPING) -----------------------------------------------------------------

def _half(length: int) -> int:
    return length // 2 if length % 2 == 0 else (length + 1) // 2


def pyramid(length: int) -> list[float]:
    top = _half(length)
    if length % 2 == 0:
        return list(range(1, top + 1)) + list(range(top, 0, -1))
    return list(range(1, top)) + [top] + list(range(top - 1, 0, -1))


def _centre_only(length: int) -> np.ndarray:
    top = _half(length)
    if length % 2 == 0:
        return np.array([-top] * (top - 1) + [top, top] + [-top] * (top - 1))
    return np.array([-top] * (top - 1) + [top] + [-top] * (top - 1))  # ADE's has one too many here (fails)


def pyramid_sigma(length: int, sigma: float, inverse: bool) -> list[float]:
    """Pyramid at high noise (sigma >= 4) turning into the window's centre only at sigma 0 (inverse: the reverse)."""
    s = min(4.0, sigma) / 4.0
    a, b = np.array(pyramid(length)), _centre_only(length)
    if inverse:
        a, b = b, a
    return list((s * a + (1.0 - s) * b).clip(0.001, _half(length)))


def gauss_sigma(length: int, sigma: float, inverse: bool) -> list[float]:
    """A bell over the window, wide at high noise and narrow at low (inverse: the reverse)."""
    s = min(4.0, sigma) / 4.0
    std = 1.0 + 8.0 * ((1.0 - s) if inverse else s)
    ax = np.linspace(-(length - 1) / 2., (length - 1) / 2., length)
    w = np.exp(-0.5 * np.square(ax) / np.square(std))
    return list(w * _half(length) / np.linalg.norm(w))


def delayed_reverse_sawtooth(length: int) -> list[float]:
    """0.01 over the first half, then falling from the middle to the end."""
    top = _half(length)
    if length % 2 == 0:
        return [0.01] * (top - 1) + [top] + list(range(top, 0, -1))
    return [0.01] * (top - 1) + [top] + list(range(top - 1, 0, -1))  # ADE's has one weight too many here (fails)


def overlap_linear(window: list[int], frames: int, overlap: int) -> torch.Tensor:
    """1 everywhere, ramps over the overlap on the sides that meet another window (not at frame 0 / the last)."""
    weights = torch.ones(len(window))
    if overlap == 0:  # nothing to ramp (ADE's own ramp fails on an empty overlap)
        return weights
    if min(window) > 0:
        weights[:overlap] = torch.linspace(1e-37, 1, overlap)
    if max(window) < frames - 1:
        weights[-overlap:] = torch.linspace(1, 1e-37, overlap)
    return weights


def fuse_weights(window: list[int], frames: int, s: MotionWindows, sigma: float) -> torch.Tensor:
    """The window's weight per position (float32, as ADE's torch.Tensor(weights))."""
    n, method = len(window), s.fuse_method
    if method == "overlap-linear":
        return overlap_linear(window, frames, s.overlap)
    values = {"pyramid": lambda: pyramid(n), "flat": lambda: [1.0] * n,
              "delayed reverse sawtooth": lambda: delayed_reverse_sawtooth(n),
              "pyramid-sigma": lambda: pyramid_sigma(n, sigma, False),
              "pyramid-sigma inverse": lambda: pyramid_sigma(n, sigma, True),
              "gauss-sigma": lambda: gauss_sigma(n, sigma, False),
              "gauss-sigma inverse": lambda: gauss_sigma(n, sigma, True)}[method]()
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


# ---- one UNet call -----------------------------------------------------------------------------------------------

def sampling_step(transformer_options: dict) -> int:
    """The step of this call in the sampling run: the index of its sigma among the run's sigmas (a sub-step of a
    multi-step sampler, between two, belongs to the step before it)."""
    sample_sigmas, sigmas = transformer_options.get("sample_sigmas"), transformer_options.get("sigmas")
    if sample_sigmas is None or sigmas is None:
        return 0
    sigma = sigmas.reshape(-1)[0].to(sample_sigmas)
    at_or_above = torch.nonzero(sample_sigmas >= sigma * (1 - 1e-4)).reshape(-1)
    return int(at_or_above[-1].item()) if at_or_above.numel() else 0


@dataclass(frozen=True)
class CallWindows:
    """The motion windows of one UNet call: frame lists (0..frames-1 of the call) and their fuse weights."""
    windows: tuple[tuple[int, ...], ...]
    weights: tuple[torch.Tensor, ...]
    pieces: int = 1  # the feed-forward runs on this many slices of the pixels (spatial_batch_limit), same result

    def delta(self, transformer, x: torch.Tensor, frames: int, norm_mode: str, key_scale=None) -> torch.Tensor:
        """motion.model.TemporalTransformer.delta with its attention sublayers run per window and fused (ADE's
        views): norm, proj_in, feed-forward and proj_out see all frames."""
        if norm_mode == PER_FRAME:
            h = transformer.norm(x)
        else:  # statistics over all frames of a batch item, as without windows
            h = rearrange(transformer.norm(rearrange(x, "(b f) c h w -> b c f h w", f=frames)),
                          "b c f h w -> (b f) c h w")
        height, width = h.shape[-2:]
        h = transformer.proj_in(rearrange(h, "(b f) c h w -> (b h w) f c", f=frames))
        if isinstance(key_scale, torch.Tensor):
            key_scale = rearrange(key_scale, "(b f) 1 h w -> (b h w) f 1", f=frames).contiguous()
        for block in transformer.transformer_blocks:
            h = self.attend(block, h, key_scale, transformer.channels)
            # per pixel and frame: in slices, its memory is that of spatial_batch_limit frames
            h = torch.cat([part + block.ff(block.ff_norm(part)) for part in h.tensor_split(self.pieces)])
        h = transformer.proj_out(h)
        return rearrange(h, "(b h w) f c -> (b f) c h w", h=height, w=width)

    def attend(self, block, h: torch.Tensor, key_scale, channels: int) -> torch.Tensor:
        """The block's attention sublayers on each window's frames, averaged per frame by the fuse weights."""
        total, count = torch.zeros_like(h), torch.zeros_like(h[:1, :, :1])
        for window, weights in zip(self.windows, self.weights):
            index = list(window)
            part = h[:, index]
            pe = sinusoidal_table(len(index), channels, device=h.device, dtype=h.dtype)
            scale = key_scale[:, index] if isinstance(key_scale, torch.Tensor) else key_scale
            for attention, norm in zip(block.attention_blocks, block.norms):
                part = part + attention(norm(part) + pe, scale)
            w = weights.to(h.device)[None, :, None]
            total[:, index] += part * w  # as ADE: a frame twice in one window counts once
            count[:, index] += w
        return total / count


@functools.lru_cache(maxsize=64)
def _call_windows(settings: MotionWindows, frames: int, step: int, sigma: float) -> CallWindows:
    windows = windows_of(frames, settings, step)
    limit = settings.spatial_batch_limit
    return CallWindows(tuple(tuple(w) for w in windows),
                       tuple(fuse_weights(w, frames, settings, sigma) for w in windows),
                       -(-frames // limit) if limit > 0 else 1)


def call_windows(transformer_options: dict, frames: int) -> CallWindows | None:
    """The motion windows of this UNet call of `frames` frames per cond, or None when it is not windowed."""
    settings = transformer_options.get(KEY)
    if settings is None or not settings.active(frames):
        return None
    sigmas = transformer_options.get("sigmas")
    sigma = float(sigmas.float().mean()) if isinstance(sigmas, torch.Tensor) else math.inf
    if not settings.fuse_method.endswith(("sigma", "sigma inverse")):
        sigma = 0.0  # the weights do not depend on it: one cache entry per step
    return _call_windows(settings, frames, sampling_step(transformer_options), sigma)
