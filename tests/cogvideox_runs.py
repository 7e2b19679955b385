"""Whole CogVideoX runs through MotionKit's nodes and core's CFGGuider (what SamplerCustomAdvanced calls), for the
tests that compare them with diffusers' pipelines (no tests here)."""
from __future__ import annotations

import importlib

import torch

# CogVideoX-5B's (and -I2V's) scheduler/scheduler_config.json; Tora's diffusers weights ship the same
PUBLISHED_SCHEDULER = {
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
    "clip_sample_range": 1.0, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True, "sample_max_value": 1.0, "set_alpha_to_one": True, "snr_shift_scale": 1.0,
    "steps_offset": 0, "timestep_spacing": "trailing", "trained_betas": None,
}
SAMPLER = {"dpm": "dpm (CogVideoX-5B, Tora)", "ddim": "ddim (CogVideoX-2B)"}


def nodes():
    """nodes/cogvideox.py (imported once ComfyUI is importable)."""
    return importlib.import_module("motionkit.nodes.cogvideox")


def guided_sample(model, positive, negative, latent: dict, seed: int, steps: int, sampler: str, draw_order: str,
                  cfg: float) -> torch.Tensor:
    """The LATENT CFGGuider.sample returns (ComfyUI's layout and space) with CogVideoX Sampling's noise, sampler and
    sigmas; positive/negative are CONDITIONING."""
    import comfy.samplers
    noise, ksampler, sigmas = nodes().CogVideoXSampling().get(seed, steps, sampler, draw_order)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider.sample(noise.generate_noise(latent), latent["samples"], ksampler, sigmas, seed=noise.seed)


def as_pipelines(latent: torch.Tensor, scaling_factor: float) -> torch.Tensor:
    """ComfyUI's LATENT [B, C, T, H, W] (VAE space) -> the pipeline's [B, T, C, H, W] (transformer space)."""
    return latent.permute(0, 2, 1, 3, 4) * scaling_factor


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())
