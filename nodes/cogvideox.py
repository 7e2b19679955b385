"""CogVideoX (and Tora's transformer) on ComfyUI's own sampling: load, text, empty latent, sampling settings, VAE."""
import torch

import comfy.model_management
import comfy.samplers
import comfy.utils
import node_helpers

from ..cogvideox import comfy_files
from ..cogvideox.comfy_model import IMAGE_MOMENTS
from ..cogvideox.comfy_vae import ComfyCogVideoXVAE
from ..cogvideox.errors import CogVideoXFileError
from ..cogvideox.guidance import DynamicCFG
from ..cogvideox.latent_size import latent_shape
from ..cogvideox.sampler import CogVideoXNoise, pipeline_shape, sample_cogvideox_ddim, sample_cogvideox_dpm
from ..cogvideox.schedule import comfy_sigmas
from ..cogvideox.text import cogvideox_conditioning
from ..tora.apply import load_model

CATEGORY = "MotionKit/CogVideoX"
WEIGHT_DTYPES = {"default": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp8_e4m3fn": torch.float8_e4m3fn,
                 "fp32": torch.float32}
SAMPLERS = {"dpm (CogVideoX-5B, Tora)": sample_cogvideox_dpm, "ddim (CogVideoX-2B)": sample_cogvideox_ddim}
DRAW_ORDERS = ("Tora (flow latents, then noise)", "CogVideoX (noise first)", "I2V (image latent, then noise)")


class LoadCogVideoX:
    DESCRIPTION = (f"Loads the CogVideoX-5B transformer from {comfy_files.WHERE}: a diffusers folder "
                   f"(Tora_T2V_diffusers/, or CogVideoX-5b/), one .safetensors file, or Tora's SAT checkpoint "
                   f"(mp_rank_00_model_states.pt, text or image to video). Tora's transformer brings its "
                   f"trajectory modules along, for 'Apply Tora Trajectory'; an image-to-video one needs "
                   f"'CogVideoX Image to Video'. The MODEL samples with core's samplers "
                   f"(v-prediction, zero terminal SNR); for the original's exact steps use 'CogVideoX Sampling'.")
    CATEGORY = CATEGORY
    SEARCH_ALIASES = ["tora", "cogvideox", "cogvideo", "video transformer", "dit"]
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The CogVideoX transformer (with Tora's modules when the file has them).",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (comfy_files.transformer_choices(), {"tooltip": (
                f"A diffusers folder (ends in /), a single-file transformer or a SAT .pt checkpoint in "
                f"{comfy_files.WHERE}.")}),
            "weight_dtype": (list(WEIGHT_DTYPES), {"default": "default", "tooltip": (
                "How the weights are stored in memory. default: what ComfyUI picks for your GPU (bf16 where "
                "supported). fp8_e4m3fn halves the memory of bf16, computing in bf16.")}),
        }}

    def load(self, model_name, weight_dtype):
        return (load_model(comfy_files.transformer_path(model_name), model_name, dtype=WEIGHT_DTYPES[weight_dtype]),)


class LoadCogVideoXVAE:
    DESCRIPTION = ("Loads CogVideoX's 3D causal VAE: the vae/ of a diffusers folder in models/cogvideox, or a single "
                   ".safetensors file in models/vae. It decodes CogVideoX latents (4 frames and 8x8 pixels each) "
                   "and encodes Tora's flow video.")
    CATEGORY = CATEGORY
    SEARCH_ALIASES = ["cogvideox vae", "tora vae", "3d vae"]
    RETURN_TYPES = ("COGVIDEOX_VAE",)
    OUTPUT_TOOLTIPS = ("Connect to 'CogVideoX VAE Decode' and 'Apply Tora Trajectory'.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae_name": (comfy_files.vae_choices(), {"tooltip": "<folder>/vae of a diffusers folder, or a VAE file."}),
            "tiling": ("BOOLEAN", {"default": False, "tooltip": (
                "Decode in overlapping tiles, as diffusers' enable_tiling(): about a third of the memory, slightly "
                "different pixels at the seams. 49 frames at 480x720 decode untiled in about 7 GB (bf16).")}),
        }}

    def load(self, vae_name, tiling):
        from ..cogvideox.vae import Tiling
        return (ComfyCogVideoXVAE.from_file(comfy_files.vae_path(vae_name), tiling=Tiling() if tiling else None),)


class CogVideoXDecode:
    DESCRIPTION = "Decodes a CogVideoX latent into frames (1 + 4 per latent frame after the first)."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The video frames: connect to Save Animation or Video Combine.",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT", {"tooltip": "The sampled CogVideoX latent."}),
                             "vae": ("COGVIDEOX_VAE", {"tooltip": "From 'Load CogVideoX VAE'."})}}

    def decode(self, samples, vae):
        latents = samples["samples"]
        if latents.ndim != 5 or latents.shape[1] != vae.config.latent_channels:
            raise CogVideoXFileError(f"CogVideoX VAE Decode: the latent is {list(latents.shape)}, not a CogVideoX "
                                     f"video latent [batch, 16, frames, height, width]; sample from 'Empty CogVideoX "
                                     f"Latent' with a CogVideoX MODEL.")
        return (vae.decode(latents),)


class CogVideoXTextEncode:
    DESCRIPTION = ("Encodes a prompt as CogVideoX's pipeline does: T5-XXL, 226 tokens, padding encoded without a "
                   "mask. Load t5xxl with CLIPLoader, type 'sd3'.")
    CATEGORY = CATEGORY
    SEARCH_ALIASES = ["cogvideox prompt", "tora prompt", "t5"]
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("The prompt for a CogVideoX MODEL (positive or negative).",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP", {"tooltip": "T5-XXL from CLIPLoader with type 'sd3' (or 'pixart')."}),
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": (
                "The prompt. Longer than 226 tokens is cut, as the original does; ComfyUI's (word:1.2) weights "
                "are not applied (the original has none).")}),
        }}

    def encode(self, clip, text):
        return (cogvideox_conditioning(clip, text),)


class EmptyCogVideoXLatent:
    DESCRIPTION = ("An empty CogVideoX latent for a video of the given size: frames must be 4k + 1 (49 is the "
                   "original's: 13 latent frames). Tora was trained at 480x720.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("Connect to the sampler's latent_image.",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 720, "min": 16, "max": 2048, "step": 16, "tooltip": "Pixels; Tora: 720."}),
            "height": ("INT", {"default": 480, "min": 16, "max": 2048, "step": 16, "tooltip": "Pixels; Tora: 480."}),
            "frames": ("INT", {"default": 49, "min": 1, "max": 1025, "step": 4, "tooltip": (
                "Video frames, 4k + 1 (1, 5, 9, ... 49). The model was trained on 49.")}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Videos sampled at once."}),
        }}

    def generate(self, width, height, frames, batch_size):
        shape = latent_shape("Empty CogVideoX Latent", width, height, frames, batch_size)
        return ({"samples": torch.zeros(shape, device=comfy.model_management.intermediate_device())},)


class CogVideoXImageToVideo:
    DESCRIPTION = ("Starts the video from an image, as CogVideoX's and Tora's image-to-video pipelines do: the image "
                   "is resized to the video size (stretched, Lanczos), encoded by the VAE, and given to the "
                   "transformer with the noisy latent (its first frame; zeros after). Needs an image-to-video "
                   "transformer (Tora's I2V). The VAE's sample of the image is drawn from the sampling seed before "
                   "the noise: use 'CogVideoX Sampling' with draw order I2V for the pipeline's numbers.")
    CATEGORY = CATEGORY
    SEARCH_ALIASES = ["cogvideox i2v", "tora i2v", "image to video", "start image"]
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    OUTPUT_TOOLTIPS = ("The positive prompt with the start image.", "The negative prompt with the same image.",
                       "An empty video latent of the given size: the sampler's latent_image.")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "positive": ("CONDITIONING", {"tooltip": "From 'CogVideoX Text Encode'."}),
            "negative": ("CONDITIONING", {"tooltip": "From 'CogVideoX Text Encode' (Tora: an empty prompt)."}),
            "vae": ("COGVIDEOX_VAE", {"tooltip": "From 'Load CogVideoX VAE': it encodes the start image."}),
            "start_image": ("IMAGE", {"tooltip": "The video's first frame (the first image of a batch is used)."}),
            "width": ("INT", {"default": 720, "min": 16, "max": 2048, "step": 16, "tooltip": "Pixels; Tora: 720."}),
            "height": ("INT", {"default": 480, "min": 16, "max": 2048, "step": 16, "tooltip": "Pixels; Tora: 480."}),
            "frames": ("INT", {"default": 49, "min": 1, "max": 1025, "step": 4, "tooltip": (
                "Video frames, 4k + 1 (1, 5, 9, ... 49). The model was trained on 49.")}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Videos sampled at once."}),
        }}

    def encode(self, positive, negative, vae, start_image, width, height, frames, batch_size):
        shape = latent_shape("CogVideoX Image to Video", width, height, frames, batch_size)
        image = start_image[:1, :, :, :3]
        if tuple(image.shape[1:3]) != (height, width):  # the pipeline's PIL resize, no crop
            image = comfy.utils.common_upscale(image.movedim(-1, 1), width, height, "lanczos", "disabled").movedim(1, -1)
        mean, logvar = vae.encode_distribution(image)
        moments = {IMAGE_MOMENTS: torch.cat([mean, logvar], dim=1)}
        latent = {"samples": torch.zeros(shape, device=comfy.model_management.intermediate_device())}
        return (node_helpers.conditioning_set_values(positive, moments),
                node_helpers.conditioning_set_values(negative, moments), latent)


class CogVideoXSampling:
    DESCRIPTION = ("The original pipeline's sampling for SamplerCustomAdvanced: its scheduler's own steps (DPM: "
                   "stochastic, as CogVideoX-5B and Tora sample), its trailing timesteps, and its random numbers in "
                   "its order from one seed. With the same weights and seed the result is the diffusers pipeline's "
                   "(float32). Add 'CogVideoX Dynamic CFG' to the MODEL for the original's guidance.")
    CATEGORY = CATEGORY
    SEARCH_ALIASES = ["cogvideox sampler", "tora sampler", "cogvideox scheduler", "dpm cogvideox"]
    RETURN_TYPES = ("NOISE", "SAMPLER", "SIGMAS")
    OUTPUT_TOOLTIPS = ("The initial noise, as the pipeline draws it.", "The scheduler's step.",
                       "The trailing timesteps' noise levels.")
    FUNCTION = "get"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                             "tooltip": "The pipeline generator's seed (Tora's --seed)."}),
            "steps": ("INT", {"default": 50, "min": 1, "max": 1000, "tooltip": "Tora's inference: 50."}),
            "sampler": (list(SAMPLERS), {"tooltip": "dpm: CogVideoX-5B's and Tora's scheduler. ddim: the 2B's."}),
            "draw_order": (list(DRAW_ORDERS), {"tooltip": (
                "Tora's pipeline draws its flow latents from the generator before the noise; plain CogVideoX draws "
                "the noise first; image-to-video pipelines (CogVideoX's and Tora's) draw the start image's latent "
                "first. Match the MODEL: Tora when 'Apply Tora Trajectory' is used on text to video, I2V with "
                "'CogVideoX Image to Video'.")}),
        }}

    def get(self, seed, steps, sampler, draw_order):
        def draws(shape):  # the pipeline's draws before the scheduler's, the noise last
            one = pipeline_shape(shape)
            if draw_order == DRAW_ORDERS[0]:
                return (one, one)  # flow latents (same shape), noise
            if draw_order == DRAW_ORDERS[2]:
                return ((1, shape[1], 1, shape[3], shape[4]), one)  # one start image's VAE sample, noise
            return (one,)

        noise = _Noise(seed, draws)
        function = SAMPLERS[sampler]

        def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
            kwargs = {"seed": seed, "draws_before": draws(x.shape)} if function is sample_cogvideox_dpm else {}
            return function(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, **kwargs)

        return noise, comfy.samplers.KSAMPLER(sample), comfy_sigmas(steps)


class _Noise(CogVideoXNoise):
    """CogVideoXNoise whose earlier draws follow the latent's shape."""

    def __init__(self, seed, draws):
        super().__init__(seed)
        self.draws = draws

    def generate_noise(self, input_latent):
        self.draws_before = self.draws(input_latent["samples"].shape)[:-1]
        return super().generate_noise(input_latent)


class CogVideoXDynamicCFG:
    DESCRIPTION = ("The original pipeline's dynamic guidance (use_dynamic_cfg): the cfg scale rises over sampling "
                   "as 1 + cfg·(1 − cos(π·((N − t)/N)^5))/2, t the timestep, N the steps (diffusers' formula; "
                   "CogVideoX's SAT code uses the step index instead). Tora's inference uses it with cfg 6.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The MODEL with dynamic guidance: use it in the guider (CFGGuider) or KSampler.",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {"tooltip": "A CogVideoX MODEL."})}}

    def patch(self, model):
        m = model.clone()
        m.set_model_sampler_post_cfg_function(DynamicCFG())
        return (m,)
