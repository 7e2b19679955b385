"""Tiny random CogVideoX / Tora files in the published diffusers layout (Tora_T2V_diffusers/: transformer/ and vae/,
each a config.json and a diffusion_pytorch_model.safetensors), and a tiny T5 config, for tests that run the whole
CogVideoX path inside ComfyUI at a size a CPU samples in seconds.

Key names and config fields are the published ones (tests/test_cogvideox_transformer.py, test_cogvideox_vae.py and
test_tora_modules.py check them against diffusers' classes and Tora's inventory at full size)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from motionkit.cogvideox.model import CogVideoXConfig, CogVideoXTransformer
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


def _randomise(module: torch.nn.Module, seed: int) -> dict:
    """Every weight random (norms near 1, running variances positive), so each layer matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif name.endswith("weight") and ("norm" in name or ".bn" in name):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return {k: v.contiguous() for k, v in module.state_dict().items()}


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
