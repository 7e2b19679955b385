"""Motion models in a real ComfyUI server: workflow JSON through ComfyUI's own HTTP API and executor.

The pack is loaded the way ComfyUI loads custom nodes (it sits in custom_nodes/ of the server's base
directory); the SD1.5 checkpoint and motion models are random weights in the real file formats.
"""
from __future__ import annotations

import json

import pytest
import torch

from comfy_graphs import CKPT, FRAMES, REPO, base_graph, custom_noise_graph, latent, ui_to_api, with_motion, write_latent
from model_cache import MOTION_FILES, module_server, motion_models, truncated_motion_file, unknown_model_file

pytestmark = pytest.mark.comfyui

server = module_server({"animatediff_models": {
    **motion_models(*MOTION_FILES),
    "mm_truncated.safetensors": truncated_motion_file,
    "mystery.safetensors": unknown_model_file,
}})


# ---------------------------------------------------------------------------------------------
# Tests

def test_pack_loads_as_custom_node(server):
    assert server.pack_loaded(), server.log_tail()
    info = server.object_info()
    for node in ("MotionKitLoadMotionModel", "MotionKitApplyMotionModel"):
        assert node in info
    choices = info["MotionKitLoadMotionModel"]["input"]["required"]["model_name"][0]
    assert "mm_v2_random.safetensors" in choices


def test_zero_proj_out_gives_plain_frames_and_random_motion_changes_them(server):
    plain = latent(server, base_graph())
    zero = latent(server, with_motion(base_graph(), "mm_v2_zero_out.safetensors"))
    assert torch.equal(zero, plain), "a motion model whose proj_out is zero must be an exact identity"
    anim = latent(server, with_motion(base_graph(), "mm_v2_random.safetensors"))
    assert (anim - plain).abs().amax(dim=(1, 2, 3)).min() > 1e-3, "every frame must change"
    again = latent(server, base_graph(seed=8))  # re-execute the sampler with plain SD...
    plain_after = latent(server, base_graph())  # ...and again with the first seed
    assert not torch.equal(again, plain_after)
    assert torch.equal(plain_after, plain), "plain SD after an animation run must be unchanged"


@pytest.mark.parametrize("frame", [3])
def test_frames_are_coupled_with_samplercustomadvanced(server, frame):
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(FRAMES, 4, 8, 8, generator=g) * 80.0
    x_t2 = x_t.clone()
    x_t2[frame] = torch.randn(4, 8, 8, generator=g) * 80.0
    write_latent(server, "noise_a.latent", x_t)
    write_latent(server, "noise_b.latent", x_t2)
    a, b = (latent(server, custom_noise_graph(n)) for n in ("noise_a.latent", "noise_b.latent"))
    changed = (a - b).abs().amax(dim=(1, 2, 3))
    assert changed[frame] > 1e-3
    assert torch.all(changed[torch.arange(FRAMES) != frame] == 0), "plain SD: frames are independent"

    ma, mb = (latent(server, with_motion(custom_noise_graph(n), "mm_v2_random.safetensors", sampler_node="22"))
              for n in ("noise_a.latent", "noise_b.latent"))
    changed = (ma - mb).abs().amax(dim=(1, 2, 3))
    assert torch.all(changed > 1e-4), f"with motion, every frame must feel frame {frame}'s noise: {changed}"


def test_ksampler_advanced_and_auto_schedule(server):
    g = base_graph()
    g["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "add_noise": "enable", "noise_seed": 7, "steps": 1, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
        "start_at_step": 0, "end_at_step": 10000, "return_with_leftover_noise": "disable",
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}}
    zero_keep = latent(server, with_motion(g, "mm_v2_zero_out.safetensors"))
    zero_auto = latent(server, with_motion(g, "mm_v2_zero_out.safetensors", schedule="autoselect"))
    # autoselect installs sqrt_linear for AnimateDiff v2: a different schedule, so different frames
    assert zero_keep.shape == zero_auto.shape == (FRAMES, 4, 8, 8)
    assert not torch.equal(zero_keep, zero_auto)


@pytest.mark.example  # the same API workflow at 2 frames: test_queue_comfy.py; its UI version: test_preview_browser.py
def test_example_workflow_runs(server):
    api = json.loads((REPO / "example_workflows" / "api" / "txt2anim_sd15_api.json").read_text())
    api["4"]["inputs"]["ckpt_name"] = CKPT
    api["10"]["inputs"]["model_name"] = "mm_v2_random.safetensors"
    api["5"]["inputs"].update(width=64, height=64)
    api["3"]["inputs"]["steps"] = 1
    frames = api["5"]["inputs"]["batch_size"]
    assert frames == 16
    res = server.run(api).raise_for_status()
    (webp,) = res.images("9")
    from PIL import Image
    with Image.open(webp) as im:
        assert im.n_frames == frames and im.size == (64, 64)


ERRORS = [
    # (motion file, frames, expected phrases in the error)
    ("mm_sdxl_random.safetensors", FRAMES, ["SDXL motion model", "MODEL is SD1.5"]),
    ("v2_lora_ZoomIn.ckpt", FRAMES, ["MotionLoRA", "not a motion model"]),
    ("v3_sd15_adapter.ckpt", FRAMES, ["domain adapter", "LoraLoaderModelOnly"]),
    ("v3_sd15_sparsectrl_rgb.ckpt", FRAMES, ["SparseCtrl"]),
    ("mm_truncated.safetensors", FRAMES, ["mm_truncated.safetensors", "download it again"]),
    ("mystery.safetensors", FRAMES, ["Key patterns seen", "encoder.layers.N.weight"]),
    ("mm_v2_random.safetensors", 33, ["at most 32 frames", "33 frames", "context windows"]),
]


def test_errors_are_clear_and_leave_comfyui_usable(server):
    plain = latent(server, base_graph(frames=2))
    for name, frames, phrases in ERRORS:
        res = server.run(with_motion(base_graph(frames=frames), name))
        assert res.status == "error", f"{name}: expected an error"
        for phrase in phrases:
            assert phrase in res.error_message, f"{name}: {phrase!r} not in {res.error_message!r}"
    # anything an error left patched stays patched: one plain run after all of them shows it
    latent(server, base_graph(frames=2, seed=99))  # force the plain sampler to run again
    assert torch.equal(latent(server, base_graph(frames=2)), plain), "an error left ComfyUI patched"


def test_ui_workflow_matches_api_workflow(server):
    ui = json.loads((REPO / "example_workflows" / "txt2anim_sd15.json").read_text())
    api = json.loads((REPO / "example_workflows" / "api" / "txt2anim_sd15_api.json").read_text())
    converted = ui_to_api(ui, server.object_info())
    assert converted == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
