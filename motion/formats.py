"""Reading published motion-model files: load, classify, convert to original key names.

Detection follows MOTION_FORMATS.md §5; key conversions §4.5 (Hotshot-XL) and §6 (diffusers).
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass

import torch

from .errors import MotionKitError, WrongFileTypeError
from .image_encoder import build_image_encoder, split_image_encoder
from .model import PER_FRAME, PIA_IN_CHANNELS, POOLED, SD15_CHANNELS, SDXL_CHANNELS, MotionArchitecture
from ..common.weights import read_weights, tensors

LOG = logging.getLogger("MotionKit")
ANIMATELCM_PE_LENGTH = 64  # AnimateLCM stores no PE; its code builds a 64-row table (§4.6)
# PIA (open-mmlab/PIA): conv_in [320, 9, 3, 3] reads noisy latent (4), mask (1), image latent (4)
PIA_CONV_IN = ("conv_in.weight", "conv_in.bias")


@dataclass(frozen=True)
class MotionModelInfo:
    """What a file is, and how the original code ran it."""
    family: str          # e.g. "AnimateDiff v2"
    arch: MotionArchitecture
    max_frames: int      # PE length: frames one pass may hold
    module_norm: str     # GroupNorm inside the motion modules (§7)
    unet_norm: str       # the SD UNet's own resnet / output GroupNorms (§7)
    schedule: str        # key into sampling.schedules.SCHEDULES (§9)
    source_format: str   # "original", "diffusers" or "hotshot"
    has_image_encoder: bool = False  # AnimateLCM-I2V
    pia: bool = False    # PIA: its conv_in takes the image latent and a mask besides the noisy latent (pia/)

    @property
    def base(self) -> str:
        return self.arch.base


# ---------------------------------------------------------------------------------------------
# Reading files

def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or pickled checkpoint (weights-only), wrappers removed."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise MotionKitError(f"Motion model file '{path}' does not exist. Check the file name, or put the file in "
                             f"ComfyUI/models/animatediff_models and pick it from the list.")
    sd = read_weights(path, name, MotionKitError,
                      "download the motion model from its official source, as .safetensors if offered")
    return clean_state_dict(sd, name)


def clean_state_dict(sd, name: str = "state dict") -> dict[str, torch.Tensor]:
    """Unwrap `state_dict` / `controlnet` wrappers and drop non-tensor entries (`animatediff_config`)."""
    if isinstance(sd, dict) and isinstance(sd.get("pose_encoder_state_dict"), dict):  # CameraCtrl's original release:
        sd = {**sd["pose_encoder_state_dict"], **(sd.get("attention_processor_state_dict") or {})}  # so it is named
    return tensors(sd, name, MotionKitError, "Choose a motion model file (e.g. mm_sd_v15_v2.ckpt).")


# ---------------------------------------------------------------------------------------------
# Classification

def key_patterns(keys, limit: int = 8) -> str:
    """'down_blocks.N.attentions.N.…' style summary of the most common key shapes."""
    counts = Counter(re.sub(r"\d+", "N", ".".join(k.split(".")[:4])) for k in keys)
    return ", ".join(f"{p}… ({n})" for p, n in counts.most_common(limit)) or "no tensors at all"


# What a file is, when it is not what a loader wants (§5 steps 2-3, plus the SD files users mix up)
SPARSECTRL, MOTION_LORA, DOMAIN_ADAPTER = "sparsectrl", "motion_lora", "domain_adapter"
SD_LORA, SD_CHECKPOINT, MOTION_MODEL = "sd_lora", "sd_checkpoint", "motion_model"
OMCM = "omcm"  # MotionCtrl's object-motion module; the original T2I-Adapter files have the same key names
CAMERACTRL = "cameractrl"  # CameraCtrl's camera encoder + qkv_merge layers (camera/files.py)

_KINDS = {  # kind: (what it is, which node takes it)
    SPARSECTRL: ("a SparseCtrl model (AnimateDiff v3's sparse control net)",
                 "Load it with 'Load SparseCtrl' (file in models/controlnet) and apply it with core 'Apply ControlNet'"),
    MOTION_LORA: ("a MotionLoRA (camera-motion LoRA)",
                  "Load it with the MotionLoRA loader node ('Load MotionLoRA') and connect that to 'Apply Motion Model'"),
    DOMAIN_ADAPTER: ("the AnimateDiff v3 domain adapter (a LoRA on the SD UNet)",
                     "Apply it to your checkpoint's MODEL with 'Apply Domain Adapter' (or the core 'LoraLoaderModelOnly' node)"),
    SD_LORA: ("a LoRA for the SD model", "Use the core 'Load LoRA' node for it"),
    SD_CHECKPOINT: ("a Stable Diffusion checkpoint", "Load it with 'Load Checkpoint'"),
    MOTION_MODEL: ("a motion model", "Load it with 'Load Motion Model' (file in models/animatediff_models)"),
    OMCM: ("MotionCtrl's object-motion module (OMCM) or a T2I-Adapter",
           "Load an OMCM (motionctrl_animatediff_omcm.ckpt) with 'Load MotionCtrl OMCM' (file in models/motionctrl), "
           "a T2I-Adapter with core 'Load ControlNet Model'"),
    CAMERACTRL: ("CameraCtrl (camera control for AnimateDiff v3)",
                 "Load it with the CameraCtrl loader (file in models/animatediff_models) and apply it to a MODEL that "
                 "has v3_sd15_mm.ckpt applied"),
}


def detect_kind(keys) -> str | None:
    """The kind of file these keys belong to (one of the constants above); None when unrecognised."""
    keys = list(keys)
    joined = "\n".join(keys)
    if "controlnet_cond_embedding" in joined:
        return SPARSECTRL
    if re.search(r"processor\.to_(q|k|v|out)_lora\.", joined):
        return MOTION_LORA if "motion_modules" in joined else DOMAIN_ADAPTER
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_down." in k or ".lora_A." in k for k in keys):
        return SD_LORA
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")) for k in keys):
        return SD_CHECKPOINT
    if any(".processor.qkv_merge." in k or k.startswith("encoder_down_conv_blocks.") for k in keys):
        return CAMERACTRL  # its flat (pruned) file also holds `motion_modules.` keys: test it first
    if any("motion_modules." in k or "temporal_attentions." in k for k in keys):
        return MOTION_MODEL
    if any(k.endswith("conv_in.weight") for k in keys) and any(k.endswith("body.0.block1.weight") for k in keys):
        return OMCM
    return None


def reject_other_kinds(keys, name: str, accept: str, here: str) -> str | None:
    """Refuse a file of a kind other than `accept`, saying what it is and which node takes it.
    `here` says what to choose instead. Returns the detected kind (`accept` or None)."""
    kind = detect_kind(keys)
    if kind is not None and kind != accept:
        what, where = _KINDS[kind]
        raise WrongFileTypeError(f"'{name}' is {what}, not {_KINDS[accept][0]}. {where}; here choose {here}.")
    return kind


def _reject_other_kinds(keys: list[str], name: str) -> None:
    reject_other_kinds(keys, name, MOTION_MODEL, "a motion model such as mm_sd_v15_v2.ckpt or v3_sd15_mm.ckpt")


def _convert_hotshot(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        k = re.sub(r"temporal_attentions\.(\d+)\.", r"motion_modules.\1.temporal_transformer.", k)
        out[k.replace("pos_encoder.positional_encoding", "pos_encoder.pe")] = v
    return out


_DIFFUSERS_RENAMES = [
    (r"\.transformer_blocks\.(\d+)\.attn1\.", r".transformer_blocks.\1.attention_blocks.0."),
    (r"\.transformer_blocks\.(\d+)\.attn2\.", r".transformer_blocks.\1.attention_blocks.1."),
    (r"\.transformer_blocks\.(\d+)\.norm1\.", r".transformer_blocks.\1.norms.0."),
    (r"\.transformer_blocks\.(\d+)\.norm2\.", r".transformer_blocks.\1.norms.1."),
    (r"\.transformer_blocks\.(\d+)\.norm3\.", r".transformer_blocks.\1.ff_norm."),
]


def _convert_diffusers(sd: dict) -> tuple[dict, int | None]:
    """diffusers MotionAdapter → original names; returns the dict and the stored PE length."""
    out, pe_length = {}, None
    for k, v in sd.items():
        if k.endswith("pos_embed.pe"):  # one shared table per block; only its length matters
            pe_length = v.shape[1]
            continue
        k = re.sub(r"motion_modules\.(\d+)\.", r"motion_modules.\1.temporal_transformer.", k)
        for pattern, repl in _DIFFUSERS_RENAMES:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out, pe_length


def _architecture(sd: dict, name: str) -> MotionArchitecture:
    down = {int(m.group(1)) for k in sd if (m := re.match(r"down_blocks\.(\d+)\.motion_modules\.", k))}
    if not down:
        raise MotionKitError(f"'{name}' has motion-module keys but no down_blocks; the file is incomplete. Download it again.")
    levels = max(down) + 1
    channels = {4: SD15_CHANNELS, 3: SDXL_CHANNELS}.get(levels)
    if channels is None:
        raise MotionKitError(f"'{name}' has {levels} down blocks of motion modules; only SD1.5 (4) and SDXL (3) layouts exist. "
                             f"Choose an AnimateDiff-family motion model file.")
    width = sd.get("down_blocks.0.motion_modules.0.temporal_transformer.norm.weight")
    if width is not None and width.shape[0] != 320:
        raise MotionKitError(f"'{name}': first motion module has {width.shape[0]} channels, expected 320. "
                             f"Choose an AnimateDiff-family motion model file.")
    attention_blocks = 1 + max(
        (int(m.group(1)) for k in sd if (m := re.search(r"\.attention_blocks\.(\d+)\.", k))), default=-1)
    if not attention_blocks:
        raise MotionKitError(f"'{name}' has motion modules without attention weights; the file is incomplete. Download it again.")
    return MotionArchitecture(channels, any(k.startswith("mid_block.motion_modules.") for k in sd), attention_blocks)


def classify(sd: dict[str, torch.Tensor], name: str = "state dict") -> tuple[MotionModelInfo, dict[str, torch.Tensor]]:
    """Identify a motion-model state dict; return its info and the weights under original key names (no PE)."""
    keys = list(sd)
    _reject_other_kinds(keys, name)
    has_image_encoder = any(k.startswith("img_encoder.") for k in keys)

    if any("temporal_attentions." in k for k in keys) and any("pos_encoder.positional_encoding" in k for k in keys):
        source, sd = "hotshot", _convert_hotshot(sd)
        diffusers_pe = None
    elif any("motion_modules" in k and "temporal_transformer" not in k and (".attn1." in k or ".norm1." in k) for k in keys):
        source, (sd, diffusers_pe) = "diffusers", _convert_diffusers(sd)
    else:
        source, diffusers_pe = "original", None

    motion = {k: v for k, v in sd.items() if ".motion_modules." in k and ".temporal_transformer." in k}
    if not motion:
        raise MotionKitError(
            f"'{name}' is not a motion model in any format MotionKit knows (AnimateDiff v1/v2/v3, SDXL beta, "
            f"Hotshot-XL, AnimateLCM, AnimateDiff-Lightning, PIA). Key patterns seen: {key_patterns(keys)}. "
            f"Choose a motion model file (e.g. mm_sd_v15_v2.ckpt) instead.")
    arch = _architecture(motion, name)
    is_pia = _is_pia(sd, arch, name)
    pe = [v for k, v in motion.items() if k.endswith("pos_encoder.pe")]
    weights = {k: v for k, v in motion.items() if not k.endswith("pos_encoder.pe")}
    pe_length = pe[0].shape[1] if pe else diffusers_pe

    if arch.base == "SDXL":
        if pe_length is None:
            raise MotionKitError(f"'{name}' stores no positional encoding; no known SDXL motion model looks like this. "
                                 f"Choose mm_sdxl_v10_beta.ckpt or hsxl_temporal_layers.safetensors.")
        if source == "hotshot":
            info = ("Hotshot-XL", PER_FRAME, POOLED, "linear (HotshotXL/default)")
        else:
            info = ("AnimateDiff-SDXL beta", POOLED, PER_FRAME, "linear (AnimateDiff-SDXL)")
    elif pe_length is None:
        if not arch.has_mid:
            raise MotionKitError(f"'{name}' stores no positional encoding and has no mid block; no known SD1.5 "
                                 f"motion model looks like this. Key patterns seen: {key_patterns(keys)}. "
                                 f"Choose a motion model file (e.g. v3_sd15_mm.ckpt) instead.")
        pe_length = ANIMATELCM_PE_LENGTH
        info = (("AnimateLCM-I2V", PER_FRAME, PER_FRAME, "lcm (AnimateLCM-I2V)") if has_image_encoder
                else ("AnimateLCM", PER_FRAME, PER_FRAME, "lcm (AnimateLCM)"))  # §4.7/§9: i2v betas end 0.014, 200 steps
    elif is_pia:
        # PIA's UNet (animatediff/models/resnet.py) runs plain GroupNorm on (b, c, f, h, w): the resnet and output
        # norms pool over frames; its motion modules normalise per frame (rearranged to (b f) first)
        info = ("PIA", PER_FRAME, POOLED, "sqrt_linear (AnimateDiff)")
    elif arch.has_mid:
        info = ("AnimateDiff v2", PER_FRAME, PER_FRAME, "sqrt_linear (AnimateDiff)")
    elif pe_length == 24:
        info = ("AnimateDiff v1", PER_FRAME, POOLED, "sqrt_linear (AnimateDiff)")
    else:
        info = ("AnimateDiff v3", PER_FRAME, PER_FRAME, "sqrt_linear (AnimateDiff)")
    if source == "diffusers":
        info = (info[0] + " (diffusers format)",) + info[1:]
    family, module_norm, unet_norm, schedule = info
    if is_pia:
        weights.update({k: sd[k] for k in PIA_CONV_IN})
    return (MotionModelInfo(family, arch, int(pe_length), module_norm, unet_norm, schedule, source, has_image_encoder,
                            pia=is_pia), weights)


def _is_pia(sd: dict, arch: MotionArchitecture, name: str) -> bool:
    """PIA files: the whole flat UNet (pia.ckpt, diffusers key names) or AnimateDiff-Evolved's pruned copy (the
    temporal keys and conv_in); both hold `conv_in.weight` [320, 9, 3, 3] and `conv_in.bias`."""
    weight = sd.get(PIA_CONV_IN[0])
    if weight is None:
        return False
    if PIA_CONV_IN[1] not in sd:
        raise MotionKitError(f"'{name}' has conv_in.weight but no conv_in.bias; a PIA file holds both. The file is "
                             f"incomplete: download pia.ckpt again.")
    if weight.ndim != 4 or weight.shape[1] != PIA_IN_CHANNELS or weight.shape[0] != arch.block_channels[0]:
        raise MotionKitError(
            f"'{name}' has a conv_in of shape {tuple(weight.shape)}; a PIA file's is [{arch.block_channels[0]}, "
            f"{PIA_IN_CHANNELS}, 3, 3] (noisy latent 4 + mask 1 + image latent 4). MotionKit knows no other motion "
            f"model with a conv_in: choose pia.ckpt, or a motion model without one.")
    if arch.base != "SD1.5":
        raise MotionKitError(f"'{name}' has PIA's conv_in but {arch.base} motion modules; PIA exists for SD1.5 only. "
                             f"Download pia.ckpt again.")
    return True


LOAD_STAGES = 3  # read the file, detect its format, build the model: `progress` is called after each


def load_motion_model(path: str, name: str | None = None, progress=None, operations=None, attention=None):
    """Read, classify and build a MotionModel (weights kept in the file's dtype).

    `progress`: called with no arguments after each of the LOAD_STAGES stages (for a progress bar).
    `operations` / `attention`: the layers and attention function (motion.model; default plain torch)."""
    from .model import MotionModel

    step = progress or (lambda: None)
    name = name or os.path.basename(path)
    sd = read_state_dict(path)
    step()
    info, weights = classify(sd, name)
    step()
    model = build_motion_model(info, weights, name, operations, attention)
    if info.has_image_encoder:  # AnimateLCM-I2V (§4.7): the image encoder rides along as model.img_encoder
        model.img_encoder = build_image_encoder(split_image_encoder(sd), name)
    step()
    LOG.info(describe_loaded(name, info, model))
    return model, info


def describe_loaded(name: str, info: MotionModelInfo, model) -> str:
    """The one log line of a loaded motion model: what was detected, so a wrong file is seen at once."""
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    extra = ", with image encoder" if info.has_image_encoder else ", with image input (conv_in)" if info.pia else ""
    fmt = "" if info.source_format == "original" else f", {info.source_format} key names"
    return (f"MotionKit: loaded motion model {name}: {info.family} for {info.base}, PE length {info.max_frames} "
            f"frames, schedule {info.schedule}, weights {dtype}{fmt}{extra}")


def build_motion_model(info: MotionModelInfo, weights: dict, name: str = "state dict", operations=None, attention=None):
    from .model import MotionModel

    with torch.device("meta"):
        model = MotionModel(info.arch, operations, attention, pia_conv_in=info.pia)
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    if missing:
        raise MotionKitError(
            f"'{name}' looks like {info.family} but is missing {len(missing)} of {len(expected)} weights "
            f"(e.g. {missing[0]}); the file is incomplete. Download it again.")
    wrong = [k for k, v in expected.items() if weights[k].shape != v.shape]
    if wrong:
        k = wrong[0]
        raise MotionKitError(
            f"'{name}': weight {k} has shape {tuple(weights[k].shape)}, expected {tuple(expected[k].shape)} "
            f"for {info.family}; the file is not a supported motion model. Choose an AnimateDiff-family motion "
            f"model file, or download this one again.")
    model.load_state_dict({k: weights[k] for k in expected}, strict=True, assign=True)
    return model.eval().requires_grad_(False)
