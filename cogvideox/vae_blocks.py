"""The CogVideoX VAE's layers: causal 3D convolutions with a frame cache, spatially conditioned norms, resnet blocks,
and the down/up samplers that also halve/double time.

Module and parameter names are diffusers' (`AutoencoderKLCogVideoX`, diffusers 0.42.1) so the published
`vae/diffusion_pytorch_model.safetensors` loads unchanged. Activations are (batch, channels, frames, height, width).

Two things decide the numbers beyond the weights:
* GroupNorm runs on the 5-D tensor: its statistics pool over ALL frames of the current frame batch (diffusers'
  `nn.GroupNorm` on (b, c, t, h, w)). Decoding other frame batches therefore gives other numbers; vae.py batches
  frames exactly as diffusers' `_encode`/`_decode` do.
* Causal convolutions see earlier frame batches only through a cache of their last (kernel − 1) padded input frames;
  the first batch repeats its first frame instead. `ConvCache` carries that cache from one frame batch to the next.

Layers come from an `operations` namespace (`.Conv2d`, `.Conv3d`, `.GroupNorm`; comfy.ops style), default `TorchOps`:
plain torch layers whose weights follow the activations' dtype and device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import reduce
from torch import nn

from ..common.ops import TorchOps

# Convolutions run over time in pieces of at most this much input, written into one output: the numbers of one
# call (each output frame sees the same input frames), without a whole padded copy of the input. diffusers'
# CogVideoXSafeConv3d splits the same way above 2 GiB, for cuDNN; smaller pieces lower the peak further.
PIECE_GIB = 0.5

ConvCache = dict  # CausalConv3d -> its last (kernel − 1) padded input frames, carried across frame batches


def time_pieces(frames: int, frame_bytes: int, context: int = 0) -> list[tuple[int, int]]:
    """(start, stop) output frames per piece, each piece reading at most PIECE_GIB (and at least one frame)."""
    step = max(1, int(PIECE_GIB * 1024 ** 3 / max(frame_bytes, 1)) - context)
    return [(a, min(a + step, frames)) for a in range(0, frames, step)]


def conv_in_time(conv: nn.Module, x: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
    """`conv(cat(head, x))` along time (head: the kernel − 1 frames before x; None for a 1-frame kernel), in
    pieces: output frame i reads padded frames i … i + kernel − 1."""
    context, frames = conv.kernel_size[0] - 1, x.shape[2]
    pieces = time_pieces(frames, x[:, :, :1].numel() * x.element_size(), context)
    if len(pieces) == 1:
        return conv(torch.cat([head, x], dim=2) if context else x)
    out = None
    for start, stop in pieces:
        piece = x[:, :, max(start - context, 0):stop]
        if start < context:
            piece = torch.cat([head[:, :, start:], piece], dim=2)
        y = conv(piece)
        if out is None:
            out = y.new_empty(y.shape[:2] + (frames,) + y.shape[3:])
        out[:, :, start:stop] = y
    return out


class CausalConv3d(nn.Module):
    """A 3D convolution that sees only the current and earlier frames: time is padded in front with the cached
    frames of the previous frame batch, or with copies of the first frame; height and width are zero-padded."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, operations=None):
        super().__init__()
        self.time_pad = kernel_size - 1
        space_pad = (kernel_size - 1) // 2
        self.conv = (operations or TorchOps).Conv3d(in_channels, out_channels, kernel_size,
                                                    padding=(0, space_pad, space_pad))

    def forward(self, x: torch.Tensor, cache: ConvCache) -> torch.Tensor:
        if self.time_pad:
            before = cache.get(self)
            if before is None:
                before = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            before = before.to(x.dtype)
            cache[self] = torch.cat([before, x], dim=2)[:, :, -self.time_pad:].clone() \
                if x.shape[2] < self.time_pad else x[:, :, -self.time_pad:].clone()
            return conv_in_time(self.conv, x, before)
        return conv_in_time(self.conv, x)


def nearest_like(zq: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """The latent resized (nearest) to a feature map's frames × height × width. With an odd number (>1) of frames
    the first frame is resized on its own: it stands for one video frame, the others for 4 each (causal VAE)."""
    if frames > 1 and frames % 2 == 1:
        first = F.interpolate(zq[:, :, :1], size=(1, height, width))
        rest = F.interpolate(zq[:, :, 1:], size=(frames - 1, height, width))
        return torch.cat([first, rest], dim=2)
    return F.interpolate(zq, size=(frames, height, width))


class SpatialNorm3D(nn.Module):
    """GroupNorm(f) · conv_y(zq) + conv_b(zq): the decoder's norm, conditioned on the latent being decoded
    (https://huggingface.co/papers/2209.09002)."""

    def __init__(self, f_channels: int, zq_channels: int, groups: int, operations=None):
        super().__init__()
        ops = operations or TorchOps
        self.norm_layer = ops.GroupNorm(num_channels=f_channels, num_groups=groups, eps=1e-6, affine=True)
        self.conv_y = CausalConv3d(zq_channels, f_channels, 1, operations=ops)
        self.conv_b = CausalConv3d(zq_channels, f_channels, 1, operations=ops)

    def forward(self, f: torch.Tensor, zq: torch.Tensor, cache: ConvCache) -> torch.Tensor:
        zq = nearest_like(zq, *f.shape[-3:])
        # norm(f)·y + b in place on the fresh norm output, a piece of frames at a time (1-frame kernels): the same
        # numbers without full-size y and b
        h = self.norm_layer(f)
        for start, stop in time_pieces(h.shape[2], h[:, :, :1].numel() * h.element_size()):
            z = zq[:, :, start:stop]
            h[:, :, start:stop].mul_(self.conv_y(z, cache)).add_(self.conv_b(z, cache))
        return h


class ResnetBlock3D(nn.Module):
    """norm → SiLU → causal conv, twice, plus the input (through a 1×1×1 conv when the width changes).
    `spatial_norm_dim` set: the norms are SpatialNorm3D on the latent (decoder), else GroupNorm (encoder)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, eps: float,
                 spatial_norm_dim: int | None = None, operations=None):
        super().__init__()
        ops = operations or TorchOps
        if spatial_norm_dim is None:
            self.norm1 = ops.GroupNorm(num_channels=in_channels, num_groups=groups, eps=eps)
            self.norm2 = ops.GroupNorm(num_channels=out_channels, num_groups=groups, eps=eps)
        else:
            self.norm1 = SpatialNorm3D(in_channels, spatial_norm_dim, groups, operations=ops)
            self.norm2 = SpatialNorm3D(out_channels, spatial_norm_dim, groups, operations=ops)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, operations=ops)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, operations=ops)
        if in_channels != out_channels:
            self.conv_shortcut = ops.Conv3d(in_channels, out_channels, 1)

    def norm(self, norm: nn.Module, h: torch.Tensor, zq: torch.Tensor | None, cache: ConvCache) -> torch.Tensor:
        return norm(h) if zq is None else norm(h, zq, cache)

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None, cache: ConvCache) -> torch.Tensor:
        # One statement per step, SiLU and the residual sum in place: each full-size tensor is freed as soon as
        # the next exists (less peak memory, same numbers). Dropout is 0.
        h = self.norm(self.norm1, x, zq, cache)
        h = self.conv1(F.silu(h, inplace=True), cache)
        h = self.norm(self.norm2, h, zq, cache)
        h = self.conv2(F.silu(h, inplace=True), cache)
        if hasattr(self, "conv_shortcut"):
            x = conv_in_time(self.conv_shortcut, x)
        return h.add_(x)


def per_frame(conv: nn.Module, sources: list[int], frame) -> torch.Tensor:
    """Output frame i = conv(frame(sources[i])), written into one output tensor; a source frame used twice is
    computed once. Frame by frame, no whole resized or rearranged copy of the input is ever held."""
    out, done = None, {}
    for i, s in enumerate(sources):
        if s not in done:
            done = {s: conv(frame(s))}  # sources come in order: only the last one can repeat
        y = done[s]
        if out is None:
            out = y.new_empty(y.shape[:2] + (len(sources),) + y.shape[2:])
        out[:, :, i] = y
    return out


class Downsample3D(nn.Module):
    """Halve height and width (3×3 stride-2 conv per frame, zero pad right and bottom); with `compress_time` first
    average frame pairs, keeping an odd first frame alone."""

    def __init__(self, channels: int, compress_time: bool, operations=None):
        super().__init__()
        self.conv = (operations or TorchOps).Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)
        self.compress_time = compress_time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        if self.compress_time:  # output frame i averages input frames spans[i]
            odd = frames % 2
            spans = [(0, 1)] * odd + [(s, s + 2) for s in range(odd, frames, 2)]
        else:
            spans = [(s, s + 1) for s in range(frames)]

        def frame(i: int) -> torch.Tensor:
            start, stop = spans[i]
            if stop - start == 1:
                pixels = x[:, :, start]
            else:
                pixels = reduce(x[:, :, start:stop], "b c t h w -> b c h w", "mean")
            return F.pad(pixels, (0, 1, 0, 1))
        return per_frame(self.conv, list(range(len(spans))), frame)


class Upsample3D(nn.Module):
    """Double height and width (nearest, then a 3×3 conv per frame); with `compress_time` also double the frames
    (nearest: each frame twice), except an odd first frame, which stays one frame."""

    def __init__(self, channels: int, compress_time: bool, operations=None):
        super().__init__()
        self.conv = (operations or TorchOps).Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)
        self.compress_time = compress_time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        if not self.compress_time or frames == 1:
            sources = list(range(frames))
        else:
            odd = frames % 2
            sources = [0] * odd + [s for s in range(odd, frames) for _ in range(2)]
        return per_frame(self.conv, sources, lambda s: F.interpolate(x[:, :, s], scale_factor=2.0))


def block_layers(block: nn.Module, zq: torch.Tensor | None, cache: ConvCache):
    """A down/mid/up block's layers in order, each a function of the activation alone. The encoder and decoder
    call them in one loop: a block's forward would hold its input alive (as its argument) until the block ends."""
    for resnet in block.resnets:
        yield lambda x, resnet=resnet: resnet(x, zq, cache)
    yield from getattr(block, "downsamplers", getattr(block, "upsamplers", ()))


class DownBlock3D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, eps: float,
                 downsample: bool, compress_time: bool, operations=None):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, groups, eps, operations=operations)
            for i in range(layers))
        if downsample:
            self.downsamplers = nn.ModuleList([Downsample3D(out_channels, compress_time, operations=operations)])



class MidBlock3D(nn.Module):
    def __init__(self, channels: int, groups: int, eps: float, spatial_norm_dim: int | None = None,
                 operations=None):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(channels, channels, groups, eps, spatial_norm_dim, operations=operations) for _ in range(2))



class UpBlock3D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, eps: float,
                 spatial_norm_dim: int, upsample: bool, compress_time: bool, operations=None):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, groups, eps, spatial_norm_dim,
                          operations=operations)
            for i in range(layers))
        if upsample:
            self.upsamplers = nn.ModuleList([Upsample3D(out_channels, compress_time, operations=operations)])

