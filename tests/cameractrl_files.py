"""Random CameraCtrl files in both published layouts, from one set of values (names and shapes from
tests/cameractrl_keys.json, hehao13/CameraCtrl's own classes): `pruned_file()` is ADE's CameraCtrl_pruned.safetensors
(encoder and merge tensors flat), `original_file()` the original checkpoint's dict of two state dicts."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from reference import sinusoidal  # the spec's table, written independently

KEYS = json.loads((Path(__file__).parent / "cameractrl_keys.json").read_text())
# "2": the position-encoding buffers hold the sinusoid, as the published files do (the first files held noise there,
# which MotionKit never reads but AnimateDiff-Evolved does)
PRUNED = "CameraCtrl_pruned_random2.safetensors"
ORIGINAL = "CameraCtrl_random2.ckpt"


def random_cameractrl(seed=3) -> tuple[dict, dict]:
    """(encoder tensors, merge tensors) of the published shapes, fp16: weights ~ 1/sqrt(fan-in), so features stay
    of order 1 through the encoder's 3 levels; norms near 1; the encoder's `pos_encoder.pe` buffers the sinusoid
    (the original's PositionalEncoding, saved with the weights: 16 rows)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for group in ("pose_encoder_state_dict", "attention_processor_state_dict"):
        sd = {}
        for key, shape in KEYS[group].items():
            if "norm" in key and key.endswith("weight"):
                t = 1 + 0.1 * torch.randn(shape, generator=gen)
            elif len(shape) > 1 and not key.endswith(".pe"):
                t = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
            else:
                t = 0.1 * torch.randn(shape, generator=gen)
            if key.endswith(".pos_encoder.pe"):
                t = sinusoidal(shape[1], shape[2])[None]
            sd[key] = t.half()
        out.append(sd)
    return out[0], out[1]


def pruned_file():
    encoder, merges = random_cameractrl()
    return {**encoder, **merges}


def original_file():
    encoder, merges = random_cameractrl()
    return {"pose_encoder_state_dict": encoder, "attention_processor_state_dict": merges, "epoch": 1,
            "global_step": 100}
