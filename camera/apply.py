"""CameraCtrl during sampling: camera features into the motion modules of a MODEL that has an AnimateDiff motion
model applied (motion.injection).

Per UNet call (a DIFFUSION_MODEL wrapper, on a ModelPatcher clone; the input MODEL is left as it was):
* the call's frames (the context window's, else all) take their poses; the Plücker embedding is made at the
  latent's size × 8 relative to the first of them (as AnimateDiff-Evolved: a window starts at its own frame 0;
  the original renders one 16-frame pass, where the two agree), and the camera encoder turns it into 4 features;
* every cond/uncond chunk gets the same features (the original's `torch.cat([x, x])` under guidance);
* a strength mask (strength × mask per pixel and frame, AnimateDiff-Evolved's cameractrl_multival with a mask) is
  resized to each motion module's size and its frames taken as ADE does (motion.regional.MotionMask: bilinear, the
  last mask frame held, the window's frames), the same in every chunk; a call whose frames are all black runs
  without the camera (bit-identical to no CameraCtrl);
* they reach the motion layers in transformer_options (motion.injection.ATTENTION_INPUTS), which run
  camera.merge.CameraInput inside the first attention block of every down and up motion module.
Features are cached per sampling run (they depend on the frames and size only) and freed when it ends.

Imports ComfyUI lazily.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..common.patch import patched_clone
from ..common.unet_call import frames_in_call, in_sigma_range, transformer_options_of, window_frames
from ..motion.injection import ATTENTION_INPUTS, applications
from ..motion.regional import MotionMask, log_mask_notes
from .encoder import CameraCtrl, ENCODER_MAX_FRAMES
from .errors import CameraCtrlFileError, CameraPoseError
from .merge import camera_inputs, check_motion_model, pixel_strength
from .plucker import plucker_embedding
from .poses import CameraPoses

LOG = logging.getLogger("MotionKit")
KEY = "motionkit_cameractrl"


@dataclass
class CameraRun:
    camera: CameraCtrl
    poses: CameraPoses
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    start_sigma: float = float("inf")
    end_sigma: float = 0.0
    pad: bool = False
    apps: list = field(default_factory=list)
    fitted: CameraPoses | None = None  # the poses for the animation's frames
    cache: dict = field(default_factory=dict)  # (frames, h, w, device, dtype) -> [4 features, F rows each]
    warned_size: bool = False
    mask: MotionMask | None = None  # strength × strength_mask (None: `strength` everywhere)

    def features(self, frames: list[int], height: int, width: int, device, dtype) -> list[torch.Tensor]:
        key = (tuple(frames), height, width, str(device), dtype)
        if key not in self.cache:
            poses = self.fitted or self.poses
            window = CameraPoses(tuple(poses.poses[i] for i in frames), poses.source_width, poses.source_height,
                                 poses.name)
            plucker = plucker_embedding(window, width * 8, height * 8)
            w = next(self.camera.encoder.parameters())
            with torch.no_grad():
                feats = self.camera.encoder(plucker.to(device, w.dtype), len(frames))
            sizes = unet_sizes(height, width, len(feats))
            if any(f.shape[-2:] != s for f, s in zip(feats, sizes)):
                if not self.warned_size:
                    self.warned_size = True
                    LOG.warning("CameraCtrl: the image size is not a multiple of 64, so the camera features are "
                                "resized to the UNet's; use sizes that are multiples of 64 for exact placement.")
                feats = [f if f.shape[-2:] == s else F.interpolate(f, size=s, mode="bilinear", align_corners=False)
                         for f, s in zip(feats, sizes)]
            self.cache[key] = [f.to(device, dtype) for f in feats]
        return self.cache[key]


    def acts_on(self, frames: list[int]) -> bool:
        """Whether the camera acts on any of these frames (a strength mask may be black on all of them)."""
        if self.mask is None:
            return self.strength != 0
        return bool(self.mask.mask[[min(f, self.mask.frames - 1) for f in frames]].any())

    def strengths(self, frames: list[int], features: list[torch.Tensor], chunks: int, like: torch.Tensor):
        """The call's strength: the number, or with a mask one pixel_strength per feature (at its size)."""
        if self.mask is None:
            return self.strength
        key = ("strength", tuple(frames), tuple(f.shape[-2:] for f in features), chunks, str(like.device), like.dtype)
        if key not in self.cache:
            self.cache[key] = [pixel_strength(self.mask.at(frames, *f.shape[-2:], like), chunks) for f in features]
        return self.cache[key]


def strength_mask(mask: torch.Tensor | None, strength: float) -> MotionMask | None:
    """strength × mask as ADE's MultivalDynamic makes it (the product first, then resized per motion module)."""
    if mask is None:
        return None
    checked = MotionMask(mask, "strength_mask")  # shape and values checked, with the input's name
    return checked if strength == 1.0 else MotionMask(checked.mask * strength, "strength_mask")


def unet_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """The UNet's (h, w) per level: ComfyUI's stride-2 downsamplers round up."""
    sizes = [(height, width)]
    for _ in range(levels - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def find_applications(model_patcher, name: str) -> list:
    apps = applications(model_patcher)
    if not apps:
        raise CameraCtrlFileError(
            f"CameraCtrl '{name}': this MODEL has no motion model. Apply v3_sd15_mm.ckpt with 'Apply Motion Model' "
            f"first and connect that MODEL here.")
    return apps


_warned_models: set = set()


def warn_if_not_v3(camera_name: str, app) -> None:
    """CameraCtrl was trained with AnimateDiff v3 (SD1.5); another SD1.5 motion model runs, with one warning per
    motion model file."""
    family = getattr(app.info, "family", "")
    if family.startswith("AnimateDiff v3") or app.name in _warned_models:
        return
    _warned_models.add(app.name)
    LOG.warning("CameraCtrl '%s' was trained with AnimateDiff v3 (v3_sd15_mm.ckpt); the motion model '%s' is %s, "
                "so the camera may be followed loosely or not at all.", camera_name, app.name, family or "another model")


def apply_camera(model_patcher, camera: CameraCtrl, poses: CameraPoses, strength: float = 1.0,
                 start_percent: float = 0.0, end_percent: float = 1.0, pad: bool = False, mask=None):
    """A clone of `model_patcher` whose motion models follow the camera `poses` (one per frame; `pad`: repeat the
    last pose when there are fewer than frames, else that is an error). `mask` (a MASK [frames or 1, H, W], None =
    everywhere): the strength per pixel and frame is strength × mask."""
    import comfy.model_management
    import comfy.model_patcher

    if start_percent > end_percent:
        raise CameraPoseError(f"CameraCtrl: start_percent ({start_percent}) is after end_percent ({end_percent}); "
                              f"the camera would never act.")
    apps = find_applications(model_patcher, camera.name)
    for app in apps:
        check_motion_model(camera, app.motion_model)
        warn_if_not_v3(camera.name, app)
    run = CameraRun(camera, poses, strength, start_percent, end_percent, pad=pad, apps=apps,
                    mask=strength_mask(mask, strength))
    camera_patcher = comfy.model_patcher.ModelPatcher(
        camera, load_device=model_patcher.load_device, offload_device=comfy.model_management.unet_offload_device())

    def fit(noise, executor):
        frames = noise.shape[0]
        run.fitted = poses.for_frames(frames, pad)
        run.cache.clear()
        log_mask_notes(run.mask, "Apply CameraCtrl", noise)
        handler = executor.class_obj.model_options.get("context_handler")
        length = min(getattr(handler, "context_length", None) or frames, frames)
        if length > ENCODER_MAX_FRAMES:
            raise CameraPoseError(
                f"CameraCtrl's camera encoder takes at most {ENCODER_MAX_FRAMES} frames at once, but sampling gives it "
                f"{length}. Render {ENCODER_MAX_FRAMES} frames or fewer, or add context windows with a context length "
                f"of {ENCODER_MAX_FRAMES}.")

    def release():
        run.cache.clear()

    def diffusion_model(executor, *args, **kwargs):
        options = transformer_options_of(args, kwargs)
        if strength == 0 or not in_sigma_range(run, options):
            return executor(*args, **kwargs)
        x = args[0]
        frames = frames_in_call(x.shape[0], options)
        indices = window_frames(options, frames) or list(range(frames))
        if not run.acts_on(indices):
            return executor(*args, **kwargs)  # the strength mask is black on all these frames
        features = run.features(indices, x.shape[-2], x.shape[-1], x.device, x.dtype)
        chunks = x.shape[0] // frames
        strengths = run.strengths(indices, features, chunks, x)
        features = [f.repeat(chunks, 1, 1, 1) for f in features]
        inputs = dict(options.get(ATTENTION_INPUTS, {}))
        for app in run.apps:
            inputs.update(camera_inputs(camera, app.motion_model, features, frames, strengths))
        options = {**options, ATTENTION_INPUTS: inputs}
        if len(args) > 5:
            args = (*args[:5], options, *args[6:])
        else:
            kwargs["transformer_options"] = options
        return executor(*args, **kwargs)

    return patched_clone(model_patcher, KEY, replace=True, additional_models=[camera_patcher], percent_range=run,
                         before=fit, after=release, diffusion_model=diffusion_model)
