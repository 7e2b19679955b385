"""Context windows on a MODEL: ComfyUI core's IndexListContextHandler, with its conditioning kept per window.

Core already runs the windows (samplers.calc_cond_batch hands each step to
`model_options["context_handler"]`) and owns the schedules and fuse methods. What MotionKit adds,
all in `WindowedConditioning` (mixed into core's handler class, so every other part is core's):

* `set_step`: core 0.3.64 compares the whole per-frame sigma tensor with the step sigmas, which fails
  whenever the frames ride in the batch (dim 0, this use); see sampling.context.step_index.
* `get_resized_cond` (the handler's per-window conditioning hook), after core's own slicing:
  - per-frame model conds (a prompt per frame in `c_crossattn`, SDXL's `y`, an inpainting `c_concat`):
    core 0.3.64 never slices model conds for dim 0 (`ndim < dim` is never true), so each window's
    `process_cond` took rows 0..n-1. They are sliced to the window's frames here.
  - ControlNet / T2I-Adapter images: core passes the control objects on untouched; a control scales
    its whole image batch once, then `broadcast_image_to` keeps the first n images for the first
    window's batch and stores that in `cond_hint`, so every window of every step got images 0..n-1.
    Here each control in the chain gets the window's images as `cond_hint_original` (and `cond_hint`
    cleared, so core scales them again); `execute` puts the artist's images back after every step,
    also when sampling is interrupted.
  - Controls that place their own images over the frames (SparseCtrl's few keyframes) instead get the
    window's frames through `set_context_window(index_list, frames)`, and `None` after every step.
Image batches of one image stay broadcast by core; other counts than one per frame keep core's
behaviour, with a warning.
* per-frame inputs that live on the MODEL rather than in the conds (a trajectory's flow for MotionCtrl's OMCM,
  its boxes for trajectory attention) take the window core publishes in transformer_options
  ("context_window") through `common.unet_call.window_frames`, so they follow the same windows as the conds.
* ContextRef and NaiveReuse (sampling.consistency; nodes "Context Reference" / "Context Naive Reuse"): `execute`
  opens their step state in transformer_options, `evaluate_context_windows` tells it each window in order, and
  the fused result is blended by NaiveReuse before it is returned.
Besides: core's schedules run with a stride that fits the frames and no frame left out
(`context_schedule`), Moore-AnimateAnyone's fixed wrapping windows as one more schedule, a gaussian fuse
method in core's ContextFuseMethod form (`fuse_method`), the sampler's progress bar advanced after every
window, not only every step (sampling.window_progress), and options that change during sampling: Context Windows
chained at later start_percents (sampling.scheduled_context, AnimateDiff-Evolved's scheduled context options).

These overrides reach into core's handler internals (`_step`, five methods), so `handler_class` first checks
that core still has them as written (`core_differences`); a ComfyUI whose handler changed gets its own handler,
with one warning, instead of failing in the middle of sampling.

This module imports ComfyUI lazily (inside the functions that build handlers).
"""
from __future__ import annotations

import copy
import functools
import inspect
import logging
from dataclasses import dataclass, field

import torch

from ..common.patch import patched_clone
from . import consistency, window_progress
from .context import (FIXED_UNIFORM, GAUSSIAN, SCHEDULES, check_settings, fill_gaps, fixed_uniform_windows,
                      gaussian_weights, step_index, usable_stride)
from .scheduled_context import ContextPart, ContextPlan, schedule_parts, scheduled_class

LOG = logging.getLogger("MotionKit")
KEY = "motionkit_context_windows"


def per_frame(t, frames: int) -> bool:
    return isinstance(t, torch.Tensor) and t.ndim > 0 and frames > 1 and t.size(0) == frames


def slice_model_cond(value, index_list: list[int], frames: int):
    """A model cond (comfy.conds.CONDRegular & co.) cut to the window's frames when it has one row per frame."""
    cond = getattr(value, "cond", None)
    if per_frame(cond, frames) and hasattr(value, "_copy_with"):
        return value._copy_with(cond[index_list])
    return value


@dataclass
class SavedImages:
    """A control object's own images, while a window's are in it."""
    control: object
    hint: torch.Tensor
    extra_concat: list
    window: list[int] = field(default_factory=list)


class WindowedConditioning:
    """Mixin for comfy.context_windows.IndexListContextHandler (frames on dim 0)."""

    def set_step(self, timestep, model_options):
        sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
        self._step = step_index(sigmas, timestep, self._step)

    def execute(self, calc_cond_batch, model, conds, x_in, timestep, model_options):
        options = model_options.setdefault("transformer_options", {})
        step = consistency.open_step(options, model, float(timestep.flatten()[0]))  # ContextRef / NaiveReuse
        if step is not None:
            options[consistency.STEP_KEY] = step
        try:
            fused = super().execute(calc_cond_batch, model, conds, x_in, timestep, model_options)
            return fused if step is None else step.finish(fused)
        finally:
            options.pop(consistency.STEP_KEY, None)  # the bank lives one step (ADE cleans it after every step)
            self.restore_controls()

    # the sampler's progress bar moves with every window (sampling.window_progress) ----------------

    def get_context_windows(self, model, x_in, model_options):
        windows = super().get_context_windows(model, x_in, model_options)
        window_progress.start_step(model_options, self._step, len(windows))
        return windows

    def evaluate_context_windows(self, calc_cond_batch, model, x_in, conds, timestep, enumerated_context_windows,
                                 model_options, *args, **kwargs):
        step = model_options.get("transformer_options", {}).get(consistency.STEP_KEY)
        if step is None:
            results = super().evaluate_context_windows(calc_cond_batch, model, x_in, conds, timestep,
                                                       enumerated_context_windows, model_options, *args, **kwargs)
        else:  # ContextRef / NaiveReuse follow the windows one by one, in order
            results = []
            for window_idx, window in enumerated_context_windows:
                step.begin_window(window_idx, window.index_list)
                done = super().evaluate_context_windows(calc_cond_batch, model, x_in, conds, timestep,
                                                        [(window_idx, window)], model_options, *args, **kwargs)
                for result in done:
                    step.window_done(result.window_idx, result.window.index_list, result.sub_conds_out)
                results.extend(done)
        window_progress.window_done(model_options, len(enumerated_context_windows))
        return results

    def get_resized_cond(self, cond_in, x_in, window, device=None):
        resized = super().get_resized_cond(cond_in, x_in, window, device)
        if not resized:
            return resized
        frames = x_in.size(self.dim)
        for cond in resized:
            model_conds = cond.get("model_conds")
            if isinstance(model_conds, dict):
                cond["model_conds"] = {k: slice_model_cond(v, window.index_list, frames) for k, v in model_conds.items()}
            control = cond.get("control")
            while control is not None:
                self.window_images(control, window.index_list, frames)
                control = getattr(control, "previous_controlnet", None)
        return resized

    # ControlNet images ------------------------------------------------------------------------------

    def window_images(self, control, index_list: list[int], frames: int) -> None:
        if hasattr(control, "set_context_window"):  # it re-indexes its own keyframes (control.sparsectrl.apply)
            control.set_context_window(index_list, frames)
            self._saved_images()[id(control)] = SavedImages(control, None, [], list(index_list))
            return
        saved = self._saved_images().get(id(control))
        if saved is None:
            hint = getattr(control, "cond_hint_original", None)
            extra = list(getattr(control, "extra_concat_orig", None) or [])
            if not (per_frame(hint, frames) or any(per_frame(t, frames) for t in extra)):
                self._warn_image_count(control, hint, frames)
                return
            saved = self._saved_images()[id(control)] = SavedImages(control, hint, extra)
        if saved.window == index_list:
            return  # cond and uncond share one control object
        control.cond_hint_original = saved.hint[index_list] if per_frame(saved.hint, frames) else saved.hint
        control.extra_concat_orig = [t[index_list] if per_frame(t, frames) else t for t in saved.extra_concat]
        control.cond_hint = None  # core scales (and for T2I-Adapters encodes) the window's images again
        saved.window = list(index_list)

    def restore_controls(self) -> None:
        saved_images = self._saved_images()
        for saved in saved_images.values():
            if hasattr(saved.control, "set_context_window"):
                saved.control.set_context_window(None, None)
                continue
            saved.control.cond_hint_original = saved.hint
            saved.control.extra_concat_orig = saved.extra_concat
            saved.control.cond_hint = None
        saved_images.clear()

    def _saved_images(self) -> dict[int, SavedImages]:
        if not hasattr(self, "_motionkit_saved"):
            self._motionkit_saved = {}
        return self._motionkit_saved

    def _warn_image_count(self, control, hint, frames: int) -> None:
        count = hint.size(0) if isinstance(hint, torch.Tensor) and hint.ndim > 0 else 1
        warned = self.__dict__.setdefault("_motionkit_warned", set())
        if count != 1 and id(control) not in warned:
            warned.add(id(control))
            LOG.warning(f"MotionKit context windows: a ControlNet has {count} images for {frames} frames, so its "
                        f"images cannot follow the windows (ComfyUI gives each window images from the start of the "
                        f"batch). Give it one image per frame ({frames}) or a single image.")


# What WindowedConditioning relies on in core's handler: the methods it overrides or calls, with the parameters
# they had when it was written (ComfyUI 0.3.64), and the attributes core's __init__ sets. These are core's
# internals, not a promised API: a core that changes them gets core's own handler (see handler_class).
CORE_METHODS = {
    "set_step": ("self", "timestep", "model_options"),
    "get_context_windows": ("self", "model", "x_in", "model_options"),
    "execute": ("self", "calc_cond_batch", "model", "conds", "x_in", "timestep", "model_options"),
    "evaluate_context_windows": ("self", "calc_cond_batch", "model", "x_in", "conds", "timestep",
                                 "enumerated_context_windows", "model_options", "device", "first_device"),
    "get_resized_cond": ("self", "cond_in", "x_in", "window", "device"),
}
CORE_ATTRIBUTES = ("_step", "dim", "context_length", "context_overlap", "context_stride", "context_schedule",
                   "fuse_method", "closed_loop")
ADDITIONS = ("the frames-in-batch step fix, per-window ControlNet images and per-frame prompts, and the "
             "per-window progress bar")


def core_differences(core_class, window_class=None) -> list[str]:
    """How *core_class* (core's IndexListContextHandler or a later one) differs from what WindowedConditioning
    was written against; [] when it fits. *window_class*: core's IndexListContextWindow (needs `index_list`)."""
    found = []
    for name, expected in CORE_METHODS.items():
        method = getattr(core_class, name, None)
        if not callable(method):
            found.append(f"{name}() is gone")
            continue
        try:
            params = tuple(inspect.signature(method).parameters)
        except (TypeError, ValueError):
            found.append(f"{name}() has no readable signature")
            continue
        if params != expected:
            found.append(f"{name}({', '.join(params[1:])}) instead of {name}({', '.join(expected[1:])})")
    try:
        probe = core_class(context_schedule=None, fuse_method=None, context_length=2, context_overlap=0,
                           context_stride=1, closed_loop=False, dim=0)
    except Exception as e:  # any failure here means core's constructor changed
        found.append(f"its constructor no longer takes MotionKit's settings ({type(e).__name__}: {e})")
    else:
        missing = [a for a in CORE_ATTRIBUTES if not hasattr(probe, a)]
        if missing:
            found.append(f"its instances lack {', '.join(missing)}")
    if window_class is not None and not hasattr(window_class([0, 1], dim=0), "index_list"):
        found.append(f"{window_class.__name__} has no index_list")
    return found


@functools.cache
def handler_class(core_class=None, window_class=None):
    """core's IndexListContextHandler with WindowedConditioning (made on first use: imports ComfyUI).

    When core's handler no longer has what WindowedConditioning overrides (a later ComfyUI), core's own handler
    is used as it is, with one warning, rather than failing in the middle of sampling."""
    if core_class is None:
        from comfy.context_windows import IndexListContextHandler as core_class
        from comfy.context_windows import IndexListContextWindow as window_class
    differences = core_differences(core_class, window_class)
    if differences:
        LOG.warning(f"MotionKit context windows: this ComfyUI's {core_class.__name__} is not the one MotionKit was "
                    f"written for ({'; '.join(differences)}). Using ComfyUI's own context windows without "
                    f"MotionKit's additions ({ADDITIONS}). Update MotionKit to get them back.")
        return core_class
    return type("MotionKitContextHandler", (WindowedConditioning, core_class), {})


def fuse_method(name: str, context_overlap: int):
    import comfy.context_windows as cw
    if name == GAUSSIAN:
        return cw.ContextFuseMethod(GAUSSIAN, lambda length, **kwargs: gaussian_weights(length))
    if name == cw.ContextFuseMethods.OVERLAP_LINEAR and context_overlap == 0:
        # nothing overlaps, so nothing to ramp: flat is the same weights (core's ramp fails on an empty overlap)
        return cw.get_matching_fuse_method(cw.ContextFuseMethods.FLAT)
    return cw.get_matching_fuse_method(name)


def context_schedule(name: str):
    """core's schedule, run with a stride that fits the frames, and no frame left out (sampling.context);
    the fixed uniform schedule (Animate Anyone's) is MotionKit's, in core's ContextSchedule form."""
    import comfy.context_windows as cw
    if name == FIXED_UNIFORM:
        def fixed(num_frames, handler, model_options):  # the same windows at every step (handler._step unused)
            stride = usable_stride(num_frames, handler.context_length, handler.context_stride)
            return fixed_uniform_windows(num_frames, handler.context_length, handler.context_overlap, stride)
        return cw.ContextSchedule(SCHEDULES[name], fixed)
    core = cw.get_matching_context_schedule(SCHEDULES[name])

    def windows(num_frames, handler, model_options):
        stride = usable_stride(num_frames, handler.context_length, handler.context_stride)
        if stride != handler.context_stride:
            handler = copy.copy(handler)  # the frame count is only known now; the node's setting stays
            handler.context_stride = stride
        return fill_gaps(core.func(num_frames, handler, model_options), num_frames, handler.context_length)

    return cw.ContextSchedule(core.name, windows)


def make_handler(context_length: int, context_overlap: int, schedule: str, context_stride: int, fuse: str,
                 closed_loop: bool, core_class=None, window_class=None):
    """The handler for the node's settings (*core_class*/*window_class*: core's, unless a test passes others)."""
    check_settings(context_length, context_overlap, schedule, fuse)
    return handler_class(core_class, window_class)(
        context_schedule=context_schedule(schedule),
        fuse_method=fuse_method(fuse, context_overlap),
        context_length=context_length, context_overlap=context_overlap, context_stride=context_stride,
        closed_loop=closed_loop, dim=0)


def settings_label(context_length: int, context_overlap: int, schedule: str, context_stride: int, fuse: str,
                   closed_loop: bool) -> str:
    """The node's settings as an artist reads them in a message."""
    extra = (f", stride {context_stride}" if context_stride != 1 else "") + (", closed loop" if closed_loop else "")
    return f"length {context_length}, overlap {context_overlap}, {schedule}, {fuse}{extra}"


def apply_context_windows(model_patcher, context_length: int, context_overlap: int, schedule: str,
                          context_stride: int, fuse: str, closed_loop: bool, start_percent: float = 0.0,
                          guarantee_steps: int = 1):
    """A clone of `model_patcher` that samples its frames in context windows; the input is left as it was.

    start_percent 0: these windows, from the start of sampling (replacing a single earlier Context Windows).
    Above 0: the Context Windows already on the model run until then and these take over, after the earlier ones
    ran their guarantee_steps (sampling.scheduled_context, which refuses chains out of order)."""
    import comfy.context_windows as cw

    handler = make_handler(context_length, context_overlap, schedule, context_stride, fuse, closed_loop)
    part = ContextPart(start_percent, guarantee_steps, handler,
                       settings_label(context_length, context_overlap, schedule, context_stride, fuse, closed_loop))
    earlier = model_patcher.get_attachment(KEY)
    if not (isinstance(earlier, ContextPlan) and earlier.handler is model_patcher.model_options.get("context_handler")):
        earlier = None  # none of MotionKit's, or another node has put its own handler on the model since
    parts = schedule_parts(earlier, part)
    plan = ContextPlan(parts, handler if len(parts) == 1 else scheduled_class()(parts))

    def note(noise, executor):
        frames = noise.shape[0]
        if len(parts) == 1:
            length = getattr(executor.class_obj.model_options.get("context_handler"), "context_length", None)
            if length is not None and frames <= length:
                LOG.info(f"MotionKit context windows: {frames} frames fit in one window of {length}; "
                         f"they are sampled in one pass.")
            return
        for p in parts:
            if frames <= p.handler.context_length:
                LOG.info(f"MotionKit context windows: {frames} frames fit in one window of {p.handler.context_length} "
                         f"({p.describe()}); while those options are in force they are sampled in one pass.")

    pre_run = plan.handler.set_start_sigmas if len(parts) > 1 else None  # a new run starts with the first part
    m = patched_clone(model_patcher, KEY, replace=True, before=note, pre_run=pre_run,  # applied twice: one note
                      attachment=plan)
    m.model_options["context_handler"] = plan.handler
    cw.create_prepare_sampling_wrapper(m)  # core's: memory is estimated for one window, not all frames
    return m
