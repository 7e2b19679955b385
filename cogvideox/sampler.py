"""CogVideoX's own samplers (diffusers' CogVideoXDPMScheduler and CogVideoXDDIMScheduler steps) as ComfyUI
k-diffusion sampler functions: wrap one in comfy.samplers.KSAMPLER and sample at schedule.comfy_sigmas(steps).

The model ComfyUI hands a sampler returns the denoised x0 for x in its own space (x = x0 + σ·ε). Each step here
  1. maps x to diffusers' x_t = x / sqrt(σ² + 1) (exactly what ComfyUI feeds the network),
  2. recovers the network's v from ComfyUI's denoised (V_PREDICTION: D = x/(σ²+1) − v·σ/sqrt(σ²+1)) and re-derives
     x0 with the scheduler's exact ᾱ (0 at t = 999, where core's zsnr table keeps ᾱ ≈ 4.9e-8 so that σ stays finite),
  3. runs the scheduler's step on (x_t, x0) with its float64 coefficients and its random draws, and
  4. maps the result back to ComfyUI's space at the next sigma, the level ComfyUI calls the network at next.
The step goes to ᾱ[t − 1000 // steps] as the scheduler's does (the next evaluated timestep when steps divides 1000).

Random numbers: the DPM step draws one noise at the first and last steps and two at every step between (the first
of the two is discarded), from a CPU torch.Generator, in the pipeline's [B, T, C, H, W] layout. The pipeline seeds
one generator and draws, in order, the VAE's posterior sample (Tora's flow latents), the initial noise, then the
scheduler's noise; `pipeline_generator` reproduces that state, and `CogVideoXNoise` draws the same initial noise.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .schedule import NUM_TRAIN_TIMESTEPS, SNR_SHIFT_SCALE, alphas_cumprod, timestep_for_sigma

# ComfyUI's video latents are [B, C, T, H, W]; the diffusers pipeline's are [B, T, C, H, W].
LAYOUTS = ("BCTHW", "BTCHW")


def pipeline_shape(shape: Sequence[int], layout: str = "BCTHW") -> tuple[int, ...]:
    """The shape the pipeline draws noise in for a latent of `shape` in `layout`."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    shape = tuple(shape)
    if layout == "BCTHW" and len(shape) == 5:
        return (shape[0], shape[2], shape[1], shape[3], shape[4])
    return shape


def pipeline_randn(shape: Sequence[int], generator: torch.Generator, layout: str = "BCTHW",
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Noise for a latent of `shape` in `layout`, drawn as diffusers' randn_tensor draws it (CPU generator, the
    pipeline's layout and dtype), returned in `layout`, float32."""
    noise = torch.randn(pipeline_shape(shape, layout), generator=generator, dtype=dtype, device="cpu")
    if layout == "BCTHW" and len(shape) == 5:
        noise = noise.permute(0, 2, 1, 3, 4)
    return noise.float().contiguous()


def pipeline_generator(seed: int, draws_before: Sequence[Sequence[int]] = (),
                       dtype: torch.dtype = torch.float32) -> torch.Generator:
    """A CPU generator seeded like the pipeline's, advanced past the draws of the given shapes (in the pipeline's
    layout and dtype: the same shapes drawn again advance it identically)."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    for shape in draws_before:
        torch.randn(tuple(shape), generator=generator, dtype=dtype, device="cpu")
    return generator


class CogVideoXNoise:
    """A ComfyUI NOISE (the interface SamplerCustomAdvanced calls: .seed and .generate_noise(latent)): the
    pipeline's initial noise, drawn after `draws_before` (e.g. Tora's flow-latent posterior sample)."""

    def __init__(self, seed: int, draws_before: Sequence[Sequence[int]] = (), layout: str = "BCTHW",
                 dtype: torch.dtype = torch.float32):
        self.seed = int(seed)
        self.draws_before = tuple(tuple(s) for s in draws_before)
        self.layout = layout
        self.dtype = dtype

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        generator = pipeline_generator(self.seed, self.draws_before, self.dtype)
        return pipeline_randn(samples.shape, generator, self.layout, self.dtype)


class _Schedule:
    """ᾱ lookups and the conversions between ComfyUI's x and diffusers' x_t, shared by both samplers."""

    def __init__(self, sigmas: torch.Tensor, steps: int | None, snr_shift_scale: float):
        self.acp = alphas_cumprod(snr_shift_scale=snr_shift_scale)
        self.final = torch.tensor(1.0)  # set_alpha_to_one
        self.steps = len(sigmas) - 1 if steps is None else int(steps)
        self.timesteps = [timestep_for_sigma(float(s), self.acp) if float(s) > 0 else None for s in sigmas]
        if any(t is None for t in self.timesteps[:-1]):
            raise ValueError("only the last sigma may be 0")

    def alpha_prev(self, t: int) -> torch.Tensor:
        prev = t - NUM_TRAIN_TIMESTEPS // self.steps
        return self.acp[prev] if prev >= 0 else self.final

    @staticmethod
    def scale(sigma: torch.Tensor) -> torch.Tensor:
        return (sigma ** 2 + 1.0) ** 0.5  # as comfy's EPS.calculate_input computes it

    def x0(self, x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, x0 with the exact ᾱ) from ComfyUI's x and denoised at sigma."""
        scale = self.scale(sigma)
        sample = x / scale
        v = (x / (sigma ** 2 + 1.0) - denoised) * scale / sigma
        alpha_prod_t = self.acp[t]
        return sample, (alpha_prod_t ** 0.5) * sample - ((1 - alpha_prod_t) ** 0.5) * v


def _setup(x, sigmas, extra_args, steps, snr_shift_scale):
    extra_args = {} if extra_args is None else extra_args
    sched = _Schedule(sigmas, steps, snr_shift_scale)
    s_in = x.new_ones([x.shape[0]])
    return extra_args, sched, s_in


@torch.no_grad()
def sample_cogvideox_dpm(model, x, sigmas, extra_args=None, callback=None, disable=None, seed=None,
                         draws_before=None, layout="BCTHW", noise_dtype=torch.float32, steps=None,
                         snr_shift_scale=SNR_SHIFT_SCALE):
    """CogVideoXDPMScheduler's loop (the one Tora's and CogVideoX-5B's inference use) as a ComfyUI sampler.

    seed: the pipeline generator's seed (default: the sampling seed ComfyUI passes in extra_args).
    draws_before: shapes the pipeline drew from that generator before the scheduler's first draw, in its layout
      (default: the initial noise only, i.e. (pipeline_shape(x.shape),); Tora adds its flow-latent shape first).
    layout: "BCTHW" (ComfyUI video latents) or "BTCHW"; noise_dtype: the pipeline's latent dtype (bf16 draws differ).
    steps: the pipeline's num_inference_steps (default len(sigmas) − 1; give it when sampling a split of the sigmas).
    """
    extra_args, sched, s_in = _setup(x, sigmas, extra_args, steps, snr_shift_scale)
    if seed is None:
        seed = extra_args.get("seed") or 0
    if draws_before is None:
        draws_before = (pipeline_shape(x.shape, layout),)
    generator = pipeline_generator(seed, draws_before, noise_dtype)

    def randn():
        return pipeline_randn(x.shape, generator, layout, noise_dtype).to(device=x.device, dtype=x.dtype)

    old_pred_original_sample = None
    for i in range(len(sigmas) - 1):
        t = sched.timesteps[i]
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sample, pred_original_sample = sched.x0(x, sigmas[i], denoised, t)

        # CogVideoXDPMScheduler.step, term for term
        prev_timestep = t - NUM_TRAIN_TIMESTEPS // sched.steps
        alpha_prod_t = sched.acp[t]
        alpha_prod_t_prev = sched.alpha_prev(t)
        alpha_prod_t_back = sched.acp[sched.timesteps[i - 1]] if i > 0 else None
        lamb = ((alpha_prod_t / (1 - alpha_prod_t)) ** 0.5).log()
        lamb_next = ((alpha_prod_t_prev / (1 - alpha_prod_t_prev)) ** 0.5).log()
        h = lamb_next - lamb
        mult1 = ((1 - alpha_prod_t_prev) / (1 - alpha_prod_t)) ** 0.5 * (-h).exp()
        mult2 = (-2 * h).expm1() * alpha_prod_t_prev ** 0.5
        mult_noise = (1 - alpha_prod_t_prev) ** 0.5 * (1 - (-2 * h).exp()) ** 0.5

        noise = randn()
        prev_sample = mult1 * sample - mult2 * pred_original_sample + mult_noise * noise
        if not (old_pred_original_sample is None or prev_timestep < 0):
            # second order: the first draw is discarded, as the scheduler does
            lamb_previous = ((alpha_prod_t_back / (1 - alpha_prod_t_back)) ** 0.5).log()
            r = (lamb - lamb_previous) / h
            mult3 = 1 + 1 / (2 * r)
            mult4 = 1 / (2 * r)
            denoised_d = mult3 * pred_original_sample - mult4 * old_pred_original_sample
            noise = randn()
            prev_sample = mult1 * sample - mult2 * denoised_d + mult_noise * noise
        old_pred_original_sample = pred_original_sample

        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": pred_original_sample})
        x = prev_sample * sched.scale(sigmas[i + 1])
    return x


@torch.no_grad()
def sample_cogvideox_ddim(model, x, sigmas, extra_args=None, callback=None, disable=None, steps=None,
                          snr_shift_scale=SNR_SHIFT_SCALE):
    """CogVideoXDDIMScheduler's loop (deterministic; its eta is unused) as a ComfyUI sampler. CogVideoX recommends
    it for the 2B model; Tora's inference uses the DPM one."""
    extra_args, sched, s_in = _setup(x, sigmas, extra_args, steps, snr_shift_scale)
    for i in range(len(sigmas) - 1):
        t = sched.timesteps[i]
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sample, pred_original_sample = sched.x0(x, sigmas[i], denoised, t)

        alpha_prod_t = sched.acp[t]
        alpha_prod_t_prev = sched.alpha_prev(t)
        a_t = ((1 - alpha_prod_t_prev) / (1 - alpha_prod_t)) ** 0.5
        b_t = alpha_prod_t_prev ** 0.5 - alpha_prod_t ** 0.5 * a_t
        prev_sample = a_t * sample + b_t * pred_original_sample

        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": pred_original_sample})
        x = prev_sample * sched.scale(sigmas[i + 1])
    return x
