"""Which of several settings, each taking over at a start percent of sampling, is in force at each model call.

AnimateDiff-Evolved's rule (Kosinkadink/ComfyUI-AnimateDiff-Evolved at 90fb133), the same for its keyframes
(model_injection.MotionModelAttachment.prepare_current_keyframe) and its scheduled context options
(context.ContextOptionsGroup.prepare_current_context); MotionKit uses it for both (motion.keyframes_sampling,
sampling.context_schedule):

* the items are sorted by start_percent; before each sampling run their start percents become sigmas on the
  model's schedule (`model_sampling.percent_to_sigma`, ADE initialize_timesteps), and the run starts afresh;
* at each model call whose sigma differs from the last one seen (cond/uncond and context windows of one step
  share it), once the item in force has been used for its guarantee_steps (0 when it starts before the first
  sigma of this run), the following items whose start sigma is >= the call's sigma are taken in turn, stopping
  at the first that guarantees steps;
* keyframes begin with none in force (`first_in_force=False`); context options begin with the first in force,
  whatever its start_percent.

Comparisons are ADE's: Python floats against the call's 0-dim sigma tensor, so in the tensor's dtype.
"""
from __future__ import annotations

from typing import Sequence

import torch

# ADE utils_model.BIGMAX_TENSOR: the first sigma of a run when the sampler gives none
NO_SAMPLE_SIGMAS = torch.tensor(9999999999.9)
UNSET_START = 999999999.9  # ADE ContextOptions / ADKeyframe start_t before initialize_timesteps


class StartSchedule:
    """The index of the item in force; `set_start_sigmas` before each run, `step` at each model call."""

    def __init__(self, start_percents: Sequence[float], guarantee_steps: Sequence[int], first_in_force: bool):
        if len(start_percents) != len(guarantee_steps):
            raise ValueError("one guarantee_steps per start_percent")
        self.start_percents = tuple(float(p) for p in start_percents)
        self.guarantee_steps = tuple(int(g) for g in guarantee_steps)
        self.first = 0 if first_in_force and self.start_percents else -1
        self.start_t = [UNSET_START] * len(self.start_percents)  # ADE's value until initialize_timesteps
        self.initialized = False  # set_start_sigmas has run
        self.reset()

    def reset(self) -> None:
        """A new run: the first item in force again (or none), nothing used yet."""
        self.index = self.first
        self.used_steps = 0
        self.previous_t = None

    def set_start_sigmas(self, model_sampling) -> None:
        """The start percents on this model's schedule (ADE initialize_timesteps); resets the run."""
        self.start_t = [float(model_sampling.percent_to_sigma(p)) for p in self.start_percents]
        self.initialized = True
        self.reset()

    def _guarantee(self, i: int, max_sigma: torch.Tensor) -> int:
        # ADE get_effective_guarantee_steps: an item that starts before this run's first sigma guarantees none
        return 0 if self.start_t[i] > max_sigma else self.guarantee_steps[i]

    def step(self, sigma: torch.Tensor, sample_sigmas: torch.Tensor | None = None) -> list[int]:
        """Take this call's sigma (0-dim tensor); the items taken in turn ([] when the one in force stays)."""
        if self.previous_t is not None and bool(sigma == self.previous_t):
            return []  # another call of the same step (cond/uncond, context windows)
        taken = []
        max_sigma = torch.max(sample_sigmas if sample_sigmas is not None else NO_SAMPLE_SIGMAS)
        if self.index < 0 or self.used_steps >= self._guarantee(self.index, max_sigma):
            for i in range(self.index + 1, len(self.start_t)):
                if not bool(self.start_t[i] >= sigma):
                    break  # this item starts later in sampling
                self.index, self.used_steps = i, 0
                taken.append(i)
                if self._guarantee(i, max_sigma) > 0:
                    break
        self.used_steps += 1
        self.previous_t = sigma
        return taken
