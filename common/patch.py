"""The steps every adapter of ours takes on a ComfyUI MODEL, written once; each adapter then adds only its own patch.

`patched_clone` makes a ModelPatcher clone with, under one key:
* additional models (the adapter's own weights), loaded and offloaded with the UNet as core loads ControlNets;
* an ON_PRE_RUN callback that turns the adapter's start/end percent into sigmas on this model's schedule (every
  model, and AnimateLCM's or Animate Anyone's own schedule, maps percents to other sigmas);
* an OUTER_SAMPLE wrapper: `before(noise, executor)` ahead of sampling (fit a trajectory to the latent, encode an
  image, check the frame count), `after()` when sampling ends, always (caches of device memory are freed even when
  sampling fails or is interrupted);
* optionally a DIFFUSION_MODEL wrapper (runs at every UNet call).
Official extension points only (comfy.patcher_extension), no monkeypatching.
"""
from __future__ import annotations

import uuid
from typing import Callable, Optional, Sequence

from .unet_call import set_sigma_range


def new_key(name: str) -> str:
    """The key of one application of an adapter: wrappers, callbacks, additional models and attachments under it
    belong together; unique per application, so two applications on one MODEL never replace each other."""
    return f"motionkit_{name}_{uuid.uuid4().hex[:8]}"


def patched_clone(model_patcher, key: str, *, replace: bool = False, additional_models: Sequence = (),
                  percent_range=None, pre_run: Optional[Callable] = None, before: Optional[Callable] = None,
                  after: Optional[Callable] = None, outer_sample: Optional[Callable] = None,
                  diffusion_model: Optional[Callable] = None, attachment=None):
    """A clone of `model_patcher` (left as it was) with the adapter's set-up under `key` (see the module's doc).

    replace: the key is fixed for the adapter (applying it again replaces the earlier application).
    percent_range: an object with start_percent / end_percent that gets start_sigma / end_sigma before each run.
    pre_run: `pre_run(model_sampling)` before each run, after the percent range (e.g. keyframes' own start sigmas).
    outer_sample: an OUTER_SAMPLE wrapper of the adapter's own, when it does more than before/after (FreeInit samples
    several times)."""
    from comfy.patcher_extension import CallbacksMP, WrappersMP

    m = model_patcher.clone()
    if replace:
        for wrapper_type in (WrappersMP.OUTER_SAMPLE, WrappersMP.DIFFUSION_MODEL):
            m.remove_wrappers_with_key(wrapper_type, key)
        m.remove_callbacks_with_key(CallbacksMP.ON_PRE_RUN, key)
    if additional_models:
        m.set_additional_models(key, list(additional_models))
    if attachment is not None:
        m.set_attachments(key, attachment)
    if percent_range is not None or pre_run is not None:
        def on_pre_run(patcher):
            sampling = patcher.get_model_object("model_sampling")
            if percent_range is not None:
                set_sigma_range(percent_range, sampling)
            if pre_run is not None:
                pre_run(sampling)
        m.add_callback_with_key(CallbacksMP.ON_PRE_RUN, key, on_pre_run)
    if before is not None or after is not None:
        def around_sampling(executor, *args, **kwargs):
            try:
                if before is not None:
                    before(args[0], executor)
                return executor(*args, **kwargs)
            finally:
                if after is not None:
                    after()
        m.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, key, around_sampling)
    if outer_sample is not None:
        m.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, key, outer_sample)
    if diffusion_model is not None:
        m.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, key, diffusion_model)
    return m
