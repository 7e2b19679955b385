"""SparseCtrl's encoder (AnimateDiff v3's sparse control net) in plain torch.

The network is a copy of the SD1.5 UNet encoder (ControlNet style) with a motion module after every
down-block layer (MOTION_FORMATS.md §4.11):

    conv_in(zeros) + cond_embedding([condition, mask])          (the noisy latent is zeroed: published config)
    → 4 levels × 2 layers of resnet → spatial transformer (levels 0-2) → motion module, downsample (0-2)
    → mid block (resnet, transformer, resnet; no motion module)
    → 12 + 1 zero-convs (controlnet_down_blocks, controlnet_mid_block): the residuals added to the UNet.

Parameter names are the published ones, so a file loads with `load_state_dict(strict=True)` (minus the
`pos_encoder.pe` tables, a fixed function of their length; files.py). The motion modules are MotionKit's own
(motion.model.MotionModule, one attention block each, per-frame GroupNorm as the original inflated model).
Activations are ldm-style (batch·frames, C, H, W), batch-major.

Layers come from an `operations` namespace (`.Conv2d`, `.Linear`, `.GroupNorm`, `.LayerNorm`), as in motion/model.py:
by default its plain torch layers whose weights follow the activations' dtype and device (`TorchOps`); under
ComfyUI the loader passes `comfy.ops` (apply.py), so ComfyUI's model management can load the encoder partially in
low-VRAM mode and cast weights stored in another dtype. GroupNorm over (batch·frames) rows is per image: the
original's inflated (per-frame) GroupNorm. Neither choice changes module names or state-dict keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ...motion.model import PER_FRAME, FeedForward, MotionModule, TorchOps  # FeedForward: the same GEGLU MLP

RGB, SCRIBBLE = "rgb", "scribble"
HEADS = 8
SD15_CHANNELS = (320, 640, 1280, 1280)
CONTEXT_DIM = 768  # SD1.5's CLIP-L
SCRIBBLE_EMBEDDING = (16, 32, 96, 256)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """SD's sinusoidal embedding, cos half first (flip_sin_to_cos, no frequency shift)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, channels: int, dim: int, operations=None):
        super().__init__()
        ops = operations or TorchOps
        self.linear_1 = ops.Linear(channels, dim)
        self.linear_2 = ops.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, operations=None):
        super().__init__()
        ops = operations or TorchOps
        self.norm1 = ops.GroupNorm(32, cin, eps=1e-5)
        self.conv1 = ops.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = ops.Linear(temb, cout)
        self.norm2 = ops.GroupNorm(32, cout, eps=1e-5)
        self.conv2 = ops.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = ops.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Attention(nn.Module):
    def __init__(self, channels: int, context_dim: int | None = None, operations=None):
        super().__init__()
        ops = operations or TorchOps
        kv = context_dim or channels
        self.to_q = ops.Linear(channels, channels, bias=False)
        self.to_k = ops.Linear(kv, channels, bias=False)
        self.to_v = ops.Linear(kv, channels, bias=False)
        self.to_out = nn.ModuleList([ops.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x, context=None):
        context = x if context is None else context
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=HEADS)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        o = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](rearrange(o, "b h n d -> b n (h d)"))


class TransformerBlock(nn.Module):
    def __init__(self, channels: int, context_dim: int, operations=None):
        super().__init__()
        ops = operations or TorchOps
        self.norm1, self.attn1 = ops.LayerNorm(channels), Attention(channels, operations=ops)
        self.norm2, self.attn2 = ops.LayerNorm(channels), Attention(channels, context_dim, ops)
        self.norm3, self.ff = ops.LayerNorm(channels), FeedForward(channels, ops)

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """SD1.5's Transformer2D: 1×1 conv projections, one block of self- and cross-attention."""

    def __init__(self, channels: int, context_dim: int, operations=None):
        super().__init__()
        ops = operations or TorchOps
        self.norm = ops.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = ops.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(channels, context_dim, ops)])
        self.proj_out = ops.Conv2d(channels, channels, 1)

    def forward(self, x, context):
        height, width = x.shape[-2:]
        h = rearrange(self.proj_in(self.norm(x)), "n c h w -> n (h w) c")
        for block in self.transformer_blocks:
            h = block(h, context)
        return x + self.proj_out(rearrange(h, "n (h w) c -> n c h w", h=height, w=width))


class Downsample(nn.Module):
    def __init__(self, channels: int, operations=None):
        super().__init__()
        self.conv = (operations or TorchOps).Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, context_dim: int, attention: bool, downsample: bool,
                 operations=None):
        super().__init__()
        ops = operations or TorchOps
        self.resnets = nn.ModuleList([ResnetBlock(cin if i == 0 else cout, cout, temb, ops) for i in range(2)])
        self.attentions = nn.ModuleList([SpatialTransformer(cout, context_dim, ops) for _ in range(2)]) if attention else None
        self.motion_modules = nn.ModuleList([MotionModule(cout, attention_blocks=1, operations=ops) for _ in range(2)])
        self.downsamplers = nn.ModuleList([Downsample(cout, ops)]) if downsample else None


class MidBlock(nn.Module):
    def __init__(self, channels: int, temb: int, context_dim: int, operations=None):
        super().__init__()
        ops = operations or TorchOps
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, temb, ops) for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialTransformer(channels, context_dim, ops)])

    def forward(self, x, emb, context):
        x = self.resnets[0](x, emb)
        return self.resnets[1](self.attentions[0](x, context), emb)


class ScribbleEmbedding(nn.Module):
    """Pixel-space hint → latent-sized features: conv_in, 6 convs (every 2nd strided), zero-init conv_out."""

    def __init__(self, cin: int, cout: int, widths=SCRIBBLE_EMBEDDING, operations=None):
        super().__init__()
        ops = operations or TorchOps
        self.conv_in = ops.Conv2d(cin, widths[0], 3, padding=1)
        blocks = []
        for a, b in zip(widths[:-1], widths[1:]):
            blocks += [ops.Conv2d(a, a, 3, padding=1), ops.Conv2d(a, b, 3, padding=1, stride=2)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = ops.Conv2d(widths[-1], cout, 3, padding=1)

    def forward(self, x):
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


@dataclass(frozen=True)
class SparseCtrlConfig:
    variant: str                                   # RGB (latent + mask in) or SCRIBBLE (image + mask in)
    block_channels: tuple[int, ...] = SD15_CHANNELS
    context_dim: int = CONTEXT_DIM
    embedding_widths: tuple[int, ...] = SCRIBBLE_EMBEDDING  # scribble only

    @property
    def hint_channels(self) -> int:
        """Channels of the condition without the mask: a 4-channel latent (RGB) or an RGB image (scribble)."""
        return 4 if self.variant == RGB else 3

    @property
    def pixel_space(self) -> bool:
        """The scribble hint is an image at 8× the latent size; the RGB hint is a latent."""
        return self.variant == SCRIBBLE


class SparseCtrlEncoder(nn.Module):
    def __init__(self, config: SparseCtrlConfig, operations=None):
        """`operations`: see the module docstring (default: plain torch)."""
        super().__init__()
        ops = operations or TorchOps
        self.config = config
        chans = config.block_channels
        temb = chans[0] * 4
        self.time_embedding = TimestepEmbedding(chans[0], temb, ops)
        self.conv_in = ops.Conv2d(4, chans[0], 3, padding=1)
        cond_in = config.hint_channels + 1  # + the mask (concate_conditioning_mask)
        if config.variant == RGB:  # use_simplified_condition_embedding
            self.controlnet_cond_embedding = ops.Conv2d(cond_in, chans[0], 3, padding=1)
        else:
            self.controlnet_cond_embedding = ScribbleEmbedding(cond_in, chans[0], config.embedding_widths, ops)
        last = len(chans) - 1
        self.down_blocks = nn.ModuleList([
            DownBlock(chans[max(i - 1, 0)], c, temb, config.context_dim, attention=i < last, downsample=i < last,
                      operations=ops)
            for i, c in enumerate(chans)])
        self.mid_block = MidBlock(chans[-1], temb, config.context_dim, ops)
        zero_convs = [chans[0]] + [c for i, c in enumerate(chans) for _ in range(3 if i < last else 2)]
        self.controlnet_down_blocks = nn.ModuleList([ops.Conv2d(c, c, 1) for c in zero_convs])
        self.controlnet_mid_block = ops.Conv2d(chans[-1], chans[-1], 1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                frames: int, motion_scale: float = 1.0) -> dict[str, list[torch.Tensor]]:
        """x: the noisy latent (B·F, 4, h, w), only its shape is used (the published config zeroes it);
        hint: (B·F, 5, h, w) [latent, mask] (RGB) or (B·F, 4, 8h, 8w) [image in 0..1, mask] (scribble);
        timesteps: (B·F,) or a scalar; context: (B·F, tokens, 768). `motion_scale` blends the encoder's
        motion modules (1 = as trained). Returns ComfyUI's control dict: 12 'output' residuals in
        input-block order and one 'middle' residual."""
        if x.shape[0] % frames:
            raise ValueError(f"SparseCtrl got a batch of {x.shape[0]} rows, not a multiple of {frames} frames")
        timesteps = timesteps.reshape(-1).expand(x.shape[0]) if timesteps.numel() == 1 else timesteps
        emb = self.time_embedding(timestep_embedding(timesteps, self.config.block_channels[0]).to(x.dtype))
        h = self.conv_in(torch.zeros_like(x)) + self.controlnet_cond_embedding(hint.to(x.dtype))
        residuals = [h]
        for block in self.down_blocks:
            for i, (resnet, motion) in enumerate(zip(block.resnets, block.motion_modules)):
                h = resnet(h, emb)
                if block.attentions is not None:
                    h = block.attentions[i](h, context)
                h = motion(h, frames, PER_FRAME, scale=motion_scale)
                residuals.append(h)
            if block.downsamplers is not None:
                h = block.downsamplers[0](h)
                residuals.append(h)
        h = self.mid_block(h, emb, context)
        return {"output": [conv(r) for conv, r in zip(self.controlnet_down_blocks, residuals)],
                "middle": [self.controlnet_mid_block(h)]}
