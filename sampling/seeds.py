"""Seeded initial noise as AnimateDiff-Evolved's Sample Settings make it (ADE 90fb133, sample_settings.py,
SeedNoiseGeneration): two ways to turn one seed into a batch of noise, a batch offset, per-frame seed lists,
and the noise types.

* comfy: one generator seeded with `seed` draws the whole batch (as ComfyUI's own noise). batch_offset b draws
  b extra frames first and drops them, so frame i gets what frame i + b would have had.
* auto1111: frame i has its own generator seeded with seed + i + batch_offset (A1111's batch seeds).
* a seed list: frame i gets a generator seeded with seeds[i] + seed_offset (list longer than the batch: the
  rest is unused; shorter: refused).
* noise types: default; constant (every frame the same noise); empty (zeros); repeated_context (the first
  context window's noise repeated); FreeNoise (ADE's form: each block of context_length - context_overlap frames
  after a window reuses that window's first frames, shuffled with a CPU generator seeded with the seed).

Each generator is a `torch.Generator` on the CPU, or on `gpu_device` for the "[gpu]" generators; the noise is
returned on the CPU, in the latent's dtype. Frames are the batch (dim 0) of SD-style 4D latents. Pure torch.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .errors import NoiseOptionError

DEFAULT, CONSTANT, EMPTY, REPEATED_CONTEXT, FREENOISE = "default", "constant", "empty", "repeated_context", "FreeNoise"
NOISE_TYPES = [DEFAULT, CONSTANT, EMPTY, REPEATED_CONTEXT, FREENOISE]

COMFY, COMFY_GPU, AUTO1111, AUTO1111_GPU = "comfy", "comfy [gpu]", "auto1111", "auto1111 [gpu]"
USE_EXISTING = "use existing"
SEED_GENS = [COMFY, COMFY_GPU, AUTO1111, AUTO1111_GPU]
SEED_GENS_WITH_EXISTING = [USE_EXISTING] + SEED_GENS
ON_GPU = (COMFY_GPU, AUTO1111_GPU)


def check_noise_type(noise_type: str) -> None:
    if noise_type not in NOISE_TYPES:
        raise NoiseOptionError(f"Noise type '{noise_type}' is unknown. Choose one of: {', '.join(NOISE_TYPES)}.")


def check_seed_gen(seed_gen: str, existing_allowed: bool = False) -> None:
    allowed = SEED_GENS_WITH_EXISTING if existing_allowed else SEED_GENS
    if seed_gen not in allowed:
        raise NoiseOptionError(f"Seed generator '{seed_gen}' is unknown. Choose one of: {', '.join(allowed)}.")


def generator(seed: int, device="cpu") -> torch.Generator:
    try:
        return torch.Generator(device).manual_seed(int(seed))
    except (RuntimeError, ValueError, OverflowError) as e:  # torch takes [-2**63, 2**64); seed + offsets may leave it
        raise NoiseOptionError(f"The seed {seed} (the seed plus seed_offset and batch_offset) is outside the "
                               f"range torch accepts ({-2**63} .. {2**64 - 1}): use a smaller seed or offset.") from e


def _draw(shape, latents: torch.Tensor, gen: torch.Generator, device) -> torch.Tensor:
    return torch.randn(shape, dtype=latents.dtype, layout=latents.layout, generator=gen, device=device).to(device="cpu")


def _frame_shape(latents: torch.Tensor, frames: int = 1):
    return (frames, latents.shape[1], latents.shape[2], latents.shape[3])


def create_noise(seed: int, latents: torch.Tensor, seed_gen: str = COMFY, noise_type: str = DEFAULT,
                 batch_offset: int = 0, context: Optional[tuple] = None, gpu_device=None) -> torch.Tensor:
    """Noise shaped like `latents` ([frames, channels, height, width]) for one seed.

    context: (context_length, context_overlap) of the context windows in use, or None (then repeated_context and
    FreeNoise leave the noise as drawn, as ADE does without context options).
    gpu_device: the device of the "[gpu]" generators (ComfyUI's torch device)."""
    check_seed_gen(seed_gen)
    check_noise_type(noise_type)
    if latents.ndim != 4:
        raise NoiseOptionError(f"Seeded noise options work on SD-style latents [frames, channels, height, width]; "
                               f"this latent has shape {list(latents.shape)}. Use them with AnimateDiff models "
                               f"(SD 1.5 / SDXL latents), not video models whose latents are 5D.")
    if noise_type == EMPTY:
        return torch.zeros_like(latents)
    device = (gpu_device or "cpu") if seed_gen in ON_GPU else "cpu"
    length = latents.shape[0]
    if seed_gen in (COMFY, COMFY_GPU):
        if noise_type == CONSTANT:
            single = _draw(_frame_shape(latents, 1 + batch_offset), latents, generator(seed, device), device)
            return torch.cat([single[batch_offset:]] * length, dim=0)
        noise = _draw(_frame_shape(latents, length + batch_offset), latents, generator(seed, device), device)
        noise = noise[batch_offset:]
    else:
        if noise_type == CONSTANT:
            single = _draw(_frame_shape(latents), latents, generator(seed + batch_offset, device), device)
            return torch.cat([single] * length, dim=0)
        noise = torch.cat([_draw(_frame_shape(latents), latents, generator(seed + i + batch_offset, device), device)
                           for i in range(length)], dim=0)
    if noise_type == REPEATED_CONTEXT:
        return repeated_context(noise, context)
    if noise_type == FREENOISE:
        return freenoise_ade(noise, seed, context)
    return noise


def create_noise_per_seed(seeds: Sequence[int], latents: torch.Tensor, seed_offset: int = 0) -> torch.Tensor:
    """Frame i's noise from its own CPU generator seeded with seeds[i] + seed_offset (ADE's seed list)."""
    length = latents.shape[0]
    if len(seeds) < length:
        raise NoiseOptionError(f"The seed list has {len(seeds)} seeds but the latent has {length} frames: give one "
                               f"seed per frame (extra seeds are unused), or a single seed.")
    return torch.cat([_draw(_frame_shape(latents), latents, generator(s + seed_offset), "cpu") for s in seeds[:length]],
                     dim=0)


def repeated_context(noise: torch.Tensor, context: Optional[tuple]) -> torch.Tensor:
    """The first context_length frames' noise, repeated over the whole batch (unchanged without context)."""
    if context is None or context[0] is None:
        return noise
    context_length, length = context[0], noise.shape[0]
    return torch.cat([noise[:context_length]] * (length // context_length + 1), dim=0)[:length]


def freenoise_ade(noise: torch.Tensor, seed: int, context: Optional[tuple]) -> torch.Tensor:
    """ADE's FreeNoise layout, in place: after each window starting at s (s = 0, delta, 2 delta, ..., delta =
    context_length - context_overlap), the next delta frames take frames [s, s + delta) in a random order
    (fewer at the end). Unlike sampling/noise.py's FreeNoise this follows ADE exactly, shuffles included."""
    if context is None or context[0] is None:
        return noise
    context_length, context_overlap = context
    frames, delta = noise.shape[0], context_length - context_overlap
    shuffles = generator(seed)  # ADE shuffles with a CPU generator seeded with the seed itself
    for start in range(0, frames - context_length, delta):
        place = start + context_length
        count = min(delta, frames - place)
        order = torch.arange(start, start + count)[torch.randperm(count, generator=shuffles)]
        noise[place:place + count] = noise[order]
        if count < delta:
            break
    return noise
