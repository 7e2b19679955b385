"""CogVideoX's noise schedule (diffusers' CogVideoXDPMScheduler / CogVideoXDDIMScheduler) and the ComfyUI sigmas
that sample at its timesteps.

The published 5B / Tora configuration: scaled-linear betas 0.00085–0.012 over 1000 steps, `snr_shift_scale` 1.0,
zero-terminal-SNR rescale, trailing spacing, `set_alpha_to_one` (the step after the last lands on ᾱ = 1).

ComfyUI parametrises a noisy latent as x = x0 + σ·ε with σ = sqrt((1 − ᾱ)/ᾱ); diffusers' x_t = √ᾱ·x0 + √(1 − ᾱ)·ε is
the same point scaled by √ᾱ = 1/sqrt(σ² + 1). At the zero-SNR end ᾱ = 0 and σ = ∞, so core's zsnr schedule
(comfy.model_sampling.rescale_zero_terminal_snr_sigmas) stores a finite last sigma instead, from
ᾱ = ZSNR_TERMINAL_ALPHA_CUMPROD; `comfy_sigmas` uses the same value so that ComfyUI maps every sigma back to the
timestep diffusers evaluates. The sampler (sampler.py) does its step math with the exact ᾱ (0 at t = 999)."""
from __future__ import annotations

import math

import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012
SNR_SHIFT_SCALE = 1.0  # CogVideoX-5B and Tora; CogVideoX-2B publishes 3.0

# comfy.model_sampling.rescale_zero_terminal_snr_sigmas sets the last ᾱ to this instead of 0 (σ ≈ 4518.9).
ZSNR_TERMINAL_ALPHA_CUMPROD = 4.8973451890853435e-08


def alphas_cumprod(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, beta_start: float = BETA_START,
                   beta_end: float = BETA_END, snr_shift_scale: float = SNR_SHIFT_SCALE,
                   zero_terminal_snr: bool = True) -> torch.Tensor:
    """ᾱ for t = 0 … num_train_timesteps − 1, float64, computed in the scheduler's order (shift, then rescale)."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float64) ** 2
    acp = torch.cumprod(1.0 - betas, dim=0)
    acp = acp / (snr_shift_scale + (1 - snr_shift_scale) * acp)  # SD3-style SNR shift
    if zero_terminal_snr:  # Lin et al. 2023, Algorithm 1: shift √ᾱ so the last is 0, rescale so the first is kept
        root = acp.sqrt()
        first, last = root[0].clone(), root[-1].clone()
        root = (root - last) * (first / (first - last))
        acp = root ** 2
    return acp


def trailing_timesteps(steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The timesteps diffusers evaluates with timestep_spacing="trailing": 50 steps → 999, 979, …, 19 (int64)."""
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be 1 … {num_train_timesteps}, got {steps}")
    ratio = num_train_timesteps / steps
    # numpy's arange(1000, 0, -ratio) then round-half-even, as the scheduler does; numpy's arange fills
    # start + i·delta with delta = (start + step) − start, which is not always exactly the step
    start = float(num_train_timesteps)
    count = math.ceil(-start / -ratio)
    delta = (start - ratio) - start
    grid = start + torch.arange(count, dtype=torch.float64) * delta
    return torch.round(grid).to(torch.int64) - 1


def sigmas_for_timesteps(timesteps: torch.Tensor, acp: torch.Tensor | None = None) -> torch.Tensor:
    """σ = sqrt((1 − ᾱ)/ᾱ) at the given timesteps (float64), the zero-SNR end at core's finite terminal value."""
    acp = alphas_cumprod() if acp is None else acp
    a = acp[timesteps.long()].clamp(min=ZSNR_TERMINAL_ALPHA_CUMPROD)
    return ((1 - a) / a) ** 0.5


def comfy_sigmas(steps: int, snr_shift_scale: float = SNR_SHIFT_SCALE) -> torch.Tensor:
    """The SIGMAS a ComfyUI sampler takes for `steps` trailing CogVideoX steps: one per evaluated timestep, then 0
    (float32, like core's schedulers). With core's ModelSamplingDiscrete(v_prediction, zsnr) each maps back to its
    timestep through model_sampling.timestep(σ)."""
    acp = alphas_cumprod(snr_shift_scale=snr_shift_scale)
    sigmas = sigmas_for_timesteps(trailing_timesteps(steps), acp)
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def timestep_for_sigma(sigma: float, acp: torch.Tensor | None = None) -> int:
    """The training timestep nearest in log σ to a nonzero sigma, as core's ModelSamplingDiscrete.timestep picks it."""
    acp = alphas_cumprod() if acp is None else acp
    table = sigmas_for_timesteps(torch.arange(len(acp)), acp).log()
    return int((table - torch.tensor(float(sigma), dtype=torch.float64).log()).abs().argmin())
