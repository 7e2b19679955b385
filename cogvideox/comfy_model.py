"""CogVideoX-5B as a ComfyUI model (imports ComfyUI: use only under ComfyUI).

Built the way core builds its video DiTs (comfy.sd.load_diffusion_model_state_dict), without touching core's model
lists: a model config (supported_models_base.BASE) with CogVideoX's schedule and latent format, a BaseModel whose
diffusion_model is our transformer on comfy.ops with ComfyUI's attention, wrapped in a ModelPatcher.

The schedule is CogVideoXDPMScheduler's: v-prediction, scaled-linear betas 0.00085–0.012 over 1000 steps (core's
"linear" schedule is the scaled-linear one), rescaled to zero terminal SNR (snr_shift_scale 1.0 for 5B: no shift).
Core keeps the last sigma finite (ᾱ₉₉₉ = 4.9e-8, σ ≈ 4519) where diffusers has ᾱ₉₉₉ = 0.

Image to video (a transformer with 32 input channels, e.g. Tora's I2V): the conditioning carries the start image's
latent distribution (IMAGE_MOMENTS: mean and logvar, from 'CogVideoX Image to Video') or a latent
(`concat_latent_image`, as core's video models take it). concat_cond draws the posterior sample from a CPU generator
seeded with the sampling seed, as the pipeline's FIRST draw from its generator (diffusers' and Tora's I2V pipelines
encode the image before drawing the noise), scales it for the transformer (process_latent_in: ×0.7), and zero-pads it
over the latent's other frames; BaseModel concatenates it AFTER the noisy latents (scaled by calculate_input), the
pipeline's [noisy ; image]. Cond and uncond draw the same sample (same seed).
"""
from __future__ import annotations

import torch

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.supported_models_base
import comfy.utils
from comfy.ldm.modules.attention import optimized_attention

from .errors import CogVideoXImageError
from .files import load_cogvideox_files
from .model import CogVideoXConfig, CogVideoXTransformer
from .vae import CogVideoXVAE

IMAGE_MOMENTS = "cogvideox_image_moments"  # conditioning key: [images, 2 × 16, 1, h, w], mean then logvar

VAE_SCALING_FACTOR = 0.7  # CogVideoX-5B's vae/config.json (2B's is 1.15258426)


class CogVideoXLatent(comfy.latent_formats.LatentFormat):
    latent_channels = 16
    latent_dimensions = 3
    scale_factor = VAE_SCALING_FACTOR


def build_transformer(config: CogVideoXConfig, dtype=None, device=None, operations=None) -> CogVideoXTransformer:
    """BaseModel's `unet_model`: called as unet_model(**unet_config, device=, operations=)."""
    return CogVideoXTransformer(config, operations=operations, attention=optimized_attention, device=device, dtype=dtype)


class CogVideoX5B(comfy.supported_models_base.BASE):
    """unet_config = {"config": CogVideoXConfig} (+ "dtype" from set_inference_dtype). Never in core's detection
    list: load_cogvideox builds it."""
    unet_extra_config = {}
    sampling_settings = {"beta_schedule": "linear", "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000,
                         "zsnr": True}
    latent_format = CogVideoXLatent
    supported_inference_dtypes = [torch.bfloat16, torch.float16, torch.float32]
    memory_usage_factor = 3072 / 2222  # as core's Wan 2.1 (same tokens per latent): width / 2222

    def model_type(self, state_dict, prefix=""):
        return comfy.model_base.ModelType.V_PREDICTION

    def inpaint_model(self):
        return False

    def get_model(self, state_dict, prefix="", device=None):
        return CogVideoXModel(self, device=device)


class CogVideoXModel(comfy.model_base.BaseModel):
    def __init__(self, model_config, model_type=comfy.model_base.ModelType.V_PREDICTION, device=None):
        super().__init__(model_config, model_type, device=device, unet_model=build_transformer)

    @property
    def in_channels(self) -> int:
        return self.model_config.unet_config["config"].in_channels

    def concat_cond(self, **kwargs):
        noise = kwargs["noise"]
        moments, image = kwargs.get(IMAGE_MOMENTS), kwargs.get("concat_latent_image")
        extra = self.in_channels - noise.shape[1]
        if moments is None and image is None:
            if extra:
                raise CogVideoXImageError(
                    f"This CogVideoX transformer is an image-to-video model ({self.in_channels} input channels: the "
                    f"video latent and a start image's), but no start image was given. Make the conditioning and "
                    f"the latent with 'CogVideoX Image to Video' (start_image), or load a text-to-video transformer.")
            return None
        if not extra:
            raise CogVideoXImageError(
                f"A start image was given ('CogVideoX Image to Video'), but this CogVideoX transformer is a "
                f"text-to-video model ({self.in_channels} input channels). Load an image-to-video transformer (Tora's "
                f"I2V checkpoint), or use 'Empty CogVideoX Latent' and plain conditioning.")
        if moments is not None:
            image = draw_image_latent(moments, kwargs.get("seed"))
        image = self.process_latent_in(image.float())
        if image.shape[1] != extra or image.shape[-2:] != noise.shape[-2:]:
            raise CogVideoXImageError(
                f"The start image's latent is {list(image.shape)}; the video latent is {list(noise.shape)} and the "
                f"transformer takes {extra} image channels. Give 'CogVideoX Image to Video' the video's width and "
                f"height and sample its own latent.")
        frames = noise.shape[2]
        image = torch.nn.functional.pad(image[:, :, :frames], (0, 0, 0, 0, 0, max(0, frames - image.shape[2])))
        return comfy.utils.resize_to_batch_size(image, noise.shape[0]).to(kwargs["device"])

    def extra_conds(self, **kwargs):
        out = super().extra_conds(**kwargs)
        cross_attn = kwargs.get("cross_attn", None)
        if cross_attn is not None:  # the T5 tokens as they are (226 of them), as core does for Wan
            out["c_crossattn"] = comfy.conds.CONDRegular(cross_attn)
        return out


def draw_image_latent(moments: torch.Tensor, seed: int | None) -> torch.Tensor:
    """The posterior sample of each image's latent distribution (unscaled), drawn one image after another from a
    CPU generator seeded with `seed`, in float32: the pipeline's first draws (fp32 pipeline; a bf16 one draws bf16)."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed or 0))
    mean, logvar = moments.float().chunk(2, dim=1)
    return torch.cat([CogVideoXVAE.sample(m[None], lv[None], generator) for m, lv in zip(mean, logvar)])


def cogvideox_patcher(config: CogVideoXConfig, state_dict: dict, dtype=None) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher of the transformer from an already-read state dict (files.load_cogvideox_files), with the
    weight dtype and manual cast core would pick for this device. `state_dict` is emptied while loading."""
    load_device = comfy.model_management.get_torch_device()
    offload_device = comfy.model_management.unet_offload_device()
    model_config = CogVideoX5B({"config": config})
    if dtype is None:
        dtype = comfy.model_management.unet_dtype(model_params=comfy.utils.calculate_parameters(state_dict),
                                                  supported_dtypes=model_config.supported_inference_dtypes,
                                                  weight_dtype=comfy.utils.weight_dtype(state_dict))
    manual_cast = comfy.model_management.unet_manual_cast(dtype, load_device, model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(dtype, manual_cast)
    model_config.memory_usage_factor = config.width / 2222
    model = model_config.get_model(state_dict).to(offload_device)
    model.load_model_weights(state_dict, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def load_cogvideox(path_or_folder: str, dtype=None) -> comfy.model_patcher.ModelPatcher:
    """The CogVideoX-5B transformer of a diffusers folder or single file as a ComfyUI model. Tora's module keys in
    the file, if any, are left out here: read them with files.load_cogvideox_files and cogvideox_patcher."""
    config, state_dict, _ = load_cogvideox_files(path_or_folder)
    return cogvideox_patcher(config, state_dict, dtype=dtype)
