"""Random-weight motion-model state dicts in the real published layouts (MOTION_FORMATS.md §1, §4, §6).

Key names are written out here from the spec, independently of motion/formats.py, so the loader is
tested against the spec rather than against itself. `device="meta"` gives shapes without memory,
which is all detection needs.
"""
from __future__ import annotations

import re

import torch

SD15 = (320, 640, 1280, 1280)
SDXL = (320, 640, 1280)

MODULE_TENSORS = {  # relative to ...motion_modules.N.temporal_transformer. ; C = channels
    "norm.weight": lambda c: (c,), "norm.bias": lambda c: (c,),
    "proj_in.weight": lambda c: (c, c), "proj_in.bias": lambda c: (c,),
    "proj_out.weight": lambda c: (c, c), "proj_out.bias": lambda c: (c,),
    "transformer_blocks.0.ff.net.0.proj.weight": lambda c: (8 * c, c),
    "transformer_blocks.0.ff.net.0.proj.bias": lambda c: (8 * c,),
    "transformer_blocks.0.ff.net.2.weight": lambda c: (c, 4 * c),
    "transformer_blocks.0.ff.net.2.bias": lambda c: (c,),
    "transformer_blocks.0.ff_norm.weight": lambda c: (c,), "transformer_blocks.0.ff_norm.bias": lambda c: (c,),
}
ATTENTION_TENSORS = {  # relative to ...transformer_blocks.0.attention_blocks.A.
    "to_q.weight": lambda c: (c, c), "to_k.weight": lambda c: (c, c), "to_v.weight": lambda c: (c, c),
    "to_out.0.weight": lambda c: (c, c), "to_out.0.bias": lambda c: (c,),
}


def module_prefixes(levels, mid: bool):
    """(prefix, channels) of every motion module, original naming."""
    out = []
    for i, c in enumerate(levels):
        out += [(f"down_blocks.{i}.motion_modules.{j}.temporal_transformer.", c) for j in range(2)]
    if mid:
        out.append(("mid_block.motion_modules.0.temporal_transformer.", levels[-1]))
    for i, c in enumerate(reversed(levels)):
        out += [(f"up_blocks.{i}.motion_modules.{j}.temporal_transformer.", c) for j in range(3)]
    return out


def _fill(key: str, shape, gen: torch.Generator, dtype, device):
    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    if key.endswith("pe"):
        raise AssertionError("pe is built by original_state_dict")
    last = key.split(".")[-2]
    if key.endswith("bias"):
        t = 0.02 * torch.randn(shape, generator=gen)
    elif last in ("norm", "ff_norm") or re.fullmatch(r"\d", last) and ".norms." in key:
        t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
    else:
        t = torch.randn(shape, generator=gen) / shape[-1] ** 0.5
    return t.to(dtype)


def original_state_dict(levels=SD15, mid=False, pe_length: int | None = 32, attention_blocks=2,
                        seed=0, dtype=torch.float32, device="cpu", zero_proj_out=False):
    """An original-format (guoyww) motion-module state dict. pe_length None = no PE stored (AnimateLCM)."""
    from reference import sinusoidal  # the spec's table, written independently

    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for prefix, c in module_prefixes(levels, mid):
        for rel, shape in MODULE_TENSORS.items():
            sd[prefix + rel] = _fill(prefix + rel, shape(c), gen, dtype, device)
        for a in range(attention_blocks):
            ap = f"{prefix}transformer_blocks.0.attention_blocks.{a}."
            for rel, shape in ATTENTION_TENSORS.items():
                sd[ap + rel] = _fill(ap + rel, shape(c), gen, dtype, device)
            if pe_length is not None:
                sd[ap + "pos_encoder.pe"] = (torch.empty((1, pe_length, c), dtype=dtype, device="meta") if device == "meta"
                                             else sinusoidal(pe_length, c)[None].to(dtype))
            sd[f"{prefix}transformer_blocks.0.norms.{a}.weight"] = _fill("x.norms.0.weight", (c,), gen, dtype, device)
            sd[f"{prefix}transformer_blocks.0.norms.{a}.bias"] = _fill("x.norms.0.bias", (c,), gen, dtype, device)
        if zero_proj_out and device != "meta":
            sd[prefix + "proj_out.weight"].zero_()
            sd[prefix + "proj_out.bias"].zero_()
    return sd


# The published files, by name (§4)
def v1(**kw): return original_state_dict(SD15, mid=False, pe_length=24, **kw)
def v2(**kw): return original_state_dict(SD15, mid=True, pe_length=32, **kw)
def v3(**kw): return original_state_dict(SD15, mid=False, pe_length=32, **kw)
def sdxl_beta(**kw): return original_state_dict(SDXL, mid=False, pe_length=32, **kw)
def animatelcm(**kw): return original_state_dict(SD15, mid=True, pe_length=None, **kw)


def image_encoder_shapes():
    """§4.7: `img_encoder.*` of AnimateLCM_sd15_i2v.ckpt: conv_in, then 2 residual blocks per level
    (320/640/1280/1280): block1 3×3, block2 1×1, in_conv 1×1 only where the channels change."""
    shapes = {"img_encoder.conv_in.weight": (320, 4, 3, 3), "img_encoder.conv_in.bias": (320,)}
    widths = [c for c in SD15 for _ in range(2)]
    for i, c in enumerate(widths):
        p = f"img_encoder.body.{i}."
        if i and widths[i - 1] != c:
            shapes[p + "in_conv.weight"], shapes[p + "in_conv.bias"] = (c, widths[i - 1], 1, 1), (c,)
        shapes[p + "block1.weight"], shapes[p + "block1.bias"] = (c, c, 3, 3), (c,)
        shapes[p + "block2.weight"], shapes[p + "block2.bias"] = (c, c, 1, 1), (c,)
    return shapes


def image_encoder(seed=0, dtype=torch.float32, device="cpu", zero_output=False):
    """Random `img_encoder.*` weights. zero_output: conv_in, every block2 and the in_conv biases zero, so
    that (with the frame embedding's motion_scale at 0) every residual block maps 0 to 0: all features are 0."""
    gen = torch.Generator().manual_seed(seed + 1000)
    sd = {}
    for k, shape in image_encoder_shapes().items():
        if device == "meta":
            sd[k] = torch.empty(shape, dtype=dtype, device="meta")
            continue
        weight = k.endswith("weight")
        fan_in = shape[1] * shape[2] * shape[3] if weight else 1
        t = torch.randn(shape, generator=gen) * (fan_in ** -0.5 if weight else 0.05)
        if zero_output and (".conv_in." in k or ".block2." in k or k.endswith("in_conv.bias")):
            t.zero_()
        sd[k] = t.to(dtype)
    return sd


def animatelcm_i2v(zero_encoder_output=False, **kw):
    sd = animatelcm(**kw)
    sd.update(image_encoder(kw.get("seed", 0), kw.get("dtype", torch.float32), kw.get("device", "cpu"),
                            zero_output=zero_encoder_output))
    return sd


def hotshot_xl(**kw):
    """§4.5: `temporal_attentions.N.` naming, PE as `pos_encoder.positional_encoding` [1, 24, C]."""
    sd = original_state_dict(SDXL, mid=False, pe_length=24, **kw)
    out = {}
    for k, v in sd.items():
        k = re.sub(r"motion_modules\.(\d+)\.temporal_transformer\.", r"temporal_attentions.\1.", k)
        out[k.replace("pos_encoder.pe", "pos_encoder.positional_encoding")] = v
    return out


def to_diffusers(sd: dict) -> dict:
    """§6: original → diffusers MotionAdapter names (one shared pos_embed.pe per transformer block)."""
    out = {}
    for k, v in sd.items():
        if k.endswith("pos_encoder.pe"):
            if ".attention_blocks.0." in k:
                out[re.sub(r"temporal_transformer\.transformer_blocks\.0\..*", "transformer_blocks.0.pos_embed.pe", k)] = v
            continue
        k = k.replace(".temporal_transformer.", ".")
        for a, b in ((".attention_blocks.0.", ".attn1."), (".attention_blocks.1.", ".attn2."),
                     (".norms.0.", ".norm1."), (".norms.1.", ".norm2."), (".ff_norm.", ".norm3.")):
            k = k.replace(a, b)
        out[k] = v
    return out


def lightning_diffusers(**kw): return to_diffusers(v2(dtype=torch.float16, **kw))
def lightning_comfyui(**kw): return v2(dtype=torch.float16, **kw)


def motion_lora(rank=64, mid=True, device="cpu", seed=0, levels=SD15, scale=0.01):
    """§4.9: processor-LoRA keys on both attention blocks of every v2 module (`levels`: channels per UNet level)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for prefix, c in module_prefixes(levels, mid):
        for a in range(2):
            for proj in ("to_q", "to_k", "to_v", "to_out"):
                base = f"{prefix}transformer_blocks.0.attention_blocks.{a}.processor.{proj}_lora."
                sd[base + "down.weight"] = torch.randn((rank, c), generator=gen).to(device) * scale
                sd[base + "up.weight"] = torch.randn((c, rank), generator=gen).to(device) * scale
    return sd


def domain_adapter(device="meta"):
    """§4.10: a processor-LoRA on the spatial UNet (a few keys suffice for detection)."""
    return {
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight": torch.empty((128, 320), device=device),
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight": torch.empty((320, 128), device=device),
    }


SD15_SPATIAL = [  # §4.10: the 16 SD1.5 transformer blocks (diffusers names) and their widths
    *[(f"down_blocks.{i}.attentions.{j}", c) for i, c in enumerate((320, 640, 1280)) for j in range(2)],
    ("mid_block.attentions.0", 1280),
    *[(f"up_blocks.{i}.attentions.{j}", c) for i, c in zip((1, 2, 3), (1280, 640, 320)) for j in range(3)],
]


def domain_adapter_full(rank=4, seed=0, scale=0.05, context_dim=768, device="cpu"):
    """§4.10 at full coverage: to_q/k/v/out LoRAs of attn1 (self) and attn2 (cross; k/v from the 768-wide text
    context) in all 16 SD1.5 transformer blocks; 256 tensors. Random values, small rank."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for block, c in SD15_SPATIAL:
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v", "to_out"):
                fan_in = context_dim if attn == "attn2" and proj in ("to_k", "to_v") else c
                base = f"{block}.transformer_blocks.0.{attn}.processor.{proj}_lora."
                sd[base + "down.weight"] = (torch.randn((rank, fan_in), generator=gen) * scale).to(device)
                sd[base + "up.weight"] = (torch.randn((c, rank), generator=gen) * scale).to(device)
    return sd


def sparsectrl_rgb(device="meta"):
    return {"controlnet_cond_embedding.weight": torch.empty((320, 5, 3, 3), device=device),
            "conv_in.weight": torch.empty((320, 4, 3, 3), device=device),
            **{k: v for k, v in v3(device=device).items() if k.startswith("down_blocks.")}}


def tiny(layout: dict) -> dict:
    """Every tensor as a stride-0 view of one distinct value (torch.save stores one element per tensor)."""
    return {k: torch.full((1,) * m.dim(), float(i % 2000), dtype=m.dtype).expand(m.shape)
            for i, (k, m) in enumerate(layout.items())}
