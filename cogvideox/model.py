"""The CogVideoX-5B video transformer (diffusers' CogVideoXTransformer3DModel), pure torch.

Parameter names are diffusers' own, so the published `transformer/` weights load with no key conversion.
Layers come from `operations` (comfy.ops style) and attention from `attention` (ComfyUI's optimized_attention
signature, called with skip_reshape=True); both default to plain torch, so this file needs no ComfyUI.

One forward, per block i (text tokens T, video tokens V, both `width` wide, modulated by the time embedding e):
    V', T', g, g_T = norm1(V, T, e)                    # CogVideoXLayerNormZero: LN·(1+scale)+shift, gates
    V' = patch(V', i)  for each "cogvideox_video_tokens" patch   # Tora's motion-guidance fuser sits here
    A_T, A_V = attention([T'; V'])                     # joint; per-head LN on q, k; 3D RoPE on video q, k
    V += g·A_V;  T += g_T·A_T
    V', T', g, g_T = norm2(V, T, e);  F = ff([T'; V'])  # one GELU(tanh) MLP over both
    V += g·F_V;  T += g_T·F_T
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..motion.model import TorchOps

VIDEO_TOKENS_PATCH = "cogvideox_video_tokens"  # transformer_options["patches"][...]: callables on the video tokens
ROPE_THETA = 10000.0
QK_NORM_EPS = 1e-6  # diffusers' Attention(eps=1e-6) in CogVideoXBlock, whatever norm_eps says


@dataclass(frozen=True)
class CogVideoXConfig:
    """The fields of diffusers' transformer/config.json that shape this model; the defaults are CogVideoX-5B's.
    Only the rotary, CogVideoX 1.0 variant exists here (files.py refuses the others)."""
    num_attention_heads: int = 48
    attention_head_dim: int = 64
    in_channels: int = 16
    out_channels: int = 16
    time_embed_dim: int = 512
    text_embed_dim: int = 4096
    num_layers: int = 42
    patch_size: int = 2
    sample_height: int = 60  # latent size the RoPE grid is laid out for (the crop region comes from it)
    sample_width: int = 90
    norm_eps: float = 1e-5
    attention_bias: bool = True
    freq_shift: int = 0

    @property
    def width(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def __post_init__(self):
        # the RoPE splits a head t/h/w = d/4, 3d/8, 3d/8, each an even number of channels
        if self.attention_head_dim % 16:
            raise ValueError(f"attention_head_dim {self.attention_head_dim} is not a multiple of 16")


def sdpa_attention(q, k, v, heads: int, skip_reshape: bool = True, **_) -> torch.Tensor:
    """The default `attention`: softmax(q·kᵀ/√d)·v; q, k, v are (batch, heads, tokens, d), the result
    (batch, tokens, heads·d), as ComfyUI's optimized_attention with skip_reshape=True."""
    assert skip_reshape, "CogVideoX passes q, k, v already split into heads"
    return rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")


# ---- positions: time embedding and 3D rotary embedding ------------------------------------------------------------

def timestep_embedding(t: torch.Tensor, channels: int, shift: float = 0) -> torch.Tensor:
    """[cos(t·ω_i), sin(t·ω_i)], ω_i = 10000^(−i/(C/2 − shift)) (diffusers' Timesteps with flip_sin_to_cos)."""
    half = channels // 2
    omega = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - shift))
    angle = t.float()[:, None] * omega[None]
    return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)


def rope_crop(grid_h: int, grid_w: int, base_h: int, base_w: int):
    """The region of the base grid (the training size) the grid is stretched over: the grid's aspect ratio fitted
    inside the base grid, centred ((top, left), (bottom, right)); diffusers' get_resize_crop_region_for_grid."""
    if grid_h / grid_w > base_h / base_w:
        height, width = base_h, int(round(base_h / grid_h * grid_w))
    else:
        width, height = base_w, int(round(base_w / grid_w * grid_h))
    top, left = int(round((base_h - height) / 2.0)), int(round((base_w - width) / 2.0))
    return (top, left), (top + height, left + width)


def axis_angles(positions: torch.Tensor, channels: int) -> torch.Tensor:
    """positions·θ^(−2i/C) for i < C/2: [positions, C/2]."""
    inv_freq = 1.0 / ROPE_THETA ** (torch.arange(0, channels, 2, dtype=torch.float32, device=positions.device) / channels)
    return torch.outer(positions, inv_freq)


def rope_3d(frames: int, grid_h: int, grid_w: int, head_dim: int, base_h: int, base_w: int, device=None):
    """cos and sin [frames·grid_h·grid_w, head_dim] of the video tokens, in token order (t, h, w).

    A head splits d/4 channels for time and 3d/8 each for height and width; each channel pair shares one angle.
    Frames sit at 0..F−1; rows and columns are spread evenly over the crop region of the base grid, the last one
    a step short of its far edge (linspace(start, stop·(n−1)/n, n), as diffusers' get_3d_rotary_pos_embed)."""
    (top, left), (bottom, right) = rope_crop(grid_h, grid_w, base_h, base_w)
    f32 = dict(dtype=torch.float32, device=device)
    t = axis_angles(torch.linspace(0, frames * (frames - 1) / frames, frames, **f32), head_dim // 4)
    h = axis_angles(torch.linspace(top, bottom * (grid_h - 1) / grid_h, grid_h, **f32), head_dim // 8 * 3)
    w = axis_angles(torch.linspace(left, right * (grid_w - 1) / grid_w, grid_w, **f32), head_dim // 8 * 3)
    angles = torch.cat([t[:, None, None].expand(-1, grid_h, grid_w, -1),
                        h[None, :, None].expand(frames, -1, grid_w, -1),
                        w[None, None, :].expand(frames, grid_h, -1, -1)], dim=-1)
    angles = rearrange(angles, "f h w d -> (f h w) d").repeat_interleave(2, dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each adjacent channel pair (x₀, x₁) by its angle: (x₀cos − x₁sin, x₁cos + x₀sin), in float32."""
    pairs = rearrange(x.float(), "... (d two) -> ... d two", two=2)
    rotated = rearrange(torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1), "... d two -> ... (d two)")
    return (x.float() * cos + rotated * sin).to(x.dtype)


# ---- layers ---------------------------------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    """Video: each frame cut into p×p patches by a strided conv; text: one linear map to the model width."""

    def __init__(self, cfg: CogVideoXConfig, ops, **factory):
        super().__init__()
        p = cfg.patch_size
        self.proj = ops.Conv2d(cfg.in_channels, cfg.width, kernel_size=p, stride=p, bias=True, **factory)
        self.text_proj = ops.Linear(cfg.text_embed_dim, cfg.width, **factory)

    def forward(self, x: torch.Tensor, context: torch.Tensor):
        frames = x.shape[2]
        video = self.proj(rearrange(x, "b c f h w -> (b f) c h w"))
        return self.text_proj(context), rearrange(video, "(b f) d h w -> b (f h w) d", f=frames)


class TimestepEmbedding(nn.Module):
    def __init__(self, channels: int, out: int, ops, **factory):
        super().__init__()
        self.linear_1 = ops.Linear(channels, out, **factory)
        self.linear_2 = ops.Linear(out, out, **factory)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class AdaLayerNormZero(nn.Module):
    """CogVideoXLayerNormZero: one LayerNorm for text and video, each with its own shift, scale and gate from e."""

    def __init__(self, cond: int, width: int, eps: float, ops, **factory):
        super().__init__()
        self.linear = ops.Linear(cond, 6 * width, **factory)
        self.norm = ops.LayerNorm(width, eps=eps, elementwise_affine=True, **factory)

    def forward(self, video, text, emb):
        shift, scale, gate, t_shift, t_scale, t_gate = self.linear(F.silu(emb))[:, None].chunk(6, dim=-1)
        return (self.norm(video) * (1 + scale) + shift, self.norm(text) * (1 + t_scale) + t_shift, gate, t_gate)


class AdaLayerNormOut(nn.Module):
    """The output norm: LayerNorm·(1 + scale) + shift, shift first in the projection (diffusers' chunk_dim=1)."""

    def __init__(self, cond: int, width: int, eps: float, ops, **factory):
        super().__init__()
        self.linear = ops.Linear(cond, 2 * width, **factory)
        self.norm = ops.LayerNorm(width, eps=eps, elementwise_affine=True, **factory)

    def forward(self, x, emb):
        shift, scale = self.linear(F.silu(emb))[:, None].chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift


class JointAttention(nn.Module):
    """Self-attention over [text; video] with per-head LayerNorm on q and k, RoPE on the video part only."""

    def __init__(self, cfg: CogVideoXConfig, ops, attention, **factory):
        super().__init__()
        width, d = cfg.width, cfg.attention_head_dim
        self.heads = cfg.num_attention_heads
        self.attention = attention
        self.to_q = ops.Linear(width, width, bias=cfg.attention_bias, **factory)
        self.to_k = ops.Linear(width, width, bias=cfg.attention_bias, **factory)
        self.to_v = ops.Linear(width, width, bias=cfg.attention_bias, **factory)
        self.norm_q = ops.LayerNorm(d, eps=QK_NORM_EPS, elementwise_affine=True, **factory)
        self.norm_k = ops.LayerNorm(d, eps=QK_NORM_EPS, elementwise_affine=True, **factory)
        self.to_out = nn.ModuleList([ops.Linear(width, width, bias=True, **factory)])  # key to_out.0 as diffusers'

    def forward(self, x, text_len: int, rope, transformer_options):
        q, k, v = (rearrange(proj(x), "b n (h d) -> b h n d", h=self.heads) for proj in (self.to_q, self.to_k, self.to_v))
        q, k = self.norm_q(q), self.norm_k(k)
        if rope is not None:
            q, k = (torch.cat([t[:, :, :text_len], apply_rope(t[:, :, text_len:], *rope)], dim=2) for t in (q, k))
        out = self.attention(q, k, v, self.heads, skip_reshape=True, transformer_options=transformer_options)
        return self.to_out[0](out)


class GeluProjection(nn.Module):
    def __init__(self, width: int, inner: int, ops, **factory):
        super().__init__()
        self.proj = ops.Linear(width, inner, **factory)

    def forward(self, x):
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, width: int, ops, **factory):
        super().__init__()
        # diffusers' net = [GELU, Dropout, Linear, Dropout]: the dropouts keep their slots so keys stay net.0 / net.2
        self.net = nn.ModuleList([GeluProjection(width, 4 * width, ops, **factory), nn.Identity(),
                                  ops.Linear(4 * width, width, **factory)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class CogVideoXBlock(nn.Module):
    def __init__(self, cfg: CogVideoXConfig, ops, attention, **factory):
        super().__init__()
        self.norm1 = AdaLayerNormZero(cfg.time_embed_dim, cfg.width, cfg.norm_eps, ops, **factory)
        self.attn1 = JointAttention(cfg, ops, attention, **factory)
        self.norm2 = AdaLayerNormZero(cfg.time_embed_dim, cfg.width, cfg.norm_eps, ops, **factory)
        self.ff = FeedForward(cfg.width, ops, **factory)

    def forward(self, video, text, emb, rope, patch_info: dict):
        text_len = text.shape[1]
        video_n, text_n, gate, t_gate = self.norm1(video, text, emb)
        options = patch_info["transformer_options"]
        for patch in options.get("patches", {}).get(VIDEO_TOKENS_PATCH, []):
            video_n = patch(video_n, patch_info)
        out = self.attn1(torch.cat([text_n, video_n], dim=1), text_len, rope, options)
        video = video + gate * out[:, text_len:]
        text = text + t_gate * out[:, :text_len]

        video_n, text_n, gate, t_gate = self.norm2(video, text, emb)
        out = self.ff(torch.cat([text_n, video_n], dim=1))
        return video + gate * out[:, text_len:], text + t_gate * out[:, :text_len]


class CogVideoXTransformer(nn.Module):
    """forward(x [b, c, f, h, w] latents, timestep [b] in 0..999, context [b, text tokens, text_embed_dim])
    → the v-prediction, shaped like x. Heights and widths not divisible by the patch size are padded (circularly,
    as ComfyUI's video DiTs do) and the output cropped back."""

    def __init__(self, config: CogVideoXConfig, operations=None, attention=None, device=None, dtype=None):
        super().__init__()
        ops = operations or TorchOps
        attention = attention or sdpa_attention
        factory = dict(device=device, dtype=dtype)
        self.config = config
        self.dtype = dtype if dtype is not None else torch.get_default_dtype()
        self.patch_embed = PatchEmbed(config, ops, **factory)
        self.time_embedding = TimestepEmbedding(config.width, config.time_embed_dim, ops, **factory)
        self.transformer_blocks = nn.ModuleList(
            [CogVideoXBlock(config, ops, attention, **factory) for _ in range(config.num_layers)])
        self.norm_final = ops.LayerNorm(config.width, eps=config.norm_eps, elementwise_affine=True, **factory)
        self.norm_out = AdaLayerNormOut(config.time_embed_dim, config.width, config.norm_eps, ops, **factory)
        self.proj_out = ops.Linear(config.width, config.patch_size ** 2 * config.out_channels, **factory)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                transformer_options: dict | None = None, **kwargs) -> torch.Tensor:
        cfg, p = self.config, self.config.patch_size
        frames, height, width = x.shape[2:]
        if height % p or width % p:
            x = F.pad(x, (0, -width % p, 0, -height % p, 0, 0), mode="circular")
        transformer_options = transformer_options or {}
        timestep = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(x.shape[0])
        grid = (frames, x.shape[3] // p, x.shape[4] // p)

        emb = self.time_embedding(timestep_embedding(timestep, cfg.width, cfg.freq_shift).to(x.dtype))
        text, video = self.patch_embed(x, context.to(x.dtype))
        rope = rope_3d(*grid, cfg.attention_head_dim, cfg.sample_height // p, cfg.sample_width // p, device=x.device)

        for i, block in enumerate(self.transformer_blocks):
            info = {"block_index": i, "grid": grid, "transformer_options": transformer_options}
            video, text = block(video, text, emb, rope, info)

        # diffusers' 5B normalises [text; video] together and keeps the video part: LayerNorm is per token, so
        # normalising the video tokens alone is the same
        video = self.proj_out(self.norm_out(self.norm_final(video), emb))
        out = rearrange(video, "b (f h w) (c ph pw) -> b c f (h ph) (w pw)", f=grid[0], h=grid[1], ph=p, pw=p)
        return out[:, :, :, :height, :width]
