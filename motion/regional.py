"""Where and how much the motion model acts: a motion-scale MASK (regional motion) and per-block scales.

Motion scale here is MotionKit's `motion_scale`, the blend of the motion module's output with its input:
out = x + s·delta (motion.model.MotionModule). That is AnimateDiff-Evolved's `effect_multival`
(ADE 90fb133, animatediff/motion_module_ad.py VanillaTemporalModule.forward:
`input*(1-effect) + temporal_transformer(input)*effect`, where temporal_transformer(input) = input + delta), so a
mask follows ADE's effect mask exactly:

* resized to each motion module's activation size with `F.interpolate(..., mode="bilinear")` (align_corners off),
  every mask frame alike (ADE utils_motion.prepare_mask_batch);
* frame i of the animation takes mask frame i; a mask with fewer frames holds its last frame for the later ones,
  a longer one is cut (ADE extend_to_batch_size); one mask frame thus holds for all frames;
* inside a context window the window's frames are taken (ADE get_effect_mask indexes `sub_idxs`), in every
  cond chunk of the call.

Per-block scale multiplies the scale of every motion module of one UNet block group (down / mid / up), as ADE's
PerBlock `effect` does for a block type (utils_motion.PerBlockId / get_combined_multival: a product).

ADE's `scale_multival` is another thing: it multiplies the keys of every temporal attention (a temperature of the
attention over frames; 0 makes each frame an even average of all, not a still picture). It is here as the attention
scale (`attention_key_scale`), its mask resized and sliced the same way.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .errors import MotionMaskError
from ..common.unet_call import window_frames

# MotionModel.ordered_modules kinds -> the per-block names the node shows
BLOCK_NAMES = {"input": "down", "middle": "mid", "output": "up"}


@dataclass(eq=False)
class MotionMask:
    """A ComfyUI MASK [frames or 1, H, W] (values 0 = still, 1 = as motion_scale says, more exaggerates)."""
    mask: torch.Tensor
    label: str = "motion_scale_mask"  # the node input it came from, for messages
    _resized: dict = field(default_factory=dict, repr=False)  # (h, w) -> [frames, 1, h, w] float32

    def __post_init__(self):
        mask = self.mask
        if not isinstance(mask, torch.Tensor):
            raise MotionMaskError(f"{self.label} must be a MASK (a tensor), got {type(mask).__name__}; connect a "
                                  f"MASK output (e.g. 'Load Image (as Mask)', 'Solid Mask').")
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        if mask.ndim != 3 or 0 in mask.shape:
            raise MotionMaskError(f"{self.label} has shape {list(self.mask.shape)}; a MASK is [frames, height, "
                                  f"width] (or [height, width]) with at least one frame and pixel.")
        mask = mask.detach().float().cpu()
        if not torch.isfinite(mask).all() or (mask < 0).any():
            raise MotionMaskError(f"{self.label} has negative or non-finite values; use values of 0 to 1 (more "
                                  f"than 1 exaggerates).")
        self.mask = mask

    @property
    def frames(self) -> int:
        return self.mask.shape[0]

    def resized(self, height: int, width: int) -> torch.Tensor:
        """[mask frames, 1, height, width], bilinear as ADE's prepare_mask_batch (cached per size)."""
        key = (height, width)
        if key not in self._resized:
            resized = F.interpolate(self.mask[:, None], size=(height, width), mode="bilinear")
            flat = self.mask.flatten(1)
            constant = flat.amin(1) == flat.amax(1)  # such frames stay exact: bilinear weights may not sum to 1
            resized[constant] = flat[constant, :1, None, None].expand(-1, 1, height, width)
            self._resized[key] = resized
        return self._resized[key]

    def at(self, frames: list[int], height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """[len(frames), 1, height, width] for these absolute frames (last mask frame held), in like's dtype/device."""
        resized = self.resized(height, width)
        index = torch.tensor([min(f, self.frames - 1) for f in frames])
        return resized[index].to(dtype=like.dtype, device=like.device)

    def notes(self, frames: int, height: int, width: int) -> list[str]:
        """What does not fit an animation of `frames` latent frames of height × width, as log notes (ADE adapts
        these silently; the note says how)."""
        out = []
        if self.frames not in (1, frames):
            how = (f"its last frame holds for frames {self.frames}..{frames - 1}" if self.frames < frames
                   else f"frames {frames}..{self.frames - 1} of the mask are not used")
            out.append(f"{self.label} has {self.frames} frames but the animation has {frames}: {how}. Give "
                       f"one mask frame per animation frame, or a single one for all frames.")
        h, w = self.mask.shape[-2:]
        if not math.isclose(h / w, height / width, rel_tol=0.02):
            out.append(f"{self.label} is {w}x{h} but the latent is {width}x{height} ({width * 8}x{height * 8} "
                       f"pixels): it is stretched to the latent's shape. Make the mask the image's size.")
        return out


@dataclass(eq=False)
class RegionalMotion:
    """What the 'Regional Motion' node sets for 'Apply Motion Model' (see the module's doc)."""
    mask: MotionMask | None = None
    block_scales: dict = field(default_factory=lambda: {"down": 1.0, "mid": 1.0, "up": 1.0})
    attention_scale: float = 1.0
    attention_mask: MotionMask | None = None


def log_mask_notes(mask: MotionMask | None, name: str, latent: torch.Tensor) -> None:
    """Log what does not fit, once per sampling run (latent: [frames, C, h, w])."""
    if mask is None or latent.ndim != 4:
        return
    for note in mask.notes(latent.shape[0], latent.shape[-2], latent.shape[-1]):
        logging.warning(f"MotionKit: '{name}': {note}")


def block_scale(block_scales: dict | None, kind: str | None) -> float:
    """The per-block factor of a motion module of this kind ('input', 'middle', 'output'); 1 when none is set."""
    if not block_scales or kind is None:
        return 1.0
    return float(block_scales.get(BLOCK_NAMES.get(kind, kind), 1.0))


def masked_scale(scale, mask: MotionMask | None, frames: list[int], x: torch.Tensor):
    """The scale of one call with the mask applied: `scale` (a number or a [frames] tensor) unchanged when there is
    no mask, else a [frames, 1, h, w] tensor (per frame of one cond chunk)."""
    if mask is None:
        return scale
    m = mask.at(frames, x.shape[-2], x.shape[-1], x)
    if isinstance(scale, torch.Tensor):
        return m * scale.to(m)[:, None, None, None]
    return m if scale == 1.0 else m * scale


def attention_key_scale(settings, frames: int, transformer_options: dict, x: torch.Tensor):
    """What multiplies the motion modules' attention keys in this call: None (1), a number, or [frames, 1, h, w].

    AnimateDiff-Evolved's scale_multival (motion_module_ad.py TemporalTransformer3DModel.get_scale_mask, utils_motion
    CrossAttentionMM.forward: `k *= scale`, `k *= scale_mask`): the mask resized and its frames taken as for the
    effect mask above, times the number."""
    number = float(settings.attention_scale)
    mask = settings.attention_mask
    if mask is None:
        return None if number == 1.0 else number
    m = mask.at(window_frames(transformer_options, frames) or list(range(frames)), x.shape[-2], x.shape[-1], x)
    return m if number == 1.0 else m * number
