"""AnimateLCM-I2V: start an animation from an image (MOTION_FORMATS.md §4.7), on a MODEL that already
has the AnimateLCM-I2V motion model applied.

What the original does (G-U-N/AnimateLCM, confirmed in pipelines/pipeline_animation.py, models/unet.py,
models/unet_blocks.py): the image is resized-and-center-cropped to the video's size, VAE-encoded and
scaled (×0.18215), repeated over the frames and run through the motion model's image encoder once per
UNet call; encoder level L's output is added to the hidden state after the resnet (and attention) of
the second layer of down block L, right before that block's `motion_modules.1`. Under classifier-free
guidance the same image latent goes to both halves (`torch.cat([img_latent] * 2)`), so cond and uncond
get the same features.

Here, all on a ModelPatcher clone through official extension points:
* OUTER_SAMPLE wrapper: runs before ComfyUI loads the UNet for sampling, so the VAE can encode the image
  there at the latent's size (the original's resize-and-crop, then encode); cached per size.
* DIFFUSION_MODEL wrapper: computes the features for the frames of this call (cached for the sampling
  run: they depend neither on the step nor on the noise) and hands them to the motion layers in the
  call's transformer_options (`IMAGE_FEATURES`), sized to the batch: every cond/uncond chunk gets them.
  The motion layer adds them to its input (motion.model.MotionModule, `feature`).
* Context windows: a call holds one window; its frames get embedding positions 0..L-1, the same
  window-local positions the motion module's own positional encoding uses in that window (as
  AnimateDiff-Evolved does). The image is the same for every frame, so nothing else depends on
  which frames the window holds.

Imports ComfyUI lazily.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import repeat

from .errors import IncompatibleModelError, MotionKitError
from ..common.patch import patched_clone
from ..common.unet_call import frames_in_call, transformer_options_of
from .injection import IMAGE_FEATURES, MotionApplication, applications, unet_description

KEY = "motionkit_animatelcm_i2v"
I2V_FILE = "AnimateLCM_sd15_i2v.ckpt"


def encode_image(vae, image: torch.Tensor, latent_format, height: int, width: int) -> torch.Tensor:
    """`image` (an IMAGE) VAE-encoded at a latent size of height × width, as VAEEncode does after a Lanczos resize with
    center crop to that size in pixels; scaled into the model's latent space, on the CPU."""
    import comfy.utils

    ratio = vae.downscale_ratio
    if image.shape[1:3] != (height * ratio, width * ratio):
        image = comfy.utils.common_upscale(image.movedim(-1, 1), width * ratio, height * ratio,
                                           "lanczos", "center").movedim(1, -1)
    return latent_format.process_in(vae.encode(image).float().cpu())


class EncodedImage:
    """The image of an image-conditioned motion model (AnimateLCM-I2V here, PIA in pia/apply.py), for a dataclass
    holding `image` (1, H, W, 3), `vae`, `latent_format` and a `latents` dict: encoded per latent size before the
    UNet loads, read back per UNet call. NODE names the node in the error, ERROR is its error class."""
    NODE = "Apply AnimateLCM-I2V Image"
    ERROR = MotionKitError

    def encode(self, height: int, width: int) -> None:
        """VAE-encode the image at a latent size of height × width (as VAEEncode does, after a
        Lanczos resize with center crop to that size in pixels)."""
        if (height, width) not in self.latents:
            self.latents[(height, width)] = encode_image(self.vae, self.image, self.latent_format, height, width)

    def image_latent(self, height: int, width: int) -> torch.Tensor:
        if (height, width) in self.latents:
            return self.latents[(height, width)]
        if not self.latents:
            raise self.ERROR(
                f"{self.NODE}: the model was run without ComfyUI's sampling, so the image was never encoded. Sample "
                f"with KSampler, KSamplerAdvanced or SamplerCustomAdvanced.")
        import comfy.utils  # a smaller area of the latent (area conditioning): resize the encoded image to it

        full = max(self.latents.values(), key=lambda t: t.shape[-1] * t.shape[-2])
        return comfy.utils.common_upscale(full, width, height, "bilinear", "center")


@dataclass
class ImageCondition(EncodedImage):
    image: torch.Tensor       # (1, H, W, 3) in [0, 1]: the first image of the artist's batch
    vae: object               # comfy.sd.VAE
    latent_format: object     # the MODEL's (process_in: ×0.18215 for SD1.5)
    motion_scale: float       # weight of the per-frame embedding (original: Adapter.motion_scale = 0.8)
    apps: list[MotionApplication]
    latents: dict = field(default_factory=dict)    # (h, w) -> scaled image latent (1, 4, h, w), on CPU
    features: dict = field(default_factory=dict)   # per sampling run: (app key, frames, h, w, dtype, device) -> [4 maps]

    def features_for(self, app: MotionApplication, x: torch.Tensor, frames: int) -> dict:
        """{motion_modules.1 of down block L: feature L for every row of x} for one UNet call."""
        height, width = x.shape[-2:]
        key = (app.key, frames, height, width, x.dtype, x.device)
        if key not in self.features:
            latent = self.image_latent(height, width).to(device=x.device, dtype=x.dtype)
            self.features[key] = app.motion_model.img_encoder(latent, frames, self.motion_scale)
        chunks = x.shape[0] // frames  # cond, uncond, ...: each holds all frames and gets the same features
        return {block.motion_modules[1]: repeat(f, "f c h w -> (n f) c h w", n=chunks)
                for block, f in zip(app.motion_model.down_blocks, self.features[key])}


def find_i2v_applications(model_patcher) -> list[MotionApplication]:
    """The AnimateLCM-I2V motion models in a MODEL, or an error that says how to get one."""
    apps = applications(model_patcher)
    with_encoder = [a for a in apps if a.motion_model.img_encoder is not None]
    if with_encoder:
        return with_encoder
    if apps:
        names = ", ".join(f"'{a.name}' ({a.info.family})" for a in apps)
        raise IncompatibleModelError(
            f"Apply AnimateLCM-I2V Image: the motion model in this MODEL, {names}, has no image encoder, so it "
            f"cannot start from an image. In 'Load Motion Model' choose {I2V_FILE} (AnimateLCM-I2V) instead.")
    kind = unet_description(model_patcher.get_model_object("diffusion_model"))
    if kind != "SD1.5":
        raise IncompatibleModelError(
            f"Apply AnimateLCM-I2V Image: the MODEL is {kind}, but AnimateLCM-I2V exists for SD1.5 only. Load an "
            f"SD1.5 checkpoint, apply {I2V_FILE} to it with 'Apply Motion Model', and connect that MODEL here.")
    raise IncompatibleModelError(
        f"Apply AnimateLCM-I2V Image: this MODEL has no motion model. Connect 'Load Motion Model' ({I2V_FILE}) "
        f"→ 'Apply Motion Model' → this node's model input.")


def check_vae(vae) -> None:
    channels = getattr(vae, "latent_channels", None)
    ratio = getattr(vae, "downscale_ratio", None)
    if channels != 4 or ratio != 8:
        raise IncompatibleModelError(
            f"Apply AnimateLCM-I2V Image: this VAE makes {channels}-channel latents (downscale {ratio}), but "
            f"AnimateLCM-I2V needs the SD1.5 VAE (4 channels, 8× smaller). Connect the VAE output of your SD1.5 "
            f"checkpoint loader.")


def apply_image(model_patcher, image: torch.Tensor, vae, motion_scale: float):
    """A clone of `model_patcher` whose AnimateLCM-I2V motion model animates `image` (first of the batch).
    Applying again replaces the previous image."""
    apps = find_i2v_applications(model_patcher)
    check_vae(vae)
    if image.ndim != 4 or image.shape[0] == 0:
        raise MotionKitError(f"Apply AnimateLCM-I2V Image: expected an IMAGE batch, got a tensor of shape "
                             f"{tuple(image.shape)}. Connect a Load Image node.")
    cond = ImageCondition(image[:1, :, :, :3], vae, model_patcher.get_model_object("latent_format"),
                          motion_scale, apps)

    def encode(noise, executor):  # before ComfyUI loads the UNet, so the VAE can encode the image
        cond.encode(*noise.shape[-2:])

    def release():
        cond.features.clear()  # free them with the run; the encoded latent stays cached

    def diffusion_model(executor, *args, **kwargs):
        x = args[0]
        options = transformer_options_of(args, kwargs)
        frames = frames_in_call(x.shape[0], options)
        features = dict(options.get(IMAGE_FEATURES, {}))
        for app in cond.apps:
            features.update(cond.features_for(app, x, frames))
        options = {**options, IMAGE_FEATURES: features}
        if len(args) > 5:
            args = (*args[:5], options, *args[6:])
        else:
            kwargs["transformer_options"] = options
        return executor(*args, **kwargs)

    return patched_clone(model_patcher, KEY, replace=True, before=encode, after=release, diffusion_model=diffusion_model)
