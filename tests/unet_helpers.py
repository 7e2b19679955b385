"""Pure-torch helpers for the in-process tests (no tests here): ComfyUI's SD1.5/SDXL UNet configs on the meta
device (the `comfy` fixture: ComfyUI on sys.path in CPU mode), and one motion module with random weights and
frames to feed it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import comfy_env
import motion_files as mf
from motionkit.motion.model import MotionModule

SD15_UNET = dict(in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                 channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], context_dim=768, num_heads=8,
                 use_spatial_transformer=True, use_linear_in_transformer=False, legacy=False)
SDXL_UNET = dict(in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2], channel_mult=[1, 2, 4],
                 transformer_depth=[0, 0, 2, 2, 10, 10], transformer_depth_middle=10,
                 transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], context_dim=2048, num_head_channels=64,
                 adm_in_channels=2816, num_classes="sequential", use_spatial_transformer=True,
                 use_linear_in_transformer=True, legacy=False)


@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.ops
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, UNetModel, Upsample
    return SimpleNamespace(ops=comfy.ops, UNetModel=UNetModel, ResBlock=ResBlock, Upsample=Upsample,
                           SpatialTransformer=SpatialTransformer)


def unet(comfy, config):
    return comfy.UNetModel(**config, image_size=32, device="meta", operations=comfy.ops.disable_weight_init)


def meta_sd15_patcher(comfy):
    """A ComfyUI ModelPatcher over a meta-device SD1.5 UNet with ModelSamplingDiscrete (nothing runs on it)."""
    from comfy import model_patcher, model_sampling

    class Base(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.diffusion_model = unet(comfy, SD15_UNET)
            self.model_sampling = model_sampling.ModelSamplingDiscrete(SimpleNamespace(sampling_settings={}))

        def get_dtype(self):
            return torch.float32

    cpu = torch.device("cpu")
    return model_patcher.ModelPatcher(Base(), load_device=cpu, offload_device=cpu, size=1)


def snapshot(model):
    return {name: (list(m._modules.items())) for name, m in model.named_modules()}


def layer_types(block):
    return [type(layer).__name__ for layer in block]


def module_weights(channels=320, seed=0, attention_blocks=2):
    sd = mf.original_state_dict(levels=(channels,), mid=False, pe_length=32, seed=seed, attention_blocks=attention_blocks)
    prefix = "down_blocks.0.motion_modules.0.temporal_transformer."
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and not k.endswith("pe")}


def make_module(sd, channels=320, attention_blocks=2):
    m = MotionModule(channels, attention_blocks)
    m.temporal_transformer.load_state_dict(sd, strict=True)
    return m.eval()


def frames_input(batch=2, frames=8, channels=320, size=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch * frames, channels, size, size, generator=g)
    # frames of different brightness/contrast: the case where pooled and per-frame norms disagree most
    scale = torch.linspace(0.5, 2.0, frames).repeat(batch)[:, None, None, None]
    return x * scale + scale
