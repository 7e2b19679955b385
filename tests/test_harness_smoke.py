"""Smoke test of the real-ComfyUI harness, core nodes only.

CheckpointLoaderSimple(random SD1.5) -> CLIPTextEncode x2 -> EmptyLatentImage
64x64 x2 -> KSampler (2 steps, euler, normal, cfg 7) -> SaveLatent, and
VAEDecode -> SaveImage.
"""
from __future__ import annotations

import pytest
import torch

from comfy_server import CHECKPOINT_NAME, PromptRejected

pytestmark = pytest.mark.comfyui

SAMPLER = "5"
SAVE_LATENT = "6"
SAVE_IMAGE = "8"


def t2i_prompt(seed: int = 1, batch: int = 2, steps: int = 2, tag: str = "smoke",
               size: int = 64, decode: bool = True) -> dict:
    p = {
        "1": {"class_type": "CheckpointLoaderSimple",
              "inputs": {"ckpt_name": CHECKPOINT_NAME}},
        "2": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "a photo of a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage",
              "inputs": {"width": size, "height": size, "batch_size": batch}},
        SAMPLER: {"class_type": "KSampler",
                  "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": 7.0,
                             "sampler_name": "euler", "scheduler": "normal",
                             "positive": ["2", 0], "negative": ["3", 0],
                             "latent_image": ["4", 0], "denoise": 1.0}},
        SAVE_LATENT: {"class_type": "SaveLatent",
                      "inputs": {"samples": [SAMPLER, 0], "filename_prefix": f"latents/{tag}"}},
    }
    if decode:
        p["7"] = {"class_type": "VAEDecode", "inputs": {"samples": [SAMPLER, 0], "vae": ["1", 2]}}
        p[SAVE_IMAGE] = {"class_type": "SaveImage",
                         "inputs": {"images": ["7", 0], "filename_prefix": tag}}
    return p


def _single_latent(res):
    lat = res.latents(SAVE_LATENT)
    assert len(lat) == 1
    return lat[0]


def test_t2i_runs_and_is_deterministic(comfy_server):
    r1 = comfy_server.run(t2i_prompt(seed=1), timeout=600)
    r1.raise_for_status()
    assert r1.status == "success" and r1.error_message is None

    imgs = r1.images(SAVE_IMAGE)
    assert len(imgs) == 2
    assert all(p.is_file() and p.stat().st_size > 0 for p in imgs)
    lat1 = _single_latent(r1)
    assert lat1.shape == (2, 4, 8, 8)
    assert torch.isfinite(lat1).all()
    assert lat1.float().std() > 0

    # A different seed in between evicts the seed-1 sampler result from ComfyUI's cache.
    r2 = comfy_server.run(t2i_prompt(seed=2), timeout=600).raise_for_status()
    assert SAMPLER not in r2.cached_nodes
    lat2 = _single_latent(r2)
    assert not torch.equal(lat1, lat2)

    r3 = comfy_server.run(t2i_prompt(seed=1), timeout=600).raise_for_status()
    # The sampler really ran again (not served from the cache), and wrote new files.
    assert SAMPLER not in r3.cached_nodes
    assert "1" in r3.cached_nodes  # the checkpoint loader is cached
    assert r3.files(SAVE_LATENT, "latents") != r1.files(SAVE_LATENT, "latents")
    lat3 = _single_latent(r3)
    assert torch.equal(lat1, lat3), (lat1 - lat3).abs().max()


def test_identical_prompt_is_served_from_cache(comfy_server):
    """ComfyUI quirk the other tests rely on: re-queuing an identical prompt
    executes nothing; history repeats the old outputs (same files)."""
    p = t2i_prompt(seed=3, decode=False, tag="cachecheck")
    a = comfy_server.run(p).raise_for_status()
    b = comfy_server.run(p).raise_for_status()
    assert SAMPLER in b.cached_nodes and SAVE_LATENT in b.cached_nodes
    assert b.files(SAVE_LATENT, "latents") == a.files(SAVE_LATENT, "latents")

    # POST /free (free_memory) resets the executor: everything runs again,
    # the checkpoint is reloaded, and the result is the same.
    comfy_server.free(unload_models=True, free_memory=True)
    c = comfy_server.run(p).raise_for_status()
    assert c.cached_nodes == []
    assert c.files(SAVE_LATENT, "latents") != a.files(SAVE_LATENT, "latents")
    assert torch.equal(_single_latent(a), _single_latent(c))


def test_validation_error_is_raised(comfy_server):
    p = t2i_prompt(decode=False)
    p["1"]["inputs"]["ckpt_name"] = "does_not_exist.safetensors"
    with pytest.raises(PromptRejected) as ei:
        comfy_server.queue(p)
    assert ei.value.http_status == 400
    assert "1" in ei.value.node_errors
    assert ei.value.error["type"] == "prompt_outputs_failed_validation"


def test_execution_error_is_reported(comfy_server):
    comfy_server.add_input("not_an_image.png", b"this is not a png")
    p = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "not_an_image.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bad"}},
    }
    res = comfy_server.run(p, timeout=120)
    assert res.status == "error"
    assert res.execution_error["node_id"] == "1"
    assert res.execution_error["node_type"] == "LoadImage"
    assert res.error_message
