"""Noise options as AnimateDiff-Evolved's Sample Settings (ADE 90fb133, sample_settings.py): the initial noise
made from the seed with an offset, an override (one seed, or one per frame), a batch offset, a seed generator
and a noise type (sampling/seeds.py), then noise layers, each adding or replacing noise of its own seed, with
a weight and an optional mask.

`NoiseSettings.prepare_noise` follows ADE's SampleSettings.prepare_noise step for step (same generators, same
arithmetic in the same order), so on identical inputs the noise is bit-identical to ADE's. Layers run in list
order; the nodes put each new layer first, as ADE's do (the layer nearest the Sample Settings node runs first).

`NoiseSettings` reaches ComfyUI two ways: `SettingsNoise`, a NOISE for SamplerCustomAdvanced, and
`apply_noise_settings`, a MODEL clone whose OUTER_SAMPLE wrapper replaces the sampler's noise (KSampler,
KSamplerAdvanced, SamplerCustom*, as ADE's own wrapper does). Pure torch below the ComfyUI glue, which imports
ComfyUI lazily.
"""
from __future__ import annotations

import logging
import math
import weakref
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence, Union

import torch

from ..common.patch import patched_clone
from . import seeds
from .errors import NoiseOptionError

log = logging.getLogger("MotionKit")

REPLACE, ADD, ADD_WEIGHTED, NORMALIZED_SUM = "replace", "add", "add_weighted", "normalized_sum"
APPLICATIONS = [REPLACE, ADD, ADD_WEIGHTED, NORMALIZED_SUM]

Seed = Union[int, Sequence[int]]


def parse_seed_override(text: str) -> Optional[Seed]:
    """'' -> None (no override), '7' -> 7, '1, 2, 3' (commas or spaces) -> [1, 2, 3] (one seed per frame)."""
    parts = text.replace(",", " ").split()
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise NoiseOptionError(f"seed_override '{text}' is not a seed or a list of seeds: write one whole number "
                               f"(e.g. 42) or one per frame separated by commas (e.g. 1, 2, 3), or leave it "
                               f"empty.") from None
    if not values:
        return None
    return values[0] if len(values) == 1 and "," not in text else values


def mask_for(mask: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A MASK ([frames, h, w] or [h, w], 1 = this layer's noise) at the noise's size and frame count, as ADE's
    prepare_mask_ad: bilinear resize, every channel, frames repeated or cut to the batch."""
    frames = noise.shape[0]
    m = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
    if m.shape[0] not in (1, frames):
        log.warning("MotionKit Noise Layer: the mask has %d frames but the latent has %d; as AnimateDiff-Evolved, "
                    "its frames are %s.", m.shape[0], frames,
                    "cut to the first ones" if m.shape[0] > frames else "repeated from the first")
    m = torch.nn.functional.interpolate(m, size=(noise.shape[2], noise.shape[3]), mode="bilinear")
    m = torch.cat([m] * noise.shape[1], dim=1)
    if m.shape[0] > frames:
        m = m.narrow(0, 0, frames)
    elif m.shape[0] < frames:
        m = m.repeat([math.ceil(frames / m.shape[0]), 1, 1, 1]).narrow(0, 0, frames)
    return m.to(noise.device)


@dataclass(frozen=True, eq=False)
class NoiseLayer:
    """One layer: noise of its own seed (the settings' seed plus seed_offset, or seed_override), mixed into the
    noise so far where `mask` is 1 (everywhere without a mask).

    replace: new. add: old + weight * new. add_weighted: old * (1 - weight * balance_multiplier) + weight * new.
    normalized_sum: old * (1 - weight) / n + new * weight / n with n = sqrt((1 - weight)^2 + weight^2)."""
    application: str = REPLACE
    noise_type: str = seeds.DEFAULT
    batch_offset: int = 0
    seed_gen_override: str = seeds.USE_EXISTING
    seed_offset: int = 0
    seed_override: Optional[Seed] = None
    mask: Optional[torch.Tensor] = None
    weight: float = 1.0
    balance_multiplier: float = 1.0

    def __post_init__(self):
        if self.application not in APPLICATIONS:
            raise NoiseOptionError(f"Noise layer application '{self.application}' is unknown. Choose one of: "
                                   f"{', '.join(APPLICATIONS)}.")
        seeds.check_noise_type(self.noise_type)
        seeds.check_seed_gen(self.seed_gen_override, existing_allowed=True)

    def create_noise(self, seed: Seed, latents: torch.Tensor, settings_seed_gen: str, context=None, gpu_device=None,
                     extra_seed_offset: int = 0) -> torch.Tensor:
        if self.seed_override is not None:
            seed = self.seed_override
        if not isinstance(seed, int):
            return seeds.create_noise_per_seed(seed, latents, self.seed_offset + extra_seed_offset)
        gen = settings_seed_gen if self.seed_gen_override == seeds.USE_EXISTING else self.seed_gen_override
        return seeds.create_noise(seed + self.seed_offset + extra_seed_offset, latents, gen, self.noise_type,
                                  self.batch_offset, context, gpu_device)

    def apply(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        # ADE's expressions as written (a missing mask is the number 1), so the rounding is the same
        m = 1 if self.mask is None else mask_for(self.mask, old)
        if self.application == REPLACE:
            return (1 - m) * old + m * new
        if self.application == ADD:
            return (1 - m) * old + m * (old + new * self.weight)
        if self.application == ADD_WEIGHTED:
            return (1 - m) * old + m * (old * (1.0 - (self.weight * self.balance_multiplier)) + new * self.weight)
        w_old, w_new = 1.0 - self.weight, self.weight
        norm = (w_old ** 2 + w_new ** 2) ** 0.5
        return (1 - m) * old + m * ((w_old / norm) * old + (w_new / norm) * new)


@dataclass(frozen=True, eq=False)
class NoiseSettings:
    """How the initial noise is made from the sampler's seed (ADE's Sample Settings, noise part)."""
    batch_offset: int = 0
    noise_type: str = seeds.DEFAULT
    seed_gen: str = seeds.COMFY
    seed_offset: int = 0
    seed_override: Optional[Seed] = None
    layers: tuple = field(default_factory=tuple)

    def __post_init__(self):
        seeds.check_noise_type(self.noise_type)
        seeds.check_seed_gen(self.seed_gen)
        if self.seed_override is not None and not isinstance(self.seed_override, int) and not self.seed_override:
            raise NoiseOptionError("seed_override is an empty list: give a seed per frame, or none.")

    def with_layer_first(self, layer: NoiseLayer) -> "NoiseSettings":
        return replace(self, layers=(layer,) + tuple(self.layers))

    def is_default(self) -> bool:
        return (self.batch_offset == 0 and self.seed_offset == 0 and self.noise_type == seeds.DEFAULT
                and self.seed_gen == seeds.COMFY)

    def prepare_noise(self, seed: Seed, latents: torch.Tensor, noise: torch.Tensor, context=None, gpu_device=None,
                      force_create_noise: bool = True, extra_seed_offset: int = 0) -> torch.Tensor:
        """The initial noise for `seed` (the sampler's seed) and `latents`; `noise` is the noise the sampler
        had, kept (before the layers) when the settings are ComfyUI's defaults and force_create_noise is False.
        context: (context_length, context_overlap) of the context windows, or None."""
        if self.seed_override is not None:
            seed = self.seed_override
        if not isinstance(seed, int):
            seed = list(seed)
            noise = seeds.create_noise_per_seed(seed, latents, self.seed_offset + extra_seed_offset)
            seed = seed[0] + self.seed_offset  # the layers' seed, as ADE (its first seed)
        else:
            seed += self.seed_offset
            if not self.is_default() or force_create_noise:
                noise = seeds.create_noise(seed + extra_seed_offset, latents, self.seed_gen, self.noise_type,
                                           self.batch_offset, context, gpu_device)
        for layer in self.layers:
            new = layer.create_noise(seed, latents, self.seed_gen, context, gpu_device, extra_seed_offset)
            noise = layer.apply(new, noise)
        return noise


# ---------------------------------------------------------------------------------------------------------------
# ComfyUI glue

def context_of(model_options: dict):
    """(context_length, context_overlap) of the context windows on a MODEL (ComfyUI core's handler), or None."""
    handler = model_options.get("context_handler")
    length = getattr(handler, "context_length", None)
    return None if length is None else (length, getattr(handler, "context_overlap", 0))


def _gpu_device(settings: NoiseSettings):
    """ComfyUI's torch device where a "[gpu]" seed generator is chosen (None otherwise: ComfyUI not needed)."""
    if not ({settings.seed_gen} | {layer.seed_gen_override for layer in settings.layers}) & set(seeds.ON_GPU):
        return None
    import comfy.model_management
    return comfy.model_management.get_torch_device()


def _note_missing_context(settings: NoiseSettings, context) -> None:
    types = {settings.noise_type} | {layer.noise_type for layer in settings.layers}
    if context is None and types & {seeds.REPEATED_CONTEXT, seeds.FREENOISE}:
        log.warning("MotionKit Sample Settings: noise type repeated_context / FreeNoise needs Context Windows "
                    "(Motion) on the model; without them the noise is left as drawn.")


# The noise a SettingsNoise made last (SamplerCustomAdvanced samples right after making it), so the MODEL wrapper of
# the same settings does not apply them twice when both outputs of the node are used
_last_made = (lambda: None, None)


def _made_by(noise: torch.Tensor, settings: NoiseSettings) -> bool:
    return _last_made[0]() is noise and _last_made[1] is settings


class SettingsNoise:
    """ComfyUI NOISE (SamplerCustomAdvanced): core's RandomNoise for `seed` (batch_index respected), then the
    settings, as ADE's wrapper treats the noise SamplerCustomAdvanced hands it."""

    def __init__(self, seed: int, settings: NoiseSettings, context=None):
        self.seed = seed
        self.settings = settings
        self.context = context

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        import comfy.sample

        latents = input_latent["samples"]
        base = comfy.sample.prepare_noise(latents, self.seed, input_latent.get("batch_index"))
        _note_missing_context(self.settings, self.context)
        noise = self.settings.prepare_noise(self.seed, latents, base, self.context, _gpu_device(self.settings),
                                            force_create_noise=False)
        global _last_made
        _last_made = (weakref.ref(noise), self.settings)
        return noise


def make_outer_sample(settings: NoiseSettings):
    """OUTER_SAMPLE wrapper: the sampler's noise replaced by the settings' for the sampler's seed (ADE's
    outer_sample_wrapper: skipped when the noise is all zeros, i.e. the sampler adds no noise)."""
    def outer_sample(executor, *args, **kwargs):
        args = list(args)
        noise, latents = args[0], args[1]
        seed = args[7] if len(args) > 7 else kwargs.get("seed")
        if _made_by(noise, settings):
            return executor(*args, **kwargs)  # already this settings' noise (its NOISE output)
        if not math.isclose(noise.max(), 0.0):
            if seed is None:
                raise NoiseOptionError("Sample Settings: the sampler passed no seed, so the noise cannot be made "
                                       "from it. Use KSampler, KSamplerAdvanced, SamplerCustom or "
                                       "SamplerCustomAdvanced, or the node's NOISE output.")
            context = context_of(executor.class_obj.model_options)
            _note_missing_context(settings, context)
            args[0] = settings.prepare_noise(seed, latents, noise, context, _gpu_device(settings),
                                             force_create_noise=False)
        return executor(*args, **kwargs)
    return outer_sample


KEY = "motionkit_noise_settings"


def apply_noise_settings(model_patcher, settings: NoiseSettings):
    """A clone of the MODEL whose sampling starts from the settings' noise (the input MODEL is unchanged).
    Applying settings again replaces the earlier ones (one initial noise per sampling).

    The wrapper goes first among the OUTER_SAMPLE wrappers (core runs them in the order of their keys, first
    outermost): it makes the initial noise once, before wrappers that sample several times with noise of their own
    (FreeInit), as ADE makes it before its iterations, whichever of the two nodes comes first."""
    from comfy.patcher_extension import WrappersMP

    m = patched_clone(model_patcher, KEY, replace=True, outer_sample=make_outer_sample(settings))
    outer = WrappersMP.OUTER_SAMPLE
    others = [key for key in m.wrappers.get(outer, {}) if key != KEY]
    for key in others:  # moved behind ours, in their order
        functions = list(m.get_wrappers(outer, key))
        m.remove_wrappers_with_key(outer, key)
        for function in functions:
            m.add_wrapper_with_key(outer, key, function)
    return m

