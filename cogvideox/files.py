"""Reading the published CogVideoX-5B transformer: diffusers' folder layout or one .safetensors file of its keys.

Accepted:
* the model folder (THUDM/CogVideoX-5b, or Tora's diffusers release) holding `transformer/`, or that
  `transformer/` folder itself: `config.json` and either `diffusion_pytorch_model.safetensors` or the shards
  `diffusion_pytorch_model-0000i-of-0000n.safetensors` listed in `diffusion_pytorch_model.safetensors.index.json`;
* one file with the same keys (the config is then read off the keys and shapes).
Tora's ToraTransformer3DModel is CogVideoX-5B plus two modules whose keys start with `traj_extractor.` (the
trajectory extractor) and `fuser.` (one motion-guidance fuser per block): those come back separately.

* the SAT layout (the original training code's checkpoints: Tora's `ckpts/tora/{t2v,i2v}/mp_rank_00_model_states.pt`,
  a torch pickle `{'module': state dict}` read weights-only), renamed by sat_keys.py; its LayerNorms' eps is 1e-6.
Image-to-video transformers (32 input channels: the noisy latents, then the image's) are accepted.

Refused with what the file is and what to load instead: Stable Diffusion checkpoints, CogVideoX-2B (width 1920,
30 layers, no rotary embedding), CogVideoX1.5 (temporal patches, `ofs` embedding), CogVideoX-5B-I2V with its learned
position embedding (diffusers' release, or CogVideoX's own SAT one: MotionKit does not implement that embedding;
Tora's SAT I2V builds it but never adds it, so Tora's loads without it), and SAT files with keys no rule maps.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import fields, replace

import torch

from ..common import weights
from . import sat_keys
from .errors import CogVideoXFileError, WrongCogVideoXModelError
from .model import CogVideoXConfig, CogVideoXTransformer

TORA_PREFIXES = ("traj_extractor.", "fuser.")
CONFIG = "config.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
INDEX = WEIGHTS + ".index.json"
CLASSES = ("CogVideoXTransformer3DModel", "ToraTransformer3DModel")
WRAPPER_PREFIXES = ("model.diffusion_model.", "transformer.")  # single files saved from a pipeline or a UNet loader
GET_5B = ("load the CogVideoX-5B text-to-video transformer: the `transformer` folder of THUDM/CogVideoX-5b (or of "
          "Tora's diffusers release), or one .safetensors file of it")
WIDTH_2B, LAYERS_2B = 1920, 30


def load_cogvideox_files(path: str) -> tuple[CogVideoXConfig, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(config, transformer state dict in diffusers' key names, Tora's module keys with their prefixes kept) of a
    folder or a single weights file; raises CogVideoXFileError / WrongCogVideoXModelError naming the file."""
    if os.path.isdir(path):
        folder = transformer_folder(path)
        config_path = os.path.join(folder, CONFIG)
        config = read_config(config_path) if os.path.isfile(config_path) else None
        sd, name = read_folder_weights(folder), folder
    elif os.path.isfile(path):
        config, name = None, os.path.basename(path)
        sd = weights.tensors(weights.read_weights(path, name, CogVideoXFileError, GET_5B, mmap=True), name,
                             CogVideoXFileError, f"Choose a CogVideoX transformer instead: {GET_5B}.",
                             wrappers=("state_dict", "module"))
        sd = strip_wrapper_prefix(sd)
    else:
        raise CogVideoXFileError(f"'{path}' does not exist. To use CogVideoX, {GET_5B}.")

    sat = sat_keys.is_sat(sd)
    if sat:
        sd = from_sat(sd, name)
    refuse_other_models(sd, name, config)
    tora = {k: v for k, v in sd.items() if k.startswith(TORA_PREFIXES)}
    sd = {k: v for k, v in sd.items() if not k.startswith(TORA_PREFIXES)}
    inferred = config_from_keys(sd, name)
    if config is None:
        config = replace(inferred, norm_eps=sat_keys.SAT_NORM_EPS) if sat else inferred
    else:
        config = config_from_diffusers(config, os.path.join(name, CONFIG))
        shaped = {f: getattr(config, f) for f in SHAPE_FIELDS}
        if shaped != {f: getattr(inferred, f) for f in SHAPE_FIELDS}:
            raise CogVideoXFileError(
                f"'{name}': config.json ({shaped}) does not describe its weights "
                f"({ {f: getattr(inferred, f) for f in SHAPE_FIELDS} }). The folder mixes files of two models: "
                f"download the transformer folder again.")
    check_keys(sd, config, name)
    return config, sd, tora


# ---- where the files are ------------------------------------------------------------------------------------------

def transformer_folder(path: str) -> str:
    """The folder holding the transformer's config and weights: `path/transformer` or `path` itself."""
    sub = os.path.join(path, "transformer")
    if os.path.isdir(sub):
        return sub
    if any(f.startswith("diffusion_pytorch_model") for f in os.listdir(path)) or os.path.isfile(
            os.path.join(path, CONFIG)):
        return path
    raise CogVideoXFileError(f"The folder '{path}' holds no CogVideoX transformer (no `transformer` folder, no "
                             f"{WEIGHTS}). To use CogVideoX, {GET_5B}.")


def read_config(path: str, whose: str = "the transformer's") -> dict:
    """A diffusers config.json as a dict (`whose` names the model in the message)."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise CogVideoXFileError(f"Could not read '{path}': {e}. Download {whose} config.json again.") from e
    if not isinstance(config, dict):
        raise CogVideoXFileError(f"'{path}' is not a model config (no JSON object). Download it again.")
    return config


def read_folder_weights(folder: str) -> dict[str, torch.Tensor]:
    index = os.path.join(folder, INDEX)
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CogVideoXFileError(f"Could not read the shard list '{index}': {e}. Download it again.") from e
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not os.path.isfile(os.path.join(folder, s))]
        if missing:
            raise CogVideoXFileError(f"'{folder}' lacks {len(missing)} of the {len(shards)} weight files its "
                                     f"{INDEX} lists: {', '.join(missing)}. Download them into that folder.")
        sd = {}
        for shard in shards:
            sd.update(read_safetensors(os.path.join(folder, shard)))
        absent = sorted(set(weight_map) - set(sd))
        if absent:
            raise CogVideoXFileError(f"The shards in '{folder}' lack {len(absent)} tensors their index lists "
                                     f"(first: {absent[0]}). A shard is incomplete: download the shards again.")
        return sd
    single = os.path.join(folder, WEIGHTS)
    if os.path.isfile(single):
        return read_safetensors(single)
    found = sorted(f for f in os.listdir(folder) if f.startswith("diffusion_pytorch_model"))
    hint = (f" It has {', '.join(found)}: shards need their {INDEX}." if found else "")
    raise CogVideoXFileError(f"'{folder}' holds neither {WEIGHTS} nor {INDEX}.{hint} Download the transformer "
                             f"folder's .safetensors files and their index.")


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    name = os.path.basename(path)
    return weights.read_weights(path, name, CogVideoXFileError, GET_5B, redownload=f"download {name} again")


def strip_wrapper_prefix(sd: dict) -> dict:
    for prefix in WRAPPER_PREFIXES:
        if f"{prefix}patch_embed.proj.weight" in sd:
            return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def from_sat(sd: dict, name: str) -> dict:
    """A SAT-layout state dict in diffusers' names (sat_keys.py), or WrongCogVideoXModelError when a key has no rule.
    A learned position embedding comes back as `patch_embed.pos_embedding` (refused by refuse_other_models) unless
    the checkpoint is Tora's, whose code never adds it."""
    converted, unknown = sat_keys.sat_to_diffusers(sd)
    if unknown:
        raise WrongCogVideoXModelError(
            f"'{name}' is CogVideoX in the SAT layout (the original training code's files) with {len(unknown)} "
            f"weights MotionKit cannot map (first: {unknown[0]}): a variant MotionKit does not run (CogVideoX1.5, "
            f"2B, or another model). Use the diffusers-layout release of the same model, or Tora's SAT "
            f"checkpoints (CogVideoX-5B). Instead, {GET_5B}.")
    if sat_keys.has_learned_pe(sd) and not sat_keys.learned_pe_unused(sd):
        converted["patch_embed.pos_embedding"] = sat_keys.strip_prefix(sd)[sat_keys.LEARNED_PE]
    return converted


# ---- what the file is -----------------------------------------------------------------------------------------------

def refuse_other_models(sd: dict, name: str, config: dict | None) -> None:
    """Raise WrongCogVideoXModelError when the keys or config say another model (see the module doc)."""
    keys = list(sd)
    config = config or {}
    other = ""
    if any(k.startswith(("model.diffusion_model.input_blocks.", "input_blocks.", "down_blocks.", "first_stage_model.",
                         "conditioner.", "cond_stage_model.")) for k in keys):
        sdxl = any(k.startswith("conditioner.") or "label_emb." in k for k in keys)
        other = (f"a Stable Diffusion {'XL' if sdxl else '1.5'} checkpoint or UNet, an image model: load it with "
                 f"Load Checkpoint for images")
    elif sat_keys.is_sat(sd):
        other = ("CogVideoX in the SAT layout (the original training code's files) with weights MotionKit cannot "
                 "map: use the diffusers-layout release of the same model")
    elif config.get("_class_name") not in (None,) + CLASSES:
        other = f"a {config['_class_name']}, not the CogVideoX transformer"
    elif config.get("patch_size_t") or config.get("ofs_embed_dim") or any(k.startswith("ofs_embedding.") for k in keys) \
            or getattr(sd.get("patch_embed.proj.weight"), "ndim", 4) == 2:
        other = "CogVideoX1.5 (it patches 2 frames at a time), which MotionKit does not run yet"
    elif config.get("use_rotary_positional_embeddings") is False or (
            "patch_embed.proj.weight" in sd and sd["patch_embed.proj.weight"].shape[0] == WIDTH_2B
            and block_count(keys) == LAYERS_2B):
        other = "CogVideoX-2B (no rotary position embedding), which MotionKit does not run"
    elif config.get("use_learned_positional_embeddings") or "patch_embed.pos_embedding" in sd:
        other = ("CogVideoX-5B-I2V with its learned position embedding (patch_embed.pos_embedding), which MotionKit "
                 "does not implement (Tora's image-to-video checkpoint, SAT layout ckpts/tora/i2v/"
                 "mp_rank_00_model_states.pt, runs without it and loads)")
    elif "patch_embed.proj.weight" not in sd:
        other = "not a CogVideoX transformer (it has no patch_embed.proj.weight)"
    if other:
        raise WrongCogVideoXModelError(f"'{name}' is {other}. Instead, {GET_5B}.")


def block_count(keys) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(r"transformer_blocks\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


SHAPE_FIELDS = ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "time_embed_dim",
                "text_embed_dim", "num_layers", "patch_size", "attention_bias")


def config_from_keys(sd: dict, name: str) -> CogVideoXConfig:
    """The config the shapes imply; sample size (60×90 latents) and norm eps (1e-5) are CogVideoX-5B's."""
    try:
        proj = sd["patch_embed.proj.weight"]
        head_dim = sd["transformer_blocks.0.attn1.norm_q.weight"].shape[0]
        p = proj.shape[-1]
        return CogVideoXConfig(
            num_attention_heads=proj.shape[0] // head_dim, attention_head_dim=head_dim, in_channels=proj.shape[1],
            out_channels=sd["proj_out.weight"].shape[0] // p ** 2, patch_size=p,
            time_embed_dim=sd["time_embedding.linear_1.weight"].shape[0],
            text_embed_dim=sd["patch_embed.text_proj.weight"].shape[1], num_layers=block_count(sd),
            attention_bias="transformer_blocks.0.attn1.to_q.bias" in sd)
    except (KeyError, IndexError, ValueError) as e:
        raise CogVideoXFileError(f"'{name}' lacks the CogVideoX transformer tensors ({e}); the file is incomplete "
                                 f"or another model. Instead, {GET_5B}.") from e


SUPPORTED = {  # config.json fields this model hard-codes, with the one value it implements
    "flip_sin_to_cos": True, "activation_fn": "gelu-approximate", "timestep_activation_fn": "silu",
    "norm_elementwise_affine": True, "patch_bias": True, "use_rotary_positional_embeddings": True,
}


def config_from_diffusers(config: dict, name: str) -> CogVideoXConfig:
    """CogVideoXConfig of a diffusers transformer config.json (missing fields take diffusers' defaults)."""
    for field, value in SUPPORTED.items():
        if config.get(field, value) != value:
            raise WrongCogVideoXModelError(f"'{name}' sets {field} = {config[field]!r}; MotionKit's CogVideoX runs "
                                           f"only {value!r} (CogVideoX-5B). Instead, {GET_5B}.")
    diffusers_defaults = {"num_attention_heads": 30, "num_layers": 30}  # where ours (5B's) differ from diffusers'
    known = {f.name for f in fields(CogVideoXConfig)}
    given = {**diffusers_defaults, **{k: v for k, v in config.items() if k in known}}
    given["out_channels"] = given.get("out_channels") or given.get("in_channels", 16)
    try:
        return CogVideoXConfig(**given)
    except (TypeError, ValueError) as e:
        raise CogVideoXFileError(f"'{name}' is not a usable CogVideoX config: {e}. Download it again.") from e


def expected_shapes(config: CogVideoXConfig) -> dict[str, tuple]:
    with torch.device("meta"):
        model = CogVideoXTransformer(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_keys(sd: dict, config: CogVideoXConfig, name: str) -> None:
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(k for k in set(sd) & set(expected) if tuple(sd[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (first: {missing[0]})" if missing else "",
                 f"{len(unexpected)} unknown (first: {unexpected[0]})" if unexpected else "",
                 f"{len(wrong)} of another shape (first: {wrong[0]})" if wrong else ""]
        raise CogVideoXFileError(f"'{name}' does not hold the CogVideoX transformer's tensors: "
                                 f"{', '.join(p for p in parts if p)}. The file is incomplete or another model. "
                                 f"Instead, {GET_5B}.")
