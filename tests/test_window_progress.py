"""The sampler's progress bar moves with every context window (sampling.window_progress).

In-process ComfyUI: core's k-diffusion samplers run a MotionKit context handler (a stand-in model call per
window) with the sampler node's own progress report (latent_preview.prepare_callback, called the way
KSAMPLER.sample calls it); every report is taken from comfy.utils' global progress-bar hook, as
ComfyUI's server takes them (main.py). The real server's websocket messages: tests/test_comfy_context.py.
"""
from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import pytest
import torch

import comfy_env

pytestmark = pytest.mark.comfyui  # in-process ComfyUI

FRAMES, STEPS = 40, 4
SIGMAS = torch.tensor([14.6, 6.0, 2.5, 0.8, 0.0])  # STEPS steps


@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.k_diffusion.sampling
    import comfy.utils
    import latent_preview
    from motionkit.sampling import context_handler
    return SimpleNamespace(k=comfy.k_diffusion.sampling, utils=comfy.utils, preview=latent_preview,
                           handler=context_handler)


@pytest.fixture
def reports(comfy):
    """Every (value, total) the progress bars send to ComfyUI's hook while the test runs."""
    seen = []
    before = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None, prompt_id=None:
                                             seen.append((value, total)))
    yield seen
    comfy.utils.set_progress_bar_global_hook(before)


def node_callback(comfy, steps):
    """The sampler node's step reports: latent_preview.prepare_callback, as KSampler makes it (no previews)."""
    no_previews = SimpleNamespace(load_device=torch.device("cpu"), model=SimpleNamespace(latent_format=None))
    return comfy.preview.prepare_callback(no_previews, steps)


def sample(comfy, handler, sampler="sample_euler", sigmas=SIGMAS, frames=FRAMES, model_options=None, callback=None,
           x=None):
    """One sampling run as CFGGuider.inner_sample + KSAMPLER.sample make it: a copy of the model_options with
    the run's sample_sigmas, the node's step callback called with (step, x0, x, total_steps)."""
    from comfy.patcher_extension import copy_nested_dicts
    options = copy_nested_dicts(model_options or {"transformer_options": {}})
    options["transformer_options"]["sample_sigmas"] = sigmas
    callback = node_callback(comfy, len(sigmas) - 1) if callback is None else callback
    windows_run = []

    def calc(model, conds, x, timestep, model_options):  # a window's model call
        windows_run.append(model_options["transformer_options"]["context_window"].index_list)
        return [x * 0.5 for _ in conds]

    def denoiser(x, sigma, **kwargs):
        return handler.execute(calc, None, [[{}]], x, sigma, options)[0]

    total_steps = len(sigmas) - 1
    x = torch.randn(frames, 4, 2, 2, generator=torch.Generator().manual_seed(0)) * sigmas[0] if x is None else x
    getattr(comfy.k, sampler)(denoiser, x, sigmas, disable=True,
                              callback=lambda d: callback(d["i"], d["denoised"], d["x"], total_steps))
    return windows_run


def fractions(reports):
    return [Fraction(value, total) for value, total in reports]


def test_every_window_moves_the_bar_in_step_with_the_sampler(comfy, reports):
    h = comfy.handler.make_handler(16, 4, "static", 1, "flat", False)
    windows_run = sample(comfy, h)
    windows = len(h.get_context_windows(None, torch.zeros(FRAMES, 1), {}))
    assert windows == 3 and len(windows_run) == windows * STEPS
    step_reports = [r for r in reports if r[1] == STEPS]  # the sampler's own
    window_reports = [r for r in reports if r[1] != STEPS]
    assert step_reports == [(i + 1, STEPS) for i in range(STEPS)]
    assert window_reports == [(v, windows * STEPS) for v in range(1, windows * STEPS + 1)]
    # the bar as the artist sees it (both kinds, in the order sent): never back, and the full run at the end
    seen = fractions(reports)
    assert seen == sorted(seen) and seen[-1] == 1
    # each step's last window and the sampler's report of that step agree, and come one after the other
    for i in range(STEPS):
        at = reports.index((i + 1, STEPS))
        assert reports[at - 1] == ((i + 1) * windows, windows * STEPS)


def test_uniform_windows_and_a_second_run_start_from_zero(comfy, reports):
    """uniform: the window count may change between steps; each run of the same handler starts at 0."""
    h = comfy.handler.make_handler(16, 4, "uniform", 2, "pyramid", False)
    for run in range(2):
        reports.clear()
        windows_run = sample(comfy, h, frames=64)
        window_reports = [r for r in reports if r[1] != STEPS]
        assert len(window_reports) == len(windows_run) > 2 * STEPS
        seen = fractions(reports)
        assert seen == sorted(seen) and seen[-1] == 1 and seen[0] < Fraction(1, STEPS), run


@pytest.mark.parametrize("sampler", ["sample_heun", "sample_dpm_2"])
def test_samplers_with_several_model_calls_a_step_never_move_the_bar_back(comfy, reports, sampler):
    """heun's second call is at the next step's sigma, dpm_2's between two: the bar keeps its furthest point."""
    h = comfy.handler.make_handler(16, 4, "static", 1, "flat", False)
    windows_run = sample(comfy, h, sampler=sampler)
    assert len(windows_run) == 3 * (2 * STEPS - 1)  # two model calls a step, one in the last (to sigma 0)
    window_reports = [r for r in reports if r[1] != STEPS]
    assert len(window_reports) == 3 * STEPS and len(set(window_reports)) == len(window_reports)
    seen = fractions(reports)
    assert seen == sorted(seen) and seen[-1] == 1


def test_no_hook_no_windows_no_sampling_run(comfy, reports):
    h = comfy.handler.make_handler(16, 4, "static", 1, "flat", False)
    comfy.utils.set_progress_bar_global_hook(None)  # no ComfyUI prompt running: sampling works, no one is told
    assert len(sample(comfy, h)) == 3 * STEPS
    assert reports == []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, *a, **k: reports.append((value, total)))
    # one window (the batched schedule with 16 frames of 16): the sampler's steps are the whole story
    batched = comfy.handler.make_handler(16, 0, "batched", 1, "flat", False)
    x = torch.randn(16, 4, 2, 2)
    options = {"transformer_options": {"sample_sigmas": SIGMAS}}
    batched.execute(lambda m, conds, x, t, o: [x for _ in conds], None, [[{}]], x, torch.full((16,), 6.0), options)
    # a model call outside a sampling run (no sample_sigmas): windows run, nothing is reported
    h.execute(lambda m, conds, x, t, o: [x for _ in conds], None, [[{}]], torch.randn(40, 4, 2, 2),
              torch.full((40,), 6.0), {"transformer_options": {}})
    assert reports == []


def test_freeinit_passes_count_on_one_bar(comfy, reports):
    """FreeInit samples twice in one sampler node and spreads the node's steps over both passes: the windows too."""
    from motionkit.sampling import freeinit

    class Executor:  # CFGGuider.outer_sample, for FreeInit's OUTER_SAMPLE wrapper
        class_obj = SimpleNamespace(model_options={"transformer_options": {}}, conds={}, model_patcher=SimpleNamespace(
            model=SimpleNamespace(process_latent_in=lambda x: x, process_latent_out=lambda x: x)))

        def __call__(self, noise, latent, sampler, sigmas, denoise_mask, callback, disable_pbar, seed):
            sample(comfy, h, sigmas=sigmas, model_options=self.class_obj.model_options, callback=callback,
                   x=noise * sigmas[0])
            return noise  # what FreeInit mixes into the next pass: any latent will do here

    h = comfy.handler.make_handler(16, 4, "static", 1, "flat", False)
    noise = torch.randn(FRAMES, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    freeinit.make_outer_sample(freeinit.FreeInitSettings(iterations=2))(
        Executor(), noise, torch.zeros_like(noise), "euler", SIGMAS, None, node_callback(comfy, STEPS), False, 3)
    assert [r for r in reports if r[1] == 2 * STEPS] == [(i, 2 * STEPS) for i in range(1, 2 * STEPS + 1)]
    assert [r for r in reports if r[1] != 2 * STEPS] == [(v, 2 * 3 * STEPS) for v in range(1, 2 * 3 * STEPS + 1)]
    seen = fractions(reports)
    assert seen == sorted(seen) and seen[-1] == 1
