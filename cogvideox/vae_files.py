"""Reading the published CogVideoX VAE: diffusers' `vae/` folder (config.json + diffusion_pytorch_model.safetensors,
as in THUDM/CogVideoX-5b and Alibaba's Tora diffusers weights) or one .safetensors file with the same keys
(the folder's file renamed, as ComfyUI users keep VAEs in models/vae).

The file's keys are diffusers' AutoencoderKLCogVideoX keys unchanged (436 tensors for CogVideoX-2B/5B). Without a
config.json the widths and depths come from the tensors' shapes; what the tensors cannot tell (group count, time
ratio, scaling factor) is the published value. Files of other kinds are refused saying what they are.
"""
from __future__ import annotations

import os
from dataclasses import fields

import torch

from ..common import weights
from .vae import CogVideoXVAE, VAEConfig
from .errors import CogVideoXVAEError, NotCogVideoXVAEError
from .files import read_config

CLASS_NAME = "AutoencoderKLCogVideoX"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
SOURCE = ("use the `vae` folder of the diffusers-format CogVideoX-5B (THUDM/CogVideoX-5b) or Tora weights, or its "
          "diffusion_pytorch_model.safetensors")
PROBE = "encoder.conv_in.conv.weight"  # a 5-D causal conv: the CogVideoX (diffusers) layout


def vae_folder(path: str) -> str | None:
    """The folder holding the VAE's config.json and weights: `path` itself, or its `vae/` (a whole model folder)."""
    for folder in (path, os.path.join(path, "vae")):
        if os.path.isfile(os.path.join(folder, "config.json")):
            return folder
    return None


def read_vae(path: str, scaling_factor: float | None = None) -> tuple[VAEConfig, dict[str, torch.Tensor]]:
    """The config and tensors of a CogVideoX VAE folder or file, checked against the layout the config describes.
    `scaling_factor` overrides the config's (a lone file has none: 0.7, CogVideoX-5B's and Tora's, is assumed)."""
    name = os.path.basename(os.path.normpath(path))
    if os.path.isdir(path):
        folder = vae_folder(path)
        if folder is None:
            raise CogVideoXVAEError(f"The folder '{path}' has no config.json (nor a vae/ folder with one). "
                                    f"{SOURCE[0].upper()}{SOURCE[1:]}.")
        config = config_from_json(os.path.join(folder, "config.json"))
        files = [os.path.join(folder, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(folder, f))]
        if not files:
            raise CogVideoXVAEError(f"The VAE folder '{folder}' has no {WEIGHT_FILES[0]}: download it next to "
                                    f"its config.json.")
        sd = read_tensors(files[0])
        refuse_foreign(sd, name)
    elif os.path.isfile(path):
        sd = read_tensors(path)
        refuse_foreign(sd, name)
        config = config_from_keys(sd)
    else:
        raise CogVideoXVAEError(f"The CogVideoX VAE '{path}' does not exist; {SOURCE}.")
    if scaling_factor is not None:
        config = VAEConfig(**{**config.__dict__, "scaling_factor": float(scaling_factor)})
    check_layout(sd, config, name)
    return config, sd


def load_vae(path: str, operations=None, dtype: torch.dtype | None = None,
             scaling_factor: float | None = None) -> CogVideoXVAE:
    """read_vae, then the model with those weights (built on the meta device, so nothing is initialised twice)."""
    config, sd = read_vae(path, scaling_factor)
    with torch.device("meta"):
        model = CogVideoXVAE(config, operations=operations)
    model.load_state_dict(sd, strict=True, assign=True)
    return model.to(dtype) if dtype is not None else model


def read_tensors(path: str) -> dict[str, torch.Tensor]:
    name = os.path.basename(path)
    obj = weights.read_weights(path, name, CogVideoXVAEError, SOURCE)
    return weights.tensors(obj, name, CogVideoXVAEError, f"Choose the CogVideoX VAE instead: {SOURCE}.")


def config_from_json(path: str) -> VAEConfig:
    raw = read_config(path, "the VAE's")
    kind = raw.get("_class_name", CLASS_NAME)
    if kind != CLASS_NAME:
        raise NotCogVideoXVAEError(f"'{path}' is the config of {kind}, not of the CogVideoX VAE ({CLASS_NAME}); "
                                   f"{SOURCE}.")
    unsupported = {k: raw[k] for k in ("use_quant_conv", "use_post_quant_conv") if raw.get(k)}
    if raw.get("act_fn", "silu") != "silu":
        unsupported["act_fn"] = raw["act_fn"]
    if unsupported:
        raise CogVideoXVAEError(f"'{path}' asks for {unsupported}, which no published CogVideoX VAE uses and "
                                f"MotionKit does not implement; {SOURCE}.")
    known = {f.name for f in fields(VAEConfig)}
    values = {k: v for k, v in raw.items() if k in known and v is not None}
    if "block_out_channels" in values:
        values["block_out_channels"] = tuple(values["block_out_channels"])
    return VAEConfig(**values)


def config_from_keys(sd: dict[str, torch.Tensor]) -> VAEConfig:
    """Widths and depths from the tensors' shapes; the rest as published."""
    levels = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.down_blocks."))
    layers = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith("encoder.down_blocks.0.resnets."))
    return VAEConfig(
        in_channels=sd["encoder.conv_in.conv.weight"].shape[1],
        out_channels=sd["decoder.conv_out.conv.weight"].shape[0],
        block_out_channels=tuple(sd[f"encoder.down_blocks.{i}.resnets.0.conv2.conv.weight"].shape[0]
                                 for i in range(levels)),
        latent_channels=sd["encoder.conv_out.conv.weight"].shape[0] // 2,
        layers_per_block=layers)


def describe(sd: dict[str, torch.Tensor]) -> str | None:
    """What a file that is not the diffusers-layout CogVideoX VAE is, in words; None when it is."""
    keys = set(sd)
    probe = sd.get(PROBE)
    if probe is not None and probe.dim() == 5:
        if any(".attentions." in k for k in keys):
            return "another video VAE (with attention layers, like HunyuanVideo's), not CogVideoX's"
        return None
    if any(k.startswith(("model.diffusion_model.", "transformer_blocks.", "blocks.")) for k in keys):
        return "a diffusion model, not a VAE"
    if any(k.startswith(("encoder.down.", "decoder.up.")) and k.endswith(".conv.conv.weight") for k in keys):
        return ("the CogVideoX VAE in the SAT layout (3d-vae.pt), which MotionKit does not read: use the diffusers "
                "layout")
    if any(k.endswith(("encoder.conv_in.weight", "encoder.conv_in.conv.weight")) for k in keys):
        return "an image VAE (Stable Diffusion-style 2D AutoencoderKL), not the CogVideoX video VAE"
    if any(k.startswith("first_stage_model.") for k in keys):
        return "a whole Stable Diffusion checkpoint, not the CogVideoX VAE"
    return "not a VAE MotionKit knows"


def refuse_foreign(sd: dict[str, torch.Tensor], name: str) -> None:
    what = describe(sd)
    if what is not None:
        raise NotCogVideoXVAEError(f"'{name}' is {what}. Load the CogVideoX VAE here: {SOURCE}.")


def check_layout(sd: dict[str, torch.Tensor], config: VAEConfig, name: str) -> None:
    """Every tensor the model needs, each of its shape, and nothing else."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in CogVideoXVAE(config).state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(k for k in set(expected) & set(sd) if tuple(sd[k].shape) != expected[k])
    if missing or unexpected or wrong:
        said = [f"{len(v)} {what} (e.g. {', '.join(v[:3])})"
                for v, what in ((missing, "missing"), (unexpected, "unexpected"), (wrong, "of another shape")) if v]
        raise CogVideoXVAEError(f"'{name}' does not match the CogVideoX VAE its config describes: "
                                f"{'; '.join(said)}. The download is incomplete or of another model; {SOURCE}.")
