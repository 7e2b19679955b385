"""CogVideoX's video ⇄ latent sizes: its VAE makes one latent frame of the first video frame and one of every 4 after
it, and one latent pixel of 8x8."""
from __future__ import annotations

from .errors import CogVideoXFileError

TEMPORAL, SPATIAL = 4, 8
LATENT_CHANNELS = 16


def latent_shape(node: str, width: int, height: int, frames: int, batch_size: int) -> list[int]:
    """[batch, 16, t, h, w] of a video of `frames` (4k + 1, else an error naming `node` and the nearest counts)."""
    if (frames - 1) % TEMPORAL:
        below, above = frames - (frames - 1) % TEMPORAL, frames - (frames - 1) % TEMPORAL + TEMPORAL
        raise CogVideoXFileError(f"{node}: {frames} frames is not 4k + 1 (CogVideoX's VAE makes 4 frames per latent "
                                 f"frame after the first). Use {below} or {above}.")
    return [batch_size, LATENT_CHANNELS, (frames - 1) // TEMPORAL + 1, height // SPATIAL, width // SPATIAL]


def video_size(shape) -> tuple[int, int, int]:
    """(frames, width, height) of the video a [batch, 16, t, h, w] latent decodes to."""
    _, _, t, h, w = shape
    return TEMPORAL * (t - 1) + 1, SPATIAL * w, SPATIAL * h
