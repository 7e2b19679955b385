"""Tora under ComfyUI: its modules loaded with the CogVideoX transformer, and a drawn trajectory guiding sampling.

What Tora's pipeline does at each run (diffusers-version/inference.py, MODEL_NOTES.md), and where it happens here:
* the trajectory becomes Tora's blurred flow and its colour video (flow.py), at the animation's frames and size;
* the VAE encodes that video; the pipeline SAMPLES the latent distribution with its generator (seeded with the run's
  seed, before the initial noise is drawn) and scales it by the VAE's scaling factor (0.7): done in an OUTER_SAMPLE
  wrapper, which knows the latent's shape and the seed;
* the extractor turns those latents into one feature set per block, and each block's fuser modulates the video
  tokens after norm1: the transformer's "cogvideox_video_tokens" patch point (cogvideox/model.py).
strength scales the fuser's change of the tokens (1 = Tora's); outside start/end percent the tokens pass unchanged.

Image to video (Tora's I2V checkpoint with 'CogVideoX Image to Video'): Tora's i2v_pipeline.py draws the start
image's latent from the generator first, then encodes the flow video SAMPLING WITHOUT the generator (torch's global
random state), then draws the noise. Here the flow latents are still drawn from a generator seeded with the seed (the
image's sample is drawn the same way, cogvideox/comfy_model.py), so they are other numbers than that pipeline's, which
are not reproducible from its seed alone; the noise and the scheduler's draws are the pipeline's (draw order I2V).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from ..cogvideox.latent_size import video_size
from ..cogvideox.model import VIDEO_TOKENS_PATCH
from ..cogvideox.vae import CogVideoXVAE
from ..common.patch import new_key, patched_clone
from ..common.unet_call import in_sigma_range
from ..trajectory.encoding import Trajectory, fit
from .errors import ToraError
from .files import build_tora
from .flow import flow_images, tora_flow
from .model import ToraGuidance, ToraModules

LOG = logging.getLogger("MotionKit")

MODULES_KEY = "motionkit_tora_modules"  # additional model of a Tora MODEL: its extractor and fusers
TRAINED = (49, 720, 480)  # frames, width, height of Tora's training and inference


def attach_modules(model_patcher, tora_sd: dict, source: str, operations=None) -> None:
    """Tora's extractor and fusers (the file's traj_extractor.* / fuser.* weights) as an additional model of the
    transformer's ModelPatcher: ComfyUI loads and offloads them with it. They are kept in the transformer's compute
    dtype (700M parameters; fp8-stored transformer weights are computed in bf16 or fp16 anyway)."""
    import comfy.model_patcher

    model = model_patcher.model
    dtype = model.manual_cast_dtype or model.get_dtype()
    modules = build_tora(tora_sd, source, operations=operations, dtype=dtype)
    patcher = comfy.model_patcher.ModelPatcher(modules, load_device=model_patcher.load_device,
                                               offload_device=model_patcher.offload_device)
    model_patcher.set_additional_models(MODULES_KEY, [patcher])


def load_model(path: str, source: str, dtype=None):
    """The CogVideoX-5B transformer of a diffusers folder or single file as a ComfyUI MODEL; a Tora transformer's
    extractor and fusers come with it (attach_modules). The file is read once."""
    import comfy.ops

    from ..cogvideox.comfy_model import cogvideox_patcher
    from ..cogvideox.files import load_cogvideox_files

    config, state_dict, tora_sd = load_cogvideox_files(path)
    patcher = cogvideox_patcher(config, state_dict, dtype=dtype)
    if tora_sd:  # comfy.ops layers: in low-VRAM mode ComfyUI loads them partly and casts the rest per layer
        attach_modules(patcher, tora_sd, source, comfy.ops.disable_weight_init)
    return patcher


def modules_of(model_patcher) -> ToraModules:
    found = model_patcher.get_additional_models_with_key(MODULES_KEY)
    if not found:
        raise ToraError("Apply Tora Trajectory: this MODEL has no Tora modules. Load Tora's transformer with "
                        "'Load CogVideoX / Tora' (a plain CogVideoX-5B transformer cannot follow a trajectory).")
    return found[0].model


@dataclass
class ToraRun:
    """One application: the modules, the artist's trajectory and settings, and what each run computes."""
    modules: ToraModules
    trajectory: Trajectory
    vae: object  # cogvideox.comfy_vae.ComfyCogVideoXVAE
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    start_sigma: float = float("inf")
    end_sigma: float = 0.0
    image_to_video: bool = False  # the transformer takes a start image (Tora's I2V)
    guidance: ToraGuidance | None = None
    moments: dict = field(default_factory=dict)  # (frames, width, height) -> the flow video's (mean, logvar)

    def flow(self, frames: int, width: int, height: int) -> torch.Tensor:
        """[frames, height, width, 2]: Tora's flow of the drawn paths, or a video's flow fitted to the animation."""
        traj = self.trajectory
        if traj.paths:
            if (frames, width, height) != (traj.frames, traj.width, traj.height):
                LOG.warning(f"Tora: the trajectory was made for {traj.describe()}, the video has {frames} frames at "
                            f"{width}x{height}; its paths are encoded again at that size. Set the Trajectory node's "
                            f"frames/width/height to the video's to see exactly what is used.")
            return tora_flow(traj.paths, frames, width, height, canvas=(traj.width, traj.height))
        return fit(traj, frames, width, height, user="Tora").flow

    def flow_latents(self, latent_shape, seed: int) -> torch.Tensor:
        """The pipeline's first draw from the run's generator: a sample of the flow video's latent distribution,
        scaled for the transformer."""
        size = video_size(latent_shape)
        if size not in self.moments:
            if size != TRAINED:
                LOG.warning(f"Tora: this video is {size[0]} frames at {size[1]}x{size[2]}; Tora was trained on "
                            f"{TRAINED[0]} frames at {TRAINED[1]}x{TRAINED[2]} and follows paths best there.")
            self.moments.clear()
            self.moments[size] = self.vae.encode_distribution(flow_images(self.flow(*size)))
        mean, logvar = self.moments[size]
        # drawn in float32, as the noise and the sampler draw (cogvideox/sampler.py): the pipeline's order in fp32;
        # Tora's own inference runs in bf16, whose draws are other numbers
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        if self.image_to_video:  # the seed's first draw is the start image's sample (cogvideox/comfy_model.py); Tora's
            b, c, _, h, w = latent_shape  # i2v pipeline draws its flow latents unseeded: here they follow that draw
            torch.randn((1, c, 1, h, w), generator=generator)
        return CogVideoXVAE.sample(mean.float(), logvar.float(), generator) * self.vae.config.scaling_factor

    def patch(self, h: torch.Tensor, info: dict) -> torch.Tensor:
        if self.guidance is None or self.strength == 0 or not in_sigma_range(self, info["transformer_options"]):
            return h
        fused = self.guidance(h, info)
        return fused if self.strength == 1 else h + self.strength * (fused - h)


def apply_tora(model_patcher, trajectory: Trajectory, vae, strength: float = 1.0, start_percent: float = 0.0,
               end_percent: float = 1.0):
    """A clone of a Tora MODEL that follows `trajectory` (see the module's doc)."""
    if start_percent > end_percent:
        raise ToraError(f"Apply Tora Trajectory: start_percent ({start_percent}) is after end_percent "
                        f"({end_percent}); set start_percent below end_percent.")
    run = ToraRun(modules_of(model_patcher), trajectory, vae, strength, start_percent, end_percent)
    config = model_patcher.model.diffusion_model.config
    run.image_to_video = config.in_channels > config.out_channels

    def outer_sample(executor, *args, **kwargs):
        noise = args[0]
        seed = args[7] if len(args) > 7 else kwargs.get("seed")
        if noise.ndim != 5 or noise.shape[1] != run.modules.config.latent_channels:
            raise ToraError(f"Apply Tora Trajectory: the latent is {list(noise.shape)}, not a CogVideoX video latent "
                            f"[batch, 16, frames, height, width]; start from 'Empty CogVideoX Latent'.")
        try:
            run.guidance = ToraGuidance(run.modules, run.flow_latents(noise.shape, seed or 0))
            return executor(*args, **kwargs)
        finally:
            run.guidance = None  # its features live on the GPU: freed even when sampling fails

    def patch(h, info):  # a function, not the bound method: ModelPatcher.clone deep-copies model_options, and
        return run.patch(h, info)  # would copy the run (modules, VAE) with a method, but keeps functions as they are

    m = patched_clone(model_patcher, new_key("tora"), percent_range=run, outer_sample=outer_sample)
    m.set_model_patch(patch, VIDEO_TOKENS_PATCH)
    return m
