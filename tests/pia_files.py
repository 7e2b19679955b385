"""Random PIA motion files at SD1.5 widths in both published layouts, names and shapes from tests/pia_keys.json
(open-mmlab/PIA's own classes): ADE's pruned copy (the "temporal" keys and conv_in, as safetensors) and the whole
flat UNet (pia.ckpt as train.py saves it; its other tensors are zeros expanded to their shapes, never read)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

import motion_files as mf
from model_cache import cached_file

HERE = Path(__file__).resolve().parent
PRUNED = "pia_pruned_random.safetensors"
FULL = "pia_random.ckpt"


def pia_shapes() -> dict:
    return {k: v for k, v in json.loads((HERE / "pia_keys.json").read_text()).items() if not k.startswith("_")}


def pruned() -> dict:
    """ADE's pruned layout: pia.ckpt's "temporal" keys (= AnimateDiff v3's layout, checked) and conv_in."""
    shapes = pia_shapes()
    sd = mf.v3(seed=21, dtype=torch.float16)
    assert {k: list(v.shape) for k, v in sd.items()} == {k: v for k, v in shapes.items() if "temporal" in k}
    g = torch.Generator().manual_seed(22)
    sd["conv_in.weight"] = (torch.randn(shapes["conv_in.weight"], generator=g) / 81 ** 0.5).half()
    sd["conv_in.bias"] = (0.02 * torch.randn(shapes["conv_in.bias"], generator=g)).half()
    return sd


def full() -> dict:
    """pia.ckpt's whole flat UNet: the pruned file's tensors, every other key a zero expanded to its shape."""
    from safetensors.torch import load_file
    sd = load_file(str(cached_file(PRUNED, pruned)))
    for k, shape in pia_shapes().items():
        sd.setdefault(k, torch.zeros((), dtype=torch.float16).expand(shape))
    return sd
