"""Reading MotionCtrl's published OMCM file (`motionctrl_animatediff_omcm.ckpt`): a pickled dict
`{"omcm_state_dict": {...}, "epoch", "global_step"}` (keys may carry DDP's `module.` prefix); other files are
refused with what they are."""
from __future__ import annotations

import os

import torch

from ...common.errors import WrongFileTypeError
from ...common.weights import read_weights, tensors
from .errors import OMCMError
from .model import CIN, OMCM, OMCMAdapter, expected_shapes


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
        from ...motion.formats import OMCM as OMCM_KIND, detect_kind, _KINDS
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


def load_omcm(path: str, operations=None) -> OMCM:
    """The adapter with the file's weights in float32, on `operations`' layers (model.py; default plain torch)."""
    weights = read_omcm(path)
    adapter = OMCMAdapter(operations=operations)
    adapter.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    return OMCM(adapter.eval().requires_grad_(False), os.path.basename(path))

