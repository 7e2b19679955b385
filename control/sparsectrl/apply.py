"""SparseCtrl as a CONTROL_NET on ComfyUI core's ControlNet chain (imports ComfyUI lazily, in `control_class`).

The control object is a subclass of core's `comfy.controlnet.ControlNet`, so core's Apply ControlNet sets
its images, strength and start/end percent, chains it with other ControlNets, loads/offloads its model
and merges its residuals into the UNet; only `get_control` (what the encoder is given) is SparseCtrl's:

* the hint images (Apply ControlNet's `image`) go to frames chosen by the KeyframeSettings; the other
  frames get a zero condition and mask 0, the hint frames the condition and mask 1; the noisy latent is
  zeroed inside the encoder (published config);
* RGB: each image is resized to the animation's size, VAE-encoded with the VAE given to Apply ControlNet
  and scaled by SD1.5's latent factor 0.18215 — what the original pipeline does
  (`vae.encode(image * 2 - 1).latent_dist.sample() * 0.18215`; ComfyUI's VAE takes images in 0..1 and
  returns the distribution's mean, the original draws a sample: a difference far below the image's
  own detail). Encoded once per size, not every step. Scribble: the image in 0..1 at 8x the latent size.
* with context windows the handler (sampling.context_handler) tells the control each window's frames
  (`set_context_window`), and the window gets the hints inside it, re-indexed. A window with none gets what
  KeyframeSettings.empty_window says: `no control` returns the previous ControlNet's residuals only (the
  encoder is not run: it would add residuals as large as a keyframe window's), `zero condition` runs it
  with no hint, `nearest hint` gives it one.
"""
from __future__ import annotations

import functools

import torch

from .errors import SparseCtrlError
from .files import build, config_from_state_dict, pe_length, unwrap
from .keyframes import (KeyframeSettings, INDICES, NO_CONTROL, cover_resize, frame_multipliers, hint_frames, place,
                        window_hints)
from .model import RGB, SparseCtrlConfig, SparseCtrlEncoder

SD15_LATENT_SCALE = 0.18215  # the original pipeline's factor (= comfy.latent_formats.SD15.scale_factor)


def check_model(model) -> None:
    """SparseCtrl exists for SD1.5 only: refuse other UNets before any sampling (called from pre_run)."""
    import comfy.latent_formats
    latent = getattr(model, "latent_format", None)
    context = getattr(getattr(model, "model_config", None), "unet_config", {}).get("context_dim")
    if type(latent) is not comfy.latent_formats.SD15 or context not in (None, 768):
        base = type(getattr(model, "model_config", None)).__name__
        raise SparseCtrlError(
            f"SparseCtrl works with SD1.5 models only, but Apply ControlNet's conditioning is sampled with a {base} "
            f"model. Use an SD1.5 checkpoint (with an SD1.5 motion model), or remove the SparseCtrl ControlNet.")


@functools.cache
def control_class():
    import comfy.controlnet
    import comfy.model_management

    class SparseCtrlControl(comfy.controlnet.ControlNet):
        """A core ControlNet whose model is the SparseCtrl encoder and whose images are sparse keyframes."""

        def __init__(self, encoder=None, name: str = "SparseCtrl", frame_limit: int = 32,
                     settings: KeyframeSettings = KeyframeSettings(), load_device=None, manual_cast_dtype=None):
            super().__init__(encoder, load_device=load_device, manual_cast_dtype=manual_cast_dtype, extra_conds=[])
            self.variant = encoder.config.variant if encoder is not None else None
            self.name, self.frame_limit, self.settings = name, frame_limit, settings
            self.window = None        # (frames of this window, frames of the animation) from the context handler
            self.encoded = {}         # RGB: {(h, w): hint latents}; scribble: resized images

        # --- configuration (core's Apply ControlNet calls copy() and set_cond_hint()) ---------------------

        def copy(self):
            c = SparseCtrlControl(None, self.name, self.frame_limit, self.settings, self.load_device, self.manual_cast_dtype)
            c.control_model, c.control_model_wrapped, c.variant = self.control_model, self.control_model_wrapped, self.variant
            self.copy_to(c)
            return c

        def with_settings(self, settings: KeyframeSettings):
            c = self.copy()
            c.settings = settings
            return c

        def set_cond_hint(self, cond_hint, strength=1.0, timestep_percent_range=(0.0, 1.0), vae=None, extra_concat=[]):
            if self.variant == RGB and vae is None:
                raise SparseCtrlError(
                    f"'{self.name}' is RGB SparseCtrl: its keyframe images are VAE-encoded. Connect your checkpoint's "
                    f"VAE to the 'vae' input of Apply ControlNet ('Apply ControlNet (OLD)' has none: use the new one).")
            if self.settings.placement == INDICES and cond_hint is not None and \
                    len(self.settings.indices) != cond_hint.shape[0]:
                hint_frames(self.settings, cond_hint.shape[0], 1 << 30)  # raises: the counts differ
            super().set_cond_hint(cond_hint, strength, timestep_percent_range)
            self.vae = vae if self.variant == RGB else None  # core keeps it only for its own latent formats
            self.encoded = {}
            return self

        def pre_run(self, model, percent_to_timestep_function):
            check_model(model)
            super().pre_run(model, percent_to_timestep_function)

        def cleanup(self):
            self.window = None
            super().cleanup()

        # --- context windows: sampling.context_handler calls this before each window, None after ---------

        def set_context_window(self, index_list, frames):
            self.window = None if index_list is None else (list(index_list), int(frames))

        # --- one UNet call --------------------------------------------------------------------------------

        def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
            control_prev = None
            if self.previous_controlnet is not None:
                control_prev = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number, transformer_options)
            if self.timestep_range is not None and (t[0] > self.timestep_range[0] or t[0] < self.timestep_range[1]):
                return control_prev

            frames = x_noisy.shape[0] // max(batched_number, 1)
            if frames > self.frame_limit:
                raise SparseCtrlError(
                    f"'{self.name}' sees at most {self.frame_limit} frames at a time, the sampler gave it {frames}. Add "
                    f"'Context Windows (Motion)' with context_length {min(16, self.frame_limit)} to the MODEL.")
            window, total = self.window if self.window and len(self.window[0]) == frames else (list(range(frames)), frames)
            pairs = window_hints(hint_frames(self.settings, self.cond_hint_original.shape[0], total), window,
                                 self.settings.empty_window)
            if not pairs and self.settings.empty_window == NO_CONTROL:
                return control_prev  # a window without a keyframe: no guidance at all, the encoder is not run
            images = self.hint_images(x_noisy)

            dtype = self.manual_cast_dtype or self.control_model.dtype
            condition, mask = place(images, pairs, frames)
            hint = torch.cat([condition, mask], dim=1).repeat(batched_number, 1, 1, 1).to(x_noisy.device, dtype)
            context = cond.get("crossattn_controlnet", cond["c_crossattn"])
            timestep = self.model_sampling_current.timestep(t)
            control = self.control_model(
                x=x_noisy.to(dtype), hint=hint, timesteps=timestep.to(dtype),
                context=comfy.model_management.cast_to_device(context, x_noisy.device, dtype),
                frames=frames, motion_scale=self.settings.motion_strength)
            factor = frame_multipliers(pairs, frames, self.settings.hint_multiplier, self.settings.nonhint_multiplier)
            if factor is not None:
                factor = factor.repeat(batched_number).to(x_noisy.device, dtype)[:, None, None, None]
                control = {k: [r * factor for r in v] for k, v in control.items()}
            return self.control_merge(control, control_prev, output_dtype=None)

        def hint_images(self, x_noisy):
            """The hint images as the encoder takes them, at this latent size: latents (RGB) or images (scribble)."""
            h, w = x_noisy.shape[-2:]
            if (h, w) not in self.encoded:
                images = self.cond_hint_original[:, :3]
                if self.variant == RGB:
                    images = cover_resize(images, h * 8, w * 8)
                    loaded = comfy.model_management.loaded_models(only_currently_used=True)
                    latents = self.vae.encode(images.movedim(1, -1))  # 0..1 in, the VAE does *2-1
                    comfy.model_management.load_models_gpu(loaded)
                    images = latents * SD15_LATENT_SCALE
                else:
                    images = cover_resize(images.float(), h * 8, w * 8).clamp(0.0, 1.0)
                self.encoded = {(h, w): images.to(x_noisy.device)}
            return self.encoded[(h, w)]

    return SparseCtrlControl


def comfy_encoder(config: SparseCtrlConfig, sd: dict, name: str):
    """(encoder, load device, manual-cast dtype): the encoder with the file's weights set up as core sets up a
    ControlNet (comfy.controlnet.controlnet_config): stored in ComfyUI's UNet dtype, on the comfy.ops layers picked
    for that dtype. Those layers carry `comfy_cast_weights`, so ComfyUI's model management can load the encoder
    partially in low-VRAM mode and cast weights stored in another dtype (fp8)."""
    import comfy.model_management as mm
    import comfy.ops

    with torch.device("meta"):
        params = sum(p.numel() for p in SparseCtrlEncoder(config).parameters())
    load_device = mm.get_torch_device()
    dtype = mm.unet_dtype(model_params=params)
    manual_cast = mm.unet_manual_cast(dtype, load_device)
    operations = comfy.ops.pick_operations(dtype, manual_cast, disable_fast_fp8=True)
    return build(config, sd, name, operations).to(dtype), load_device, manual_cast


def load_control(sd, name: str):
    """Load SparseCtrl's CONTROL_NET from a raw file dict (files.read_file), its encoder from `comfy_encoder`."""
    sd = unwrap(sd, name)
    encoder, load_device, manual_cast = comfy_encoder(config_from_state_dict(sd, name), sd, name)
    return control_class()(encoder, name, pe_length(sd), KeyframeSettings(), load_device=load_device,
                           manual_cast_dtype=manual_cast)
