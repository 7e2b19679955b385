"""How a motion module gets CameraCtrl's features: through motion.model's attention-input hook, so the motion
modules' own math is unchanged for every other model.

In the original (cameractrl/models/motion_module.py TemporalSelfAttention + attention_processor.py
PoseAdaptorAttnProcessor with query_condition and key_value_condition, scale 1) the FIRST attention block of every
down and up motion module computes, on n = LayerNorm(h) + PE in the (B·H·W, F, C) layout,

    n' = qkv_merge(n + feature) · s + n,    q, k, v = n'·Wq, n'·Wk, n'·Wv

with s the camera strength (AnimateDiff-Evolved's cameractrl_multival: the same n + s·qkv_merge(n + f)). Down
block i's modules get encoder feature i, up block i's get feature 3 - i; the middle block's none.

s may differ per pixel and frame (a strength mask, as ADE's cameractrl_multival with a mask: ADE 90fb133
motion_module_ad.py `(qkv_merge(h + f) + h) * effect + h * (1 - effect)`, the same sum in another order): then it
is a tensor in n's layout, one value per (sequence = batch item · pixel, frame); `pixel_strength` makes it.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ..common.ops import cast
from .encoder import CameraCtrl
from .errors import CameraCtrlFileError


class CameraInput:
    """One motion module's attention-input function for one UNet call."""

    def __init__(self, merge: nn.Module, feature: torch.Tensor, frames: int, strength=1.0):
        """feature [B·F, C, H, W] for every row of the motion module's input (all cond chunks); strength: a number,
        or (B·H·W, F, 1) per pixel and frame (`pixel_strength`)."""
        self.merge = merge
        self.feature = feature
        self.frames = frames
        self.strength = strength

    def __call__(self, n: torch.Tensor) -> torch.Tensor:  # n: (B·H·W, F, C)
        f = cast(rearrange(self.feature, "(b f) c h w -> (b h w) f c", f=self.frames), n)
        if f.shape != n.shape:
            raise ValueError(f"CameraCtrl feature {tuple(f.shape)} does not fit the motion module input "
                             f"{tuple(n.shape)}")
        s = self.strength
        if isinstance(s, torch.Tensor):
            s = cast(s, n)
            if s.shape != (*n.shape[:2], 1):
                raise ValueError(f"CameraCtrl strength {tuple(s.shape)} does not fit the motion module input "
                                 f"{tuple(n.shape)}")
        return n + self.merge(n + f) * s


def pixel_strength(mask: torch.Tensor, chunks: int) -> torch.Tensor:
    """A strength per frame and pixel, mask [F, 1, H, W] (one cond chunk's frames, at the motion module's size), in
    the merge's (B·H·W, F, 1) layout for `chunks` cond chunks (each the same, as ADE's torch.cat([mask] * batched))."""
    return rearrange(mask.repeat(chunks, 1, 1, 1), "(b f) 1 h w -> (b h w) f 1", f=mask.shape[0])


def check_motion_model(camera: CameraCtrl, motion_model) -> None:
    """CameraCtrl has merge layers for an SD1.5 AnimateDiff model's 8 down and 12 up motion modules."""
    levels = len(camera.encoder.channels)
    shape = ([len(b.motion_modules) for b in motion_model.down_blocks],
             [len(b.motion_modules) for b in motion_model.up_blocks])
    if shape != ([2] * levels, [3] * levels):
        raise CameraCtrlFileError(
            f"'{camera.name}' is made for an SD1.5 AnimateDiff motion model (v3_sd15_mm.ckpt, which it was trained "
            f"with), but this motion model has {len(shape[0])} down levels. Apply v3_sd15_mm.ckpt to an SD1.5 "
            f"checkpoint and use CameraCtrl with that.")


def camera_inputs(camera: CameraCtrl, motion_model, features: list[torch.Tensor], frames: int,
                  strength=1.0) -> dict:
    """{motion module: {0: CameraInput}} for one UNet call (the value of motion.injection.ATTENTION_INPUTS for
    this motion model). `features`: the encoder's, each for every row of the call's batch. `strength`: a number, or
    a list with one `pixel_strength` per feature (at its size: the motion modules that take the feature)."""
    levels = len(features)
    out = {}
    for group, blocks in (("down_blocks", motion_model.down_blocks), ("up_blocks", motion_model.up_blocks)):
        for level, block in enumerate(blocks):
            at = level if group == "down_blocks" else levels - 1 - level
            s = strength[at] if isinstance(strength, (list, tuple)) else strength
            for index, module in enumerate(block.motion_modules):
                out[module] = {0: CameraInput(camera.merges.layer(group, level, index), features[at], frames, s)}
    return out
