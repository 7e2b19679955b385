"""The noise schedules motion models were trained with (MOTION_FORMATS.md §9).

Naming trap: ldm/ComfyUI "linear" is diffusers "scaled_linear"; ldm "sqrt_linear" is diffusers "linear".
Names below are ldm's, as ComfyUI users know them.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch


@dataclass(frozen=True)
class Schedule:
    beta_schedule: str          # ldm name: "linear" (SD default) or "sqrt_linear"
    linear_start: float = 0.00085
    linear_end: float = 0.012
    lcm_steps: int | None = None  # LCM-distilled models: the distillation's step grid

    @property
    def sampling_settings(self) -> dict:
        return {"beta_schedule": self.beta_schedule, "linear_start": self.linear_start, "linear_end": self.linear_end}


AUTO = "autoselect"
KEEP = "use model's own"

SCHEDULES: dict[str, Schedule] = {
    "sqrt_linear (AnimateDiff)": Schedule("sqrt_linear"),
    "linear (AnimateDiff-SDXL)": Schedule("linear", linear_end=0.020),
    "linear (HotshotXL/default)": Schedule("linear"),
    # AnimateLCM's reference: LCM on diffusers "linear" (= ldm sqrt_linear), 100-step grid
    "lcm (AnimateLCM)": Schedule("sqrt_linear", lcm_steps=100),
    "lcm (AnimateLCM-I2V)": Schedule("sqrt_linear", linear_end=0.014, lcm_steps=200),
    # what ADE's "lcm" autoselect does: LCM on the SD default schedule
    "lcm (SD default schedule)": Schedule("linear", lcm_steps=50),
}

CHOICES = [AUTO, KEEP, *SCHEDULES]


def resolve(choice: str, model_default: str) -> Schedule | None:
    """The schedule to install for a user's choice; None keeps the model's own sampling."""
    if choice == KEEP:
        return None
    name = model_default if choice == AUTO else choice
    if name not in SCHEDULES:
        raise ValueError(f"Unknown noise schedule '{choice}'. Choose one of: {', '.join(CHOICES)}.")
    return SCHEDULES[name]


def make_model_sampling(schedule: Schedule):
    """A ComfyUI model_sampling object (eps prediction) on this schedule; imports ComfyUI."""
    import comfy.model_sampling as ms

    config = SimpleNamespace(sampling_settings=schedule.sampling_settings)
    if schedule.lcm_steps is None:
        class MotionSampling(ms.ModelSamplingDiscrete, ms.EPS):
            pass
    else:
        from comfy_extras.nodes_model_advanced import LCM, ModelSamplingDiscreteDistilled

        class MotionSampling(ModelSamplingDiscreteDistilled, LCM):
            original_timesteps = schedule.lcm_steps
    return MotionSampling(config)


# ---- trailing timestep spacing ---------------------------------------------------------------------

def trailing_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """diffusers' `timestep_spacing="trailing"` (DDIMScheduler.set_timesteps; "Common Diffusion Noise
    Schedules and Sample Steps are Flawed", Table 2): `steps` timesteps from the last training timestep
    down, `num_timesteps / steps` apart, as `round(arange(T, 0, -T/steps)) - 1`.

    Computed with numpy's own arange and round (floating stride, ties to even), so it gives diffusers'
    integers exactly, where ComfyUI's `simple` floors (999 - int(k·T/steps)): at 30 steps 932, 832, ...
    instead of 933, 833, .... Where numpy's float arange yields one extra value (≈ 0, i.e. timestep -1, at
    e.g. 61 steps) only the first `steps` are kept.
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"Trailing spacing needs between 1 and {num_timesteps} steps (the model's training "
                         f"timesteps), got {steps}.")
    timesteps = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps))[:steps].astype(np.int64) - 1
    return timesteps.tolist()


def trailing_sigmas(model_sampling, steps: int) -> torch.Tensor:
    """The sigmas of a ComfyUI model_sampling at the trailing timesteps, then 0 (as ComfyUI's schedulers end).

    `model_sampling.sigmas[t]` is the noise level of training timestep t (discrete models: SD1.5, SDXL, ...),
    so the UNet is given exactly these timesteps (model_sampling.timestep maps each sigma back to its t).
    """
    table = model_sampling.sigmas.detach().float().cpu()
    picked = table[trailing_timesteps(len(table), steps)]
    return torch.cat([picked, picked.new_zeros(1)])
