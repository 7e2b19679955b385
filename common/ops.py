"""The default `operations` of every model of ours: plain torch layers whose weights follow the activations' dtype
and device. Under ComfyUI a model gets `comfy.ops` instead (same class names), so low-VRAM partial loading and
weights stored in another dtype (fp8) reach it; comfy.ops has no BatchNorm, so models look theirs up with a
fallback to this one."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cast(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """Weights run in the activations' dtype and device (a no-op when they already match)."""
    return None if t is None else t.to(device=like.device, dtype=like.dtype)


class Linear(nn.Linear):
    def forward(self, x):
        return F.linear(x, cast(self.weight, x), cast(self.bias, x))


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, cast(self.weight, x), cast(self.bias, x), self.eps)


class GroupNorm(nn.GroupNorm):
    """Accepts (N, C, *): e.g. (B·F, C, H, W) normalises per frame, (B, C, F, H, W) pools over the frames."""

    def forward(self, x):
        return F.group_norm(x, self.num_groups, cast(self.weight, x), cast(self.bias, x), self.eps)


class Conv1d(nn.Conv1d):
    def forward(self, x):
        return self._conv_forward(x, cast(self.weight, x), cast(self.bias, x))  # keeps padding_mode (replicate)


class Conv2d(nn.Conv2d):
    def forward(self, x):
        return self._conv_forward(x, cast(self.weight, x), cast(self.bias, x))


class Conv3d(nn.Conv3d):
    def forward(self, x):
        return self._conv_forward(x, cast(self.weight, x), cast(self.bias, x))


class BatchNorm2d(nn.BatchNorm2d):
    """Batch norm with its running statistics (inference), in x's dtype."""

    def forward(self, x):
        return F.batch_norm(x, cast(self.running_mean, x), cast(self.running_var, x), cast(self.weight, x),
                            cast(self.bias, x), False, 0.0, self.eps)


class TorchOps:
    """The default `operations` (see the module's doc)."""
    Linear = Linear
    LayerNorm = LayerNorm
    GroupNorm = GroupNorm
    Conv1d = Conv1d
    Conv2d = Conv2d
    Conv3d = Conv3d
    BatchNorm2d = BatchNorm2d
