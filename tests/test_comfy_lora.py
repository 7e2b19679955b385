"""MotionLoRA stacks and the v3 domain adapter in a real ComfyUI server (workflow JSON through its HTTP API).

Random-weight files in the real layouts (§4.9, §4.10). The motion model here is fp32, the dtype the UNet runs
in on CPU, so every graph shares the one loaded motion model: a LoRA run must not leave it changed.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

import comfy_graphs as cg
import motion_files as mf
from model_cache import cached, module_server

pytestmark = pytest.mark.comfyui

MOTION = "mm_v2_random_fp32.safetensors"
V3 = "v3_random.safetensors"
ZOOM, PAN = "v2_lora_ZoomIn_random.ckpt", "v2_lora_PanLeft_random.ckpt"
ADAPTER = "v3_sd15_adapter_random.safetensors"
MOTION_AS_LORA = "mm_sd_v15_v2_tiny.ckpt"  # a motion model put in the MotionLoRA folder by mistake
FRAMES = 4

FILES = {
    MOTION: lambda: mf.v2(seed=3),
    V3: lambda: mf.v3(seed=4, dtype=torch.float16),
    ZOOM: lambda: mf.motion_lora(rank=8, seed=11, scale=0.03),
    PAN: lambda: mf.motion_lora(rank=8, seed=12, scale=0.03),
    ADAPTER: lambda: mf.domain_adapter_full(rank=4, seed=13),
    # every tensor a stride-0 view of one value: the full v2 layout in a few KB
    MOTION_AS_LORA: lambda: {k: torch.ones(()).expand(v.shape) for k, v in mf.v2(device="meta").items()},
}
FOLDERS = {
    "animatediff_models": [MOTION, V3],
    "animatediff_motion_lora": [ZOOM, PAN, ADAPTER, MOTION_AS_LORA],
    "loras": [ADAPTER, ZOOM],
}


server = module_server({folder: {name: cached(name, FILES[name]) for name in names} for folder, names in FOLDERS.items()})


def with_loras(graph, loras):
    """Load MotionLoRA nodes chained through prev_motion_lora, the last one into Apply Motion Model ("11")."""
    g, prev = copy.deepcopy(graph), None
    for i, (name, strength) in enumerate(loras):
        node = str(30 + i)
        g[node] = {"class_type": "MotionKitLoadMotionLoRA", "inputs": {"lora_name": name, "strength": strength}}
        if prev:
            g[node]["inputs"]["prev_motion_lora"] = [prev, 0]
        prev = node
    g["11"]["inputs"]["motion_lora"] = [prev, 0]
    return g


def with_adapter(graph, name, scale, node_type="MotionKitApplyDomainAdapter"):
    g = copy.deepcopy(graph)
    inputs = ({"adapter_name": name, "scale": scale} if node_type == "MotionKitApplyDomainAdapter"
              else {"lora_name": name, "strength_model": scale})
    g["40"] = {"class_type": node_type, "inputs": {"model": ["4", 0], **inputs}}
    g["3"]["inputs"]["model"] = ["40", 0]
    return g


def sampled(server, graph) -> torch.Tensor:
    """The latents of a run in which the sampler really ran (not answered from ComfyUI's cache)."""
    res = server.run(graph).raise_for_status()
    assert "3" not in res.cached_nodes
    (out,) = res.latents("9")
    assert torch.isfinite(out).all()
    return out


def changed(a, b) -> float:
    return float((a - b).abs().amax())


def test_nodes_are_registered(server):
    info = server.object_info()
    assert ZOOM in info["MotionKitLoadMotionLoRA"]["input"]["required"]["lora_name"][0]
    assert ADAPTER in info["MotionKitApplyDomainAdapter"]["input"]["required"]["adapter_name"][0]
    assert info["MotionKitApplyMotionModel"]["input"]["optional"]["motion_lora"][0] == "MOTION_LORA"


def test_motion_lora_stack_and_the_shared_motion_model(server):
    """(The math, composition and order of a stack are checked on the weights in test_motion_lora.py.)"""
    motion = cg.with_motion(cg.base_graph(frames=FRAMES), MOTION)
    motion["3"]["inputs"]["cfg"] = 1.0  # cond only: the LoRA's weights are the subject
    base = sampled(server, motion)
    zero = sampled(server, with_loras(motion, [(ZOOM, 0.0)]))
    assert torch.equal(zero, base), "a MotionLoRA at strength 0 must change nothing"
    stacked = sampled(server, with_loras(motion, [(ZOOM, 1.0), (PAN, 0.5)]))
    assert changed(stacked, base) > 1e-2
    again = sampled(server, motion)  # the same loaded motion model, without LoRA
    assert torch.equal(again, base), "a LoRA run left the cached motion model changed"


def test_domain_adapter_scale_and_core_equivalence(server):
    plain = sampled(server, cg.base_graph(frames=2))
    off = sampled(server, with_adapter(cg.base_graph(frames=2), ADAPTER, 0.0))
    assert torch.equal(off, plain), "scale 0 must leave the MODEL as it is"
    on = sampled(server, with_adapter(cg.base_graph(frames=2), ADAPTER, 1.0))
    assert changed(on, plain) > 1e-2
    core = sampled(server, with_adapter(cg.base_graph(frames=2), ADAPTER, 1.0, node_type="LoraLoaderModelOnly"))
    assert torch.equal(on, core), "the adapter must act exactly as core LoraLoaderModelOnly applies it"
    assert torch.equal(sampled(server, cg.base_graph(frames=2)), plain), "the adapter left the checkpoint changed"


ERRORS = [
    # (what, file, phrases the message must hold)
    ("adapter", ZOOM, [ZOOM, "is a MotionLoRA", "Load MotionLoRA"]),
    ("lora", ADAPTER, [ADAPTER, "domain adapter", "Apply Domain Adapter"]),
    ("lora", MOTION_AS_LORA, [MOTION_AS_LORA, "is a motion model", "Load Motion Model"]),
]


def test_wrong_files_are_refused_clearly_and_comfyui_stays_usable(server):
    motion = cg.with_motion(cg.base_graph(frames=2), MOTION)
    before = sampled(server, with_loras(motion, [(ZOOM, 1.0)]))
    for node, name, phrases in ERRORS:
        graph = (with_adapter(cg.base_graph(frames=2), name, 1.0) if node == "adapter"
                 else with_loras(motion, [(ZOOM, 1.0), (name, 1.0)]))
        res = server.run(graph)
        assert res.status == "error", f"{name}: expected an error"
        for phrase in phrases:
            assert phrase in res.error_message, f"{name}: {phrase!r} not in {res.error_message!r}"
    sampled(server, motion)
    assert torch.equal(sampled(server, with_loras(motion, [(ZOOM, 1.0)])), before), "an error left something patched"


EXAMPLES = {
    "motion_lora_stack_sd15": {"mm_sd_v15_v2.ckpt": MOTION, "v2_lora_ZoomIn.ckpt": ZOOM, "v2_lora_PanLeft.ckpt": PAN},
    "v3_domain_adapter_sd15": {"v3_sd15_mm.ckpt": V3, "v3_sd15_adapter.ckpt": ADAPTER},
}


@pytest.mark.example  # the same nodes: test_motion_lora_stack_and_the_shared_motion_model, test_domain_adapter_scale_and_core_equivalence
@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_workflow_runs(server, example):
    api = json.loads((cg.REPO / "example_workflows" / "api" / f"{example}_api.json").read_text())
    names = {**EXAMPLES[example], "v1-5-pruned-emaonly.safetensors": cg.CKPT}
    for node in api.values():
        for key, value in node["inputs"].items():
            if isinstance(value, str) and value in names:
                node["inputs"][key] = names[value]
    assert not [v for n in api.values() for v in n["inputs"].values() if isinstance(v, str) and v.endswith((".ckpt", ".safetensors"))
                and v not in names.values()], "a model file of the example was not substituted"
    api["5"]["inputs"].update(width=64, height=64, batch_size=FRAMES)
    api["3"]["inputs"]["steps"] = 2
    res = server.run(api).raise_for_status()
    (webp,) = res.images("9")
    from PIL import Image
    with Image.open(webp) as im:
        assert im.n_frames == FRAMES and im.size == (64, 64)


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_ui_workflow_matches_api_workflow(server, example):
    ui = json.loads((cg.REPO / "example_workflows" / f"{example}.json").read_text())
    api = json.loads((cg.REPO / "example_workflows" / "api" / f"{example}_api.json").read_text())
    converted = cg.ui_to_api(ui, server.object_info())
    assert converted == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
