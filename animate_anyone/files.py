"""Reading Moore-AnimateAnyone's four published files (pretrained_weights/*.pth, pickled weights only).

What each holds (inventories from the original classes: src/models/unet_2d_condition.py,
unet_3d.py, pose_guider.py; stage-1/2 training saves `model.state_dict()`):
* denoising_unet.pth: the UNet3DConditionModel without motion modules = SD1.5's diffusers UNet keys
  (686 tensors; the "3D" convs/norms are 2D modules applied per frame, same names and shapes).
* reference_unet.pth: the same UNet as a UNet2DConditionModel whose output layers were removed
  (`conv_norm_out = None`, conv_out commented out): 682 tensors, no conv_norm_out.* / conv_out.*.
* motion_module.pth: the `motion_module` keys of the stage-2 UNet3D: AnimateDiff v2's layout exactly
  (588 tensors: down, mid and up motion modules, positional encoding of 32 frames).
* pose_guider.pth: the PoseGuider (16 tensors, see pose_guider.py).
ComfyUI's own diffusers -> ldm conversion loads both UNets (comfy.sd.load_diffusion_model_state_dict).
"""
from __future__ import annotations

import os

import torch

from .errors import AnimateAnyoneError

from ..common import weights
from ..motion.formats import build_motion_model, classify

FOLDER = "animate_anyone"  # ComfyUI/models/animate_anyone
FILES = {  # role -> published file name
    "denoising_unet": "denoising_unet.pth",
    "reference_unet": "reference_unet.pth",
    "pose_guider": "pose_guider.pth",
    "motion_module": "motion_module.pth",
}
WHERE = f"ComfyUI/models/{FOLDER}"
OUTPUT_LAYERS = ("conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias")


def read_weights(path: str, role: str) -> dict[str, torch.Tensor]:
    """The tensors of a .pth/.ckpt (torch.load weights-only, memory-mapped when possible) or .safetensors."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise AnimateAnyoneError(f"Animate Anyone's {role} file '{path}' does not exist. Put {FILES[role]} from "
                                 f"Moore-AnimateAnyone's pretrained_weights in {WHERE} and pick it in the list.")
    sd = weights.read_weights(path, name, AnimateAnyoneError,
                              f"download {FILES[role]} from Moore-AnimateAnyone's pretrained weights", mmap=True,
                              redownload=f"download {FILES[role]} again")
    return weights.tensors(sd, name, AnimateAnyoneError, f"Choose {FILES[role]} for the {role} input.",
                           wrappers=("state_dict",))


def kind_of(sd: dict) -> str:
    """What a state dict looks like: the four Animate Anyone parts, or something else a user might pick."""
    keys = list(sd)
    if any(k.startswith("model.diffusion_model.") for k in keys) or any(
            k.startswith(("first_stage_model.", "cond_stage_model.", "conditioner.")) for k in keys):
        return "sd_checkpoint"
    if any(".motion_modules." in k for k in keys):
        return "motion_module" if not any(".resnets." in k for k in keys) else "unet_with_motion"
    if "conv_in.weight" in sd and any(k.startswith("blocks.") for k in keys) and not any(".resnets." in k for k in keys):
        return "pose_guider"
    if any(k.startswith("down_blocks.") and ".resnets." in k for k in keys):
        return "denoising_unet" if "conv_out.weight" in sd else "reference_unet"
    if any(k.startswith(("input_blocks.", "diffusion_model.input_blocks.")) for k in keys):
        return "ldm_unet"
    if any("lora" in k for k in keys):
        return "lora"
    return "unknown"


DESCRIBE = {
    "sd_checkpoint": "a full Stable Diffusion checkpoint (UNet, VAE and text encoder)",
    "ldm_unet": "a UNet in the original SD (ldm) layout, not Animate Anyone's diffusers-layout UNet",
    "unet_with_motion": "a UNet with motion modules in it",
    "motion_module": "a motion module (motion_module.pth)",
    "pose_guider": "the pose guider (pose_guider.pth)",
    "denoising_unet": "a full UNet with output layers (denoising_unet.pth)",
    "reference_unet": "the reference UNet (reference_unet.pth: no output layers)",
    "lora": "a LoRA",
    "unknown": "not a file of Animate Anyone",
}


# the loader input each Animate Anyone file belongs in, by what its keys say it is
SLOT = {"denoising_unet": "denoising_unet", "unet_with_motion": "denoising_unet", "reference_unet": "reference_unet",
        "pose_guider": "pose_guider", "motion_module": "motion_module"}


def check_kind(sd: dict, name: str, role: str) -> None:
    kind = kind_of(sd)
    # a denoising UNet saved with its motion modules (stage 2) also works: they are taken from motion_module.pth.
    # The reference slot takes only the ReferenceNet (no output layers): a UNet with conv_out is denoising_unet.pth,
    # whose weights differ from the ReferenceNet's although every key fits, so it would run and animate wrongly.
    ok = {"denoising_unet": ("denoising_unet", "unet_with_motion"), "reference_unet": ("reference_unet",),
          "pose_guider": ("pose_guider",), "motion_module": ("motion_module", "unet_with_motion")}[role]
    if kind in ok:
        return
    hint = ""
    if kind == "sd_checkpoint" and role in ("denoising_unet", "reference_unet"):
        hint = (" Animate Anyone needs its own trained UNets, not an SD checkpoint: they were fine-tuned to read "
                "the reference image and the poses.")
    elif kind in SLOT:
        hint = f" It belongs in the {SLOT[kind]} input of Load Animate Anyone."
    raise AnimateAnyoneError(
        f"'{name}' was given as Animate Anyone's {role} but it is {DESCRIBE[kind]}.{hint} Choose {FILES[role]} "
        f"(from Moore-AnimateAnyone's pretrained_weights, in {WHERE}).")


def check_sd15_unet(sd: dict, name: str, role: str) -> None:
    """The shapes that make it the SD1.5 UNet Animate Anyone uses (768-wide cross-attention: CLIP ViT-L)."""
    expect = {"conv_in.weight": (320, 4, 3, 3),
              "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": (320, 768),
              "mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight": (1280, 1280)}
    for k, shape in expect.items():
        if k not in sd:
            raise AnimateAnyoneError(f"'{name}' (Animate Anyone's {role}) lacks {k}; the file is incomplete or not "
                                     f"{FILES[role]}. Download it again into {WHERE}.")
        if tuple(sd[k].shape) != shape:
            raise AnimateAnyoneError(f"'{name}' (Animate Anyone's {role}): {k} has shape {tuple(sd[k].shape)}, "
                                     f"expected {shape} (an SD1.5 UNet); this is not {FILES[role]}.")


def load_unet(sd: dict, name: str, role: str):
    """A ComfyUI ModelPatcher of the SD1.5 UNet in `sd` (diffusers keys), converted by ComfyUI core.
    Imports ComfyUI."""
    import comfy.model_detection
    import comfy.sd
    import comfy.utils

    check_kind(sd, name, role)
    check_sd15_unet(sd, name, role)
    sd = {k: v for k, v in sd.items() if ".motion_modules." not in k}
    if role == "reference_unet" and "conv_out.weight" not in sd:
        # the ReferenceNet's output is never used (only its attention inputs are): identity norm and a zero
        # conv make ComfyUI's SD1.5 UNet complete and well defined
        sd |= {"conv_norm_out.weight": torch.ones(320), "conv_norm_out.bias": torch.zeros(320),
               "conv_out.weight": torch.zeros(4, 320, 3, 3), "conv_out.bias": torch.zeros(4)}
    unet_config = comfy.model_detection.unet_config_from_diffusers_unet(sd)
    if unet_config is None:
        raise AnimateAnyoneError(f"'{name}' (Animate Anyone's {role}): its UNet layout is not recognised; the file is "
                                 f"incomplete or not {FILES[role]}. Download it again into {WHERE}.")
    # core's diffusers -> ComfyUI key map (a superset: optional keys of every UNet kind), applied to the keys this
    # file has; core's loader then detects and builds its SD1.5 UNet from them, as for an ldm UNet file (given the
    # diffusers keys it would log each optional key it does not find)
    names = comfy.utils.unet_to_diffusers(unet_config)
    patcher = comfy.sd.load_diffusion_model_state_dict({names[k]: v for k, v in sd.items() if k in names})
    unet = patcher.model.diffusion_model if patcher is not None else None
    if unet is None or getattr(unet, "model_channels", None) != 320 or len(unet.channel_mult) != 4:
        raise AnimateAnyoneError(f"'{name}' (Animate Anyone's {role}) did not load as an SD1.5 UNet; this is not "
                                 f"{FILES[role]}.")
    own = set(unet.state_dict())
    missing = sorted(k for k, v in names.items() if v in own and k not in sd)
    if missing:
        raise AnimateAnyoneError(f"'{name}' (Animate Anyone's {role}) lacks {len(missing)} weights of the SD1.5 UNet "
                                 f"(e.g. {missing[0]}); the file is incomplete or not {FILES[role]}. Download it again "
                                 f"into {WHERE}.")
    return patcher


def load_motion_module(sd: dict, name: str):
    """MotionKit's motion model from motion_module.pth (checked to be AnimateDiff v2's layout)."""
    check_kind(sd, name, "motion_module")
    info, weights = classify({k: v for k, v in sd.items() if ".motion_modules." in k}, name)
    if info.family != "AnimateDiff v2" or info.max_frames != 32:
        raise AnimateAnyoneError(f"'{name}' is a motion model of the {info.family} layout ({info.max_frames} "
                                 f"frames), but Animate Anyone's motion_module.pth has AnimateDiff v2's (32 frames). "
                                 f"Choose motion_module.pth from Moore-AnimateAnyone's pretrained_weights.")
    return build_motion_model(info, weights, name), info
