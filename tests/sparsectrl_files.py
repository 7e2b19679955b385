"""Random-weight SparseCtrl files in the published layout (MOTION_FORMATS.md §4.11).

The key inventory is written out here from the spec (an SD1.5 UNet encoder in diffusers naming, motion
modules with one attention block, the two condition embeddings), independently of control/sparsectrl/;
tests compare it with ../shared/orig_keys_sparsectrl.json (made from the original classes) when present.
Files are written as the published ones are: a pickled `{"controlnet": {...}, "animatediff_config": {...}}`.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

_HERE = Path(os.path.abspath(__file__)).parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from motion_files import ATTENTION_TENSORS, MODULE_TENSORS  # noqa: E402

SD15 = (320, 640, 1280, 1280)
PE_LENGTH = 32
VERSION = "sparsectrl_random_v1"


def _resnet(p, cin, cout, temb, out):
    out.update({f"{p}norm1.weight": (cin,), f"{p}norm1.bias": (cin,), f"{p}conv1.weight": (cout, cin, 3, 3),
                f"{p}conv1.bias": (cout,), f"{p}time_emb_proj.weight": (cout, temb), f"{p}time_emb_proj.bias": (cout,),
                f"{p}norm2.weight": (cout,), f"{p}norm2.bias": (cout,), f"{p}conv2.weight": (cout, cout, 3, 3),
                f"{p}conv2.bias": (cout,)})
    if cin != cout:
        out.update({f"{p}conv_shortcut.weight": (cout, cin, 1, 1), f"{p}conv_shortcut.bias": (cout,)})


def _transformer(p, c, ctx, out):
    out.update({f"{p}norm.weight": (c,), f"{p}norm.bias": (c,), f"{p}proj_in.weight": (c, c, 1, 1),
                f"{p}proj_in.bias": (c,), f"{p}proj_out.weight": (c, c, 1, 1), f"{p}proj_out.bias": (c,)})
    b = f"{p}transformer_blocks.0."
    for a, kv in (("attn1", c), ("attn2", ctx)):
        out.update({f"{b}{a}.to_q.weight": (c, c), f"{b}{a}.to_k.weight": (c, kv), f"{b}{a}.to_v.weight": (c, kv),
                    f"{b}{a}.to_out.0.weight": (c, c), f"{b}{a}.to_out.0.bias": (c,)})
    for n in ("norm1", "norm2", "norm3"):
        out.update({f"{b}{n}.weight": (c,), f"{b}{n}.bias": (c,)})
    out.update({f"{b}ff.net.0.proj.weight": (8 * c, c), f"{b}ff.net.0.proj.bias": (8 * c,),
                f"{b}ff.net.2.weight": (c, 4 * c), f"{b}ff.net.2.bias": (c,)})


def _motion_module(p, c, out, pe=True):
    t = p + "temporal_transformer."
    out.update({t + rel: shape(c) for rel, shape in MODULE_TENSORS.items()})
    a = t + "transformer_blocks.0.attention_blocks.0."
    out.update({a + rel: shape(c) for rel, shape in ATTENTION_TENSORS.items()})
    out.update({t + "transformer_blocks.0.norms.0.weight": (c,), t + "transformer_blocks.0.norms.0.bias": (c,)})
    if pe:
        out[a + "pos_encoder.pe"] = (1, PE_LENGTH, c)


def layout(variant: str, channels=SD15, context_dim=768, widths=(16, 32, 96, 256), pe=True) -> dict[str, tuple]:
    """{key: shape} of a SparseCtrl file ('rgb' or 'scribble'); `channels` other than SD15 = a small test net."""
    out, c0, temb = {}, channels[0], channels[0] * 4
    out.update({"conv_in.weight": (c0, 4, 3, 3), "conv_in.bias": (c0,),
                "time_embedding.linear_1.weight": (temb, c0), "time_embedding.linear_1.bias": (temb,),
                "time_embedding.linear_2.weight": (temb, temb), "time_embedding.linear_2.bias": (temb,)})
    if variant == "rgb":  # one conv on [latent (4), mask (1)]
        out.update({"controlnet_cond_embedding.weight": (c0, 5, 3, 3), "controlnet_cond_embedding.bias": (c0,)})
    else:  # [image (3), mask (1)] -> 16 -> (16,16,32,32,96,96) -> 256 -> c0
        e = "controlnet_cond_embedding."
        out.update({e + "conv_in.weight": (widths[0], 4, 3, 3), e + "conv_in.bias": (widths[0],)})
        i = 0
        for a, b in zip(widths[:-1], widths[1:]):
            out.update({f"{e}blocks.{i}.weight": (a, a, 3, 3), f"{e}blocks.{i}.bias": (a,),
                        f"{e}blocks.{i + 1}.weight": (b, a, 3, 3), f"{e}blocks.{i + 1}.bias": (b,)})
            i += 2
        out.update({e + "conv_out.weight": (c0, widths[-1], 3, 3), e + "conv_out.bias": (c0,)})
    zero = [c0]
    for level, c in enumerate(channels):
        last = level == len(channels) - 1
        cin = channels[max(level - 1, 0)]
        for j in range(2):
            _resnet(f"down_blocks.{level}.resnets.{j}.", cin if j == 0 else c, c, temb, out)
            if not last:
                _transformer(f"down_blocks.{level}.attentions.{j}.", c, context_dim, out)
            _motion_module(f"down_blocks.{level}.motion_modules.{j}.", c, out, pe)
            zero.append(c)
        if not last:
            out.update({f"down_blocks.{level}.downsamplers.0.conv.weight": (c, c, 3, 3),
                        f"down_blocks.{level}.downsamplers.0.conv.bias": (c,)})
            zero.append(c)
    cm = channels[-1]
    _resnet("mid_block.resnets.0.", cm, cm, temb, out)
    _transformer("mid_block.attentions.0.", cm, context_dim, out)
    _resnet("mid_block.resnets.1.", cm, cm, temb, out)
    for i, c in enumerate(zero):
        out.update({f"controlnet_down_blocks.{i}.weight": (c, c, 1, 1), f"controlnet_down_blocks.{i}.bias": (c,)})
    out.update({"controlnet_mid_block.weight": (cm, cm, 1, 1), "controlnet_mid_block.bias": (cm,)})
    return out


def sinusoid(length: int, c: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, c, 2, dtype=torch.float32) * (-torch.log(torch.tensor(10000.0)) / c))
    pe = torch.zeros(length, c)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


def random_state_dict(variant: str, seed: int = 0, dtype=torch.float32, **kw) -> dict[str, torch.Tensor]:
    """Trained-looking random weights: fan-in normal matrices, norms near 1, small biases; the zero-init
    layers of a fresh net (zero convs, cond embedding out, motion proj_out) are non-zero, as in trained files."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in layout(variant, **kw).items():
        if k.endswith("pos_encoder.pe"):
            sd[k] = sinusoid(shape[1], shape[2])[None].to(dtype)
            continue
        if k.endswith("bias"):
            t = 0.02 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:  # norm weights
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            t = torch.randn(shape, generator=gen) / fan_in ** 0.5
        sd[k] = t.to(dtype)
    return sd


def published_dict(sd: dict, variant: str) -> dict:
    """The published wrapping: weights under `controlnet`, plus a plain-data `animatediff_config`."""
    return {"controlnet": sd, "animatediff_config": {
        "set_noisy_sample_input_to_zero": True, "use_simplified_condition_embedding": variant == "rgb",
        "conditioning_channels": 4 if variant == "rgb" else 3, "use_motion_module": True}}


def write_file(path, variant: str, seed: int = 0, dtype=torch.float16) -> Path:
    """A full-size random SparseCtrl file (.ckpt pickle as published, or .safetensors without the wrapper)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = random_state_dict(variant, seed, dtype)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file
            save_file(sd, str(tmp), metadata={"motionkit_test_sparsectrl": VERSION})
        else:
            torch.save(published_dict(sd, variant), str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def cached_file(variant: str) -> Path:
    """A cached full-size random SparseCtrl .ckpt (fp16, ~1 GB), built once per machine."""
    import sd15_checkpoint as sd15
    d = sd15.cache_dir()
    path = d / f"{VERSION}_{variant}.ckpt"
    marker = path.with_suffix(".ok")
    if path.exists() and marker.exists():
        return path
    with sd15._file_lock(d / f"{path.name}.lock"):
        if not (path.exists() and marker.exists()):
            t0 = time.perf_counter()
            write_file(path, variant, seed={"rgb": 1, "scribble": 2}[variant])
            marker.write_text(VERSION)
            print(f"[motionkit tests] built {path} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return path


# a small SparseCtrl for in-process tests
SMALL = dict(channels=(32, 64, 64, 64), context_dim=48, widths=(16, 32, 32, 32))


def small_config(variant):
    from motionkit.control.sparsectrl.model import SparseCtrlConfig
    return SparseCtrlConfig(variant, SMALL["channels"], SMALL["context_dim"], SMALL["widths"])
