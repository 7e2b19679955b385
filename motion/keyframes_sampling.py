"""Motion keyframes over sampling: motion_scale, attention_scale and their masks that change at given start percents.

The semantics are AnimateDiff-Evolved's 'AnimateDiff Keyframe' (Kosinkadink/ComfyUI-AnimateDiff-Evolved at 90fb133):

* keyframes (utils_motion.ADKeyframe / ADKeyframeGroup) are kept sorted by start_percent, keyframes of equal
  start_percent in the order they were chained; the group always begins with a default keyframe at 0 that sets
  nothing, unless a chained keyframe starts at 0 itself;
* the keyframe in force is chosen once per sampling step (model_injection.MotionModelAttachment
  .prepare_current_keyframe, written once in common.start_schedule): when the step's sigma differs from the last
  one seen, and the current keyframe has been used for its guarantee_steps (0 when it starts before the first
  sigma of this sampling run), the following keyframes whose start sigma is >= the step's sigma are taken in
  turn, stopping at the first that guarantees steps; each taken keyframe sets the values it has, and with
  inherit_missing off clears those it lacks;
* the values in force multiply the base values of 'Apply Motion Model' (utils_motion.get_combined_multival):
  numbers multiply, two masks are combined on the larger one's size (the other resized bilinearly, centre-cropped
  to its aspect; frames extended by holding the last one) and multiplied.

MotionKit's motion_scale is ADE's effect, its attention_scale ADE's scale (motion.regional). A keyframe value is
a number and an optional mask; None = the keyframe does not set it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..common.start_schedule import StartSchedule
from .regional import MotionMask


@dataclass(frozen=True)
class Multival:
    """A number and an optional MotionMask; the value is their product (ADE's multival: a float or a mask)."""
    number: float = 1.0
    mask: MotionMask | None = None


@dataclass(frozen=True, eq=False)
class MotionKeyframe:
    """One keyframe ('Motion Keyframe' node)."""
    start_percent: float = 0.0
    effect: Multival | None = None  # motion_scale (ADE effect); None = not set
    scale: Multival | None = None  # attention_scale (ADE scale); None = not set
    inherit_missing: bool = True
    guarantee_steps: int = 1
    default: bool = False


DEFAULT = MotionKeyframe(default=True)


@dataclass(frozen=True)
class MotionKeyframes:
    """What flows along a MOTION_KEYFRAMES wire: keyframes sorted by start_percent (ADE ADKeyframeGroup)."""
    keyframes: tuple = (DEFAULT,)

    def add(self, keyframe: MotionKeyframe) -> "MotionKeyframes":
        """A new group with `keyframe` added (this one is shared by other graphs and stays as it is)."""
        kept = [k for k in self.keyframes if not (k.default and k.start_percent == keyframe.start_percent)]
        return MotionKeyframes(tuple(sorted(kept + [keyframe], key=lambda k: k.start_percent)))  # stable, as ADE


def combine_masks(a: MotionMask, b: MotionMask) -> MotionMask:
    """ADE get_combined_multival for two masks: the one of larger area leads (a on a tie), the other is centre-
    cropped to its aspect and resized bilinearly to its size (comfy.utils.common_upscale), both are extended to the
    larger frame count by holding their last frame, and multiplied."""
    ma, mb = a.mask, b.mask
    leader, follower = (ma, mb) if ma.shape[1] * ma.shape[2] >= mb.shape[1] * mb.shape[2] else (mb, ma)
    frames = max(ma.shape[0], mb.shape[0])
    height, width = leader.shape[-2:]
    old_h, old_w = follower.shape[-2:]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    cropped = follower[:, y:old_h - y, x:old_w - x]
    follower = F.interpolate(cropped[:, None], size=(height, width), mode="bilinear")[:, 0]

    def extend(m):
        return m[:frames] if m.shape[0] >= frames else torch.cat([m] + [m[-1:]] * (frames - m.shape[0]))
    return MotionMask(extend(leader) * extend(follower), a.label)


def combine(base: Multival | None, current: Multival | None) -> Multival | None:
    """The base value times the keyframe's (ADE get_combined_multival); None when neither is set."""
    if base is None or current is None:
        return base if current is None else current
    if base.mask is None or current.mask is None:
        mask = base.mask if current.mask is None else current.mask
    else:
        mask = combine_masks(base.mask, current.mask)
    return Multival(base.number * current.number, mask)


class KeyframeSelection:
    """The keyframe in force during one sampling run, stepped at each UNet call (ADE prepare_current_keyframe; the
    choice itself is common.start_schedule's, shared with scheduled context windows).

    `start_sigmas(model_sampling)` before each run, then `step(sigma, sample_sigmas)` at each call; `values()` is
    (motion_scale Multival or None, attention_scale Multival or None) of the keyframe in force."""

    def __init__(self, keyframes: MotionKeyframes):
        self.keyframes = keyframes.keyframes
        self.schedule = StartSchedule([k.start_percent for k in self.keyframes],
                                      [k.guarantee_steps for k in self.keyframes], first_in_force=False)
        self.reset()

    @property
    def index(self) -> int:
        return self.schedule.index

    @property
    def start_t(self) -> list[float]:
        return self.schedule.start_t

    def reset(self) -> None:
        self.schedule.reset()
        self.effect = None
        self.scale = None

    def set_start_sigmas(self, model_sampling) -> None:
        """The keyframes' start percents on this model's schedule (ADE initialize_timesteps); resets the run."""
        self.schedule.set_start_sigmas(model_sampling)
        self.reset()

    def step(self, sigma: torch.Tensor, sample_sigmas: torch.Tensor | None = None) -> bool:
        """Take this call's sigma (a 0-dim tensor; compared in its dtype, as ADE's tensor comparisons); True when
        the keyframe in force changed."""
        taken = self.schedule.step(sigma, sample_sigmas)
        for i in taken:  # each keyframe taken sets its values in turn
            keyframe = self.keyframes[i]
            if keyframe.effect is not None or not keyframe.inherit_missing:
                self.effect = keyframe.effect
            if keyframe.scale is not None or not keyframe.inherit_missing:
                self.scale = keyframe.scale
        return bool(taken)


def base_values(settings) -> tuple[Multival | None, Multival | None]:
    """(effect, scale) that Apply Motion Model itself sets (motion.injection.MotionSettings)."""
    return (Multival(settings.scale, settings.mask),
            Multival(settings.attention_scale, settings.attention_mask))


def keyframed_settings(settings, selection: KeyframeSelection):
    """`settings` with the keyframe in force applied: the base values times the keyframe's."""
    base_effect, base_scale = base_values(settings)
    effect = combine(base_effect, selection.effect)
    scale = combine(base_scale, selection.scale)
    return replace(settings, scale=effect.number, mask=effect.mask,
                   attention_scale=scale.number, attention_mask=scale.mask)
