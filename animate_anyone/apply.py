"""Animate Anyone on a ComfyUI MODEL, through official extension points only (all on clones).

* Load: the denoising UNet becomes a ComfyUI SD1.5 model; the motion module goes in through MotionKit's
  own injection (motion.injection.apply_motion_model) with Animate Anyone's schedule as its
  model_sampling object patch. The ReferenceNet is a second ComfyUI UNet (its own ModelPatcher, so core
  loads and offloads it), the pose guider a small torch module.
* Apply, per sampling run (OUTER_SAMPLE wrapper, before ComfyUI loads the denoising UNet):
  - the reference image, resized to the latent's size in pixels, is VAE-encoded (mean, ×0.18215: the
    MODEL's latent format), and the pose images, resized the same way and resampled to the latent's frame
    count, go through the pose guider;
  - the ReferenceNet runs ONCE on the encoded image at timestep 0 with the image's CLIP embedding as
    context (the original's `reference_unet(ref_latents, zeros_like(t), clip_embeds)` on step 0), its
    self-attention inputs captured in the bank (reference_attention.py);
  - sampling runs; the bank and the pose features are freed when it ends (also on errors/cancel).
* Every UNet call: an `input_block_patch` adds the pose features of the call's frames right after the first
  convolution (input block 0), for every cond/uncond chunk, sliced to the context window's frames; the
  attn1 patch + attn1 replace give each transformer block's self-attention the reference tokens on the
  conditional rows.
Conditioning, as the pipeline builds it: the CLIP image embedding (`image_embeds`, 768, projected) of
the reference image squashed to 224×224 is the cross-attention context, one token; the negative is zeros.
Imports ComfyUI lazily.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch

from .errors import AnimateAnyoneError
from .pose_guider import PoseGuider, pose_features_for_rows, poses_to_frames
from .reference_attention import ReferenceAttention, ReferenceBank

from ..common.patch import patched_clone
from ..common.unet_call import frames_in_call

LOG = logging.getLogger("MotionKit")
KEY = "motionkit_animate_anyone"
MARK = "motionkit_animate_anyone_unet"  # attachment on the MODEL from Load Animate Anyone
CLIP_DIM = 768


@dataclass
class AnimateAnyoneModels:
    """What flows along an ANIMATE_ANYONE wire (from Load Animate Anyone)."""
    reference_unet: object      # comfy ModelPatcher
    pose_guider: PoseGuider
    names: dict


@dataclass
class AnimateAnyoneRun:
    """One Apply Animate Anyone: its inputs, and what each sampling run computes from them."""
    models: AnimateAnyoneModels
    reference_image: torch.Tensor   # (1, H, W, 3) in [0, 1]
    poses: torch.Tensor             # (n, H, W, 3) in [0, 1]
    clip_embeds: torch.Tensor       # (1, 1, 768)
    vae: object
    latent_format: object
    reference: bool = True          # False: no ReferenceNet, no bank (tests: plain AnimateDiff + poses)
    bank: ReferenceBank = field(default_factory=ReferenceBank)
    pose_features: torch.Tensor | None = None
    reference_runs: int = 0

    # -- per sampling run -------------------------------------------------------------------------
    def prepare(self, frames: int, height: int, width: int, device, dtype) -> None:
        import comfy.model_management as mm

        ratio = self.vae.downscale_ratio
        size = (height * ratio, width * ratio)
        poses, note = poses_to_frames(self.poses, frames)
        if note:
            LOG.warning(f"Apply Animate Anyone: {note}")
        if tuple(poses.shape[1:3]) != size:
            LOG.warning(f"Apply Animate Anyone: the pose images are {poses.shape[2]}×{poses.shape[1]} but the "
                        f"animation is {size[1]}×{size[0]}; they were resized (stretched) to it. Give pose images of "
                        f"the animation's size to control framing.")
        # a copy on the UNet's device and dtype: the loaded guider is shared and stays exact (fp32, CPU)
        guider = copy.deepcopy(self.models.pose_guider).to(device=device, dtype=dtype)
        with torch.no_grad():
            self.pose_features = guider(resize(poses, size).movedim(-1, 1).to(device=device, dtype=dtype))
        del guider
        if not self.reference:
            return
        # the original resizes the reference to the animation's size without cropping (VaeImageProcessor)
        latent = self.latent_format.process_in(self.vae.encode(resize(self.reference_image, size)).float())
        unet_patcher = self.models.reference_unet
        mm.load_models_gpu([unet_patcher])
        self.run_reference(unet_patcher, latent)

    def run_reference(self, patcher, latent: torch.Tensor) -> None:
        model = patcher.model
        dtype = getattr(model, "manual_cast_dtype", None) or model.get_dtype()
        device = patcher.load_device
        options = {"patches": {"attn1_patch": [self.bank.capture]}}
        self.bank.clear()
        self.bank.capturing = True
        try:
            with torch.no_grad():
                model.diffusion_model(latent.to(device, dtype), torch.zeros(latent.shape[0], device=device),
                                      context=self.clip_embeds.to(device, dtype), transformer_options=options)
        finally:
            self.bank.capturing = False
        self.reference_runs += 1

    def release(self) -> None:
        self.bank.clear()
        self.pose_features = None

    # -- per UNet call ------------------------------------------------------------------------------
    def input_block_patch(self, h: torch.Tensor, transformer_options: dict) -> torch.Tensor:
        if transformer_options.get("block") != ("input", 0) or self.pose_features is None:
            return h
        features = self.pose_features
        frames = frames_in_call(h.shape[0], transformer_options)
        window = getattr(transformer_options.get("context_window"), "index_list", None)
        index = list(window) if window is not None and len(window) == frames else list(range(frames))
        if max(index) >= features.shape[0]:
            raise AnimateAnyoneError(
                f"Apply Animate Anyone: a UNet call holds frame {max(index)} but the pose features were made for "
                f"{features.shape[0]} frames. Sample the latent batch the poses were prepared for.")
        add = pose_features_for_rows(features, index, h.shape[0]).to(h)
        if add.shape[-2:] != h.shape[-2:]:  # a smaller area (area conditioning): resize the features to it
            add = torch.nn.functional.interpolate(add, size=h.shape[-2:], mode="bilinear")
        return h + add


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(n, H, W, C) images to `size` (h, w) pixels, Lanczos, no crop (the original stretches)."""
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    import comfy.utils
    return comfy.utils.common_upscale(images.movedim(-1, 1), size[1], size[0], "lanczos", "disabled").movedim(1, -1)


def transformer_blocks(unet) -> list[tuple[str, int, int]]:
    """(block name, block number, transformer index) of every spatial transformer block, ComfyUI's keys."""
    from comfy.ldm.modules.attention import SpatialTransformer

    out = []
    for name, blocks in (("input", unet.input_blocks), ("middle", [unet.middle_block]), ("output", unet.output_blocks)):
        for number, block in enumerate(blocks):
            for layer in block:
                if isinstance(layer, SpatialTransformer):
                    out += [(name, number, i) for i in range(len(layer.transformer_blocks))]
    return out


def clip_embedding(clip_vision, image: torch.Tensor) -> torch.Tensor:
    """(1, 1, 768): the projected CLIP image embedding of the reference, as the pipeline makes it
    (`ref_image.resize((224, 224))`, then CLIPImageProcessor: squash, no crop)."""
    if clip_vision is None:
        raise AnimateAnyoneError(
            "Apply Animate Anyone needs a CLIP vision model: the reference image's CLIP embedding is what both UNets "
            "are conditioned on (there is no text prompt). Put sd-image-variations' image encoder "
            "(lambdalabs/sd-image-variations-diffusers, image_encoder/model.safetensors) in ComfyUI/models/clip_vision, "
            "load it with 'Load CLIP Vision' and connect it to clip_vision.")
    embeds = clip_vision.encode_image(image[:1, :, :, :3], crop=False).image_embeds
    if embeds.shape[-1] != CLIP_DIM:
        raise AnimateAnyoneError(
            f"Apply Animate Anyone: this CLIP vision model gives {embeds.shape[-1]}-wide image embeddings, but Animate "
            f"Anyone was trained with sd-image-variations' image encoder (CLIP ViT-L/14, {CLIP_DIM}). Load that one "
            f"(image_encoder/model.safetensors of lambdalabs/sd-image-variations-diffusers) in 'Load CLIP Vision'.")
    return embeds.float().cpu().reshape(1, 1, CLIP_DIM)


def check_inputs(model_patcher, vae, reference_image, poses) -> None:
    if model_patcher.get_attachment(MARK) is None:
        raise AnimateAnyoneError(
            "Apply Animate Anyone: this MODEL is not Animate Anyone's denoising UNet. Connect the MODEL output of "
            "'Load Animate Anyone' (an SD checkpoint's MODEL was not trained to follow the reference and poses).")
    if getattr(vae, "latent_channels", None) != 4 or getattr(vae, "downscale_ratio", None) != 8:
        raise AnimateAnyoneError(
            "Apply Animate Anyone needs the SD1.5 VAE (4-channel latents, 8× smaller; the original uses "
            "sd-vae-ft-mse). Connect an SD1.5 VAE, e.g. vae-ft-mse-840000-ema-pruned.safetensors via 'Load VAE'.")
    for what, images in (("reference_image", reference_image), ("pose_images", poses)):
        if images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] < 3:
            raise AnimateAnyoneError(f"Apply Animate Anyone: {what} must be an IMAGE batch, got shape "
                                     f"{tuple(images.shape)}. Connect a Load Image / Load Video Frames node.")


def apply_animate_anyone(model_patcher, models: AnimateAnyoneModels, reference_image, poses, vae, clip_embeds,
                         reference: bool = True):
    """A clone of `model_patcher` (the MODEL of Load Animate Anyone) that animates the reference image with
    the poses; returns (model, run). `model_patcher` is left as it was."""
    import comfy.ldm.modules.attention as attention

    check_inputs(model_patcher, vae, reference_image, poses)
    run = AnimateAnyoneRun(models, reference_image[:1, :, :, :3].float(), poses[..., :3].float(), clip_embeds, vae,
                           model_patcher.get_model_object("latent_format"), reference)
    def prepare(noise, executor):
        patcher = executor.class_obj.model_patcher
        model = patcher.model
        dtype = getattr(model, "manual_cast_dtype", None) or model.get_dtype()
        run.prepare(noise.shape[0], noise.shape[-2], noise.shape[-1], patcher.load_device, dtype)

    # the bank and pose features live for one sampling run only (run.release)
    m = patched_clone(model_patcher, KEY, replace=True, attachment=run, before=prepare, after=run.release)
    m.set_model_input_block_patch(run.input_block_patch)
    if reference:
        attend = ReferenceAttention(run.bank, lambda *a, **k: attention.optimized_attention(*a, **k))
        m.set_model_attn1_patch(attend.attn1_patch)
        replaced = m.model_options["transformer_options"].get("patches_replace", {}).get("attn1", {})
        for name, number, index in transformer_blocks(m.get_model_object("diffusion_model")):
            if (name, number, index) in replaced or (name, number) in replaced:
                LOG.warning(f"Apply Animate Anyone: another node's self-attention replacement on {name} block {number} "
                            f"is replaced by the reference attention.")
            m.set_model_attn1_replace(attend.attn1_replace, name, number, index)

    return m, run


def conditioning(clip_embeds: torch.Tensor):
    """(positive, negative): the image embedding as the only context token; zeros for the unconditional half."""
    return [[clip_embeds, {}]], [[torch.zeros_like(clip_embeds), {}]]


def load_animate_anyone(denoising, reference, pose_guider, motion, names: dict):
    """(MODEL, AnimateAnyoneModels) from the four state dicts. Imports ComfyUI."""
    from ..motion.injection import MotionSettings, apply_motion_model
    from .files import load_motion_module, load_unet
    from .pose_guider import pose_guider_from_state_dict
    from .schedule import make_model_sampling

    guider = pose_guider_from_state_dict(pose_guider, names["pose_guider"])
    motion_model, info = load_motion_module(motion, names["motion_module"])
    denoising_unet = load_unet(denoising, names["denoising_unet"], "denoising_unet")
    reference_unet = load_unet(reference, names["reference_unet"], "reference_unet")
    model = apply_motion_model(denoising_unet, motion_model, info, names["motion_module"], MotionSettings(),
                               model_sampling=make_model_sampling())
    model.set_attachments(MARK, names["denoising_unet"])
    return model, AnimateAnyoneModels(reference_unet, guider, dict(names))
