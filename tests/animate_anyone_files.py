"""Random-weight Animate Anyone files in Moore-AnimateAnyone's published layout, and a random CLIP vision
(ViT-L/14, sd-image-variations' image encoder) file.

Key names and shapes come from tests/animate_anyone_keys.json: an inventory taken from the original
classes (see its "_source"), independent of animate_anyone/. The motion module is also built by
motion_files.original_state_dict (AnimateDiff v2 from the spec), and the two agree (test).
"""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
INVENTORY = {k: {n: tuple(s) for n, s in v.items()}
             for k, v in json.loads((HERE / "animate_anyone_keys.json").read_text()).items() if not k.startswith("_")}
FILE_NAMES = {"denoising_unet": "denoising_unet.pth", "reference_unet": "reference_unet.pth",
              "pose_guider": "pose_guider.pth", "motion_module": "motion_module.pth"}


def _is_norm(key: str) -> bool:
    parts = key.split(".")
    return any(p.startswith("norm") or p in ("conv_norm_out", "ff_norm") for p in parts[-3:-1]) or "norms" in parts


def random_tensor(key: str, shape, seed: int, dtype=torch.float16, scale: float = 1.0) -> torch.Tensor:
    """Deterministic per key: weights ~ N(0, scale²/fan_in), biases small, norms γ=1 β=0."""
    if _is_norm(key):
        return (torch.ones if key.endswith("weight") else torch.zeros)(shape, dtype=dtype)
    g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) & 0x7FFF_FFFF)
    if key.endswith("bias"):
        return (0.02 * torch.randn(shape, generator=g)).to(dtype)
    fan_in = max(1, math.prod(shape[1:]))
    return (scale * torch.randn(shape, generator=g) / math.sqrt(fan_in)).to(dtype)


def state_dict(role: str, seed: int = 0, dtype=torch.float16, zero_pose_out: bool = False) -> dict:
    if role == "motion_module":
        import motion_files as mf
        return mf.original_state_dict(mid=True, pe_length=32, seed=seed, dtype=dtype)
    sd = {k: random_tensor(k, s, seed, dtype) for k, s in INVENTORY[role].items()}
    if role == "pose_guider":
        # pose renders are sparse: a larger gain keeps the features visible in a random net
        sd = {k: random_tensor(k, s, seed, torch.float32, scale=2.0).to(dtype) for k, s in INVENTORY[role].items()}
        if zero_pose_out:  # as the original initialises it (zero_module): the guider adds exactly nothing
            sd["conv_out.weight"].zero_()
            sd["conv_out.bias"].zero_()
    return sd


# the test cache and its atomic build-on-first-use, shared with the other random-weight files
from model_cache import cache_dir, cached_file as cached  # noqa: E402,F401  (cache_dir: for the tests)


def published_files(seed: int = 3, zero_pose_out: bool = False) -> dict[str, Path]:
    """role -> cached path of a random file in the published layout (fp16 to keep the cache small)."""
    tag = f"aa_s{seed}" + ("_zeropose" if zero_pose_out else "")
    out = {}
    for role, name in FILE_NAMES.items():
        z = zero_pose_out and role == "pose_guider"
        file_tag = tag if role == "pose_guider" else f"aa_s{seed}"
        out[role] = cached(f"{file_tag}_{name}", lambda r=role, z=z: state_dict(r, seed, zero_pose_out=z))
    return out


def clip_vision_vitl(seed: int = 0, dtype=torch.float16) -> dict:
    """A random CLIP ViT-L/14 vision model with projection in transformers' CLIPVisionModelWithProjection keys
    (the layout of sd-image-variations' image_encoder/model.safetensors): width 1024, 24 layers, MLP 4096,
    patch 14 at 224 px (257 positions), projection 1024 -> 768."""
    w, mlp = 1024, 4096
    shapes = {"vision_model.embeddings.class_embedding": (w,),
              "vision_model.embeddings.patch_embedding.weight": (w, 3, 14, 14),
              "vision_model.embeddings.position_embedding.weight": (257, w),
              "vision_model.pre_layrnorm.weight": (w,), "vision_model.pre_layrnorm.bias": (w,),
              "vision_model.post_layernorm.weight": (w,), "vision_model.post_layernorm.bias": (w,),
              "visual_projection.weight": (768, w)}
    for i in range(24):
        p = f"vision_model.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{p}self_attn.{proj}.weight"], shapes[f"{p}self_attn.{proj}.bias"] = (w, w), (w,)
        shapes |= {f"{p}layer_norm1.weight": (w,), f"{p}layer_norm1.bias": (w,),
                   f"{p}layer_norm2.weight": (w,), f"{p}layer_norm2.bias": (w,),
                   f"{p}mlp.fc1.weight": (mlp, w), f"{p}mlp.fc1.bias": (mlp,),
                   f"{p}mlp.fc2.weight": (w, mlp), f"{p}mlp.fc2.bias": (w,)}
    out = {}
    for k, shape in shapes.items():
        if "norm" in k:
            out[k] = (torch.ones if k.endswith("weight") else torch.zeros)(shape, dtype=dtype)
        elif "embedding" in k:
            g = torch.Generator().manual_seed(zlib.crc32(k.encode()) + seed)
            out[k] = (0.02 * torch.randn(shape, generator=g)).to(dtype)
        else:
            out[k] = random_tensor(k, shape, seed, dtype)
    return out


def sd15_vae(checkpoint) -> dict:
    """The VAE of a single-file SD1.5 checkpoint as a standalone VAE file (models/vae)."""
    from safetensors import safe_open
    with safe_open(str(checkpoint), "pt") as f:
        return {k[len("first_stage_model."):]: f.get_tensor(k) for k in f.keys() if k.startswith("first_stage_model.")}
