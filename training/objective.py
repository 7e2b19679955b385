"""The model's own training objective, through a ComfyUI `model_sampling` object (or anything with its methods).

AnimateDiff (train.py): per clip one timestep t ~ U{0 … T−1} and Gaussian noise over all its frames; the UNet
predicts the noise (ε) from the noised latents; loss = MSE(prediction, noise). Here the same for whatever the
model predicts: ComfyUI's `model_sampling` says how a clean latent x0 is noised at σ (`noise_scaling`) and how the
network's raw output becomes a denoised latent (`calculate_denoised`, linear in that output:
denoised = a(σ)·x_t + b(σ)·output). So the error of the raw output against its target is
(denoised − x0) / b(σ), with b(σ) = calculate_denoised(σ, 1, 0): for ε-prediction that is ε̂ − ε, for
v-prediction v̂ − v. MSE over it is exactly the model's own objective, whatever its parameterisation.
x0 must be in the model's latent space (process_latent_in of the VAE's latents: comfy_train.model_space), as the
samplers give it to the model; raw VAE latents are about 5x larger and would be noised at the wrong ratio.
"""
from __future__ import annotations

import torch


def timestep_count(model_sampling) -> int | None:
    sigmas = getattr(model_sampling, "sigmas", None)
    return int(sigmas.shape[0]) if sigmas is not None and sigmas.dim() == 1 and sigmas.shape[0] > 1 else None


def draw_sigmas(model_sampling, clips: int, generator: torch.Generator) -> torch.Tensor:
    """One σ per clip: a uniform training timestep of a discrete schedule, else a uniform point of the schedule."""
    count = timestep_count(model_sampling)
    if count is not None:
        t = torch.randint(0, count, (clips,), generator=generator)
        return model_sampling.sigmas.float().cpu()[t]
    u = torch.rand(clips, generator=generator)
    return torch.tensor([float(model_sampling.percent_to_sigma(float(p))) for p in u])


def output_scale(model_sampling, sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """b(σ) per row: how much the denoised latent moves per unit of the network's raw output."""
    s = sigma.to(like.device, torch.float32)
    ones = torch.ones((sigma.shape[0],) + like.shape[1:], device=like.device, dtype=torch.float32)
    return model_sampling.calculate_denoised(s, ones, torch.zeros_like(ones))


def prediction_loss(model_sampling, denoise, x0: torch.Tensor, noise: torch.Tensor, sigma_rows: torch.Tensor,
                    cond) -> torch.Tensor:
    """MSE of the model's raw prediction against its target. `denoise(x_t, σ_rows, cond)` is ComfyUI's apply_model:
    it takes the noised latent and returns the denoised one. Rows are frames; σ is per row (shared in a clip)."""
    x0 = x0.float()
    x_t = model_sampling.noise_scaling(sigma_rows.to(x0), noise.float().to(x0.device), x0)
    denoised = denoise(x_t, sigma_rows.to(x0.device), cond).float()
    error = (denoised - x0) / output_scale(model_sampling, sigma_rows, x0)
    return error.square().mean()
