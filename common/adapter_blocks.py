"""T2I-Adapter's residual block (TencentARC's `ResnetBlock` with sk=True, use_conv=False), shared by the adapters that
are built on it: MotionCtrl's OMCM (ksize 3) and CameraCtrl's camera encoder (ksize 1)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .ops import TorchOps


class AdapterResBlock(nn.Module):
    """Optional 2x average pool, a ksize conv to the new width when it changes, then x + conv_k(relu(conv_3(x)))."""

    def __init__(self, c_in: int, c_out: int, down: bool, ksize: int = 3, operations=None):
        super().__init__()
        ops = operations or TorchOps
        pad = ksize // 2
        self.down = down
        self.in_conv = ops.Conv2d(c_in, c_out, ksize, 1, pad) if c_in != c_out else None
        self.block1 = ops.Conv2d(c_out, c_out, 3, 1, 1)
        self.block2 = ops.Conv2d(c_out, c_out, ksize, 1, pad)

    def forward(self, x):
        if self.down:
            x = F.avg_pool2d(x, 2)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(F.relu(self.block1(x)))
