"""The CogVideoX 3D causal VAE (CogVideoX-2B/5B, Tora), equal to diffusers 0.42.1's `AutoencoderKLCogVideoX`.

Video goes in and out as (batch, channels, frames, height, width); pixels in [-1, 1]. 8× smaller in space, 4× in
time, causally: 1 + 4k video frames <-> 1 + k latent frames (49 <-> 13).

Frame batches are part of the model, not only a memory saving: GroupNorm pools its statistics over the frames of
one batch, and the temporal down/up samplers treat an odd first frame alone. `encode` and `decode` therefore walk
the frames in exactly diffusers' default batches (`_encode`: 8 video frames, `_decode`: 2 latent frames; the first
batch also takes the remainder, so 49 = 9 + 5·8 and 13 = 3 + 5·2) and carry the causal-conv cache between them. One
pass over all frames at once would give other numbers. Peak memory is set by one frame batch at full resolution
(vae_memory.py); `Tiling` additionally splits height and width exactly as diffusers' `enable_tiling()` path does
(overlapping tiles blended linearly), which gives diffusers' tiled numbers, not the untiled ones.

Layers take `operations=` (comfy.ops style: `.Conv2d`, `.Conv3d`, `.GroupNorm`); default plain torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .vae_blocks import (CausalConv3d, ConvCache, DownBlock3D, MidBlock3D, SpatialNorm3D, TorchOps, UpBlock3D,
                         block_layers)

VIDEO_FRAME_BATCH = 8  # diffusers' num_sample_frames_batch_size
LATENT_FRAME_BATCH = 2  # diffusers' num_latent_frames_batch_size (the VAE was trained on this; see diffusers)
LOGVAR_RANGE = (-30.0, 20.0)  # DiagonalGaussianDistribution clamps the log-variance


@dataclass(frozen=True)
class VAEConfig:
    """The fields of diffusers' `vae/config.json` that shape or scale the model; defaults are CogVideoX-5B's."""
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    latent_channels: int = 16
    layers_per_block: int = 3
    norm_eps: float = 1e-6
    norm_num_groups: int = 32
    temporal_compression_ratio: int = 4
    sample_height: int = 480
    sample_width: int = 720
    scaling_factor: float = 0.7  # 5B and Tora; CogVideoX-2B's config says 1.15258426 (same architecture)

    @property
    def spatial_ratio(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def compressed_levels(self) -> int:
        """How many down/up samplers also halve/double time: log2 of the temporal ratio."""
        return self.temporal_compression_ratio.bit_length() - 1


@dataclass(frozen=True)
class Tiling:
    """diffusers' `enable_tiling()` settings. Tiles are `sample_height` × `sample_width` video pixels (latent tiles
    that size / 8), overlapping by the given fractions; `None` sizes mean half of the config's sample size
    (240 × 360 for CogVideoX), as in diffusers."""
    sample_height: int | None = None
    sample_width: int | None = None
    overlap_height: float = 1 / 6
    overlap_width: float = 1 / 5


class Encoder3D(nn.Module):
    def __init__(self, config: VAEConfig, operations=None):
        super().__init__()
        ops = operations or TorchOps
        widths, groups, eps = config.block_out_channels, config.norm_num_groups, config.norm_eps
        self.conv_in = CausalConv3d(config.in_channels, widths[0], 3, operations=ops)
        self.down_blocks = nn.ModuleList(
            DownBlock3D(widths[max(i - 1, 0)], widths[i], config.layers_per_block, groups, eps,
                        downsample=i < len(widths) - 1, compress_time=i < config.compressed_levels, operations=ops)
            for i in range(len(widths)))
        self.mid_block = MidBlock3D(widths[-1], groups, eps, operations=ops)
        self.norm_out = ops.GroupNorm(groups, widths[-1], eps=1e-6)
        self.conv_out = CausalConv3d(widths[-1], 2 * config.latent_channels, 3, operations=ops)

    def forward(self, x: torch.Tensor, cache: ConvCache) -> torch.Tensor:
        """One frame batch of video → its latent moments (mean and log-variance stacked on channels)."""
        h = self.conv_in(x, cache)
        for block in (*self.down_blocks, self.mid_block):
            for layer in block_layers(block, None, cache):
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True), cache)


class Decoder3D(nn.Module):
    def __init__(self, config: VAEConfig, operations=None):
        super().__init__()
        ops = operations or TorchOps
        widths = tuple(reversed(config.block_out_channels))
        groups, eps, zq = config.norm_num_groups, config.norm_eps, config.latent_channels
        self.conv_in = CausalConv3d(zq, widths[0], 3, operations=ops)
        self.mid_block = MidBlock3D(widths[0], groups, eps, spatial_norm_dim=zq, operations=ops)
        self.up_blocks = nn.ModuleList(
            UpBlock3D(widths[max(i - 1, 0)], widths[i], config.layers_per_block + 1, groups, eps, zq,
                      upsample=i < len(widths) - 1, compress_time=i < config.compressed_levels, operations=ops)
            for i in range(len(widths)))
        self.norm_out = SpatialNorm3D(widths[-1], zq, groups, operations=ops)
        self.conv_out = CausalConv3d(widths[-1], config.out_channels, 3, operations=ops)

    def forward(self, z: torch.Tensor, cache: ConvCache) -> torch.Tensor:
        """One frame batch of latents → its video frames; every norm is conditioned on z."""
        h = self.conv_in(z, cache)
        for block in (self.mid_block, *self.up_blocks):
            for layer in block_layers(block, z, cache):
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h, z, cache), inplace=True), cache)


def frame_batches(frames: int, size: int) -> list[slice]:
    """diffusers' frame batches: `size` frames each, the first one also taking the remainder (frames % size);
    fewer than `size` frames make one batch."""
    extra = frames % size
    return [slice(0 if i == 0 else size * i + extra, size * (i + 1) + extra) for i in range(max(frames // size, 1))]


def run_in_frame_batches(net: nn.Module, x: torch.Tensor, size: int) -> torch.Tensor:
    """`net` over x's frame batches in order, one causal-conv cache carried through, results joined in time."""
    cache: ConvCache = {}
    return torch.cat([net(x[:, :, part], cache) for part in frame_batches(x.shape[2], size)], dim=2)


def tiles(length: int, tile: int, overlap: float) -> range:
    """Tile starts along one axis (input space): every int(tile · (1 − overlap)), as diffusers steps them."""
    return range(0, length, int(tile * (1 - overlap)))


def blend(before: torch.Tensor, tile: torch.Tensor, extent: int, dim: int) -> None:
    """Fade `tile`'s first `extent` rows (along dim) in from `before`'s last ones, linearly, in place."""
    extent = min(before.shape[dim], tile.shape[dim], extent)
    for i in range(extent):
        w = i / extent
        row = tile.select(dim, i)
        row.copy_(before.select(dim, before.shape[dim] - extent + i) * (1 - w) + row * w)


def run_tiled(run, x: torch.Tensor, tile_in: tuple[int, int], tile_out: tuple[int, int],
              overlap: tuple[float, float]) -> torch.Tensor:
    """diffusers' tiled_encode/tiled_decode: `run` on overlapping (height, width) tiles of x, each tile blended with
    the tile above and to the left of it (already blended themselves: diffusers blends in place, row by row), then
    cropped to tile_out minus the blend and joined."""
    extents = [int(t * o) for t, o in zip(tile_out, overlap)]
    limits = [t - e for t, e in zip(tile_out, extents)]
    rows = [[run(x[:, :, :, i:i + tile_in[0], j:j + tile_in[1]]) for j in tiles(x.shape[4], tile_in[1], overlap[1])]
            for i in tiles(x.shape[3], tile_in[0], overlap[0])]
    out_rows = []
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            if r > 0:
                blend(rows[r - 1][c], tile, extents[0], dim=3)
            if c > 0:
                blend(row[c - 1], tile, extents[1], dim=4)
        out_rows.append(torch.cat([tile[:, :, :, :limits[0], :limits[1]] for tile in row], dim=4))
    return torch.cat(out_rows, dim=3)


class CogVideoXVAE(nn.Module):
    """`encoder.*` and `decoder.*` carry diffusers' AutoencoderKLCogVideoX state-dict keys unchanged."""

    def __init__(self, config: VAEConfig = VAEConfig(), operations=None):
        super().__init__()
        self.config = config
        self.encoder = Encoder3D(config, operations=operations)
        self.decoder = Decoder3D(config, operations=operations)

    def tile_sizes(self, tiling: Tiling) -> tuple[tuple[int, int], tuple[int, int]]:
        """(video tile height, width), (latent tile height, width) as diffusers derives them."""
        sample = (tiling.sample_height or self.config.sample_height // 2,
                  tiling.sample_width or self.config.sample_width // 2)
        return sample, tuple(int(s / self.config.spatial_ratio) for s in sample)

    def encode(self, pixels: torch.Tensor, tiling: Tiling | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Video [b, 3, frames, h, w] in [-1, 1] → (mean, logvar), each [b, 16, 1 + (frames − 1) // 4, h/8, w/8];
        logvar clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution does. `tiling`: diffusers'
        tiled_encode numbers (used only when the video is larger than one tile, as in diffusers)."""
        run = lambda x: run_in_frame_batches(self.encoder, x, VIDEO_FRAME_BATCH)  # noqa: E731
        moments = []
        for one in pixels.split(1):  # batch items are independent (per-sample norms): one at a time bounds memory
            if tiling is not None and self.larger_than_tile(one, self.tile_sizes(tiling)[0]):
                sample, latent = self.tile_sizes(tiling)
                moments.append(run_tiled(run, one, sample, latent, (tiling.overlap_height, tiling.overlap_width)))
            else:
                moments.append(run(one))
        mean, logvar = torch.cat(moments).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, latents: torch.Tensor, tiling: Tiling | None = None) -> torch.Tensor:
        """Latents [b, 16, t, h, w] (unscaled: divide the diffusion model's latents by `config.scaling_factor`
        first) → video [b, 3, 1 + 4(t − 1), 8h, 8w], about [-1, 1]. `tiling`: diffusers' tiled_decode numbers."""
        run = lambda z: run_in_frame_batches(self.decoder, z, LATENT_FRAME_BATCH)  # noqa: E731
        videos = []
        for one in latents.split(1):
            if tiling is not None and self.larger_than_tile(one, self.tile_sizes(tiling)[1]):
                sample, latent = self.tile_sizes(tiling)
                videos.append(run_tiled(run, one, latent, sample, (tiling.overlap_height, tiling.overlap_width)))
            else:
                videos.append(run(one))
        return torch.cat(videos)

    @staticmethod
    def larger_than_tile(x: torch.Tensor, tile: tuple[int, int]) -> bool:
        return x.shape[3] > tile[0] or x.shape[4] > tile[1]

    @staticmethod
    def sample(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + exp(logvar / 2) · ε, ε drawn as diffusers' DiagonalGaussianDistribution.sample draws it: one
        torch.randn of mean's shape and dtype, on the generator's device when that is the CPU (then moved)."""
        on = "cpu" if generator is not None and generator.device.type == "cpu" else mean.device
        noise = torch.randn(mean.shape, generator=generator, device=on, dtype=mean.dtype).to(mean.device)
        return mean + torch.exp(0.5 * logvar) * noise
