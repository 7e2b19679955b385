"""Stand-ins for pure-torch training tests: a tiny motion model (random weights), a tiny denoising UNet that runs
its motion modules in UNet order, and an ε-prediction schedule with ComfyUI's model_sampling methods
(sqrt_linear betas 0.00085…0.012, as AnimateDiff trains; comfy/model_sampling.py's EPS + ModelSamplingDiscrete math,
written out here independently)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from motionkit.motion.model import MotionArchitecture, MotionModel

TINY = MotionArchitecture(block_channels=(32, 32, 64, 64), has_mid=True)


def tiny_motion_model(seed=0, arch=TINY) -> MotionModel:
    torch.manual_seed(seed)
    model = MotionModel(arch)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.02)
            elif p.dim() == 1:
                p.normal_(1.0, 0.1)
            else:
                p.normal_(0, p.shape[-1] ** -0.5)
    return model.eval().requires_grad_(False)


class EpsSampling:
    """ε-prediction on a discrete 1000-step schedule: x_t = x0 + σ·ε, input scaled by 1/√(σ²+1)."""

    def __init__(self, steps=1000, beta_start=0.00085, beta_end=0.012):
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        alphas_cumprod = torch.cumprod(1 - betas, 0)
        self.sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image + noise * sigma.reshape((-1,) + (1,) * (noise.dim() - 1))

    def calculate_input(self, sigma, x):
        return x / (sigma.reshape((-1,) + (1,) * (x.dim() - 1)) ** 2 + 1) ** 0.5

    def calculate_denoised(self, sigma, model_output, model_input):
        return model_input - model_output * sigma.reshape((-1,) + (1,) * (model_output.dim() - 1))

    def timestep(self, sigma):
        return (sigma.reshape(-1, 1) - self.sigmas.to(sigma.device)).abs().argmin(1).float()


class TinyUNet(nn.Module):
    """conv in → each motion module in UNet order (through 1×1 projections to its width) → conv out; the timestep
    and the caption enter as per-channel biases. Frozen, random."""

    def __init__(self, motion_model: MotionModel, latent_channels=4, width=32, context_dim=16, seed=1):
        super().__init__()
        torch.manual_seed(seed)
        self.motion_model = motion_model
        self.conv_in = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.time = nn.Linear(1, width)
        self.context = nn.Linear(context_dim, width)
        modules = list(motion_model.ordered_modules())
        self.into = nn.ModuleList([nn.Conv2d(width, m.temporal_transformer.channels, 1) for _, _, m in modules])
        self.back = nn.ModuleList([nn.Conv2d(m.temporal_transformer.channels, width, 1) for _, _, m in modules])
        self.conv_out = nn.Conv2d(width, latent_channels, 3, padding=1)
        self.requires_grad_(False)

    def forward(self, x, t, context, frames):
        h = self.conv_in(x) + self.time((t / 1000).reshape(-1, 1))[..., None, None]
        h = h + self.context(context.mean(1))[..., None, None]
        for (_, _, module), into, back in zip(self.motion_model.ordered_modules(), self.into, self.back):
            h = h + back(module(F.silu(into(h)), frames))
        return self.conv_out(F.silu(h))


def denoiser(unet: TinyUNet, sampling: EpsSampling, frames: int):
    """ComfyUI apply_model semantics: noised latent + σ → denoised latent."""
    def denoise(x_t, sigma, context):
        out = unet(sampling.calculate_input(sigma, x_t), sampling.timestep(sigma), context, frames)
        return sampling.calculate_denoised(sigma, out.float(), x_t)
    return denoise


def moving_clip(frames=8, size=8, channels=4, seed=0):
    """A latent 'clip' with clear motion: a random pattern shifted one pixel per frame."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(channels, size, size, generator=g)
    return torch.stack([torch.roll(base, shifts=i, dims=-1) for i in range(frames)])
