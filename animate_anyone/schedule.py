"""Animate Anyone's noise schedule (configs/inference/inference_v2.yaml, noise_scheduler_kwargs):
diffusers "linear" betas 0.00085 -> 0.012 (= ldm/ComfyUI "sqrt_linear"), 1000 steps, v-prediction,
`rescale_betas_zero_snr: True`, `timestep_spacing: "trailing"`, DDIM.

As a ComfyUI model_sampling object (what core's ModelSamplingDiscrete node builds, with zsnr): the zero
terminal SNR rescale is core's `rescale_zero_terminal_snr_sigmas` (its last sigma is finite, about 4096,
where the original's is infinite). Trailing spacing is ComfyUI's `simple` scheduler (steps taken back
from t=999 in equal strides; it floors where diffusers rounds, at most one timestep apart), DDIM with
eta 0 is the `ddim` sampler.
"""
from __future__ import annotations

from types import SimpleNamespace

SAMPLING_SETTINGS = {"beta_schedule": "sqrt_linear", "linear_start": 0.00085, "linear_end": 0.012, "zsnr": True}
DEFAULTS = {"steps": 30, "cfg": 3.5, "sampler_name": "ddim", "scheduler": "simple"}  # scripts/pose2vid.py
CONTEXT = {"context_length": 24, "context_overlap": 4}  # pipeline_pose2vid_long.py defaults


def make_model_sampling():
    """A model_sampling object: v-prediction on the zero-terminal-SNR schedule. Imports ComfyUI."""
    import comfy.model_sampling as ms

    class AnimateAnyoneSampling(ms.ModelSamplingDiscrete, ms.V_PREDICTION):
        pass

    return AnimateAnyoneSampling(SimpleNamespace(sampling_settings=dict(SAMPLING_SETTINGS)))
