"""SparseCtrl's published files: reading, the variant (RGB or scribble), the config, and the encoder with the
file's weights; clear refusals for other files."""
from __future__ import annotations

import os

import torch

from ...common.errors import WrongFileTypeError
from ...common.weights import read_weights, tensors
from ...motion.formats import _KINDS, detect_kind
from .errors import SparseCtrlError
from .model import CONTEXT_DIM, RGB, SCRIBBLE, SD15_CHANNELS, SparseCtrlConfig, SparseCtrlEncoder

PE_LENGTH = 32  # stored PE length of both published files: the most frames one pass holds


def read_file(path: str) -> dict:
    """A .safetensors or pickled .ckpt (weights only) as a raw dict (wrappers still on)."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise SparseCtrlError(f"SparseCtrl file '{path}' does not exist. Put v3_sd15_sparsectrl_rgb.ckpt or "
                              f"v3_sd15_sparsectrl_scribble.ckpt in ComfyUI/models/controlnet and pick it from the list.")
    # animatediff_config (an OmegaConf/dict) rides along in the published pickles; weights_only refuses code
    return read_weights(path, name, SparseCtrlError, "download the SparseCtrl file from its official source "
                                                     "(guoyww/animatediff), or a .safetensors conversion of it")


def unwrap(sd, name: str) -> dict[str, torch.Tensor]:
    """Tensors of a SparseCtrl file: the `controlnet` wrapper removed, `animatediff_config` and other non-tensors dropped."""
    return tensors(sd, name, SparseCtrlError, "Choose v3_sd15_sparsectrl_rgb.ckpt or v3_sd15_sparsectrl_scribble.ckpt.",
                   wrappers=("controlnet", "state_dict"))


def detect_variant(sd: dict, name: str) -> str:
    """RGB or SCRIBBLE from the condition-embedding keys (as diffusers does); a clear error for other files."""
    keys = list(sd)
    controlnet_like = any(k.startswith(("control_model.", "input_hint_block.", "zero_convs.", "controlnet_cond_embedding",
                                        "controlnet_down_blocks.")) for k in keys)
    if controlnet_like and not any(".motion_modules." in k for k in keys):
        raise WrongFileTypeError(
            f"'{name}' is an ordinary ControlNet (it has no motion modules), not SparseCtrl. Load it with core "
            f"'Load ControlNet Model'; here choose v3_sd15_sparsectrl_rgb.ckpt or v3_sd15_sparsectrl_scribble.ckpt.")
    if "controlnet_cond_embedding.weight" in sd:
        return RGB
    if "controlnet_cond_embedding.conv_in.weight" in sd:
        return SCRIBBLE
    kind = detect_kind(keys)
    if kind is not None:
        what, where = _KINDS[kind]
        raise WrongFileTypeError(f"'{name}' is {what}, not a SparseCtrl model. {where}; here choose "
                                 f"v3_sd15_sparsectrl_rgb.ckpt or v3_sd15_sparsectrl_scribble.ckpt.")
    raise WrongFileTypeError(f"'{name}' is not a SparseCtrl model (it has no controlnet_cond_embedding weights). "
                             f"Choose v3_sd15_sparsectrl_rgb.ckpt or v3_sd15_sparsectrl_scribble.ckpt.")


def config_from_state_dict(sd: dict, name: str) -> SparseCtrlConfig:
    variant = detect_variant(sd, name)
    to_k = sd.get("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight")
    conv_in = sd.get("conv_in.weight")
    if to_k is None or conv_in is None:
        raise SparseCtrlError(f"'{name}' looks like SparseCtrl ({variant}) but lacks its encoder weights "
                              f"(conv_in / down_blocks.0 attention); the file is incomplete. Download it again.")
    if to_k.shape[1] != CONTEXT_DIM or conv_in.shape[0] != SD15_CHANNELS[0]:
        raise SparseCtrlError(
            f"'{name}' is a SparseCtrl-like model for text embeddings of width {to_k.shape[1]} (SD1.5 has 768): only "
            f"the SD1.5 SparseCtrl models (v3_sd15_sparsectrl_rgb/scribble) exist and are supported.")
    return SparseCtrlConfig(variant)


def build(config: SparseCtrlConfig, sd: dict, name: str = "state dict", operations=None) -> SparseCtrlEncoder:
    """The encoder with the file's weights (kept in their dtype, not copied), on `operations`' layers (model.py;
    default plain torch). Stored PE tables are dropped: they equal the recomputed sinusoid table, their length (32)
    is the frame limit."""
    with torch.device("meta"):
        model = SparseCtrlEncoder(config, operations)
    expected = model.state_dict()
    weights = {k: v for k, v in sd.items() if not k.endswith("pos_encoder.pe")}
    missing = [k for k in expected if k not in weights]
    if missing:
        raise SparseCtrlError(f"'{name}' looks like SparseCtrl ({config.variant}) but is missing {len(missing)} of "
                              f"{len(expected)} weights (e.g. {missing[0]}); the file is incomplete. Download it again.")
    wrong = [k for k, v in expected.items() if weights[k].shape != v.shape]
    if wrong:
        k = wrong[0]
        raise SparseCtrlError(f"'{name}': weight {k} has shape {tuple(weights[k].shape)}, expected "
                              f"{tuple(expected[k].shape)} for SparseCtrl ({config.variant}); the file is not a "
                              f"published SparseCtrl model. Download v3_sd15_sparsectrl_{config.variant}.ckpt again.")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise SparseCtrlError(f"'{name}' has {len(extra)} weights SparseCtrl does not have (e.g. {extra[0]}); it is "
                              f"not a published SparseCtrl model. Choose v3_sd15_sparsectrl_rgb/scribble.ckpt.")
    model.load_state_dict({k: weights[k] for k in expected}, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def pe_length(sd: dict) -> int:
    lengths = {v.shape[1] for k, v in sd.items() if k.endswith("pos_encoder.pe") and v.ndim == 3}
    return max(lengths) if lengths else PE_LENGTH


def load_state_dict(sd, name: str = "state dict", operations=None) -> tuple[SparseCtrlEncoder, int]:
    """(encoder, frame limit) from a raw file dict."""
    sd = unwrap(sd, name)
    config = config_from_state_dict(sd, name)
    return build(config, sd, name, operations), pe_length(sd)


def load_file(path: str, name: str | None = None) -> tuple[SparseCtrlEncoder, int]:
    name = name or os.path.basename(path)
    return load_state_dict(read_file(path), name)
