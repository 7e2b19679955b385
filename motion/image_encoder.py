"""AnimateLCM-I2V's image encoder (`img_encoder.*` in AnimateLCM_sd15_i2v.ckpt), in plain torch.

MOTION_FORMATS.md §4.7. Confirmed against the original code (G-U-N/AnimateLCM,
animatelcm_sd15/animatelcm/models/adapter.py and unet.py): a T2I-Adapter-style `Adapter` built with
`cin=4, channels=[320, 640, 1280, 1280], nums_rb=2, ksize=1, sk=True, use_conv=False`, i.e.

    x  = conv_in(image latent) + motion_scale · PE[frame]       (PE: the 320-d sinusoidal table, 0.8 by default)
    for each level L (320, 640, 1280, 1280), two residual blocks:
        block 0 of levels 1-3: x = avgpool2x(x)          (replicate-padded to even size first)
        x = in_conv(x)                                  (1×1; only where the channels change)
        x = x + block2(relu(block1(x)))                 (block1 3×3, block2 1×1, both C→C with bias)
    feature[L] = x after the level's second block

`sk=True` means no skip conv (`skep`) and no `in_conv` where the channels stay; `use_conv=False` makes
the down step an average pool: that is exactly the file's 38 tensors / 76,827,840 parameters.
Names of modules and parameters are the file's, so `img_encoder.*` loads with strict `load_state_dict`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from .model import SD15_CHANNELS, cast, sinusoidal_table

BLOCKS_PER_LEVEL = 2
LATENT_CHANNELS = 4
DEFAULT_MOTION_SCALE = 0.8  # Adapter.motion_scale in the original code (its Gradio app's "motion scale" slider)
PREFIX = "img_encoder."


class Conv2d(nn.Conv2d):
    """Weights run in the activations' dtype and device, like the motion model's layers."""

    def forward(self, x):
        return self._conv_forward(x, cast(self.weight, x), cast(self.bias, x))


def avg_pool_2x(x: torch.Tensor) -> torch.Tensor:
    """2× average pool; odd sizes are first padded by repeating the last row/column (as the original)."""
    height, width = x.shape[-2:]
    x = F.pad(x, (0, width % 2, 0, height % 2), mode="replicate")
    return F.avg_pool2d(x, kernel_size=2, stride=2)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.in_conv = Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.block1 = Conv2d(out_channels, out_channels, 3, padding=1)
        self.block2 = Conv2d(out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            x = avg_pool_2x(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(F.relu(self.block1(x)))


class ImageEncoder(nn.Module):
    """Image latent → one feature map per UNet level, for every frame."""

    def __init__(self, channels: tuple[int, ...] = SD15_CHANNELS):
        super().__init__()
        self.channels = tuple(channels)
        self.conv_in = Conv2d(LATENT_CHANNELS, channels[0], 3, padding=1)
        blocks = []
        for level, c in enumerate(channels):
            for j in range(BLOCKS_PER_LEVEL):
                first = level > 0 and j == 0
                blocks.append(ResidualBlock(channels[level - 1] if first else c, c, downsample=first))
        self.body = nn.ModuleList(blocks)

    def forward(self, latent: torch.Tensor, frames: int, motion_scale: float = DEFAULT_MOTION_SCALE) -> list[torch.Tensor]:
        """`latent`: the conditioning image's latent (1, 4, H, W), already scaled like the UNet's input
        (×0.18215 for SD1.5). Returns 4 tensors (frames, C_L, ⌈H/2^L⌉, ⌈W/2^L⌉): the same image for every
        frame, told apart only by the frame's position embedding."""
        x = self.conv_in(latent)
        pe = sinusoidal_table(frames, self.channels[0], device=x.device, dtype=x.dtype)
        x = repeat(x, "1 c h w -> f c h w", f=frames) + motion_scale * rearrange(pe, "f c -> f c 1 1")
        features = []
        for level in range(len(self.channels)):
            for block in self.body[level * BLOCKS_PER_LEVEL:(level + 1) * BLOCKS_PER_LEVEL]:
                x = block(x)
            features.append(x)
        return features


def split_image_encoder(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `img_encoder.*` tensors of a file's state dict, prefix removed (empty for t2v files)."""
    return {k[len(PREFIX):]: v for k, v in sd.items() if k.startswith(PREFIX)}


def build_image_encoder(weights: dict[str, torch.Tensor], name: str = "state dict") -> ImageEncoder:
    """An ImageEncoder holding exactly these weights (strict: every tensor present, right shapes, none extra)."""
    from .errors import MotionKitError

    with torch.device("meta"):
        encoder = ImageEncoder()
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    wrong = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if missing or extra or wrong:
        detail = (f"missing {len(missing)} of {len(expected)} tensors (e.g. {PREFIX}{missing[0]})" if missing else
                  f"unexpected tensor {PREFIX}{extra[0]}" if extra else
                  f"{PREFIX}{wrong[0]} has shape {tuple(weights[wrong[0]].shape)}, expected {tuple(expected[wrong[0]].shape)}")
        raise MotionKitError(
            f"'{name}' has an AnimateLCM-I2V image encoder that does not match the published one: {detail}. "
            f"The file is incomplete or not AnimateLCM_sd15_i2v.ckpt; download it again.")
    encoder.load_state_dict(weights, strict=True, assign=True)
    return encoder.eval().requires_grad_(False)
