"""FreeInit (Wu et al. 2023, "FreeInit: Bridging Initialization Gap in Video Diffusion Models").

Video models are trained on noised real videos, whose noise keeps the clip's low frequencies
(coherent over frames and space); sampling starts from white noise, which has none. FreeInit samples,
diffuses the result back to the starting noise level with the same starting noise, keeps the low
frequencies of that (3D FFT over frames x height x width) and replaces the high ones with fresh noise,
then samples again; `iterations` passes in all.

Filters are built in unshifted FFT layout over frequencies normalised to Nyquist (|f| <= 1), with the
temporal axis rescaled so its cut-off is d_t while the spatial one is d_s:
    d^2 = (f_t * d_s / d_t)^2 + f_h^2 + f_w^2
    gaussian     exp(-d^2 / (2 d_s^2))                     (e^-1/2 at d = d_s)
    butterworth  1 / (1 + (d^2 / d_s^2)^order)             (1/2 at d = d_s)
    ideal        1 where d <= d_s, else 0  (the original code compares d^2 with 2 d_s, a slip)
    box          1 where |f_t| <= d_t, |f_h| <= d_s and |f_w| <= d_s, else 0
All are 1 at DC and even in every frequency, so mixing two real tensors gives a real tensor.

How it re-noises in ComfyUI (`outer_sample` wrapper): a sampler starts from
x_T = noise_scaling(sigma_0, noise, latent_image), which is linear in (noise, latent_image) for every
model type. FreeInit's start, LP(noise_scaling(sigma_0, noise_0, x0)) + HP(noise_scaling(sigma_0, fresh,
latent_image)), is therefore exactly the start of a pass given
    noise'        = LP(noise_0) + HP(fresh)
    latent_image' = LP(x0)      + HP(latent_image)
so the sampler's own model_sampling does the diffusing, at the schedule's first sigma (also for
partial denoise and flow models).

Pure torch; `apply_free_init` imports ComfyUI lazily.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from . import window_progress
from .noise import derived_generator, frame_dim

from ..common.patch import patched_clone
from .errors import NoiseOptionError

LOG = logging.getLogger("MotionKit")
KEY = "motionkit_freeinit"
FILTERS = ["butterworth", "gaussian", "ideal", "box"]


@dataclass(frozen=True)
class FreeInitSettings:
    iterations: int = 2
    filter: str = "butterworth"
    d_s: float = 0.25
    d_t: float = 0.25
    order: int = 4


def check_settings(s: FreeInitSettings) -> None:
    if s.filter not in FILTERS:
        raise NoiseOptionError(f"FreeInit filter '{s.filter}' is unknown. Choose one of: {', '.join(FILTERS)}.")
    if s.iterations < 1:
        raise NoiseOptionError(f"FreeInit iterations is {s.iterations}: use 1 (off) or more sampling passes.")
    for name, value in (("d_s", s.d_s), ("d_t", s.d_t)):
        if not 0.0 <= value <= 1.0:
            raise NoiseOptionError(f"FreeInit {name} is {value}: stop frequencies are fractions of the highest "
                                   f"frequency, from 0 to 1 (0.25 is the paper's).")
    if s.order < 1:
        raise NoiseOptionError(f"FreeInit butterworth order is {s.order}: use 1 or more (4 is the paper's).")


# ---------------------------------------------------------------------------------------------
# Filters and the frequency mix

def normalized_frequencies(n: int) -> torch.Tensor:
    """Frequencies of an n-point FFT (unshifted order) in units of Nyquist: 0 at DC, -1 at Nyquist."""
    return torch.fft.fftfreq(n, dtype=torch.float64) * 2


def low_pass_filter(kind: str, frames: int, height: int, width: int, d_s: float = 0.25, d_t: float = 0.25,
                    order: int = 4) -> torch.Tensor:
    """(frames, height, width) float32 weights, 1 = keep, in unshifted FFT layout (module docstring)."""
    shape = (frames, height, width)
    if d_s == 0 or d_t == 0:
        return torch.zeros(shape)  # nothing is kept: the next pass starts from fresh noise
    f_t, f_h, f_w = torch.meshgrid(*(normalized_frequencies(n) for n in shape), indexing="ij")
    if kind == "box":
        mask = (f_t.abs() <= d_t) & (f_h.abs() <= d_s) & (f_w.abs() <= d_s)
        return mask.float()
    d2 = (f_t * d_s / d_t) ** 2 + f_h ** 2 + f_w ** 2
    if kind == "gaussian":
        weights = torch.exp(-d2 / (2 * d_s ** 2))
    elif kind == "butterworth":
        weights = 1 / (1 + (d2 / d_s ** 2) ** order)
    elif kind == "ideal":
        weights = (d2 <= d_s ** 2).double()
    else:
        raise NoiseOptionError(f"FreeInit filter '{kind}' is unknown. Choose one of: {', '.join(FILTERS)}.")
    return weights.float()


def frame_axes(x: torch.Tensor) -> tuple[int, int, int]:
    """(frames, height, width) axes of a latent: the batch for 4D SD latents, dim 2 for 5D video latents."""
    return (frame_dim(x), x.ndim - 2, x.ndim - 1)


def filter_for(x: torch.Tensor, settings: FreeInitSettings) -> torch.Tensor:
    """The low-pass filter for latent `x`, shaped to broadcast against it."""
    axes = frame_axes(x)
    lp = low_pass_filter(settings.filter, *(x.shape[a] for a in axes), d_s=settings.d_s, d_t=settings.d_t,
                         order=settings.order)
    view = [1] * x.ndim
    for a in axes:
        view[a] = x.shape[a]
    return lp.reshape(view)


def mix_frequencies(low_source: torch.Tensor, high_source: torch.Tensor, low_pass: torch.Tensor) -> torch.Tensor:
    """The low band of `low_source` plus the high band of `high_source` (float32, 3D FFT over frames, H, W)."""
    axes = frame_axes(low_source)
    low = torch.fft.fftn(low_source.float(), dim=axes)
    high = torch.fft.fftn(high_source.float(), dim=axes)
    mixed = low * low_pass + high * (1 - low_pass)
    return torch.fft.ifftn(mixed, dim=axes).real


# ---------------------------------------------------------------------------------------------
# ComfyUI: an OUTER_SAMPLE wrapper that samples `iterations` times

def fresh_noise(shape, seed: int, iteration: int) -> torch.Tensor:
    """The high-frequency noise of pass `iteration` (1, 2, ...): CPU, from the sampling seed."""
    return torch.randn(shape, generator=derived_generator(seed, 1 + iteration), dtype=torch.float32)


def spread_progress(callback, iteration: int, iterations: int):
    """The sampler's per-step callback, counting steps over all passes (one progress bar and preview)."""
    if callback is None:
        return None

    def step(i, x0, x, total_steps):
        return callback(iteration * total_steps + i, x0, x, iterations * total_steps)
    return step


def make_outer_sample(settings: FreeInitSettings):
    def outer_sample(executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                     disable_pbar=False, seed=None):
        def run(n, latent, iteration):
            # context windows' per-window progress counts over all passes too
            window_progress.in_pass(getattr(executor.class_obj, "model_options", None), iteration, passes)
            return executor(n, latent, sampler, sigmas, denoise_mask, spread_progress(callback, iteration, passes),
                            disable_pbar, seed)

        passes = settings.iterations
        if passes <= 1:
            return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
        if not torch.count_nonzero(noise):
            LOG.warning("MotionKit FreeInit: the sampler adds no noise (add_noise off / DisableNoise), so there is "
                        "no starting noise to refine; sampling once.")
            return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)

        guider = executor.class_obj
        base = guider.model_patcher.model  # process_latent_in/out: FreeInit mixes in the model's latent space
        # the conds as sample() prepared them: each pass processes them again (process_conds edits the dict)
        conds = {k: [c.copy() for c in v] for k, v in guider.conds.items()}
        low_pass = filter_for(noise, settings)
        noise_0 = noise.float().cpu()  # mixed on the CPU, as ComfyUI makes its noise: the same on every device
        # inner_sample leaves an all-zero (empty) latent as it is, and scales any other
        start = latent_image.float().cpu()
        if torch.count_nonzero(start):
            start = base.process_latent_in(start)
        keep = None
        if denoise_mask is not None:  # inpainting: kept areas stay the input latent in every pass
            import comfy.sampler_helpers
            keep = 1 - comfy.sampler_helpers.prepare_mask(denoise_mask, noise.shape, "cpu")

        noise_seed = 0 if seed is None else seed
        out = run(noise, latent_image, 0)
        for iteration in range(1, passes):
            x0 = base.process_latent_in(out.float().cpu())
            next_noise = mix_frequencies(noise_0, fresh_noise(noise.shape, noise_seed, iteration), low_pass)
            next_start = mix_frequencies(x0, start, low_pass)
            if keep is not None:
                next_start = next_start * (1 - keep) + start * keep
            guider.conds = {k: [c.copy() for c in v] for k, v in conds.items()}
            out = run(next_noise.to(noise.dtype), base.process_latent_out(next_start).to(latent_image.dtype), iteration)
        return out
    return outer_sample


def apply_free_init(model_patcher, settings: FreeInitSettings):
    """A clone of `model_patcher` that samples with FreeInit; the input is left as it was."""
    check_settings(settings)
    # one fixed key: applied twice, the last settings win
    return patched_clone(model_patcher, KEY, replace=True, outer_sample=make_outer_sample(settings))
