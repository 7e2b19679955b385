"""MotionCtrl's object-motion control module (OMCM) for AnimateDiff in plain torch: trajectory flow -> UNet features.

Published as `motionctrl_animatediff_omcm.ckpt` (TencentARC/MotionCtrl, AnimateDiff branch, trained with
v3_sd15_mm; files.py reads it). The module is a T2I-Adapter-style encoder (motionctrl/adapter.py `Adapter` with the
configs' channels [320, 640, 1280, 1280], nums_rb 2, cin 128 = 2 x 8 x 8, sk True, use_conv False):

    flow [2, H, W] --pixel-unshuffle 8--> [128, H/8, W/8] --conv_in--> 320
    level i (0..3): (avg-pool 2 if i > 0), nums_rb residual blocks (the first one maps to channels[i]) -> feature i

How its features reach the UNet: apply.py.

Its convolutions come from an `operations` namespace (`.Conv2d`), as in motion/model.py: by default plain torch
layers whose weights follow the activations' dtype and device (`TorchOps`); under ComfyUI the loader passes
`comfy.ops` (apply.comfy_operations), so ComfyUI's model management can load the adapter partially in low-VRAM mode
and cast weights stored in another dtype. Neither changes module names or state-dict keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from ...common.adapter_blocks import AdapterResBlock
from ...motion.model import TorchOps

CHANNELS = (320, 640, 1280, 1280)
NUMS_RB = 2
CIN = 2 * 8 * 8
UNSHUFFLE = 8


class OMCMAdapter(nn.Module):
    def __init__(self, channels=CHANNELS, nums_rb: int = NUMS_RB, cin: int = CIN, operations=None):
        """`operations`: see the module docstring (default: plain torch)."""
        super().__init__()
        ops = operations or TorchOps
        self.channels, self.nums_rb = tuple(channels), nums_rb
        self.conv_in = ops.Conv2d(cin, channels[0], 3, 1, 1)
        self.body = nn.ModuleList(
            AdapterResBlock(channels[max(i - 1, 0)] if j == 0 else channels[i], channels[i], down=(i > 0 and j == 0),
                            ksize=3, operations=ops)
            for i in range(len(channels)) for j in range(nums_rb))

    def forward(self, flow: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
        """flow [N, 2, H, W] (H, W multiples of 8) -> features [N, channels[i], H/8/2^i, W/8/2^i]."""
        x = rearrange(flow, "n c (h a) (w b) -> n (c a b) h w", a=UNSHUFFLE, b=UNSHUFFLE)
        x = self.conv_in(x)
        features = []
        for i in range(levels or len(self.channels)):
            for block in self.body[i * self.nums_rb:(i + 1) * self.nums_rb]:
                x = block(x)
            features.append(x)
        return features


def expected_shapes() -> dict[str, tuple]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in OMCMAdapter().state_dict().items()}


@dataclass
class OMCM:
    adapter: OMCMAdapter
    name: str
