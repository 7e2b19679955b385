"""Reference clips for training: a batch of latents cut into clips of F frames, or a list of latents, checked.

A clip's frames stay together (they are one sample of the motion model); all clips of a run have one length,
because a training step batches several clips as (clips·frames) rows, as AnimateDiff does.
"""
from __future__ import annotations

import torch

from .errors import TrainingError


def split_clips(latents: list[torch.Tensor], frames_per_clip: int, max_frames: int) -> torch.Tensor:
    """[clips, frames, C, H, W] from latent batches [N, C, H, W]. `frames_per_clip` 0: each batch is one clip."""
    if not latents:
        raise TrainingError("No reference clips: connect VAE-encoded clips (e.g. Make Camera-Move Clips → VAE Encode).")
    clips = []
    for i, batch in enumerate(latents):
        if batch.dim() == 5:  # [B, C, F, H, W] video latents of other models
            raise TrainingError(f"Clip batch {i + 1} is a 5-D video latent {tuple(batch.shape)}; this node trains "
                                f"SD1.5/SDXL motion models, which take image latents [frames, 4, H, W]. VAE-encode the "
                                f"frames with your SD checkpoint's VAE.")
        if frames_per_clip == 0:
            clips.append(batch)
            continue
        if batch.shape[0] % frames_per_clip:
            raise TrainingError(
                f"Clip batch {i + 1} has {batch.shape[0]} frames, not a whole number of clips of frames_per_clip = "
                f"{frames_per_clip}: clips of different lengths cannot be trained together. Set frames_per_clip to "
                f"a divisor of {batch.shape[0]} (the clip maker's 'frames'), or 0 if the batch is one clip.")
        clips += list(batch.split(frames_per_clip))
    lengths = sorted({c.shape[0] for c in clips})
    if len(lengths) > 1:
        raise TrainingError(f"The reference clips have different lengths ({', '.join(map(str, lengths))} frames); all "
                            f"clips of one run must have the same number of frames. Make them with one 'frames' value "
                            f"(or cut them with frames_per_clip).")
    frames = lengths[0]
    if frames < 2:
        raise TrainingError(f"The reference clips have {frames} frame each; a motion model learns motion between frames, "
                            f"so each clip needs at least 2 (8–16 is typical). Set frames_per_clip / the clip maker's "
                            f"'frames' to 2 or more.")
    if frames > max_frames:
        raise TrainingError(f"The reference clips have {frames} frames but this motion model takes at most {max_frames} "
                            f"in one pass (its positional encoding). Use clips of {min(16, max_frames)} frames "
                            f"(set frames_per_clip or the clip maker's 'frames').")
    shapes = sorted({tuple(c.shape[1:]) for c in clips})
    if len(shapes) > 1:
        raise TrainingError(f"The reference clips have different latent sizes {shapes}; make them all at one width and "
                            f"height.")
    return torch.stack([c.float() for c in clips])


def match_captions(captions: list, clips: int) -> list:
    """One caption per clip: a single caption is shared; otherwise their count must equal the clip count."""
    if len(captions) == 1:
        return captions * clips
    if len(captions) != clips:
        raise TrainingError(f"{len(captions)} captions for {clips} clips: give one caption for all clips, or exactly one "
                            f"per clip (in clip order).")
    return list(captions)
