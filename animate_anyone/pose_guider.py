"""Animate Anyone's Pose Guider: skeleton images -> features added after the UNet's first convolution.

Original: src/models/pose_guider.py, built in scripts/pose2vid.py as PoseGuider(320, block_out_channels=
(16, 32, 96, 256)). Every conv is an `InflatedConv3d` (a Conv2d applied to each frame alone), so the
guider is per frame:
    e = silu(conv_in(p));  for each of the 6 blocks: e = silu(block(e));  out = conv_out(e)
The blocks alternate a 3×3 conv at the same width and a 3×3 stride-2 conv to the next width (three
halvings: pixels -> latent size). conv_out (zero-initialised in training) maps 256 -> 320 channels.
Input: pose renders in [0, 1] (the pipeline's VaeImageProcessor has do_normalize=False), RGB.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .errors import AnimateAnyoneError

CHANNELS = (16, 32, 96, 256)  # block_out_channels of the published pose_guider.pth
EMBEDDING = 320               # the SD1.5 UNet's first-conv width


def expected_keys(channels=CHANNELS, embedding: int = EMBEDDING) -> dict[str, tuple]:
    """Key -> shape of the original module's state dict (16 tensors for the published file)."""
    keys = {"conv_in.weight": (channels[0], 3, 3, 3), "conv_in.bias": (channels[0],)}
    for i in range(len(channels) - 1):
        c, n = channels[i], channels[i + 1]
        keys |= {f"blocks.{2 * i}.weight": (c, c, 3, 3), f"blocks.{2 * i}.bias": (c,),
                 f"blocks.{2 * i + 1}.weight": (n, c, 3, 3), f"blocks.{2 * i + 1}.bias": (n,)}
    keys |= {"conv_out.weight": (embedding, channels[-1], 3, 3), "conv_out.bias": (embedding,)}
    return keys


class PoseGuider(nn.Module):
    def __init__(self, channels=CHANNELS, embedding: int = EMBEDDING):
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        blocks = []
        for c, n in zip(channels[:-1], channels[1:]):
            blocks += [nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, n, 3, padding=1, stride=2)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], embedding, 3, padding=1)

    def forward(self, poses: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """poses (frames, 3, H, W) in [0, 1] -> (frames, 320, H/8, W/8). Frames are independent, so they
        run `chunk` at a time (full-resolution activations of many frames are large)."""
        return torch.cat([self._frames(p) for p in poses.split(chunk)])

    def _frames(self, p: torch.Tensor) -> torch.Tensor:
        e = F.silu(self.conv_in(p))
        for block in self.blocks:
            e = F.silu(block(e))
        return self.conv_out(e)


def pose_guider_from_state_dict(sd: dict[str, torch.Tensor], name: str = "pose_guider.pth") -> PoseGuider:
    expected = expected_keys()
    missing = [k for k in expected if k not in sd]
    if missing:
        raise AnimateAnyoneError(
            f"'{name}' is not Animate Anyone's pose guider: it lacks {len(missing)} of its {len(expected)} weights "
            f"(e.g. {missing[0]}). Choose pose_guider.pth from Moore-AnimateAnyone's pretrained_weights.")
    wrong = [k for k, s in expected.items() if tuple(sd[k].shape) != s]
    if wrong:
        k = wrong[0]
        raise AnimateAnyoneError(f"'{name}': {k} has shape {tuple(sd[k].shape)}, expected {expected[k]}; this is "
                                 f"not the published pose_guider.pth (channels 16/32/96/256 -> 320).")
    guider = PoseGuider()
    guider.load_state_dict({k: sd[k].float() for k in expected})
    return guider.eval().requires_grad_(False)


def poses_to_frames(poses: torch.Tensor, frames: int) -> tuple[torch.Tensor, str | None]:
    """Resample a pose sequence (n, ...) to `frames` by nearest frame in time; the note says so."""
    n = poses.shape[0]
    if n == frames:
        return poses, None
    index = (torch.linspace(0, n - 1, frames) + 0.5).floor().long().clamp(max=n - 1)  # halves round up
    return poses[index], (f"{n} pose images for {frames} latent frames: the poses were resampled in time to "
                          f"{frames} (nearest pose per frame). Give one pose image per frame to avoid this.")


def pose_features_for_rows(features: torch.Tensor, frame_index, rows: int) -> torch.Tensor:
    """The features of one UNet call: rows = chunks (cond, uncond, ...) × frames of the call, each chunk
    holding the frames `frame_index` (the original repeats the pose features over the CFG halves)."""
    f = features[frame_index]
    return rearrange(f.unsqueeze(0).expand(rows // f.shape[0], *f.shape), "n f c h w -> (n f) c h w")
