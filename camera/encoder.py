"""CameraCtrl's networks in plain torch: the camera encoder (original `CameraPoseEncoder`, cameractrl/models/
pose_adaptor.py, with the configs' settings) and the `qkv_merge` layers that bring its features into the motion
modules (original `PoseAdaptorAttnProcessor`, cameractrl/models/attention_processor.py).

Camera encoder, published configuration (configs/train_cameractrl/adv3_256_384_cameractrl_relora.yaml:
downscale 8, channels [320, 640, 1280, 1280], nums_rb 2, cin 384, ksize 1, sk true, use_conv false, 8 heads,
one temporal self-attention block with a 16-row position encoding):

    Plücker [B·F, 6, H, W] --pixel-unshuffle 8--> [384, H/8, W/8] --encoder_conv_in 3x3--> 320
    level i (0..3): two residual blocks, each followed by a temporal transformer block over the F frames
      residual block: (avg-pool 2 if first of level i > 0), (1x1 in_conv if the width changes),
                      x + 1x1(relu(3x3(x)))
      temporal block: motion.model's TemporalTransformerBlock with one attention block (same keys, same math)
    -> feature i: [B·F, channels[i], H/8/2^i, W/8/2^i]

qkv_merge (one Linear C->C per motion module of the down and up blocks, none in the middle block): inside the
FIRST attention block, after the LayerNorm and the position encoding, n -> n + s·qkv_merge(n + feature), and q, k
and v are all computed from that (merge.py). Down block i gets feature i, up block i gets feature 3-i.

State-dict keys are the original's (files.py maps the published layouts onto them); `pos_encoder.pe` buffers are
not kept (a fixed sinusoid, only its length 16 matters: ENCODER_MAX_FRAMES).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..common.adapter_blocks import AdapterResBlock
from ..common.ops import TorchOps
from ..motion.errors import TooManyFramesError
from ..motion.model import TemporalTransformerBlock, sinusoidal_table

CHANNELS = (320, 640, 1280, 1280)
NUMS_RB = 2
DOWNSCALE = 8
CIN = 6 * DOWNSCALE * DOWNSCALE
ENCODER_MAX_FRAMES = 16  # the encoder's position-encoding rows (temporal_position_encoding_max_len)
DOWN_MODULES, UP_MODULES = 2, 3  # motion modules per down / up block of an SD1.5 AnimateDiff model
MERGE_PATH = ("{group}.{level}.motion_modules.{index}.temporal_transformer.transformer_blocks.0.attention_blocks.0"
              ".processor.qkv_merge")


class CameraEncoder(nn.Module):
    def __init__(self, channels=CHANNELS, nums_rb: int = NUMS_RB, operations=None, attention=None):
        """`operations` (.Conv2d, .Linear, .LayerNorm) and `attention`: as motion.model (default plain torch)."""
        super().__init__()
        ops = operations or TorchOps
        self.channels = tuple(channels)
        self.encoder_conv_in = ops.Conv2d(CIN, channels[0], 3, 1, 1)
        self.encoder_down_conv_blocks = nn.ModuleList(
            nn.ModuleList(AdapterResBlock(channels[max(i - 1, 0)] if j == 0 else c, c, down=(i > 0 and j == 0),
                                          ksize=1, operations=ops)
                          for j in range(nums_rb))
            for i, c in enumerate(channels))
        self.encoder_down_attention_blocks = nn.ModuleList(
            nn.ModuleList(TemporalTransformerBlock(c, 1, ops, attention) for _ in range(nums_rb)) for c in channels)

    def forward(self, plucker: torch.Tensor, frames: int) -> list[torch.Tensor]:
        """plucker [B·F, 6, H, W] (rows batch-major; H, W multiples of 8) -> one feature per level,
        [B·F, channels[i], H/8/2^i, W/8/2^i]."""
        if frames > ENCODER_MAX_FRAMES:
            raise TooManyFramesError(
                f"CameraCtrl's camera encoder takes at most {ENCODER_MAX_FRAMES} frames at once (its position "
                f"encoding has {ENCODER_MAX_FRAMES} rows), but got {frames}. Render {ENCODER_MAX_FRAMES} frames or "
                f"fewer, or sample in context windows of at most {ENCODER_MAX_FRAMES} frames.")
        x = self.encoder_conv_in(F.pixel_unshuffle(plucker, DOWNSCALE))
        features = []
        for res_blocks, attention_blocks in zip(self.encoder_down_conv_blocks, self.encoder_down_attention_blocks):
            for res, attention in zip(res_blocks, attention_blocks):
                x = res(x)
                height, width = x.shape[-2:]
                h = rearrange(x, "(b f) c h w -> (b h w) f c", f=frames)
                h = attention(h, sinusoidal_table(frames, h.shape[-1], device=h.device, dtype=h.dtype))
                x = rearrange(h, "(b h w) f c -> (b f) c h w", h=height, w=width)
            features.append(x)
        return features


def merge_paths(channels=CHANNELS) -> list[tuple[str, int, int, int]]:
    """(original module path, level, module index, width) of every qkv_merge: down blocks, then up blocks."""
    levels = len(channels)
    down = [(MERGE_PATH.format(group="down_blocks", level=i, index=j), i, j, channels[i])
            for i in range(levels) for j in range(DOWN_MODULES)]
    up = [(MERGE_PATH.format(group="up_blocks", level=i, index=j), i, j, channels[levels - 1 - i])
          for i in range(levels) for j in range(UP_MODULES)]
    return down + up


class CameraMerges(nn.ModuleDict):
    """The qkv_merge layers, nested so that the state-dict keys are the original's full module paths
    ('down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.
    qkv_merge.weight', ...)."""

    def __init__(self, channels=CHANNELS, operations=None):
        super().__init__()
        ops = operations or TorchOps
        for path, _, _, width in merge_paths(channels):
            *parents, leaf = path.split(".")
            node = self
            for part in parents:
                if part not in node:
                    node[part] = nn.ModuleDict()
                node = node[part]
            node[leaf] = ops.Linear(width, width)

    def layer(self, group: str, level: int, index: int) -> nn.Module:
        node = self
        for part in MERGE_PATH.format(group=group, level=level, index=index).split("."):
            node = node[part]
        return node


class CameraCtrl(nn.Module):
    """A loaded CameraCtrl: the encoder and the merge layers (files.py builds it)."""

    def __init__(self, channels=CHANNELS, operations=None, attention=None, name: str = "CameraCtrl"):
        super().__init__()
        self.encoder = CameraEncoder(channels, operations=operations, attention=attention)
        self.merges = CameraMerges(channels, operations)
        self.name = name
