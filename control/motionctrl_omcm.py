"""MotionCtrl's object-motion control module (OMCM) for AnimateDiff: trajectory flow -> UNet features.

Published as `motionctrl_animatediff_omcm.ckpt` (TencentARC/MotionCtrl, AnimateDiff branch, trained with
v3_sd15_mm): a pickled dict `{"omcm_state_dict": {...}, "epoch", "global_step"}` (keys may carry DDP's
`module.` prefix). The module is a T2I-Adapter-style encoder (motionctrl/adapter.py `Adapter` with the
configs' channels [320, 640, 1280, 1280], nums_rb 2, cin 128 = 2 x 8 x 8, sk True, use_conv False):

    flow [2, H, W] --pixel-unshuffle 8--> [128, H/8, W/8] --conv_in--> 320
    level i (0..3): (avg-pool 2 if i > 0), nums_rb residual blocks (the first one maps to channels[i]) -> feature i

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
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..common.errors import MotionKitError, WrongFileTypeError
from ..common.weights import read_weights, tensors
from ..common.patch import new_key, patched_clone
from ..common.unet_call import in_sigma_range
from ..common.unet_call import window_frames as context_window_frames
from ..trajectory.encoding import DENSE, KERNEL_SUM, Trajectory, fit

LOG = logging.getLogger("MotionKit")

CHANNELS = (320, 640, 1280, 1280)
NUMS_RB = 2
CIN = 2 * 8 * 8
UNSHUFFLE = 8
USED_FEATURES = 3  # features added to down blocks 0-2 (see module docstring)
INPUT_BLOCK_OF_FEATURE = {2: 0, 5: 1, 8: 2}  # ComfyUI SD1.5 input block -> feature index
DEFAULT_END_PERCENT = 0.3  # omcm_min_step 700 of 1000 timesteps


class OMCMError(MotionKitError):
    """An OMCM file that cannot be used, or OMCM settings/inputs that cannot work."""


class ResBlock(nn.Module):
    """Residual block: optional 2x average pool, optional 3x3 conv to the new width, conv-relu-conv + skip."""

    def __init__(self, c_in: int, c_out: int, down: bool):
        super().__init__()
        self.down = down
        self.in_conv = nn.Conv2d(c_in, c_out, 3, 1, 1) if c_in != c_out else None
        self.block1 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.block2 = nn.Conv2d(c_out, c_out, 3, 1, 1)

    def forward(self, x):
        if self.down:
            x = F.avg_pool2d(x, 2)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(F.relu(self.block1(x)))


class OMCMAdapter(nn.Module):
    def __init__(self, channels=CHANNELS, nums_rb: int = NUMS_RB, cin: int = CIN):
        super().__init__()
        self.channels, self.nums_rb = tuple(channels), nums_rb
        self.conv_in = nn.Conv2d(cin, channels[0], 3, 1, 1)
        self.body = nn.ModuleList(
            ResBlock(channels[max(i - 1, 0)] if j == 0 else channels[i], channels[i], down=(i > 0 and j == 0))
            for i in range(len(channels)) for j in range(nums_rb))

    def forward(self, flow: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
        """flow [N, 2, H, W] (H, W multiples of 8) -> features [N, channels[i], H/8/2^i, W/8/2^i]."""
        x = rearrange(flow, "n c (h a) (w b) -> n (c a b) h w", a=UNSHUFFLE, b=UNSHUFFLE)
        x = self.conv_in(x)
        features = []
        for i in range(levels or len(self.channels)):
            for block in self.body[i * self.nums_rb:(i + 1) * self.nums_rb]:
                x = block(x)
            features.append(x)
        return features


def expected_shapes() -> dict[str, tuple]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in OMCMAdapter().state_dict().items()}


# ---------------------------------------------------------------------------------------------
# Reading the file

def _unwrap(obj, name: str) -> dict:
    return tensors(obj, name, OMCMError, "Choose motionctrl_animatediff_omcm.ckpt (TencentARC/MotionCtrl).",
                   wrappers=("omcm_state_dict", "state_dict"), strip_prefix="module.")


def is_omcm(sd: dict) -> bool:
    """What other loaders use to recognise the OMCM file (keys already unwrapped, see `_unwrap`)."""
    w = sd.get("conv_in.weight")
    return isinstance(w, torch.Tensor) and w.ndim == 4 and w.shape[1] == CIN and "body.0.block1.weight" in sd


def classify_omcm(sd: dict, name: str) -> dict:
    """The weights of an OMCM file, or an error that says what the file is instead."""
    if not is_omcm(sd):
        from_kind = None
        from ..motion.formats import OMCM as OMCM_KIND, detect_kind, _KINDS
        kind = detect_kind(sd.keys())
        w = sd.get("conv_in.weight")
        if kind is not None and kind != OMCM_KIND:
            what, where = _KINDS[kind]
            from_kind = f"'{name}' is {what}, not MotionCtrl's object-motion module. {where}."
        elif isinstance(w, torch.Tensor) and "body.0.block1.weight" in sd:
            from_kind = (f"'{name}' is a T2I-Adapter (its input has {w.shape[1]} channels, an OMCM's has {CIN}). "
                         f"Load it with core 'Load ControlNet Model'.")
        raise WrongFileTypeError(
            (from_kind or f"'{name}' is not MotionCtrl's object-motion module (OMCM).") +
            " Here choose motionctrl_animatediff_omcm.ckpt (TencentARC/MotionCtrl on Hugging Face), in "
            "models/motionctrl.")
    shapes = expected_shapes()
    missing = [k for k in shapes if k not in sd]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {s})" for k, s in shapes.items() if k in sd and tuple(sd[k].shape) != s]
    extra = [k for k in sd if k not in shapes]
    if missing or wrong or extra:
        raise OMCMError(
            f"'{name}' looks like an OMCM file but does not match MotionCtrl's AnimateDiff OMCM: "
            + "; ".join(filter(None, [f"missing {len(missing)} weights (e.g. {missing[0]})" if missing else "",
                                      f"wrong shapes: {', '.join(wrong[:3])}" if wrong else "",
                                      f"{len(extra)} unknown weights (e.g. {extra[0]})" if extra else ""]))
            + ". The file is incomplete or of another MotionCtrl variant; download motionctrl_animatediff_omcm.ckpt again.")
    return {k: sd[k] for k in shapes}


def read_omcm(path: str) -> dict:
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise OMCMError(f"OMCM file '{path}' does not exist. Put motionctrl_animatediff_omcm.ckpt in "
                        f"ComfyUI/models/motionctrl and pick it from the list.")
    obj = read_weights(path, name, OMCMError, "download motionctrl_animatediff_omcm.ckpt from TencentARC/MotionCtrl")
    return classify_omcm(_unwrap(obj, name), name)


def load_omcm(path: str) -> "OMCM":
    weights = read_omcm(path)
    adapter = OMCMAdapter()
    adapter.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    return OMCM(adapter.eval().requires_grad_(False), os.path.basename(path))


@dataclass
class OMCM:
    adapter: OMCMAdapter
    name: str


# ---------------------------------------------------------------------------------------------
# Applying it during sampling

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
            flow = adapter_input(traj, frames).to(w.device, w.dtype)
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


def warn_motion_model(model_patcher, name: str) -> None:
    """The OMCM was trained with AnimateDiff v3; say so when the MODEL carries another motion model."""
    from ..motion.injection import applications
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
