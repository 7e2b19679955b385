"""Context windows on the sampler's progress bar: it moves with every window, not once a step.

The sampler node reports a step when its model call returns (latent_preview.prepare_callback:
`step + 1` of `steps`); with many windows a step takes long and the bar sits still. Each window done
here reports `step * windows + windows done` of `steps * windows` through comfy.utils.ProgressBar with
no node id, as the sampler's own bar: ComfyUI's hook fills in the executing node, the sampler. The end
of a step gives (step + 1) / steps, the sampler's own report. When no hook is set (ComfyUI not running a
prompt) the bar reports to no one. One window a step: the sampler's bar says it all, nothing is added.

The state lives in the run's transformer_options, which core makes anew for every sampling run
(CFGGuider.inner_sample puts that run's `sample_sigmas` there), so a run starts from 0. A sampler node
that samples several times (FreeInit's passes) says which pass runs (`in_pass`), and the bar counts
over all of them, as that node's step reports do.
Samplers with more than one model call a step (heun, dpm_2, ...) run the windows once per call and
report the step after the first; the furthest point reached is kept, so the bar never goes back.
Imports ComfyUI lazily (inside `start_step`).
"""
from __future__ import annotations

from dataclasses import dataclass

KEY = "motionkit_window_progress"
PASS = "motionkit_sampling_pass"  # (pass, passes) in transformer_options


@dataclass
class WindowProgress:
    steps: int
    bar: object  # comfy.utils.ProgressBar
    sampling_pass: tuple[int, int] = (0, 1)
    step: int = 0
    windows: int = 0  # of the current model call; 0: it reports nothing
    done: int = 0
    reached: float = 0.0  # the fraction last reported: the bar never goes back

    def report(self) -> None:
        index, passes = self.sampling_pass
        value = ((index * self.steps + self.step) * self.windows + self.done)
        total = passes * self.steps * self.windows
        if value / total > self.reached:
            self.reached = value / total
            self.bar.update_absolute(value, total)


def in_pass(model_options, index: int, passes: int) -> None:
    """Sampling runs with these model_options are pass `index` (from 0) of `passes` of one sampler node."""
    if isinstance(model_options, dict):
        model_options.setdefault("transformer_options", {})[PASS] = (index, passes)


def start_step(model_options: dict, step: int, windows: int) -> None:
    """A model call of sampling step `step` (an index into the run's sample_sigmas) runs `windows` windows."""
    transformer_options = model_options.get("transformer_options")
    if not isinstance(transformer_options, dict):
        return
    sigmas = transformer_options.get("sample_sigmas")
    steps = len(sigmas) - 1 if sigmas is not None else 0
    progress = transformer_options.get(KEY)
    if steps < 1 or windows < 2:  # not a sampling run, or nothing to add to the sampler's bar in this call
        if isinstance(progress, WindowProgress):
            progress.windows = 0
        return
    if not isinstance(progress, WindowProgress) or progress.steps != steps:
        import comfy.utils
        index, passes = transformer_options.get(PASS, (0, 1))
        progress = transformer_options[KEY] = WindowProgress(
            steps, comfy.utils.ProgressBar(passes * steps * windows), (min(index, passes - 1), passes))
    progress.step, progress.windows, progress.done = min(max(step, 0), steps - 1), windows, 0


def window_done(model_options: dict, count: int = 1) -> None:
    progress = (model_options.get("transformer_options") or {}).get(KEY)
    if isinstance(progress, WindowProgress) and progress.windows:
        progress.done = min(progress.done + count, progress.windows)
        progress.report()
