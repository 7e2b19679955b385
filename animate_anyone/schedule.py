"""Animate Anyone's noise schedule (configs/inference/inference_v2.yaml, noise_scheduler_kwargs):
diffusers "linear" betas 0.00085 -> 0.012 (= ldm/ComfyUI "sqrt_linear"), 1000 steps, v-prediction,
`rescale_betas_zero_snr: True`, `timestep_spacing: "trailing"`, DDIM.

As a ComfyUI model_sampling object (what core's ModelSamplingDiscrete node builds, with zsnr): the zero
terminal SNR rescale is core's `rescale_zero_terminal_snr_sigmas` (its last sigma is finite, about 4500,
where the original's is infinite). Trailing spacing is `sampling.schedules.trailing_sigmas` (the
'Trailing Scheduler (Animate Anyone)' node): the UNet is given exactly diffusers' timesteps,
`round(arange(1000, 0, -1000/steps)) - 1`; core's `simple` scheduler floors the stride instead, so at 30
steps a third of its timesteps are one above the original's (933, 833, ... for 932, 832, ...). DDIM with eta 0 is the `ddim` sampler (SamplerCustom +
KSamplerSelect). One difference remains: diffusers' DDIM step lands on t - 1000 // steps, then evaluates at
the next trailing timestep, which is one lower at some steps (933 -> 932 at 30 steps); ComfyUI's sigma list
lands where it next evaluates.
"""
from __future__ import annotations

from types import SimpleNamespace

SAMPLING_SETTINGS = {"beta_schedule": "sqrt_linear", "linear_start": 0.00085, "linear_end": 0.012, "zsnr": True}
DEFAULTS = {"steps": 30, "cfg": 3.5, "sampler_name": "ddim", "sigmas": "trailing"}  # scripts/pose2vid.py
CONTEXT = {"context_length": 24, "context_overlap": 4}  # pipeline_pose2vid_long.py defaults


def make_model_sampling():
    """A model_sampling object: v-prediction on the zero-terminal-SNR schedule. Imports ComfyUI."""
    import comfy.model_sampling as ms

    class AnimateAnyoneSampling(ms.ModelSamplingDiscrete, ms.V_PREDICTION):
        pass

    return AnimateAnyoneSampling(SimpleNamespace(sampling_settings=dict(SAMPLING_SETTINGS)))
