"""PIA on a ComfyUI MODEL: the UNet reads the image latent and a per-frame mask beside the noisy latent.

What the original does (open-mmlab/PIA, animatediff/pipelines/i2v_pipeline.py, models/unet.py):
* conv_in takes 9 channels: `cat([noisy latent, mask, image latent × 0.18215])`; every frame gets the same image
  latent and its own mask value (pia.presets); classifier-free guidance gives cond and uncond the same mask and
  latent (`torch.cat([mask] * 2)`).
* With a personalised checkpoint (every published example config sets a DreamBooth model) conv_in's first 4 input
  channels and its bias are the checkpoint's, the last 5 are pia.ckpt's (`build_pipeline`: `unet_ckpt["conv_in.weight"]
  [:, 4:]`). In ComfyUI the artist's checkpoint is that model.

Here, on a ModelPatcher clone, official extension points only:
* a weight patch of `diffusion_model.input_blocks.0.0.weight`: core's "diff" patch with `pad_weight`
  (comfy/lora.py) zero-pads the checkpoint's [320, 4, 3, 3] weight to [320, 9, 3, 3] and adds pia.ckpt's channels
  4-8 (channels 0-3 of the diff are zero): exactly the original's concatenated weight; unpatching restores it;
* OUTER_SAMPLE wrapper: VAE-encodes the image at the latent's size before the UNet is loaded (cached per size);
* DIFFUSION_MODEL wrapper: appends [mask, image latent] to the UNet input for the frames of this call (the context
  window's, when sampling in windows; every cond/uncond chunk the same), as core's c_concat would be appended.
  Outside the PIA motion model's start/end percent both are zero: with the padded weight that is exactly the
  checkpoint's own conv_in, i.e. plain SD.

Imports ComfyUI lazily.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import repeat

from .errors import PIAError
from .presets import MotionStrength
from ..common.patch import patched_clone
from ..common.unet_call import frames_in_call, in_sigma_range, transformer_options_of, window_frames
from ..motion.image_conditioning import EncodedImage
from ..motion.injection import MotionApplication, applications, unet_description
from ..motion.model import PIA_IN_CHANNELS

KEY = "motionkit_pia"
CONV_IN = "diffusion_model.input_blocks.0.0.weight"
LATENT_CHANNELS = 4
PIA_FILE = "pia.ckpt"


def find_pia_application(model_patcher) -> MotionApplication:
    """The PIA motion model applied to this MODEL, or an error that says how to get one."""
    apps = applications(model_patcher)
    pia = [a for a in apps if a.info.pia]
    if pia:
        return pia[-1]
    kind = unet_description(model_patcher.get_model_object("diffusion_model"))
    if kind != "SD1.5":
        raise PIAError(f"Apply PIA Image: the MODEL is {kind}, but PIA exists for SD1.5 only. Load an SD1.5 "
                       f"checkpoint, apply {PIA_FILE} to it with 'Apply Motion Model', and connect that MODEL here.")
    if apps:
        names = ", ".join(f"'{a.name}' ({a.info.family})" for a in apps)
        raise PIAError(f"Apply PIA Image: the motion model in this MODEL, {names}, is not PIA, so it cannot animate "
                       f"an image this way. In 'Load Motion Model' choose {PIA_FILE} instead.")
    raise PIAError(f"Apply PIA Image: this MODEL has no motion model. Connect 'Load Motion Model' ({PIA_FILE}) → "
                   f"'Apply Motion Model' → this node's model input.")


def check_vae(vae) -> None:
    channels = getattr(vae, "latent_channels", None)
    ratio = getattr(vae, "downscale_ratio", None)
    if channels != LATENT_CHANNELS or ratio != 8:
        raise PIAError(f"Apply PIA Image: this VAE makes {channels}-channel latents (downscale {ratio}), but PIA needs "
                       f"the SD1.5 VAE (4 channels, 8× smaller). Connect the VAE output of your SD1.5 checkpoint "
                       f"loader.")


def conv_in_diff(pia_weight: torch.Tensor) -> torch.Tensor:
    """The weight patch: zero for the checkpoint's 4 latent channels, PIA's own for mask and image latent."""
    diff = torch.zeros_like(pia_weight, dtype=torch.float32)
    diff[:, LATENT_CHANNELS:] = pia_weight[:, LATENT_CHANNELS:].float()
    return diff


def unpatched_weight(m) -> torch.Tensor:
    """The UNet's conv_in weight as the checkpoint has it. ComfyUI keeps the last sampled MODEL loaded with its weight
    patches applied, so after a PIA run the live weight is the widened one; the original is in the patcher's backup
    (shared by its clones; ModelPatcher.get_key_patches reads it the same way)."""
    backup = m.backup.get(CONV_IN)
    return backup.weight if backup is not None else m.get_model_object(CONV_IN)


def add_conv_in_patch(m, pia_weight: torch.Tensor) -> None:
    """Widen the UNet's conv_in to PIA's 9 input channels on the clone `m` (see the module doc)."""
    if any(isinstance(p[1], tuple) and len(p[1]) == 2 and isinstance(p[1][1], tuple) and len(p[1][1]) > 1
           and isinstance(p[1][1][1], dict) and p[1][1][1].get(KEY) for p in m.patches.get(CONV_IN, [])):
        raise PIAError("Apply PIA Image: this MODEL already animates a PIA image. Use one 'Apply PIA Image' per "
                       "MODEL (connect it to the MODEL from 'Apply Motion Model', not to another Apply PIA Image).")
    weight = unpatched_weight(m)
    if tuple(weight.shape[2:]) != (3, 3) or weight.shape[1] != LATENT_CHANNELS or weight.shape[0] != pia_weight.shape[0]:
        raise PIAError(f"Apply PIA Image: the MODEL's input conv has shape {tuple(weight.shape)}, but PIA widens an "
                       f"SD1.5 UNet's [{pia_weight.shape[0]}, 4, 3, 3] one. Use a plain SD1.5 checkpoint (not an "
                       f"inpainting or other special model).")
    added = m.add_patches({CONV_IN: ("diff", (conv_in_diff(pia_weight), {"pad_weight": True, KEY: True}))}, 1.0, 1.0)
    if not added:
        raise PIAError("Apply PIA Image: ComfyUI did not accept the input-conv patch; this MODEL has no SD UNet input "
                       "conv at diffusion_model.input_blocks.0.0.")


@dataclass
class ImageInput(EncodedImage):
    """The image and its motion strength; what the UNet gets beside the noisy latent."""
    NODE, ERROR = "Apply PIA Image", PIAError
    image: torch.Tensor          # (1, H, W, 3) in [0, 1]
    vae: object                  # comfy.sd.VAE
    latent_format: object        # the MODEL's (process_in: × 0.18215 for SD1.5)
    strength: MotionStrength
    app: MotionApplication       # the PIA motion model: its start/end percent
    latents: dict = field(default_factory=dict)   # (h, w) -> scaled image latent (1, 4, h, w), on the CPU
    total_frames: int = 0        # the animation's length, from the latent batch when sampling starts

    def concat(self, x: torch.Tensor, transformer_options: dict) -> torch.Tensor:
        """[mask, image latent] for every row of x (B·F, 4, h, w): what PIA's conv_in reads after the noisy latent."""
        rows, _, height, width = x.shape
        frames = frames_in_call(rows, transformer_options)
        indices = window_frames(transformer_options, frames) or list(range(frames))
        total = max(self.total_frames, max(indices) + 1)
        mask = self.strength.mask(indices, total, height, width)
        latent = self.image_latent(height, width).expand(frames, -1, -1, -1)
        extra = torch.cat([mask, latent], dim=1).to(device=x.device, dtype=x.dtype)
        if not in_sigma_range(self.app.settings, transformer_options):
            extra = torch.zeros_like(extra)  # the padded weight then gives the checkpoint's own conv_in
        return repeat(extra, "f c h w -> (n f) c h w", n=rows // frames)


def apply_pia_image(model_patcher, image: torch.Tensor, vae, strength: MotionStrength):
    """A clone of `model_patcher` (which has pia.ckpt applied by Apply Motion Model) that animates `image` (the first
    of the batch) with `strength`. The input MODEL is left as it was."""
    app = find_pia_application(model_patcher)
    check_vae(vae)
    if image.ndim != 4 or image.shape[0] == 0:
        raise PIAError(f"Apply PIA Image: expected an IMAGE batch, got a tensor of shape {tuple(image.shape)}. "
                       f"Connect a Load Image node.")
    conv_in = app.motion_model.conv_in
    if conv_in is None or conv_in.weight.shape[1] != PIA_IN_CHANNELS:
        raise PIAError(f"Apply PIA Image: '{app.name}' has no PIA input conv; load {PIA_FILE} again.")
    cond = ImageInput(image[:1, :, :, :3], vae, model_patcher.get_model_object("latent_format"), strength, app)

    def encode(noise, executor):  # before ComfyUI loads the UNet, so the VAE can encode the image
        cond.total_frames = noise.shape[0]
        strength.mask_values([0], cond.total_frames)  # a cond frame outside the animation fails now, not mid-run
        cond.encode(*noise.shape[-2:])

    def diffusion_model(executor, *args, **kwargs):
        x = args[0]
        if x.shape[1] != LATENT_CHANNELS:
            raise PIAError(f"Apply PIA Image: the UNet input already has {x.shape[1]} channels (another node adds "
                           f"a c_concat, e.g. an inpainting conditioning); PIA needs the plain 4-channel latent. "
                           f"Remove the other image/inpaint conditioning.")
        options = transformer_options_of(args, kwargs)
        x = torch.cat([x, cond.concat(x, options)], dim=1)
        return executor(x, *args[1:], **kwargs)

    m = patched_clone(model_patcher, KEY, replace=True, before=encode, diffusion_model=diffusion_model)
    add_conv_in_patch(m, conv_in.weight.detach().to("cpu"))
    return m
