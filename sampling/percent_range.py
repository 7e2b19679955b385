"""The part of sampling a patch acts in (start/end percent, as core's ControlNet), shared by the motion model,
MotionCtrl OMCM and trajectory attention.

A target is any object with `start_percent`, `end_percent` and the `start_sigma` / `end_sigma` they become on the
model's own schedule; the sigmas are filled in before each sampling run, since every model (and AnimateLCM's or
Animate Anyone's own schedule) maps percents to other sigmas.
"""
from __future__ import annotations


def set_sigma_range(target, model_sampling) -> None:
    """Fill target.start_sigma / end_sigma from its percents on this model's sampling schedule."""
    target.start_sigma = float(model_sampling.percent_to_sigma(target.start_percent))
    target.end_sigma = float(model_sampling.percent_to_sigma(target.end_percent))


def in_sigma_range(target, options: dict) -> bool:
    """Whether this UNet call's sigma (transformer_options["sigmas"]) lies in the target's part of sampling."""
    sigmas = options.get("sigmas")
    return sigmas is None or target.end_sigma <= float(sigmas.max()) <= target.start_sigma
