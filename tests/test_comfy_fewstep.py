"""Few-step motion models in a real ComfyUI server: AnimateLCM t2v (its LCM schedule, its spatial LoRA through
core's LoraLoaderModelOnly, ComfyUI's lcm sampler) and AnimateDiff-Lightning, through the example workflows.

Random weights in the real layouts: AnimateLCM as an fp16 .ckpt without PE keys (§4.6), Lightning as the
diffusers-format file (§4.8), the AnimateLCM LoRA as kohya keys on SD1.5 UNet layers.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import motion_files as mf
from comfy_graphs import CKPT, REPO, base_graph, latent, ui_to_api
from model_cache import cached, module_server

pytestmark = pytest.mark.comfyui

LCM = "AnimateLCM_sd15_t2v.ckpt"
LCM_LORA = "AnimateLCM_sd15_t2v_lora.safetensors"
LIGHTNING = "animatediff_lightning_4step_diffusers.safetensors"
FRAMES = 4

# kohya names (diffusers module path, '.' -> '_') that ComfyUI's SD1.5 key map (comfy.lora.model_lora_keys_unet,
# via comfy.utils.unet_to_diffusers) knows; shapes (out, in[, k, k]) of the SD1.5 UNet layers they patch
LORA_LAYERS = {
    "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": (320, 320),
    "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k": (320, 320),
    "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_v": (320, 320),
    "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0": (320, 320),
    "down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (320, 768),
    "mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj": (10240, 1280),
    "up_blocks_3_attentions_2_proj_out": (320, 320, 1, 1),
    "down_blocks_0_resnets_0_conv1": (320, 320, 3, 3),
}


def kohya_lora(rank=4, seed=0, scale=0.1):
    """`lora_unet_<layer>.lora_down.weight` [r, in(, k, k)], `.lora_up.weight` [out, r(, 1, 1)], `.alpha`."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for layer, shape in LORA_LAYERS.items():
        out, fan_in, *kernel = shape
        down = torch.randn((rank, fan_in, *kernel), generator=g) * scale
        up = torch.randn((out, rank, *([1] * len(kernel))), generator=g) * scale
        sd[f"lora_unet_{layer}.lora_down.weight"] = down.half()
        sd[f"lora_unet_{layer}.lora_up.weight"] = up.half()
        sd[f"lora_unet_{layer}.alpha"] = torch.tensor(float(rank)).half()
    return sd


server = module_server({
    "animatediff_models": {LCM: cached(LCM, lambda: mf.animatelcm(seed=2, dtype=torch.float16)),
                           LIGHTNING: cached(LIGHTNING, lambda: mf.lightning_diffusers(seed=0))},
    "loras": {LCM_LORA: cached("AnimateLCM_t2v_lora_random.safetensors", kohya_lora)},
})


def example(name: str, **motion) -> dict:
    """The example API workflow, made small (64×64, FRAMES frames), with the test checkpoint and a SaveLatent."""
    api = json.loads((REPO / "example_workflows" / "api" / f"{name}_api.json").read_text())
    api["4"]["inputs"]["ckpt_name"] = CKPT
    api["5"]["inputs"].update(width=64, height=64, batch_size=FRAMES)
    api["11"]["inputs"].update(motion)
    api["99"] = {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": f"t/{name}"}}
    return api


def run_example(server, api):
    res = server.run(api).raise_for_status()
    (out,) = res.latents("99")
    assert torch.isfinite(out).all()
    (webp,) = res.images("9")
    from PIL import Image
    with Image.open(webp) as im:
        assert im.n_frames == FRAMES and im.size == (64, 64)
    return out


def sigma_range(server, graph, model) -> tuple[float, float]:
    """The model's sigma_max and sigma_min as core's SamplingPercentToSigma reads them (shown by PreviewAny)."""
    g = {k: v for k, v in graph.items() if k in ("4", "10", "11", "12")}
    for node, percent in (("40", 0.0), ("41", 1.0)):
        g[node] = {"class_type": "SamplingPercentToSigma", "inputs": {
            "model": model, "sampling_percent": percent, "return_actual_sigma": True}}
        g[f"5{node[1]}"] = {"class_type": "PreviewAny", "inputs": {"source": [node, 0]}}
    res = server.run(g).raise_for_status()
    return tuple(float(res.outputs[n]["text"][0]) for n in ("50", "51"))


def spec_sigmas(beta_schedule: str) -> np.ndarray:
    """§9, independently: ldm sqrt_linear = diffusers linear betas; ldm linear = diffusers scaled_linear."""
    if beta_schedule == "sqrt_linear":
        betas = np.linspace(0.00085, 0.012, 1000, dtype=np.float64)
    else:
        betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    acp = np.cumprod(1 - betas)
    return np.sqrt((1 - acp) / acp)


def test_animatelcm_lora_loads_with_core_loader(server):
    """Core's LoraLoaderModelOnly applies every key of a kohya AnimateLCM-style LoRA to the SD1.5 UNet."""
    g = base_graph(frames=2, steps=1)
    g["3"]["inputs"]["cfg"] = 1.0
    g2 = json.loads(json.dumps(g))
    g2["12"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["4", 0], "lora_name": LCM_LORA,
                                                                  "strength_model": 1.0}}
    g2["3"]["inputs"]["model"] = ["12", 0]
    log_before = len(server.log_text())
    assert not torch.equal(latent(server, g), latent(server, g2))
    log = server.log_text()[log_before:]
    assert "lora key not loaded" not in log, log[-2000:]


def animatelcm_examples():
    """The AnimateLCM example (autoselect) and the same on the checkpoint's own schedule, 2 lcm steps."""
    api = example("animatelcm_t2v_sd15")
    assert api["11"]["inputs"]["noise_schedule"] == "autoselect" and api["12"]["class_type"] == "LoraLoaderModelOnly"
    assert (api["3"]["inputs"]["sampler_name"], api["3"]["inputs"]["scheduler"]) == ("lcm", "sgm_uniform")
    assert 1.0 <= api["3"]["inputs"]["cfg"] <= 2.0
    api["3"]["inputs"]["steps"] = 2  # two lcm steps: the schedule's ends and one re-noising; cheaper than 4
    own = example("animatelcm_t2v_sd15", noise_schedule="use model's own")
    own["3"]["inputs"]["steps"] = 2
    return api, own


def test_animatelcm_example_gets_its_lcm_schedule(server):
    """lcm sampler, 4 steps, cfg 1.5, sgm_uniform. autoselect installs LCM on sqrt_linear with AnimateLCM's
    100-step grid (timesteps 9, 19, ..., 999), so the model's sigmas are that grid's ends."""
    api, own = animatelcm_examples()
    lcm, sd = spec_sigmas("sqrt_linear"), spec_sigmas("linear")
    np.testing.assert_allclose(sigma_range(server, api, ["11", 0]), (lcm[999], lcm[9]), rtol=1e-5)
    np.testing.assert_allclose(sigma_range(server, own, ["11", 0]), (sd[999], sd[0]), rtol=1e-5)


@pytest.mark.example  # the schedule: the test above; sampling with the LoRA and lcm: test_animatelcm_lora_loads_with_core_loader
def test_animatelcm_example_runs_with_its_lcm_schedule(server):
    """The run differs from the same workflow on the checkpoint's own schedule."""
    api, own = animatelcm_examples()
    auto_latent = run_example(server, api)
    assert not torch.equal(auto_latent, run_example(server, own))


def lightning_example():
    api = example("animatediff_lightning_sd15")
    k = api["3"]["inputs"]
    assert (k["sampler_name"], k["scheduler"], k["cfg"], k["steps"]) == ("euler", "sgm_uniform", 1.0, 4)
    assert api["10"]["inputs"]["model_name"] == "animatediff_lightning_4step_comfyui.safetensors"
    assert api["11"]["inputs"]["noise_schedule"] == "autoselect"
    api["10"]["inputs"]["model_name"] = LIGHTNING
    return api


def test_lightning_example_gets_sqrt_linear_with_the_diffusers_file(server):
    api = lightning_example()
    sqrt_linear = spec_sigmas("sqrt_linear")
    np.testing.assert_allclose(sigma_range(server, api, ["11", 0]), (sqrt_linear[999], sqrt_linear[0]), rtol=1e-5)


@pytest.mark.example  # the diffusers file sampling: test_comfy_motion_scale.py (its second motion model)
def test_lightning_example_runs_with_the_diffusers_file(server):
    api = lightning_example()
    api["3"]["inputs"]["steps"] = 2  # runs as shipped otherwise; half the steps keep the test cheap
    run_example(server, api)


@pytest.mark.parametrize("name", ["animatelcm_t2v_sd15", "animatediff_lightning_sd15"])
def test_example_ui_matches_api(server, name):
    ui = json.loads((REPO / "example_workflows" / f"{name}.json").read_text())
    api = json.loads((REPO / "example_workflows" / "api" / f"{name}_api.json").read_text())
    assert ui_to_api(ui, server.object_info()) == {
        k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
