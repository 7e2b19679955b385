"""Reading CameraCtrl's published files into one layout.

Two layouts exist (MODEL_NOTES.md, CameraCtrl):
* the original release, `CameraCtrl.ckpt` (hehao13/CameraCtrl): a pickled dict {"pose_encoder_state_dict": the
  encoder's 150 tensors (8 of them `pos_encoder.pe` buffers), "attention_processor_state_dict": the 40
  `...attention_blocks.0.processor.qkv_merge.{weight,bias}` tensors, "epoch", "global_step"} (train_camera_control.py
  also wrote "optimizer_state_dict" into its checkpoints; it is ignored);
* AnimateDiff-Evolved's `CameraCtrl_pruned.safetensors` (Kosinkadink/CameraCtrl): the same tensors in one flat
  dict; its loader takes the keys starting with `encoder` and those holding `qkv_merge`.

The internal layout is the flat one without the `pe` buffers (a fixed sinusoid, recomputed): the encoder's own
keys (`encoder_conv_in.weight`, ...) and the merges' full original module paths. `CameraCtrl.state_dict()` holds the
same tensors under `encoder.` and `merges.` (`to_module_keys` / `from_module_keys`).
"""
from __future__ import annotations

import os

import torch

from ..common.errors import WrongFileTypeError
from ..common.weights import read_weights
from .encoder import CHANNELS, CameraCtrl
from .errors import CameraCtrlFileError

ORIGINAL, PRUNED = "original", "pruned"
ENCODER_KEYS, MERGE_KEYS = "pose_encoder_state_dict", "attention_processor_state_dict"
FILES = ("CameraCtrl_pruned.safetensors (Kosinkadink/CameraCtrl on Hugging Face) or the original CameraCtrl.ckpt "
         "(hehao13/CameraCtrl)")


def is_encoder_key(key: str) -> bool:
    return key.startswith("encoder_")


def is_merge_key(key: str) -> bool:
    return ".processor.qkv_merge." in key


def detect_layout(obj) -> str | None:
    """ORIGINAL, PRUNED, or None when the content is not CameraCtrl's."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get(ENCODER_KEYS), dict) and isinstance(obj.get(MERGE_KEYS), dict):
        return ORIGINAL
    keys = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
    if any(is_encoder_key(k) for k in keys) and any(is_merge_key(k) for k in keys):
        return PRUNED
    return None


def expected_shapes(channels=CHANNELS) -> dict[str, tuple]:
    """{internal key: shape} of the published CameraCtrl (built on the meta device); `channels`: for tests."""
    with torch.device("meta"):
        model = CameraCtrl(channels)
    return {from_module_key(k): tuple(v.shape) for k, v in model.state_dict().items()}


def from_module_key(key: str) -> str:
    """CameraCtrl.state_dict() key -> internal key."""
    return key.split(".", 1)[1]


def to_module_keys(sd: dict) -> dict:
    """Internal layout -> CameraCtrl.state_dict() keys."""
    return {(f"encoder.{k}" if is_encoder_key(k) else f"merges.{k}"): v for k, v in sd.items()}


def _what_else(obj, name: str) -> str:
    """What a file that is not CameraCtrl is, in words, with where it goes instead."""
    from ..motion.formats import _KINDS, detect_kind
    if isinstance(obj, dict):
        keys = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
        for wrapper in ("state_dict", "controlnet", "omcm_state_dict"):
            if isinstance(obj.get(wrapper), dict):
                keys = [k for k, v in obj[wrapper].items() if isinstance(v, torch.Tensor)]
        kind = detect_kind(keys)
        if kind is not None:
            what, where = _KINDS[kind]
            return f"'{name}' is {what}, not CameraCtrl. {where}."
    return f"'{name}' is not a CameraCtrl model."


def internal_layout(obj, name: str = "CameraCtrl file", channels=CHANNELS) -> dict[str, torch.Tensor]:
    """The tensors of either published layout in the internal layout, checked against the published shapes
    (`channels`: another width, for tests); other files are refused with what they are."""
    layout = detect_layout(obj)
    if layout is None:
        if isinstance(obj, dict) and (any(is_encoder_key(k) for k in obj) or any(is_merge_key(k) for k in obj)):
            part = "no qkv_merge weights" if any(is_encoder_key(k) for k in obj) else "no camera encoder weights"
            raise CameraCtrlFileError(
                f"'{name}' holds only part of CameraCtrl ({part}); the file is incomplete. Download {FILES} again.")
        raise WrongFileTypeError(f"{_what_else(obj, name)} Here choose {FILES}, in models/animatediff_models.")
    if layout == ORIGINAL:
        flat = {**obj[ENCODER_KEYS], **obj[MERGE_KEYS]}
    else:
        flat = obj
    flat = {(k[len("module."):] if k.startswith("module.") else k): v
            for k, v in flat.items() if isinstance(v, torch.Tensor)}
    flat = {k: v for k, v in flat.items() if not k.endswith(".pos_encoder.pe")}
    shapes = expected_shapes(channels)
    missing = [k for k in shapes if k not in flat]
    wrong = [f"{k} {tuple(flat[k].shape)} (expected {s})" for k, s in shapes.items()
             if k in flat and tuple(flat[k].shape) != s]
    extra = [k for k in flat if k not in shapes]
    if missing or wrong or extra:
        raise CameraCtrlFileError(
            f"'{name}' looks like a CameraCtrl file ({layout} layout) but does not match the published CameraCtrl "
            f"for AnimateDiff v3: " + "; ".join(filter(None, [
                f"missing {len(missing)} weights (e.g. {missing[0]})" if missing else "",
                f"wrong shapes: {', '.join(wrong[:3])}" if wrong else "",
                f"{len(extra)} unknown weights (e.g. {extra[0]})" if extra else ""]))
            + f". It is incomplete or another CameraCtrl (the SVD version is not supported); download {FILES} again.")
    return {k: flat[k] for k in shapes}


def read_cameractrl(path: str) -> dict[str, torch.Tensor]:
    """A CameraCtrl file's tensors in the internal layout."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise CameraCtrlFileError(f"CameraCtrl file '{name}' does not exist. Put {FILES} in "
                                  f"ComfyUI/models/animatediff_models and pick it from the list.")
    obj = read_weights(path, name, CameraCtrlFileError, f"download {FILES}")
    return internal_layout(obj, name)


def build_cameractrl(sd: dict[str, torch.Tensor], name: str = "CameraCtrl", operations=None,
                     attention=None, channels=CHANNELS) -> CameraCtrl:
    """A CameraCtrl with these internal-layout weights in float32, on `operations`' layers (default plain torch)."""
    model = CameraCtrl(channels, operations, attention, name)
    model.load_state_dict({k: v.float() for k, v in to_module_keys(sd).items()}, strict=True)
    return model.eval().requires_grad_(False)


def load_cameractrl(path: str, operations=None, attention=None) -> CameraCtrl:
    return build_cameractrl(read_cameractrl(path), os.path.basename(path), operations, attention)
