"""Workflow graphs (API format) for the real-ComfyUI tests, and running them (no tests here).

base_graph/with_motion/custom_noise_graph: SD1.5 64x64 with SaveLatent "9" (test_comfy_motion.py's graphs);
base/add_motion/add_windows: the long-animation variant (cfg 1, 40 frames) where each add_* puts its node
between the sampler and the model it had; ui_to_api: what the frontend queues for a UI workflow.
"""
from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
CKPT = "sd15_random.safetensors"
FRAMES = 8
LONG = 40  # base()'s default: longer than any motion model's 32 frames, so context windows matter


def base_graph(frames=FRAMES, seed=7, steps=1, cfg=7.0, prefix="t/plain"):
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat walking", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": frames}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": prefix}},
    }


def with_motion(graph, motion_name, schedule="use model's own", scale=1.0, sampler_node="3"):
    g = copy.deepcopy(graph)
    g["10"] = {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion_name}}
    g["11"] = {"class_type": "MotionKitApplyMotionModel", "inputs": {
        "model": ["4", 0], "motion_model": ["10", 0], "motion_scale": scale,
        "start_percent": 0.0, "end_percent": 1.0, "noise_schedule": schedule}}
    g[sampler_node]["inputs"]["model"] = ["11", 0]
    g["9"]["inputs"]["filename_prefix"] = "t/anim"
    return g


def latent(server, graph) -> torch.Tensor:
    res = server.run(graph).raise_for_status()
    (out,) = res.latents("9")
    assert torch.isfinite(out).all()
    return out


def custom_noise_graph(latent_file: str):
    """SamplerCustomAdvanced from a given x_T (DisableNoise): lets a test change one frame's noise."""
    g = base_graph()
    del g["5"], g["3"]
    g.update({
        "20": {"class_type": "LoadLatent", "inputs": {"latent": latent_file}},
        "21": {"class_type": "DisableNoise", "inputs": {}},
        "22": {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 7.0}},
        "23": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "24": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": 1, "denoise": 1.0}},
        "25": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["21", 0], "guider": ["22", 0], "sampler": ["23", 0], "sigmas": ["24", 0], "latent_image": ["20", 0]}},
    })
    g["9"]["inputs"]["samples"] = ["25", 0]
    return g


def write_latent(server, name: str, tensor: torch.Tensor):
    from safetensors.torch import save_file
    path = server.input_dir / name
    # latent_format_version_0 marks the tensor as already scaled (LoadLatent multiplies by 1.0)
    save_file({"latent_tensor": tensor.contiguous(), "latent_format_version_0": torch.tensor([])}, str(path))


def base(frames=LONG, steps=1, cfg=1.0, seed=11):
    return base_graph(frames=frames, seed=seed, steps=steps, cfg=cfg, prefix="t/ctx")


def add_motion(g, name):
    g = copy.deepcopy(g)
    g["10"] = {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": name}}
    g["11"] = {"class_type": "MotionKitApplyMotionModel", "inputs": {
        "model": g["3"]["inputs"]["model"], "motion_model": ["10", 0], "motion_scale": 1.0,
        "start_percent": 0.0, "end_percent": 1.0, "noise_schedule": "use model's own"}}
    g["3"]["inputs"]["model"] = ["11", 0]
    return g


def add_windows(g, length=16, overlap=4, schedule="static", fuse="flat", stride=1, closed_loop=False):
    g = copy.deepcopy(g)
    g["12"] = {"class_type": "MotionKitContextWindows", "inputs": {
        "model": g["3"]["inputs"]["model"], "context_length": length, "context_overlap": overlap,
        "schedule": schedule, "context_stride": stride, "fuse_method": fuse, "closed_loop": closed_loop}}
    g["3"]["inputs"]["model"] = ["12", 0]
    return g


def changed_frames(a, b) -> set[int]:
    return {int(i) for i in torch.nonzero((a - b).abs().amax(dim=(1, 2, 3)) > 0).flatten()}


def png(width: int, height: int, flip: bool = False) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height) + 64], -1)
    if flip:
        rgb = rgb[::-1, ::-1]
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """What frontend 1.27 queues for a UI workflow: widget values in INPUT_TYPES order (plus the upload button
    it adds after the required inputs of a video_upload/image_upload combo, and "control_after_generate" after
    an input that asks for it or, by the frontend's legacy rule, any INT named seed or noise_seed), where a
    linked widget keeps its value in widgets_values but sends the link, and an optional widget missing from
    widgets_values sends its default. tests/test_templates_browser.py checks the templates with the frontend's
    own graphToPrompt instead."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node["type"] in ("Note", "MarkdownNote"):
            continue  # frontend-only nodes (an example's description): never queued
        spec = object_info[node["type"]]["input"]
        required = dict(spec.get("required", {}))
        if any(isinstance(v[0], list) and len(v) > 1 and (v[1].get("video_upload") or v[1].get("image_upload"))
               for v in required.values()):
            required["upload"] = ("UPLOAD_BUTTON", {})
        linked = {i["name"]: i["link"] for i in node.get("inputs", []) if i.get("link") is not None}
        inputs, values = {}, list(node.get("widgets_values", []))
        for name, cfg in [*required.items(), *spec.get("optional", {}).items()]:
            kind, opts = cfg[0], (cfg[1] if len(cfg) > 1 else {})
            if opts.get("forceInput"):
                continue  # a socket only, never a widget
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "UPLOAD_BUTTON"):
                if values:
                    value = values.pop(0)
                else:
                    assert name in spec.get("optional", {}), \
                        f"node {node['id']} ({node['type']}) has no widget value for {name} (a value missing before it?)"
                    # an optional widget newer than the workflow: the frontend sends its default
                    value = opts.get("default", kind[0] if isinstance(kind, list) else None)
                if opts.get("control_after_generate", kind == "INT" and name in ("seed", "noise_seed")) and values:
                    values.pop(0)
                if kind != "UPLOAD_BUTTON" and name not in linked:
                    inputs[name] = value
        assert not values, f"node {node['id']} ({node['type']}) has extra widget values {values}"
        for name, link_id in linked.items():
            link = links[link_id]
            inputs[name] = [str(link[1]), link[2]]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def assert_nodes_explained(info: dict, names) -> None:
    """Each node (object_info) shows as one of MotionKit's (🎞️, a MotionKit category) and every input has a tooltip."""
    for name in names:
        spec = info[name]
        assert spec["display_name"].endswith(" 🎞️") and spec["category"].startswith("MotionKit"), name
        for group in ("required", "optional"):
            for inp, (_, *opts) in spec["input"].get(group, {}).items():
                assert opts and opts[0].get("tooltip"), f"{name}.{inp} has no tooltip"

