"""FreeNoise (Qiu et al. 2023, "FreeNoise: Tuning-Free Longer Video Diffusion via Noise Rescheduling").

Long animations are sampled in windows of `context_length` frames. Independent noise in every frame
gives every window different content; FreeNoise instead reuses the first window's noise, shuffled:
frames [0, L) keep fresh noise, and each following block of `stride` frames starting at frame i takes
the noise of frames [i - L, i - L + stride), in a seeded random order. Every window that starts on a
multiple of the stride then holds the same set of noises (in a different order), so windows agree on
what they draw while the order still varies. `repeat_context` repeats frames [0, L) as they are;
`random` leaves the noise alone.

The frames are the latent batch (dim 0) for SD-style 4D latents, dim 2 for 5D video latents.
Pure torch; `FreeNoise.generate_noise` imports ComfyUI lazily.
"""
from __future__ import annotations

import torch

from .errors import NoiseOptionError

SHUFFLE = "shuffle_context"
REPEAT = "repeat_context"
RANDOM = "random"
MODES = [SHUFFLE, REPEAT, RANDOM]

_GOLDEN = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads a seed into an unrelated stream


def derived_generator(seed: int, salt: int) -> torch.Generator:
    """A CPU generator for `seed` whose stream differs from `torch.manual_seed(seed)` (ComfyUI's noise),
    so the random choices made here are not correlated with the noise values they rearrange."""
    return torch.Generator().manual_seed((int(seed) + salt * _GOLDEN) % 2**64)


def frame_dim(latent: torch.Tensor) -> int:
    return 2 if latent.ndim == 5 else 0


def check_settings(context_length: int, context_stride: int, mode: str) -> None:
    if mode not in MODES:
        raise NoiseOptionError(f"FreeNoise mode '{mode}' is unknown. Choose one of: {', '.join(MODES)}.")
    if context_length < 1:
        raise NoiseOptionError(f"FreeNoise context_length is {context_length}: set it to the frames per context "
                               f"window (16 for AnimateDiff).")
    if not 1 <= context_stride <= context_length:
        raise NoiseOptionError(
            f"FreeNoise context_stride ({context_stride}) must be between 1 and context_length ({context_length}): "
            f"each block of context_stride frames reuses noise from the window before it. Use 4, or a divisor of "
            f"context_length - context_overlap of your context windows.")


def free_noise(noise: torch.Tensor, context_length: int, context_stride: int, mode: str,
               generator: torch.Generator | None = None, dim: int = 0) -> torch.Tensor:
    """`noise` (frames along `dim`) rearranged by FreeNoise; the input is not modified.

    Frames [0, context_length) are always returned unchanged, so with context_length >= frames the
    result equals the input. `generator` drives the shuffles (shuffle_context only)."""
    check_settings(context_length, context_stride, mode)
    frames = noise.shape[dim]
    if mode == RANDOM or frames <= context_length:
        return noise.clone()
    if mode == REPEAT:
        return noise.index_select(dim, torch.arange(frames, device=noise.device) % context_length)

    out = noise.clone()
    by_frame = out.movedim(dim, 0)  # a view: writing a frame writes `out`
    for start in range(context_length, frames, context_stride):
        # the same stride-long block one window back, in random order; it may itself hold reused noise
        # (from two windows back), which keeps every block's noise drawn from the first window's
        source = torch.arange(start - context_length, start - context_length + context_stride)
        source = source[torch.randperm(context_stride, generator=generator)]
        count = min(context_stride, frames - start)  # the last block may be short: first `count` of the order
        by_frame[start:start + count] = by_frame[source[:count].to(noise.device)]
    return out


class FreeNoise:
    """ComfyUI NOISE (as SamplerCustomAdvanced takes it): ComfyUI's own seeded noise, rearranged.

    The base noise is exactly what core's RandomNoise gives for the same seed and latent, so the first
    `context_length` frames (and, when the animation is no longer than that, everything) match it."""

    SALT = 1

    def __init__(self, seed: int, context_length: int = 16, context_stride: int = 4, mode: str = SHUFFLE):
        check_settings(context_length, context_stride, mode)
        self.seed = seed
        self.context_length = context_length
        self.context_stride = context_stride
        self.mode = mode

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        import comfy.sample

        latent = input_latent["samples"]
        base = comfy.sample.prepare_noise(latent, self.seed, input_latent.get("batch_index"))
        return free_noise(base, self.context_length, self.context_stride, self.mode,
                          derived_generator(self.seed, self.SALT), dim=frame_dim(latent))
