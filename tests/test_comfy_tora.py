"""Tora / CogVideoX in a real ComfyUI server: the example workflow as shipped (its API twin, and its UI file
converted), run at a tiny random configuration in the published diffusers folder layout (tests/cogvideox_files.py;
the T5-XXL replaced by the test server's tiny T5, tests/support_pack), the trajectory's effect, and the errors an
artist meets. 64x64 pixels, 9 frames, 2 steps."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import cogvideox_files
from comfy_graphs import assert_nodes_explained, REPO, ui_to_api
from model_cache import cache_dir, module_server

pytestmark = pytest.mark.comfyui
NAME = "tora_trajectory_t2v"
NODES = ("MotionKitLoadCogVideoX", "MotionKitLoadCogVideoXVAE", "MotionKitCogVideoXTextEncode",
         "MotionKitEmptyCogVideoXLatent", "MotionKitCogVideoXSampling", "MotionKitCogVideoXDynamicCFG",
         "MotionKitCogVideoXDecode", "MotionKitApplyToraTrajectory")


def tiny_folder(name: str, tora: bool):
    def build() -> Path:
        root = cache_dir() / name
        if not (root / "vae" / "diffusion_pytorch_model.safetensors").exists():
            cogvideox_files.write_tora_folder(root, seed=0, tora=tora)
        return root
    return build


server = module_server({"cogvideox": {"tora_tiny": tiny_folder("tora_tiny_v1", True),
                                      "cogvideox_tiny": tiny_folder("cogvideox_tiny_v1", False),
                                      "sd15_in_wrong_folder.safetensors": lambda: Path(server_checkpoint())}})


def server_checkpoint() -> Path:
    from sd15_checkpoint import cached_sd15_checkpoint
    return cached_sd15_checkpoint()


def example_api() -> dict:
    return json.loads((REPO / "example_workflows" / "api" / f"{NAME}_api.json").read_text())


def small(g: dict, model: str = "tora_tiny/", frames: int = 9) -> dict:
    """The example with the tiny files: 64x64, `frames` frames, 2 steps; the sampled latent saved too."""
    g = copy.deepcopy(g)
    for node in g.values():
        i = node["inputs"]
        kind = node["class_type"]
        if kind == "MotionKitLoadCogVideoX":
            i["model_name"] = model
        elif kind == "MotionKitLoadCogVideoXVAE":
            i["vae_name"] = "tora_tiny/vae"
        elif kind == "CLIPLoader":
            node.update(class_type="TestTinyT5CLIP", inputs={"seed": 0})
        elif kind == "MotionKitEmptyCogVideoXLatent":
            i.update(width=64, height=64, frames=frames)
        elif kind == "MotionKitCogVideoXSampling":
            i["steps"] = 2
        elif kind == "MotionKitSaveAnimation":
            i.update(filename_prefix="t/tora_example", format="gif")
    g["90"] = {"class_type": "SaveLatent", "inputs": {"samples": ["12", 0], "filename_prefix": "t/tora"}}
    return g


def with_strength(g: dict, strength: float) -> dict:
    g = copy.deepcopy(g)
    g["7"]["inputs"]["strength"] = strength
    return g


def test_nodes_are_registered_with_tooltips(server):
    info = server.object_info()
    assert_nodes_explained(info, NODES)
    assert all(info[name]["description"] for name in NODES)
    assert "tora_tiny/" in info["MotionKitLoadCogVideoX"]["input"]["required"]["model_name"][0]
    assert "tora_tiny/vae" in info["MotionKitLoadCogVideoXVAE"]["input"]["required"]["vae_name"][0]


def test_example_ui_matches_api(server):
    ui = json.loads((REPO / "example_workflows" / f"{NAME}.json").read_text())
    assert ui_to_api(ui, server.object_info()) == {k: {"class_type": v["class_type"], "inputs": v["inputs"]}
                                                   for k, v in example_api().items()}


def test_example_runs_and_the_trajectory_steers_it(server):
    """The example end to end; its 720x480x49 trajectory is encoded again for the 64x64x9 video (with a warning).
    Strength 0 is exactly Tora's transformer without guidance; strength 1 changes the video."""
    res = server.run(small(example_api())).raise_for_status()
    assert "encoded again" in server.log_tail(200)
    (guided,) = res.latents("90")
    assert guided.shape == (1, 16, 3, 8, 8) and torch.isfinite(guided).all()
    (gif,) = res.outputs["14"]["images"]
    assert Path(gif["filename"]).suffix == ".gif"
    from PIL import Image
    assert Image.open(server.output_file(gif)).n_frames == 9  # (Pillow merges frames that are alike)
    (off,) = server.run(with_strength(small(example_api()), 0.0)).raise_for_status().latents("90")
    assert (guided - off).abs().max() > 1e-3
    g = small(example_api())  # the same seed again: the same video (the flow latents are drawn from the seed)
    (again,) = server.run(g).raise_for_status().latents("90")
    torch.testing.assert_close(again, guided, rtol=0, atol=0)


@pytest.mark.parametrize("change, phrases", [
    (lambda g: small(g, model="cogvideox_tiny/"), ["no Tora modules", "Load CogVideoX / Tora"]),
    (lambda g: small(g, model="sd15_in_wrong_folder.safetensors"), ["Stable Diffusion"]),
    (lambda g: small(g, frames=10), ["not 4k + 1", "Use 9 or 13"]),
], ids=["plain-cogvideox", "sd-checkpoint", "frames"])
def test_bad_input_is_a_clear_error_and_comfyui_stays_usable(server, change, phrases):
    res = server.run(change(example_api()))
    assert res.status == "error"
    for phrase in phrases:
        assert phrase in res.error_message, res.error_message
    assert str(cache_dir()) not in res.error_message
    server.run(small(example_api())).raise_for_status()
