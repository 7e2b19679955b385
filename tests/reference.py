"""A deliberately plain, from-spec reference of one motion module (MOTION_FORMATS.md §2).

Explicit loops, explicit softmax, plain reshapes — no code shared with motion/model.py.
`sd` is the module's original-format state dict with prefixes stripped
(keys like `norm.weight`, `transformer_blocks.0.attention_blocks.0.to_q.weight`).
"""
import math

import torch


def sinusoidal(length: int, channels: int) -> torch.Tensor:
    pe = torch.zeros(length, channels, dtype=torch.float64)
    for p in range(length):
        for i in range(0, channels, 2):
            angle = p * 10000.0 ** (-i / channels)
            pe[p, i] = math.sin(angle)
            pe[p, i + 1] = math.cos(angle)
    return pe.float()


def _group_norm_5d(x, w, b, groups=32, eps=1e-6):
    """x: (N, C, ...) — statistics over each group's channels and all trailing axes."""
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)
    mean = g.mean(dim=-1, keepdim=True)
    var = g.var(dim=-1, unbiased=False, keepdim=True)
    g = (g - mean) / torch.sqrt(var + eps)
    x = g.reshape(x.shape)
    shape = (1, c) + (1,) * (x.dim() - 2)
    return x * w.reshape(shape) + b.reshape(shape)


def _layer_norm(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def reference_module(sd: dict, x: torch.Tensor, frames: int, pooled: bool, attention_blocks: int = 2,
                     key_scale=None) -> torch.Tensor:
    """x: (B·F, C, H, W) float64-friendly; returns the module output. `key_scale` (a number or (B·H·W, F, 1))
    multiplies every attention's keys, as AnimateDiff-Evolved's scale_multival (utils_motion.CrossAttentionMM)."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    bf, c, hgt, wid = x.shape
    b = bf // frames
    if pooled:
        x5 = x.reshape(b, frames, c, hgt, wid).permute(0, 2, 1, 3, 4)
        h = _group_norm_5d(x5, sd["norm.weight"], sd["norm.bias"]).permute(0, 2, 1, 3, 4).reshape(bf, c, hgt, wid)
    else:
        h = _group_norm_5d(x, sd["norm.weight"], sd["norm.bias"])
    # (B, F, C, H, W) -> (B, H, W, F, C) -> (B·H·W, F, C)
    h = h.reshape(b, frames, c, hgt, wid).permute(0, 3, 4, 1, 2).reshape(b * hgt * wid, frames, c)
    h = h @ sd["proj_in.weight"].T + sd["proj_in.bias"]
    pe = sinusoidal(frames, c).double()
    heads, d = 8, c // 8
    t = "transformer_blocks.0."
    for a in range(attention_blocks):
        n = _layer_norm(h, sd[f"{t}norms.{a}.weight"], sd[f"{t}norms.{a}.bias"]) + pe
        p = f"{t}attention_blocks.{a}."
        q = n @ sd[p + "to_q.weight"].T
        k = n @ sd[p + "to_k.weight"].T
        if key_scale is not None:
            k = k * (key_scale.double() if isinstance(key_scale, torch.Tensor) else key_scale)
        v = n @ sd[p + "to_v.weight"].T
        outs = []
        for head in range(heads):
            sl = slice(head * d, (head + 1) * d)
            scores = q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(d)
            scores = scores - scores.max(-1, keepdim=True).values
            attn = scores.exp() / scores.exp().sum(-1, keepdim=True)
            outs.append(attn @ v[..., sl])
        o = torch.cat(outs, dim=-1)
        h = h + (o @ sd[p + "to_out.0.weight"].T + sd[p + "to_out.0.bias"])
    n = _layer_norm(h, sd[f"{t}ff_norm.weight"], sd[f"{t}ff_norm.bias"])
    proj = n @ sd[f"{t}ff.net.0.proj.weight"].T + sd[f"{t}ff.net.0.proj.bias"]
    value, gate = proj[..., : 4 * c], proj[..., 4 * c:]
    gelu = 0.5 * gate * (1.0 + torch.erf(gate / math.sqrt(2.0)))
    h = h + ((value * gelu) @ sd[f"{t}ff.net.2.weight"].T + sd[f"{t}ff.net.2.bias"])
    h = h @ sd["proj_out.weight"].T + sd["proj_out.bias"]
    h = h.reshape(b, hgt, wid, frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, hgt, wid)
    return h + x
