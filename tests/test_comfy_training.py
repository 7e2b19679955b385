"""Train MotionLoRA in a real ComfyUI server: make clips from an image → VAE Encode → train a few steps → apply the
LoRA → sample, end to end at 64×64 × 2 frames; the saved file reproduces the trained MOTION_LORA exactly through
Load MotionLoRA; the checkpoint and motion model are unchanged afterwards; resume and bad input."""
from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from safetensors import safe_open

import comfy_graphs as cg
import motion_files as mf
from model_cache import cached, module_server

pytestmark = pytest.mark.comfyui

MOTION = "mm_v2_random.safetensors"  # fp16 v2 (model_cache.MOTION_FILES' builder); the UNet runs fp32 on CPU
FRAMES = 2
IMAGE = "training_still.png"


def still_png() -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    still = Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).resize((160, 96))
    buf = io.BytesIO()
    still.save(buf, format="PNG")
    return buf.getvalue()


server = module_server({"animatediff_models": {MOTION: cached(MOTION, lambda: mf.v2(seed=1, dtype=torch.float16))}},
                       inputs={IMAGE: still_png})


def train_graph(filename, steps=2, seed=0, rank=4, resume=None, overwrite=False, lr=1e-3):
    g = cg.with_motion(cg.base_graph(frames=FRAMES), MOTION)
    g.update({
        "20": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "21": {"class_type": "MotionKitMakeCameraMoveClips", "inputs": {
            "images": ["20", 0], "move": "zoom_in", "frames": FRAMES, "amount": 0.5, "width": 64, "height": 64,
            "variations": 2, "seed": 0}},
        "22": {"class_type": "VAEEncode", "inputs": {"pixels": ["21", 0], "vae": ["4", 2]}},
        "23": {"class_type": "MotionKitTrainMotionLoRA", "inputs": {
            "model": ["4", 0], "motion_model": ["10", 0], "clips": ["22", 0], "captions": ["6", 0],
            "frames_per_clip": ["21", 1], "filename": filename, "rank": rank, "learning_rate": lr, "steps": steps,
            "clips_per_step": 1, "seed": seed, "training_dtype": "fp32", "gradient_checkpointing": True,
            "save_every": 1, "overwrite": overwrite, **({"resume_from": resume} if resume else {}),
            "caption_dropout": 0.1, "clip": ["4", 1]}},  # the empty caption is "" through the checkpoint's CLIP
        "24": {"class_type": "PreviewImage", "inputs": {"images": ["23", 1]}},
    })
    g["11"]["inputs"]["motion_lora"] = ["23", 0]
    return g


def load_lora_graph(name):
    g = cg.with_motion(cg.base_graph(frames=FRAMES), MOTION)
    g["30"] = {"class_type": "MotionKitLoadMotionLoRA", "inputs": {"lora_name": name, "strength": 1.0}}
    g["11"]["inputs"]["motion_lora"] = ["30", 0]
    return g


def run_latent(server, graph):
    res = server.run(graph).raise_for_status()
    (out,) = res.latents("9")
    assert torch.isfinite(out).all()
    return res, out


def test_train_apply_sample_end_to_end_and_reload_exactly(server):
    plain = cg.with_motion(cg.base_graph(frames=FRAMES), MOTION)
    _, before = run_latent(server, plain)

    res, trained = run_latent(server, train_graph("t_zoom", steps=1))
    assert res.images("24"), "the loss curve image is missing"
    path = server.models_dir / "animatediff_motion_lora" / "t_zoom.safetensors"
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        assert f.metadata()["motionkit_training"].count('"step": 1')
    assert len(keys) == 336 and all(".processor.to_" in k and "_lora." in k for k in keys)

    _, reloaded = run_latent(server, load_lora_graph("t_zoom.safetensors"))
    assert torch.equal(reloaded, trained), "Load MotionLoRA of the saved file must reproduce the trained LoRA exactly"
    assert not torch.equal(trained, before), "a training step changed nothing"

    res, after = run_latent(server, plain)
    assert "3" not in res.cached_nodes  # really sampled again, not answered from ComfyUI's cache
    assert torch.equal(after, before), "training left the checkpoint or the motion model changed"

    # resume: continues the step count from the saved file
    run_latent(server, train_graph("t_zoom_more", steps=1, resume="t_zoom.safetensors"))
    with safe_open(str(server.models_dir / "animatediff_motion_lora" / "t_zoom_more.safetensors"), "pt") as f:
        assert '"step": 2' in f.metadata()["motionkit_training"]


ERRORS = [
    # (graph change, phrases the message must hold)
    (lambda: train_graph("t_zoom", seed=5), ["'t_zoom.safetensors' in ComfyUI's models/animatediff_motion_lora folder "
                                             "already exists", "overwrite"]),
    (lambda: train_graph("t_rank", rank=8, resume="t_zoom.safetensors"), ["rank 4", "rank is set to 8"]),
    (lambda: _set(train_graph("t_short"), "23", frames_per_clip=1), ["at least 2"]),
    (lambda: _set(train_graph("t_odd"), "23", frames_per_clip=3), ["divisor"]),
]


def _set(graph, node, **inputs):
    g = copy.deepcopy(graph)
    g[node]["inputs"].update(inputs)
    return g


def test_bad_input_is_refused_clearly_and_comfyui_stays_usable(server):
    if not (server.models_dir / "animatediff_motion_lora" / "t_zoom.safetensors").exists():
        run_latent(server, train_graph("t_zoom", steps=1))
    for make, phrases in ERRORS:
        res = server.run(make())
        assert res.status == "error"
        for phrase in phrases:
            assert phrase in res.error_message, f"{phrase!r} not in {res.error_message!r}"
        assert str(server.base_dir) not in res.error_message, "a host path reached the prompt's sender"
    plain = cg.with_motion(cg.base_graph(frames=FRAMES), MOTION)
    run_latent(server, plain)


EXAMPLES = ("train_motion_lora_zoom_in", "train_motion_lora_video_folder")


def test_example_ui_workflows_match_their_api_twins(server):
    import json
    info = server.object_info()
    for name in EXAMPLES:
        ui = json.loads((cg.REPO / "example_workflows" / f"{name}.json").read_text())
        api = json.loads((cg.REPO / "example_workflows" / "api" / f"{name}_api.json").read_text())
        assert cg.ui_to_api(ui, info) == {k: {"class_type": v["class_type"], "inputs": v["inputs"]}
                                           for k, v in api.items()}, name


def test_video_folder_example_runs_at_tiny_size(server):
    """The API example with test models and sizes: a folder of two short videos → clips → train 1 step → sample."""
    import json
    from motionkit.media.animation import AnimationSettings, write_animation

    folder = server.input_dir / "motion_clips"
    folder.mkdir(exist_ok=True)
    for i in range(2):
        frames = torch.stack([torch.roll(torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(i)), 4 * f, 1)
                              for f in range(10)])
        write_animation(frames, str(folder / f"clip{i}.mp4"), AnimationSettings(format="mp4", fps=8))
    g = json.loads((cg.REPO / "example_workflows" / "api" / "train_motion_lora_video_folder_api.json").read_text())
    g["4"]["inputs"]["ckpt_name"] = cg.CKPT
    g["10"]["inputs"]["model_name"] = MOTION
    g["21"]["inputs"].update(frames=FRAMES, frame_stride=2, width=64, height=64)
    g["23"]["inputs"].update(steps=1, rank=4, training_dtype="fp32", filename="t_folder", clips_per_step=2)
    g["5"]["inputs"].update(width=64, height=64, batch_size=FRAMES)
    g["3"]["inputs"]["steps"] = 2
    res = server.run(g).raise_for_status()
    assert res.files("9", "images") or res.outputs.get("9"), "no animation saved"
    assert (server.models_dir / "animatediff_motion_lora" / "t_folder.safetensors").exists()
    # the folder input is confined like every path input: a folder outside ComfyUI's is refused, unnamed
    g["23"]["inputs"].update(filename="t_folder_escape")
    for key, node in g.items():
        if node["class_type"] == "MotionKitVideoFolderClips":
            node["inputs"]["folder"] = str(folder.parent.parent.parent)  # outside input/ (the test base dir)
    escaped = server.run(g)
    assert escaped.execution_error is not None and "outside" in escaped.execution_error["exception_message"]
