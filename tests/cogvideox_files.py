"""Tiny random CogVideoX / Tora files in the published diffusers layout (Tora_T2V_diffusers/: transformer/ and vae/,
each a config.json and a diffusion_pytorch_model.safetensors), and a tiny T5 config, for tests that run the whole
CogVideoX path inside ComfyUI at a size a CPU samples in seconds.

Key names and config fields are the published ones (tests/test_cogvideox_transformer.py, test_cogvideox_vae.py and
test_tora_modules.py check them against diffusers' classes and Tora's inventory at full size)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from motionkit.cogvideox.model import CogVideoXConfig, CogVideoXTransformer
from motionkit.cogvideox.sat_keys import PREFIX as SAT_PREFIX
from motionkit.cogvideox.vae import CogVideoXVAE, VAEConfig
from motionkit.tora.model import ToraConfig, ToraModules

# T5 with 16-wide outputs (the transformer's text_embed_dim below) and the real T5-XXL's vocabulary: the test server's
# TestTinyT5CLIP (tests/support_pack) builds it
TINY_T5 = json.loads((Path(__file__).parent / "support_pack" / "tiny_t5.json").read_text())

# 2 blocks of 2 heads x 16; RoPE laid out for 8x8 latents (the test videos are 64x64 pixels)
TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=16, time_embed_dim=16, text_embed_dim=TINY_T5["d_model"],
                   num_layers=2, sample_height=8, sample_width=8)
VAE = dict(block_out_channels=(8, 16, 16, 16), latent_channels=16, layers_per_block=1, norm_num_groups=4,
           sample_height=64, sample_width=64, scaling_factor=0.7)


def randomised(module: torch.nn.Module, seed: int, spread: float = 0.1) -> torch.nn.Module:
    """Every weight random (norms near 1, running variances positive), so each layer matters; in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif name.endswith("weight") and ("norm" in name or ".bn" in name):
                p.copy_(1 + spread * torch.randn(p.shape, generator=g))
            else:
                p.copy_(spread * torch.randn(p.shape, generator=g))
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return module.eval()


def _randomise(module: torch.nn.Module, seed: int) -> dict:
    return {k: v.contiguous() for k, v in randomised(module, seed).state_dict().items()}


def write_tora_folder(root: Path, seed: int = 0, tora: bool = True, in_channels: int = 16) -> Path:
    """root/transformer/ (CogVideoX with Tora's modules when `tora`) and root/vae/, as Tora's diffusers release.
    in_channels 32: an image-to-video transformer without the learned position embedding (as Tora's I2V runs)."""
    config = CogVideoXConfig(**TRANSFORMER, in_channels=in_channels)
    weights = _randomise(CogVideoXTransformer(config), seed)
    if tora:
        weights.update(_randomise(ToraModules(ToraConfig(layers=config.num_layers, width=config.width)), seed + 1))
    (root / "transformer").mkdir(parents=True, exist_ok=True)
    (root / "transformer" / "config.json").write_text(json.dumps(
        {"_class_name": "CogVideoXTransformer3DModel", **TRANSFORMER, "in_channels": in_channels, "out_channels": 16,
         "use_learned_positional_embeddings": False,
         "patch_size": 2, "use_rotary_positional_embeddings": True, "max_text_seq_length": 226}))
    save_file(weights, str(root / "transformer" / "diffusion_pytorch_model.safetensors"))
    vae = _randomise(CogVideoXVAE(VAEConfig(**VAE)), seed + 2)
    (root / "vae").mkdir(parents=True, exist_ok=True)
    (root / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLCogVideoX", **VAE}))
    save_file(vae, str(root / "vae" / "diffusion_pytorch_model.safetensors"))
    return root


# ---- the SAT layout (Tora's ckpts/tora/{t2v,i2v}/mp_rank_00_model_states.pt) ----------------------------------------

INVERSE = [  # diffusers name -> SAT name (without model.diffusion_model.), the rules of sat_keys.py read backwards, written out again here
    (r"patch_embed\.(proj|text_proj)\.", r"mixins.patch_embed.\1."),
    (r"time_embedding\.linear_1\.", "time_embed.0."), (r"time_embedding\.linear_2\.", "time_embed.2."),
    (r"transformer_blocks\.(\d+)\.norm1\.norm\.", r"transformer.layers.\1.input_layernorm."),
    (r"transformer_blocks\.(\d+)\.norm2\.norm\.", r"transformer.layers.\1.post_attention_layernorm."),
    (r"transformer_blocks\.(\d+)\.attn1\.to_out\.0\.", r"transformer.layers.\1.attention.dense."),
    (r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.", r"transformer.layers.\1.mlp.dense_h_to_4h."),
    (r"transformer_blocks\.(\d+)\.ff\.net\.2\.", r"transformer.layers.\1.mlp.dense_4h_to_h."),
    (r"transformer_blocks\.(\d+)\.attn1\.norm_q\.", r"mixins.adaln_layer.query_layernorm_list.\1."),
    (r"transformer_blocks\.(\d+)\.attn1\.norm_k\.", r"mixins.adaln_layer.key_layernorm_list.\1."),
    (r"norm_final\.", "transformer.final_layernorm."), (r"norm_out\.norm\.", "mixins.final_layer.norm_final."),
    (r"proj_out\.", "mixins.final_layer.linear."), (r"norm_out\.linear\.", "mixins.final_layer.adaLN_modulation.1."),
    (r"fuser\.(\d+)\.", r"mixins.adaln_layer.fuser_list.\1."), (r"traj_extractor\.", "traj_extractor."),
]


def sat_state_dict(sd: dict, width: int, text: int = 226, learned_pe: bool = True) -> dict:
    """A SAT-layout checkpoint's state dict of a diffusers one, with what SAT files carry besides."""
    out = {}
    for k, v in sd.items():
        if m := re.fullmatch(r"transformer_blocks\.(\d+)\.attn1\.to_q\.(weight|bias)", k):
            i, kind = m.groups()
            parts = [sd[f"transformer_blocks.{i}.attn1.to_{x}.{kind}"] for x in "qkv"]
            out[f"{SAT_PREFIX}transformer.layers.{i}.attention.query_key_value.{kind}"] = torch.cat(parts)
        elif m := re.fullmatch(r"transformer_blocks\.(\d+)\.norm1\.linear\.(weight|bias)", k):
            i, kind = m.groups()
            a = sd[f"transformer_blocks.{i}.norm1.linear.{kind}"].chunk(6)  # video msa ×3, text msa ×3
            b = sd[f"transformer_blocks.{i}.norm2.linear.{kind}"].chunk(6)  # video mlp ×3, text mlp ×3
            out[f"{SAT_PREFIX}mixins.adaln_layer.adaLN_modulations.{i}.1.{kind}"] = torch.cat(a[:3] + b[:3] + a[3:] + b[3:])
        elif re.search(r"\.attn1\.to_[kv]\.|\.norm2\.linear\.", k):
            continue
        else:
            for pattern, sat in INVERSE:
                if re.match(pattern, k):
                    out[SAT_PREFIX + re.sub(pattern, sat, k, count=1)] = v.clone()
                    break
            else:
                raise AssertionError(f"no inverse rule for {k}")
    g = torch.Generator().manual_seed(9)
    extra = {"mixins.pos_embed.freqs_sin": torch.randn(27, 16, generator=g),
             "mixins.pos_embed.freqs_cos": torch.randn(27, 16, generator=g),
             "transformer.position_embeddings.weight": torch.randn(64, width, generator=g)}
    if learned_pe:
        extra["mixins.pos_embed.pos_embedding"] = torch.randn(1, text + 27, width, generator=g)
    out.update({SAT_PREFIX + k: v for k, v in extra.items()})
    out["conditioner.embedders.0.transformer.shared.weight"] = torch.randn(4, 8, generator=g)
    out["first_stage_model.encoder.conv_in.conv.weight"] = torch.randn(4, 3, 3, 3, 3, generator=g)
    return out


def write_sat_file(path: Path, seed: int = 0, in_channels: int = 32, tora: bool = True) -> dict:
    """A tiny random SAT checkpoint ({'module': state dict}, torch.save) of CogVideoX (+ Tora's modules); returns the
    diffusers-named state dict it was made from."""
    config = CogVideoXConfig(**TRANSFORMER, in_channels=in_channels)
    weights = _randomise(CogVideoXTransformer(config), seed)
    if tora:
        weights.update(_randomise(ToraModules(ToraConfig(layers=config.num_layers, width=config.width)), seed + 1))
    torch.save({"module": sat_state_dict(weights, config.width)}, str(path))
    return weights
