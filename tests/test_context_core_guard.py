"""The context-window handler overrides private parts of core's IndexListContextHandler; a core that changed
them is detected before sampling and core's own handler is used, with one warning (sampling.context_handler)."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

import comfy_env

pytestmark = pytest.mark.comfyui  # in-process ComfyUI

SIGMAS = torch.tensor([14.6, 6.0, 2.5, 0.8, 0.0])
FRAMES = 40


@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.context_windows
    import comfy.k_diffusion.sampling
    from motionkit.sampling import context, context_handler
    return SimpleNamespace(cw=comfy.context_windows, k=comfy.k_diffusion.sampling, handler=context_handler,
                           context=context)


def test_this_comfyui_has_the_handler_internals_motionkit_overrides(comfy):
    found = comfy.handler.core_differences(comfy.cw.IndexListContextHandler, comfy.cw.IndexListContextWindow)
    assert not found, ("ComfyUI's IndexListContextHandler changed: " + "; ".join(found) + ". MotionKit falls back "
                       "to core's own context windows; port sampling/context_handler.py's WindowedConditioning "
                       "to the new core and update CORE_METHODS / CORE_ATTRIBUTES.")
    assert comfy.handler.handler_class() is not comfy.cw.IndexListContextHandler


def changed_core(comfy):
    """A 'later ComfyUI': get_resized_cond takes a new argument, and set_step handles frames on dim 0."""
    class LaterCoreHandler(comfy.cw.IndexListContextHandler):
        def get_resized_cond(self, cond_in, x_in, window, device=None, model=None):
            return super().get_resized_cond(cond_in, x_in, window, device)

        def set_step(self, timestep, model_options):
            self._step = comfy.context.step_index(model_options["transformer_options"]["sample_sigmas"], timestep,
                                                  self._step)
    return LaterCoreHandler


def test_changed_signatures_are_named_clearly(comfy):
    later = changed_core(comfy)
    found = comfy.handler.core_differences(later)
    assert found == ["get_resized_cond(cond_in, x_in, window, device, model) instead of "
                     "get_resized_cond(cond_in, x_in, window, device)"]

    class NoStep(comfy.cw.IndexListContextHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            del self._step
    assert comfy.handler.core_differences(NoStep) == ["its instances lack _step"]

    class Renamed(comfy.cw.IndexListContextHandler):
        execute = None
    assert "execute() is gone" in comfy.handler.core_differences(Renamed)


def test_a_changed_core_is_used_as_it_is_and_still_samples(comfy, caplog):
    later = changed_core(comfy)
    with caplog.at_level(logging.WARNING, logger="MotionKit"):
        handlers = [comfy.handler.make_handler(16, 4, "uniform", 1, "pyramid", False, core_class=later)
                    for _ in range(3)]
    warnings = [r.getMessage() for r in caplog.records if r.name == "MotionKit"]
    assert len(warnings) == 1, "one warning, not one per node run"
    assert "get_resized_cond" in warnings[0] and "ComfyUI's own context windows" in warnings[0]
    h = handlers[0]
    assert type(h) is later, "core's own handler, nothing of MotionKit's mixed in"
    assert (h.context_length, h.context_overlap, h.dim) == (16, 4, 0)

    # sample 40 frames with core's euler sampler through the fallback handler (a stand-in model per window)
    windows = []
    options = {"transformer_options": {"sample_sigmas": SIGMAS}}

    def calc(model, conds, x, timestep, model_options):
        windows.append(model_options["transformer_options"]["context_window"].index_list)
        return [x * 0.5 for _ in conds]

    x = torch.randn(FRAMES, 4, 2, 2, generator=torch.Generator().manual_seed(0)) * SIGMAS[0]
    out = comfy.k.sample_euler(lambda x, sigma, **kw: h.execute(calc, None, [[{}]], x, sigma, options)[0],
                               x, SIGMAS, disable=True)
    assert torch.isfinite(out).all() and out.shape == x.shape
    assert len(windows) > 4 * 2 and set().union(*map(set, windows)) == set(range(FRAMES))
    assert all(len(w) == 16 for w in windows)
