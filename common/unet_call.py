"""One UNet call under ComfyUI, as every patch sees it: which part of sampling it is in (start/end percent, as
core's ControlNet), how many frames it holds, which frames of the animation they are, and its transformer_options.

A percent-range target is any object with `start_percent`, `end_percent` and the `start_sigma` / `end_sigma` they
become on the model's own schedule; the sigmas are filled in before each sampling run, since every model (and
AnimateLCM's or Animate Anyone's own schedule) maps percents to other sigmas.
"""
from __future__ import annotations

# BaseModel._apply_model(x, t, c_concat, c_crossattn, control, transformer_options, ...): the DIFFUSION_MODEL
# wrapper gets these positionally (comfy/model_base.py)
TRANSFORMER_OPTIONS_ARG = 5


def set_sigma_range(target, model_sampling) -> None:
    """Fill target.start_sigma / end_sigma from its percents on this model's sampling schedule."""
    target.start_sigma = float(model_sampling.percent_to_sigma(target.start_percent))
    target.end_sigma = float(model_sampling.percent_to_sigma(target.end_percent))


def in_sigma_range(target, options: dict) -> bool:
    """Whether this UNet call's sigma (transformer_options["sigmas"]) lies in the target's part of sampling."""
    sigmas = options.get("sigmas")
    return sigmas is None or target.end_sigma <= float(sigmas.max()) <= target.start_sigma


def frames_in_call(rows: int, transformer_options: dict) -> int:
    """cond and uncond (and several conds) are concatenated in one batch, each holding all frames."""
    chunks = len(transformer_options.get("cond_or_uncond", [])) or 1
    return rows // chunks


def window_frames(transformer_options: dict, frames: int) -> list[int] | None:
    """The animation's frames in this UNet call (`frames` per cond): the context window's when sampling in
    windows, None otherwise (then the call holds every frame)."""
    window = getattr(transformer_options.get("context_window"), "index_list", None)
    return list(window) if window is not None and len(window) == frames else None


def transformer_options_of(args: tuple, kwargs: dict) -> dict:
    """transformer_options of a DIFFUSION_MODEL wrapper's call, passed positionally or by name."""
    if len(args) > TRANSFORMER_OPTIONS_ARG:
        return args[TRANSFORMER_OPTIONS_ARG]
    return kwargs.get("transformer_options", {})
