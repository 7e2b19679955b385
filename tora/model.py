"""Tora's own modules in plain torch: the trajectory extractor and the per-block motion-guidance fusers.

As Tora's diffusers version builds them (tora/transformer_3d.py, tora/traj_module.py):
* `traj_extractor`: TrajExtractor(patch 1x2x2 (2x2x2 with CogVideoX 1.5's patch_size_t 2), nums_rb=2, cin=16,
  channels=[128] * layers, sk=True). Its input is the VAE latents of the flow video, [B, 16, T, H, W] (the VAE
  emulators of traj_module.py are not used there). Patchified to (B·T, 16·pt·2·2, H/2, W/2), a 3x3 conv_in, then
  per transformer layer two residual blocks `x + conv(relu(bn(conv(relu(bn(x))))))`; the output after each
  layer's pair is that layer's feature (B·T, 128, H/2, W/2). With sk=True and equal channels the blocks have
  no in_conv and no skip conv. BatchNorm uses its running statistics (inference).
* `fuser.{i}` (MGF): `h + GroupNorm32(h)·γ + β` on the block's modulated video tokens laid out (B·T, C, H, W);
  γ and β each come from a 3x3 conv (128 -> C/4) then a temporal 1-D conv (C/4 -> C, kernel 3, replicate
  padding) along the frames of every patch position. GroupNorm runs in the dtype of its bias (FloatGroupNorm).

Module and parameter names are Tora's, so `ToraModules().state_dict()` has exactly the transformer file's Tora
keys (`traj_extractor.*`, `fuser.{i}.*`; tora.files).

Layers come from an `operations` namespace (comfy.ops style: .Conv1d, .Conv2d, .GroupNorm; default `TorchOps`,
plain torch whose weights follow the activations' dtype and device). comfy.ops has no BatchNorm2d: when the
namespace lacks one, this file's is used.

The transformer calls the fusers through its patch point (`ToraGuidance`, see PATCH_POINT).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..common.ops import TorchOps
from .errors import ToraError

GROUPS = 32
# transformer_options["patches"][PATCH_POINT]: called in every CogVideoX block after norm1's modulation, before
# attention, on the video tokens only, as `h = fn(h, {"block_index", "grid", "transformer_options"})`.
PATCH_POINT = "cogvideox_video_tokens"


@dataclass(frozen=True)
class ToraConfig:
    """Sizes; the defaults are Tora's published CogVideoX-5B transformer."""
    layers: int = 42
    width: int = 3072  # the transformer's hidden size (heads x head size)
    latent_channels: int = 16
    flow_channels: int = 128
    blocks_per_layer: int = 2
    patch_size: tuple = (1, 2, 2)  # (t, h, w): the transformer's patch; t is 2 only with CogVideoX 1.5


class ResnetBlock(nn.Module):
    """Tora's ResnetBlock with sk=True, in == out channels, no downsampling: x + block2(relu(bn2(block1(relu(bn1(x))))))."""

    def __init__(self, channels: int, operations=None):
        super().__init__()
        ops = operations or TorchOps
        batch_norm = getattr(ops, "BatchNorm2d", TorchOps.BatchNorm2d)
        self.block1 = ops.Conv2d(channels, channels, 3, 1, 1)
        self.block2 = ops.Conv2d(channels, channels, 3, 1, 1)
        self.bn1 = batch_norm(channels)
        self.bn2 = batch_norm(channels)

    def forward(self, x):
        h = self.block1(F.relu(self.bn1(x)))
        h = self.block2(F.relu(self.bn2(h)))
        return h + x


class TrajExtractor(nn.Module):
    """Flow-video latents [B, C, T, H, W] -> one feature map (B·T', 128, H', W') per transformer layer."""

    def __init__(self, config: ToraConfig = ToraConfig(), operations=None):
        super().__init__()
        ops = operations or TorchOps
        self.patch_size = tuple(config.patch_size)
        self.layers, self.blocks_per_layer = config.layers, config.blocks_per_layer
        self.conv_in = ops.Conv2d(config.latent_channels * math.prod(self.patch_size), config.flow_channels, 3, 1, 1)
        self.body = nn.ModuleList(ResnetBlock(config.flow_channels, ops)
                                  for _ in range(config.layers * config.blocks_per_layer))

    def forward(self, latents: torch.Tensor) -> list[torch.Tensor]:
        pt, ph, pw = self.patch_size
        t, h, w = latents.shape[-3:]
        # zero padding at the end up to whole patches, as Tora does
        latents = F.pad(latents, (0, -w % pw, 0, -h % ph, 0, -t % pt))
        x = rearrange(latents, "b c (t pt) (h ph) (w pw) -> (b t) (c pt ph pw) h w", pt=pt, ph=ph, pw=pw)
        x = self.conv_in(x)
        features = []
        for layer in range(self.layers):
            for j in range(self.blocks_per_layer):
                x = self.body[layer * self.blocks_per_layer + j](x)
            features.append(x)
        return features


class MotionGuidanceFuser(nn.Module):
    """Tora's MGF: h + GroupNorm(h)·γ(flow) + β(flow), h and flow laid out (B·T, C, H, W)."""

    def __init__(self, width: int, flow_channels: int = 128, operations=None):
        super().__init__()
        ops = operations or TorchOps
        hidden = width // 4
        self.flow_gamma_spatial = ops.Conv2d(flow_channels, hidden, 3, padding=1)
        self.flow_gamma_temporal = ops.Conv1d(hidden, width, 3, stride=1, padding=1, padding_mode="replicate")
        self.flow_beta_spatial = ops.Conv2d(flow_channels, hidden, 3, padding=1)
        self.flow_beta_temporal = ops.Conv1d(hidden, width, 3, stride=1, padding=1, padding_mode="replicate")
        self.flow_cond_norm = ops.GroupNorm(GROUPS, width)

    def modulation(self, flow: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """γ, β (B·T, C, H, W): a spatial conv per frame, then a temporal conv per patch position."""
        out = []
        for spatial, temporal in ((self.flow_gamma_spatial, self.flow_gamma_temporal),
                                  (self.flow_beta_spatial, self.flow_beta_temporal)):
            x = spatial(flow)
            hh, ww = x.shape[-2:]
            x = rearrange(x, "(b f) c h w -> (b h w) c f", f=frames)
            x = temporal(x)
            out.append(rearrange(x, "(b h w) c f -> (b f) c h w", h=hh, w=ww))
        return out[0], out[1]

    def norm(self, h: torch.Tensor) -> torch.Tensor:
        """GroupNorm in the dtype of its bias (Tora's FloatGroupNorm), returned in h's dtype."""
        dtype = self.flow_cond_norm.bias.dtype
        if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            dtype = torch.float32  # weights stored in 8 bits: group norm cannot run in that dtype
        return self.flow_cond_norm(h.to(dtype)).to(h.dtype)

    def forward(self, h: torch.Tensor, flow: torch.Tensor, frames: int) -> torch.Tensor:
        gamma, beta = self.modulation(flow, frames)
        return h + self.norm(h) * gamma + beta


def fuse_tokens(fuser: MotionGuidanceFuser, h: torch.Tensor, feature: torch.Tensor, grid) -> torch.Tensor:
    """The fuser on video tokens h [B, T·H·W, C] ((t h w) order); feature (B'·T, 128, H, W) with B' dividing B
    (Tora repeats the flow latents for the CFG batch: torch.cat([flow] * 2))."""
    t, hh, ww = grid
    if h.shape[1] != t * hh * ww:
        raise ToraError(f"Tora: the transformer passed {h.shape[1]} video tokens for a {t}x{hh}x{ww} grid.")
    if tuple(feature.shape[-2:]) != (hh, ww) or feature.shape[0] % t:
        raise ToraError(f"Tora: the trajectory's features are {feature.shape[0]} frames of {feature.shape[-2]}x"
                        f"{feature.shape[-1]} patches, the video is {t} latent frames of {hh}x{ww} patches. Make the "
                        f"trajectory (flow video) with the video's frame count, width and height.")
    batch, flow_batch = h.shape[0], feature.shape[0] // t
    if batch % flow_batch:
        raise ToraError(f"Tora: a batch of {batch} videos cannot share a trajectory batch of {flow_batch}.")
    if batch != flow_batch:
        feature = feature.repeat(batch // flow_batch, 1, 1, 1)
    x = rearrange(h, "b (t h w) c -> (b t) c h w", t=t, h=hh, w=ww)
    x = fuser(x, feature.to(x.dtype), t)
    return rearrange(x, "(b t) c h w -> b (t h w) c", t=t)


class ToraModules(nn.Module):
    """The Tora part of Tora's transformer; state-dict keys `traj_extractor.*` and `fuser.{i}.*` as in its file."""

    def __init__(self, config: ToraConfig = ToraConfig(), operations=None):
        super().__init__()
        self.config = config
        self.traj_extractor = TrajExtractor(config, operations)
        self.fuser = nn.ModuleList(MotionGuidanceFuser(config.width, config.flow_channels, operations)
                                   for _ in range(config.layers))


class ToraGuidance:
    """The callable for the transformer's patch point PATCH_POINT: `h = guidance(h, info)` in block
    info["block_index"] with info["grid"] = (latent frames, patches high, patches wide).

    The extractor runs once per device and dtype (its input, the flow latents, is fixed for the whole sampling),
    under no_grad, in the dtype of the tokens (Tora's pipeline runs everything in the transformer's dtype).
    `.to(device or dtype)` moves the modules, as ComfyUI's ModelPatcher.model_patches_to does with patches."""

    def __init__(self, modules: ToraModules, flow_latents: torch.Tensor):
        if flow_latents.ndim != 5 or flow_latents.shape[1] != modules.config.latent_channels:
            raise ToraError(f"Tora: the flow latents must be [batch, {modules.config.latent_channels}, frames, height, "
                            f"width] (the VAE latents of the flow video), got {list(flow_latents.shape)}.")
        self.modules = modules
        self.flow_latents = flow_latents
        self._features: dict = {}

    def to(self, *args, **kwargs):
        self.modules.to(*args, **kwargs)
        self._features.clear()
        return self

    def features(self, like: torch.Tensor) -> list[torch.Tensor]:
        key = (like.device, like.dtype)
        if key not in self._features:
            self._features.clear()
            with torch.no_grad():
                self._features[key] = self.modules.traj_extractor(self.flow_latents.to(like.device, like.dtype))
        return self._features[key]

    def __call__(self, h: torch.Tensor, info: dict) -> torch.Tensor:
        i = info["block_index"]
        if i >= len(self.modules.fuser):
            raise ToraError(f"Tora: its modules have {len(self.modules.fuser)} fusers, the transformer has a block "
                            f"{i}: use Tora with the transformer it was trained for (CogVideoX-5B, 42 blocks).")
        return fuse_tokens(self.modules.fuser[i], h, self.features(h)[i], info["grid"])
