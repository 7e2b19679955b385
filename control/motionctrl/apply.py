"""MotionCtrl OMCM during sampling: its features (model.py) added to ComfyUI's UNet.

How it is used (motionctrl/modified_modules.py, scripts/motionctrl_animate.py, the animation pipeline):
* features are computed once per frame from the flow (frames as batch); with classifier-free guidance the
  unconditional half gets the features of an all-zero flow (the pipeline feeds cat([zeros, flow]));
* feature i is added to the hidden state at the end of down block i (after its last resnet, attention and
  motion module, before the downsampler), replacing that block's last skip output as well. Only the
  cross-attention down blocks receive them, so only features 0-2 act (the 4th level is computed and unused);
* only while the DDPM timestep is >= omcm_min_step = 700 (the first ~30% of sampling).
* the drawn trajectory maps are blurred with a *sum*-normalised Gaussian (motionctrl/data, gradio utils);
  MotionKit's TRAJECTORY is peak-normalised (Tora), so sparse flow is divided by KERNEL_SUM here. Dense
  optical flow (MotionCtrl's video-flow mode) is fed as measured.

In ComfyUI's UNet the end of down block i is input block 2, 5, 8 (each block of two resnets and a
downsampler), and `input_block_patch` runs right there, before the skip output is stored.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ...common.patch import new_key, patched_clone
from ...common.unet_call import in_sigma_range
from ...common.unet_call import window_frames as context_window_frames
from ...trajectory.encoding import DENSE, KERNEL_SUM, Trajectory, fit
from .errors import OMCMError
from .model import OMCM

LOG = logging.getLogger("MotionKit")

USED_FEATURES = 3  # features added to down blocks 0-2 (see module docstring)
INPUT_BLOCK_OF_FEATURE = {2: 0, 5: 1, 8: 2}  # ComfyUI SD1.5 input block -> feature index
DEFAULT_END_PERCENT = 0.3  # omcm_min_step 700 of 1000 timesteps


def adapter_input(traj: Trajectory, frames: list[int]) -> torch.Tensor:
    """[len(frames), 2, H, W]: the trajectory's flow as the OMCM was trained on it."""
    flow = traj.flow[frames].permute(0, 3, 1, 2)
    return flow if traj.kind == DENSE else flow / KERNEL_SUM


def window_frames(transformer_options: dict, frames: int, total: int) -> list[int]:
    """The animation's frames in this UNet call: the context window's (sampling.context_handler, the windows
    the conds are sliced to), else all of them."""
    window = context_window_frames(transformer_options, frames)
    if window is not None:
        return window
    if frames != total:
        raise OMCMError(f"MotionCtrl OMCM: the UNet got {frames} frames but the trajectory has {total} and no context "
                        f"window says which; use the latent batch size as the frame count.")
    return list(range(frames))


@dataclass
class OMCMRun:
    """One application: the adapter, the artist's trajectory and settings, and per-run state."""
    omcm: OMCM
    trajectory: Trajectory
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = DEFAULT_END_PERCENT
    start_sigma: float = float("inf")
    end_sigma: float = 0.0
    fitted: Trajectory | None = None  # the trajectory at the animation's frame count and size
    cache: dict = field(default_factory=dict)  # (frames, device, dtype) -> (cond features, zero-flow features)
    warned_size: bool = False

    def active(self, transformer_options: dict) -> bool:
        return in_sigma_range(self, transformer_options)

    def features(self, frames: list[int], device, dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        key = (tuple(frames), str(device), dtype)
        if key not in self.cache:
            traj = self.fitted or self.trajectory
            adapter = self.omcm.adapter
            w = next(adapter.parameters())
            # on the UNet's device, where the adapter is loaded with it: when ComfyUI loads the adapter partially,
            # the layers left on the offload device cast their weights to the input's device per call
            flow = adapter_input(traj, frames).to(device, w.dtype)
            with torch.no_grad():
                cond = adapter(flow, USED_FEATURES)
                zero = adapter(torch.zeros_like(flow[:1]), USED_FEATURES)  # per-frame: one zero frame serves all
            self.cache[key] = ([f.to(device, dtype) for f in cond], [f.to(device, dtype) for f in zero])
        return self.cache[key]

    def patch(self, h: torch.Tensor, transformer_options: dict) -> torch.Tensor:
        block = transformer_options.get("block")
        if not block or block[0] != "input" or block[1] not in INPUT_BLOCK_OF_FEATURE:
            return h
        if self.strength == 0 or not self.active(transformer_options):
            return h
        level = INPUT_BLOCK_OF_FEATURE[block[1]]
        chunks = transformer_options.get("cond_or_uncond") or [0]
        per_chunk = h.shape[0] // len(chunks)
        traj = self.fitted or self.trajectory
        cond, zero = self.features(window_frames(transformer_options, per_chunk, traj.frames), h.device, h.dtype)
        rows = [cond[level] if c == 0 else zero[level].expand(per_chunk, -1, -1, -1) for c in chunks]
        feature = torch.cat(rows)
        if feature.shape[-2:] != h.shape[-2:]:  # sizes not a multiple of 64: the UNet rounds up, the adapter down
            if not self.warned_size:
                self.warned_size = True
                LOG.warning(f"MotionCtrl OMCM: the image size is not a multiple of 64, so the trajectory features "
                            f"({tuple(feature.shape[-2:])}) are resized to the UNet's ({tuple(h.shape[-2:])}). "
                            f"Use sizes that are multiples of 64 for exact placement.")
            feature = F.interpolate(feature, size=h.shape[-2:], mode="bilinear", align_corners=False)
        return h + self.strength * feature


def comfy_operations():
    """The adapter's layers under ComfyUI (Load MotionCtrl OMCM): comfy.ops, the variant core picks for weights stored
    in the dtype they compute in (comfy.ops.pick_operations: the adapter is float32 and runs in float32). Its layers
    carry `comfy_cast_weights`, so ComfyUI's model management can load the adapter partially in low-VRAM mode (the
    UNet's additional model) and cast weights stored in another dtype."""
    import comfy.ops

    return comfy.ops.disable_weight_init


def warn_motion_model(model_patcher, name: str) -> None:
    """The OMCM was trained with AnimateDiff v3; say so when the MODEL carries another motion model."""
    from ...motion.injection import applications
    apps = applications(model_patcher)
    families = [a.info.family for a in apps]
    if not apps:
        LOG.warning(f"MotionCtrl OMCM '{name}': the MODEL has no motion model; apply v3_sd15_mm.ckpt with "
                    f"'Apply Motion Model' before this node, or the frames will not move together.")
    elif not any(f == "AnimateDiff v3" for f in families):
        LOG.warning(f"MotionCtrl OMCM '{name}' was trained with AnimateDiff v3 (v3_sd15_mm.ckpt); this MODEL has "
                    f"{', '.join(families)}. It runs, but expect weaker or wrong path following; use v3_sd15_mm.ckpt.")


def apply_omcm(model_patcher, omcm: OMCM, trajectory: Trajectory, strength: float = 1.0,
               start_percent: float = 0.0, end_percent: float = DEFAULT_END_PERCENT):
    """A clone of `model_patcher` whose UNet gets the OMCM features; the input MODEL is left as it was."""
    import comfy.model_management
    import comfy.model_patcher

    if start_percent > end_percent:
        raise OMCMError(f"MotionCtrl OMCM: start_percent ({start_percent}) is after end_percent ({end_percent}); "
                        f"the control would never act. The original acts from 0.0 to {DEFAULT_END_PERCENT}.")
    if strength == 0:
        return model_patcher.clone()  # no control: exactly the input MODEL
    warn_motion_model(model_patcher, omcm.name)
    run = OMCMRun(omcm, trajectory, strength, start_percent, end_percent)
    adapter_patcher = comfy.model_patcher.ModelPatcher(
        omcm.adapter, load_device=model_patcher.load_device, offload_device=comfy.model_management.unet_offload_device())

    def fit_to(noise, executor):
        frames, height, width = noise.shape[0], noise.shape[-2] * 8, noise.shape[-1] * 8
        run.fitted = fit(trajectory, frames, width, height, "MotionCtrl OMCM")
        run.cache.clear()

    def release():
        run.cache.clear()  # features hold device memory; the flow is small and stays

    # the adapter loads and offloads with the UNet
    m = patched_clone(model_patcher, new_key("omcm"), additional_models=[adapter_patcher], percent_range=run,
                      before=fit_to, after=release)
    m.set_model_input_block_patch(run.patch)
    return m
