"""The AnimateDiff motion module ("VanillaTemporalModule") in plain torch.

Module and parameter names mirror the original checkpoints exactly, so an original-format state
dict (minus its `pos_encoder.pe` buffers, which are a fixed function of their length) loads with
`load_state_dict(strict=True)`. Math: MOTION_FORMATS.md §1-§2.

Activations arrive as ComfyUI/ldm lays them out: (batch·frames, C, H, W), batch-major.

Layers come from an `operations` namespace (`.Linear`, `.LayerNorm`, `.GroupNorm`; `.Conv2d` for the control
adapters that share it, control/sparsectrl and control/motionctrl), and attention is an
`attention(q, k, v, heads)` function on (sequences, tokens, heads·dim) tensors, the layout of ComfyUI's
`comfy.ldm.modules.attention.optimized_attention`. Both default to plain torch (`TorchOps`, `sdpa_attention`),
so this file needs no ComfyUI; under ComfyUI the nodes pass `comfy.ops` and ComfyUI's selected attention
in (motion.injection.comfy_layers), which gives weight casting and partial loading in low-VRAM mode. Neither changes
module names or state-dict keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..common.ops import TorchOps, cast
from .errors import MotionWindowsError

HEADS = 8
GROUPS = 32
NORM_EPS = 1e-6

PIA_IN_CHANNELS = 9  # PIA's conv_in: noisy latent 4, mask 1, image latent 4

PER_FRAME = "per_frame"
POOLED = "pooled"


def sinusoidal_table(length: int, channels: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """PE[p, 2i] = sin(p·10000^(−2i/C)), PE[p, 2i+1] = cos(...); shape [length, C]."""
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / channels))
    pe = torch.zeros(length, channels, dtype=torch.float32, device=device)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.to(dtype)


_PE_CACHE: dict = {}  # (length, channels, device, dtype) -> table; a few entries per run (one per width and window length)


def cached_sinusoidal_table(length: int, channels: int, device, dtype) -> torch.Tensor:
    """sinusoidal_table, made once per (length, channels, device, dtype) and shared by every module and call: the
    table is a fixed function of those (AnimateDiff-Evolved keeps it as a buffer). Making it anew costs ~6 small ops
    per module call, which is nothing on an idle CPU but milliseconds each when another process holds the other
    core and every op waits for its OpenMP threads."""
    key = (length, channels, torch.device(device), dtype, torch.is_inference_mode_enabled())  # no inference tensors in autograd
    table = _PE_CACHE.get(key)
    if table is None:
        if len(_PE_CACHE) > 64:  # bound it for runs that see many window lengths or devices
            _PE_CACHE.clear()
        table = _PE_CACHE[key] = sinusoidal_table(length, channels, device=device, dtype=dtype)
    return table


def group_norm(x: torch.Tensor, frames: int, weight, bias, mode: str, groups: int = GROUPS, eps: float = NORM_EPS):
    """GroupNorm over (B·F, C, H, W): statistics per frame, or pooled over the F frames of each batch item (§7)."""
    if mode == PER_FRAME:
        return F.group_norm(x, groups, cast(weight, x), cast(bias, x), eps)
    pooled = rearrange(x, "(b f) c h w -> b c f h w", f=frames)
    pooled = F.group_norm(pooled, groups, cast(weight, x), cast(bias, x), eps)
    return rearrange(pooled, "b c f h w -> (b f) c h w")


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """The default `attention`: softmax(q·kᵀ/√d)·v per head; q, k, v and the result are (sequences, tokens, heads·d)."""
    q, k, v = (rearrange(t, "s f (h d) -> s h f d", h=heads) for t in (q, k, v))
    return rearrange(F.scaled_dot_product_attention(q, k, v), "s h f d -> s f (h d)")


class TemporalAttention(nn.Module):
    """Self-attention along the frame axis; the PE is added to its (normed) input only."""

    def __init__(self, channels: int, operations=None, attention=None):
        super().__init__()
        ops = operations or TorchOps
        self.to_q = ops.Linear(channels, channels, bias=False)
        self.to_k = ops.Linear(channels, channels, bias=False)
        self.to_v = ops.Linear(channels, channels, bias=False)
        self.to_out = nn.ModuleList([ops.Linear(channels, channels), nn.Dropout(0.0)])
        self.attention = attention or sdpa_attention  # a plain function attribute: no parameters, no state-dict key

    def forward(self, n: torch.Tensor, key_scale=None) -> torch.Tensor:  # n: (sequences, frames, C)
        """`key_scale` multiplies the keys (a number, or (sequences, frames, 1)): a temperature of the attention
        over frames, AnimateDiff-Evolved's scale_multival (utils_motion.CrossAttentionMM: `k *= scale_mask`)."""
        k = self.to_k(n)
        if key_scale is not None:
            k = k * (cast(key_scale, k) if isinstance(key_scale, torch.Tensor) else key_scale)
        o = self.attention(self.to_q(n), k, self.to_v(n), HEADS)  # over frames, per head
        return self.to_out[0](o)


class GEGLU(nn.Module):
    def __init__(self, channels: int, operations=None):
        super().__init__()
        self.proj = (operations or TorchOps).Linear(channels, channels * 8)

    def forward(self, x):
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, channels: int, operations=None):
        super().__init__()
        ops = operations or TorchOps
        self.net = nn.ModuleList([GEGLU(channels, ops), nn.Dropout(0.0), ops.Linear(channels * 4, channels)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class TemporalTransformerBlock(nn.Module):
    def __init__(self, channels: int, attention_blocks: int = 2, operations=None, attention=None):
        super().__init__()
        ops = operations or TorchOps
        self.attention_blocks = nn.ModuleList([TemporalAttention(channels, ops, attention) for _ in range(attention_blocks)])
        self.norms = nn.ModuleList([ops.LayerNorm(channels) for _ in range(attention_blocks)])
        self.ff = FeedForward(channels, ops)
        self.ff_norm = ops.LayerNorm(channels)

    def forward(self, h: torch.Tensor, pe: torch.Tensor, key_scale=None, attention_inputs=None) -> torch.Tensor:
        """`attention_inputs`: {attention block index: function} changing that block's input (normed, PE added;
        (sequences, frames, C)) before q, k and v are taken from it; CameraCtrl's camera merge (camera/merge.py)."""
        for index, (attention, norm) in enumerate(zip(self.attention_blocks, self.norms)):
            n = norm(h) + pe
            if attention_inputs and index in attention_inputs:
                n = attention_inputs[index](n)
            h = h + attention(n, key_scale)
        return h + self.ff(self.ff_norm(h))


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, attention_blocks: int = 2, operations=None, attention=None):
        super().__init__()
        ops = operations or TorchOps
        self.channels = channels
        self.norm = ops.GroupNorm(GROUPS, channels, eps=NORM_EPS, affine=True)
        self.proj_in = ops.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, attention_blocks, ops, attention)])
        self.proj_out = ops.Linear(channels, channels)

    def delta(self, x: torch.Tensor, frames: int, norm_mode: str, key_scale=None,
              attention_inputs=None) -> torch.Tensor:
        """What the module adds to its input: out = x + delta (§2 steps 2-7). `key_scale`: a number, or
        [B·F, 1, H, W] per frame and pixel, multiplying every temporal attention's keys (TemporalAttention).
        `attention_inputs`: see TemporalTransformerBlock.forward."""
        return rearrange(self.delta_frames(x, frames, norm_mode, key_scale, attention_inputs),
                         "b f c h w -> (b f) c h w")

    def delta_frames(self, x: torch.Tensor, frames: int, norm_mode: str, key_scale=None,
                     attention_inputs=None) -> torch.Tensor:
        """`delta` as [B, F, C, H, W], a strided view of the last projection's output: the residual sum reads it
        in place (MotionModule.forward) instead of copying it back to the (B·F, C, H, W) layout first."""
        if norm_mode == PER_FRAME:
            h = self.norm(x)
        else:  # statistics over all frames of a batch item (§7)
            h = rearrange(self.norm(rearrange(x, "(b f) c h w -> b c f h w", f=frames)), "b c f h w -> (b f) c h w")
        height, width = h.shape[-2:]
        h = rearrange(h, "(b f) c h w -> (b h w) f c", f=frames)
        h = self.proj_in(h)
        pe = cached_sinusoidal_table(frames, self.channels, h.device, h.dtype)
        if isinstance(key_scale, torch.Tensor):
            key_scale = rearrange(key_scale, "(b f) 1 h w -> (b h w) f 1", f=frames).contiguous()
        for block in self.transformer_blocks:
            h = block(h, pe, key_scale, attention_inputs)
        h = self.proj_out(h)
        return rearrange(h, "(b h w) f c -> b f c h w", h=height, w=width)


class MotionModule(nn.Module):
    """One `motion_modules.N` entry. Its forward maps (B·F, C, H, W) to the same shape."""

    def __init__(self, channels: int, attention_blocks: int = 2, operations=None, attention=None):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, attention_blocks, operations, attention)

    def forward(self, x: torch.Tensor, frames: int, norm_mode: str = PER_FRAME, scale=1.0, feature=None,
                dtype: torch.dtype | None = None, key_scale=None, attention_inputs=None,
                windows=None) -> torch.Tensor:
        """`scale` blends the motion in: x + scale·delta (1 = as trained, 0 = identity).

        It may be a per-frame tensor of shape [frames], or per frame and pixel [frames, 1, H, W] (a resized
        motion-scale mask, motion.regional). `feature` (AnimateLCM-I2V's image features, §4.7)
        is added to the module's input; it counts as part of what the motion model adds, so `scale`
        blends it too: x + scale·(feature + delta(x + feature)).

        `dtype`: compute delta in this dtype (None: in x's). Only delta is computed in it: the input is cast
        to it and delta cast back, so the residual sum stays in x's dtype.

        `key_scale` (None = 1): multiplies the temporal attention's keys, a number or [frames, 1, H, W] (the same in
        every cond chunk); AnimateDiff-Evolved's scale_multival.

        `attention_inputs` (None = none): {attention block index: function} applied to that attention block's input
        in the (B·H·W, F, C) layout (CameraCtrl's camera features, camera/merge.py); part of delta, so `scale`
        blends it too.

        `windows` (motion.windows.CallWindows; None = all frames at once): the temporal attention runs in overlapping
        windows of the frames, fused per frame (motion-only windows, AnimateDiff-Evolved's view options)."""
        if x.shape[0] % frames:
            raise ValueError(f"motion module got a batch of {x.shape[0]} rows, not a multiple of {frames} frames")
        inner = x if feature is None else x + feature
        if isinstance(key_scale, torch.Tensor):
            key_scale = key_scale.repeat(x.shape[0] // frames, 1, 1, 1)
        inner = inner if dtype is None else inner.to(dtype)
        # the sum is taken as [B, F, C, H, W] (views of x and of delta's projection: no copy of delta first)
        by_frame = lambda t: rearrange(t, "(b f) c h w -> b f c h w", f=frames)  # noqa: E731
        if windows is None:
            delta = self.temporal_transformer.delta_frames(inner, frames, norm_mode, key_scale, attention_inputs)
        elif attention_inputs:
            raise MotionWindowsError("CameraCtrl does not run in Motion-Only Windows yet: remove the Motion-Only "
                                     "Windows node, and use Context Windows (Motion) for long camera moves.")
        else:
            delta = by_frame(windows.delta(self.temporal_transformer, inner, frames, norm_mode, key_scale))
        delta = delta.to(x.dtype)  # a no-op unless `dtype` differs
        if feature is not None:
            delta = by_frame(feature) + delta
        if isinstance(scale, torch.Tensor) and scale.ndim == 1:  # per frame
            scale = rearrange(cast(scale, x).repeat(x.shape[0] // frames), "n -> n 1 1 1")
        elif isinstance(scale, torch.Tensor):  # per frame and pixel, [frames, 1, H, W]: the same in every cond chunk
            scale = cast(scale, x).repeat(x.shape[0] // frames, 1, 1, 1)
        elif scale == 1.0:
            return rearrange(by_frame(x) + delta, "b f c h w -> (b f) c h w")
        if isinstance(scale, torch.Tensor):
            scale = by_frame(scale)
        return rearrange(by_frame(x) + delta * scale, "b f c h w -> (b f) c h w")


class MotionBlock(nn.Module):
    def __init__(self, channels: int, modules: int, attention_blocks: int = 2, operations=None, attention=None):
        super().__init__()
        self.motion_modules = nn.ModuleList([MotionModule(channels, attention_blocks, operations, attention)
                                             for _ in range(modules)])


@dataclass(frozen=True)
class MotionArchitecture:
    """What a file's key layout says about the network it holds."""
    block_channels: tuple[int, ...]  # per UNet level, top (320) first
    has_mid: bool
    attention_blocks: int = 2

    @property
    def base(self) -> str:
        return "SD1.5" if len(self.block_channels) == 4 else "SDXL"


SD15_CHANNELS = (320, 640, 1280, 1280)
SDXL_CHANNELS = (320, 640, 1280)


class MotionModel(nn.Module):
    """All motion modules of one file: down_blocks.{i}, up_blocks.{i} (reverse order), optional mid_block."""

    def __init__(self, arch: MotionArchitecture, operations=None, attention=None, pia_conv_in: bool = False):
        """`operations` / `attention`: see the module docstring (default: plain torch).
        `pia_conv_in`: PIA files also hold the UNet's input conv widened to 9 channels (noisy latent, mask, image
        latent); it is kept as `conv_in` under its file name (pia/ patches the UNet with it)."""
        super().__init__()
        self.arch = arch
        chans = arch.block_channels
        blocks = arch.attention_blocks
        self.down_blocks = nn.ModuleList([MotionBlock(c, 2, blocks, operations, attention) for c in chans])
        self.up_blocks = nn.ModuleList([MotionBlock(c, 3, blocks, operations, attention) for c in reversed(chans)])
        self.mid_block = MotionBlock(chans[-1], 1, blocks, operations, attention) if arch.has_mid else None
        self.img_encoder = None  # AnimateLCM-I2V files: motion.image_encoder.ImageEncoder (set by formats.py)
        self.conv_in = ((operations or TorchOps).Conv2d(PIA_IN_CHANNELS, chans[0], 3, padding=1) if pia_conv_in
                        else None)

    def ordered_modules(self):
        """(kind, index, module) in UNet execution order; kind is 'input', 'middle' or 'output', index
        counts motion modules of that kind (down: level·2 + i, up: level·3 + i)."""
        for level, block in enumerate(self.down_blocks):
            for i, m in enumerate(block.motion_modules):
                yield "input", level * 2 + i, m
        if self.mid_block is not None:
            yield "middle", 0, self.mid_block.motion_modules[0]
        for level, block in enumerate(self.up_blocks):
            for i, m in enumerate(block.motion_modules):
                yield "output", level * 3 + i, m
