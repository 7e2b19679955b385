"""The CogVideoX VAE under ComfyUI (imports ComfyUI: use only there).

The weights sit on comfy.ops layers in a ModelPatcher, as core's `comfy.sd.VAE` keeps its models: before each
decode or encode, ComfyUI's model management moves the VAE to the GPU and frees room for its activations (counted
by vae_memory at the latent's frames and a small area, scaled to the real area; a conservative count, since small
sizes need no conv pieces), and in low-VRAM mode loads part of it and casts the rest per layer.
Images are ComfyUI's IMAGE: [frames, height, width, 3] in 0..1.
"""
from __future__ import annotations

import functools

import torch

import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops

from .vae import CogVideoXVAE, Tiling, VAEConfig
from .vae_files import load_vae
from .vae_memory import decode_peak_bytes, encode_peak_bytes

WORKING_DTYPES = [torch.bfloat16, torch.float32]  # diffusers runs it in bf16; fp16 overflows (force_upcast)
MARGIN = 1.2  # allocator rounding, cuDNN workspaces: what the tensor count cannot see
PROBE = (8, 12)  # latent height × width at which the activations are counted, then scaled by area


@functools.lru_cache(maxsize=32)
def _decode_bytes(config: VAEConfig, dtype: torch.dtype, frames: int, height: int, width: int) -> int:
    return int(decode_peak_bytes(frames, *PROBE, dtype, config) * height * width / (PROBE[0] * PROBE[1]) * MARGIN)


@functools.lru_cache(maxsize=32)
def _encode_bytes(config: VAEConfig, dtype: torch.dtype, frames: int, height: int, width: int) -> int:
    ratio = config.spatial_ratio
    probe = (PROBE[0] * ratio, PROBE[1] * ratio)
    return int(encode_peak_bytes(frames, *probe, dtype, config) * height * width / (probe[0] * probe[1]) * MARGIN)


class ComfyCogVideoXVAE:
    """`decode(latents)` and `encode(image)` with ComfyUI's memory management; latents are the VAE's own
    (unscaled): [batch, 16, t, h, w]. `tiling`: diffusers' tiled numbers (less memory)."""

    def __init__(self, model: CogVideoXVAE, device: torch.device | None = None, dtype: torch.dtype | None = None,
                 tiling: Tiling | None = None):
        self.device = device or mm.vae_device()
        self.dtype = dtype or mm.vae_dtype(self.device, WORKING_DTYPES)
        self.model = model.eval().to(self.dtype)
        self.config = model.config
        self.tiling = tiling
        self.patcher = comfy.model_patcher.ModelPatcher(self.model, load_device=self.device,
                                                        offload_device=mm.vae_offload_device())

    @classmethod
    def from_file(cls, path: str, scaling_factor: float | None = None, **kwargs) -> "ComfyCogVideoXVAE":
        """A `vae/` folder or one .safetensors file (vae_files.read_vae), built on comfy.ops."""
        return cls(load_vae(path, operations=comfy.ops.disable_weight_init, scaling_factor=scaling_factor), **kwargs)

    def _load(self, required: int) -> None:
        mm.load_models_gpu([self.patcher], memory_required=required)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[batch, 16, t, h, w] → IMAGE [batch · (1 + 4(t − 1)), 8h, 8w, 3] in 0..1."""
        self._load(_decode_bytes(self.config, self.dtype, *latents.shape[2:]))
        video = self.model.decode(latents.to(self.device, self.dtype), tiling=self.tiling)
        video = ((video.float() + 1) / 2).clamp(0, 1).to(mm.intermediate_device())
        return video.permute(0, 2, 3, 4, 1).flatten(0, 1)  # b c t h w -> (b t) h w c

    @torch.no_grad()
    def _moments(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = image[..., :3].permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1  # (t h w c) -> b c t h w, in -1..1
        self._load(_encode_bytes(self.config, self.dtype, *pixels.shape[2:]))
        return self.model.encode(pixels.to(self.device, self.dtype), tiling=self.tiling)

    def encode_distribution(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """IMAGE [frames, h, w, 3] in 0..1 (frames = 1 + 4k) → (mean, logvar), each [1, 16, 1 + k, h/8, w/8]."""
        out = mm.intermediate_device()
        return tuple(m.float().to(out) for m in self._moments(image))

    def encode(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The latent mean, or a sample drawn as diffusers draws it when a generator is given (Tora samples its
        flow video's latents; drawn in the VAE's dtype, as there). Unscaled: multiply by `config.scaling_factor`
        for the diffusion model."""
        mean, logvar = self._moments(image)
        latents = mean if generator is None else CogVideoXVAE.sample(mean, logvar, generator)
        return latents.float().to(mm.intermediate_device())
