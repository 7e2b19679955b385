"""Open an AnimateDiff-Evolved workflow in MotionKit (ade_import): test graphs built from ADE's node definitions
(ADE 90fb133, as the frontend saves them: tests/ade_graphs.py), converted; every result checked for MotionKit node
classes and widgets that fit their inputs, consistent links, kept positions and a report line for every ADE node.
Not tested here: that the converted workflow renders what ADE rendered (needs ADE installed beside MotionKit)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ade_graphs import SPECS, UIGraph, sd_base
from motionkit.ade_import import AdeImportError, convert_workflow, parse_workflow, read_workflow
from motionkit.ade_import.table import CORE_SPECS, COVERED, FEATURES, VIEWS
from motionkit.ade_import.report import CONVERTED, KEPT, NOT_CARRIED, NOTE, REMOVED
from motionkit.ade_import.specs import Linked, VersionMismatch, map_widgets, motionkit_specs

REPO = Path(__file__).resolve().parent.parent
LARGE = REPO / "tests" / "data" / "ade_large_controlnet_vhs.json"
TARGETS = motionkit_specs()


# ------------------------------------------------------------------------------------------------- the checks
def fits(entry, value) -> bool:
    kind = entry["type"]
    if kind == "INT":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "FLOAT":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "BOOLEAN":
        return isinstance(value, bool)
    if kind == "STRING":
        return isinstance(value, str)
    return isinstance(value, str) and (not entry.get("options") or value in entry["options"]
                                       or entry["name"].endswith("_name") or entry["name"] == "video")


def check(before: dict, after: dict, report, targets=TARGETS) -> None:
    """The converted workflow is well-formed and every ADE node of `before` has its report line."""
    nodes = {n["id"]: n for n in after["nodes"]}
    links = {l[0]: l for l in after["links"]}
    assert len(nodes) == len(after["nodes"]) and len(links) == len(after["links"]), "duplicate ids"
    assert after["last_node_id"] >= max(nodes) and after["last_link_id"] >= max(links, default=0)
    old = {n["id"]: n for n in before["nodes"]}
    for nid, node in nodes.items():
        if nid not in old:
            assert nid > before["last_node_id"], f"new node {nid} reuses an id at or below last_node_id"
        spec = targets.get(node["type"]) or CORE_SPECS.get(node["type"])
        if node["type"].startswith("MotionKit"):
            assert spec is not None, f"#{nid} {node['type']} is not in MotionKit's registry"
        if spec is not None and (node["type"].startswith("MotionKit") or nid not in old
                                 or old[nid]["type"] != node["type"]):
            slots = [e for e in spec["inputs"] if e["widget"]]
            expected = sum(1 + bool(e.get("control_after_generate")) for e in slots)
            assert len(node["widgets_values"]) == expected, (nid, node["type"], node["widgets_values"])
            values = iter(node["widgets_values"])
            for e in slots:
                v = next(values)
                assert fits(e, v), f"#{nid} {node['type']}.{e['name']} = {v!r} does not fit {e['type']}"
                assert e.get("min", v) <= v <= e.get("max", v), f"#{nid} {node['type']}.{e['name']} = {v} out of range"
                if e.get("control_after_generate"):
                    next(values)
            names = {e["name"] for e in spec["inputs"]}
            assert {i["name"] for i in node["inputs"]} <= names, (node["type"], node["inputs"])
            for e in spec["inputs"]:  # every socket input is listed (the frontend links by these)
                if not e["widget"]:
                    assert any(i["name"] == e["name"] for i in node["inputs"]), (node["type"], e["name"])
        if nid in old and old[nid]["type"] == node["type"]:
            assert node["pos"] == old[nid]["pos"], f"#{nid} moved"
    for lid, (_, src, src_slot, dst, dst_slot, kind) in links.items():
        assert src in nodes and dst in nodes, f"link {lid} to a missing node"
        assert lid in (nodes[src]["outputs"][src_slot].get("links") or []), f"link {lid} not in #{src}'s outputs"
        assert nodes[dst]["inputs"][dst_slot]["link"] == lid, f"link {lid} not at #{dst}'s input {dst_slot}"
        out_type = nodes[src]["outputs"][src_slot]["type"]
        in_type = nodes[dst]["inputs"][dst_slot]["type"]
        if nodes[src]["type"] != "Reroute" and nodes[dst]["type"] != "Reroute":
            assert kind == out_type, f"link {lid} type {kind} from an output of type {out_type}"
            if nodes[dst]["type"].startswith("MotionKit"):
                assert kind == in_type, f"link {lid} type {kind} into #{dst}.{nodes[dst]['inputs'][dst_slot]['name']}"
    for nid, node in nodes.items():
        for inp in node["inputs"]:
            assert inp.get("link") is None or inp["link"] in links, f"#{nid}.{inp['name']} names a missing link"
        for out in node.get("outputs") or []:
            for lid in out.get("links") or []:
                assert lid in links and links[lid][1] == nid, f"#{nid}'s output names link {lid} it does not start"
    ade = [n for n in before["nodes"] if n["type"] in SPECS or n["type"].startswith("ADE_")]
    reported = {l.node for l in report.lines}
    for n in ade:
        assert n["id"] in reported, f"#{n['id']} {n['type']} is not in the report"
        if n["id"] in nodes and nodes[n["id"]]["type"] == n["type"]:
            assert any(l.node == n["id"] and l.status == KEPT for l in report.lines), \
                f"#{n['id']} {n['type']} is still there but not reported as kept"


def convert(g: UIGraph, targets=None):
    before = g.workflow()
    after, report = convert_workflow(before, targets)
    check(before, after, report, targets or TARGETS)
    return after, report


def by_type(wf, kind):
    return [n for n in wf["nodes"] if n["type"] == kind]


def widgets(wf, node, targets=TARGETS) -> dict:
    spec = targets[node["type"]]
    values = iter(node["widgets_values"])
    out = {}
    for e in spec["inputs"]:
        if e["widget"]:
            out[e["name"]] = next(values)
            if e.get("control_after_generate"):
                next(values)
    return out


def feeder(wf, node, name):
    """(source node, slot) of `node`'s input `name`."""
    lid = next(i["link"] for i in node["inputs"] if i["name"] == name)
    if lid is None:
        return None
    link = next(l for l in wf["links"] if l[0] == lid)
    return next(n for n in wf["nodes"] if n["id"] == link[1]), link[2]


def statuses(report, nid):
    return {l.status for l in report.lines if l.node == nid}


# ------------------------------------------------------------------------------------------------- graphs
def gen2(g: UIGraph, ckpt, ks, apply="ADE_ApplyAnimateDiffModel", context="ADE_StandardUniformContextOptions",
         **apply_values):
    load = g.ade("ADE_LoadAnimateDiffModel", model_name="mm_sd_v15_v2.ckpt")
    app = g.ade(apply, **apply_values)
    use = g.ade("ADE_UseEvolvedSampling", beta_schedule="sqrt_linear (AnimateDiff)")
    g.link(load, 0, app, "motion_model")
    g.link(app, 0, use, "m_models")
    g.link(ckpt, 0, use, "model")
    g.link(use, 0, ks, "model")
    ctx = None
    if context:
        ctx = g.ade(context)
        g.link(ctx, 0, use, "context_options")
    return load, app, use, ctx


def test_gen2_basic_chain_rewired_in_place():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load, app, use, ctx = gen2(g, ckpt, ks, start_percent=0.1, end_percent=0.8)
    wf, report = convert(g)
    ksampler = next(n for n in wf["nodes"] if n["id"] == ks)
    win, _ = feeder(wf, ksampler, "model")
    assert win["type"] == "MotionKitContextWindows" and win["id"] == ctx
    assert widgets(wf, win) == {"context_length": 16, "context_overlap": 4, "schedule": "uniform",
                                "context_stride": 1, "fuse_method": "pyramid", "closed_loop": False,
                                "start_percent": 0.0, "guarantee_steps": 1}
    apply_node, _ = feeder(wf, win, "model")
    assert apply_node["id"] == app and apply_node["type"] == "MotionKitApplyMotionModel"
    w = widgets(wf, apply_node)
    assert (w["start_percent"], w["end_percent"], w["noise_schedule"], w["motion_scale"]) == \
        (0.1, 0.8, "sqrt_linear (AnimateDiff)", 1.0)
    assert feeder(wf, apply_node, "model")[0]["id"] == ckpt
    loader, _ = feeder(wf, apply_node, "motion_model")
    assert loader["id"] == load and widgets(wf, loader) == {"model_name": "mm_sd_v15_v2.ckpt"}
    assert use not in {n["id"] for n in wf["nodes"]} and REMOVED in statuses(report, use)
    assert not report.kept


def test_widget_values_are_mapped_by_name_not_position():
    """Looped Uniform has closed_loop before fuse_method, Standard Uniform has none: each lands by name."""
    g = UIGraph()
    ckpt, ks = sd_base(g)
    *_, ctx = gen2(g, ckpt, ks, context=None)
    use = next(n["id"] for n in g.nodes if n["type"] == "ADE_UseEvolvedSampling")
    ctx = g.ade("ADE_LoopedUniformContextOptions", context_length=20, context_stride=2, context_overlap=6,
                closed_loop=True, fuse_method="flat")
    g.link(ctx, 0, use, "context_options")
    wf, report = convert(g)
    win = next(n for n in wf["nodes"] if n["id"] == ctx)
    assert widgets(wf, win) == {"context_length": 20, "context_overlap": 6, "schedule": "uniform looped",
                                "context_stride": 2, "fuse_method": "flat", "closed_loop": True,
                                "start_percent": 0.0, "guarantee_steps": 1}


@pytest.mark.parametrize("kind, schedule, stride, overlap", [
    ("ADE_StandardUniformContextOptions", "uniform", 3, 5), ("ADE_StandardStaticContextOptions", "static", 1, 5),
    ("ADE_LoopedUniformContextOptions", "uniform looped", 3, 5),
    ("ADE_AnimateDiffUniformContextOptions", "uniform looped", 3, 5), ("ADE_BatchedContextOptions", "batched", 1, 0)])
def test_context_options(kind, schedule, stride, overlap):
    g = UIGraph()
    ckpt, ks = sd_base(g)
    *_, use_free = gen2(g, ckpt, ks, context=None)
    use = next(n["id"] for n in g.nodes if n["type"] == "ADE_UseEvolvedSampling")
    names = {e["name"] for e in SPECS[kind]["inputs"]}
    values = {k: v for k, v in dict(context_length=24, context_stride=3, context_overlap=5).items() if k in names}
    ctx = g.ade(kind, **values)
    g.link(ctx, 0, use, "context_options")
    wf, report = convert(g)
    win = next(n for n in wf["nodes"] if n["id"] == ctx)
    w = widgets(wf, win)
    assert (w["schedule"], w["context_length"], w["context_stride"], w["context_overlap"]) == \
        (schedule, 24, stride, overlap)
    assert CONVERTED in statuses(report, ctx)


def test_scheduled_and_chained_context_and_view_options_are_reported():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    *_, ctx = gen2(g, ckpt, ks, context=None)
    use = next(n["id"] for n in g.nodes if n["type"] == "ADE_UseEvolvedSampling")
    ctx = g.ade("ADE_StandardUniformContextOptions", start_percent=0.3, guarantee_steps=2,
                fuse_method="🔬gauss-sigma")
    prev = g.ade("ADE_StandardStaticContextOptions")
    view = g.ade("ADE_StandardUniformViewOptions", view_length=8)
    g.link(prev, 0, ctx, "prev_context")
    g.link(view, 0, ctx, "view_opts")
    g.link(ctx, 0, use, "context_options")
    wf, report = convert(g, todays_targets())
    text = report.text()
    assert "start_percent 0.3 / guarantee_steps 2: MotionKit has no equivalent yet" in text
    assert "prev_context" in text and "fuse_method '🔬gauss-sigma'" in text
    assert KEPT in statuses(report, view) and KEPT in statuses(report, prev)
    assert {prev, view} <= {n["id"] for n in wf["nodes"]}


def todays_targets():
    """MotionKit without the features other helpers are adding (so these tests hold once they are merged)."""
    targets = json.loads(json.dumps(TARGETS))
    for kind, name in FEATURES.values():
        if name is None:
            targets.pop(kind, None)
        elif kind in targets:
            targets[kind]["inputs"] = [e for e in targets[kind]["inputs"] if e["name"] not in
                                       ("start_percent", "guarantee_steps")]
    return targets


def fake_targets():
    """MotionKit with the features other helpers are adding: Motion Windows, scheduled Context Windows."""
    targets = json.loads(json.dumps(TARGETS))
    targets["MotionKitMotionWindows"] = {
        "inputs": [{"name": "model", "type": "MODEL", "widget": False, "section": "required"},
                   {"name": "context_length", "type": "INT", "widget": True, "default": 16},
                   {"name": "context_overlap", "type": "INT", "widget": True, "default": 4},
                   {"name": "schedule", "type": "COMBO", "widget": True, "options": ["uniform", "static",
                                                                                     "uniform looped"]},
                   {"name": "fuse_method", "type": "COMBO", "widget": True, "options": ["pyramid", "flat"]},
                   {"name": "spatial_batch_limit", "type": "INT", "widget": True, "default": 0}],
        "outputs": ["MODEL"], "output_names": ["MODEL"]}
    targets["MotionKitContextWindows"]["inputs"] += [
        {"name": "start_percent", "type": "FLOAT", "widget": True, "default": 0.0, "section": "optional"},
        {"name": "guarantee_steps", "type": "INT", "widget": True, "default": 1, "section": "optional"}]
    return targets


@pytest.mark.parametrize("view_kind", VIEWS[:3])
def test_features_being_added_are_used_once_in_the_registry(view_kind):
    """One FEATURES entry each: with Motion Windows and scheduled Context Windows present they are converted."""
    assert FEATURES["view_options"][0] == "MotionKitMotionWindows"
    targets = fake_targets()
    g = UIGraph()
    ckpt, ks = sd_base(g)
    gen2(g, ckpt, ks, context=None)
    use = next(n["id"] for n in g.nodes if n["type"] == "ADE_UseEvolvedSampling")
    ctx = g.ade("ADE_StandardUniformContextOptions", start_percent=0.25, guarantee_steps=3)
    view = g.ade(view_kind, view_length=8, view_overlap=2)
    g.link(view, 0, ctx, "view_opts")
    g.link(ctx, 0, use, "context_options")
    prev = g.ade("ADE_StandardStaticContextOptions", context_length=24)
    g.link(prev, 0, ctx, "prev_context")
    wf, report = convert(g, targets)
    first = next(n for n in wf["nodes"] if n["id"] == prev)  # chained first: the earlier start_percent
    assert widgets(wf, first, targets)["context_length"] == 24
    assert feeder(wf, next(n for n in wf["nodes"] if n["id"] == ctx), "model")[0]["id"] == prev
    mw = next(n for n in wf["nodes"] if n["id"] == view)
    assert mw["type"] == "MotionKitMotionWindows"
    assert widgets(wf, mw, targets)["context_length"] == 8 and widgets(wf, mw, targets)["context_overlap"] == 2
    assert feeder(wf, next(n for n in wf["nodes"] if n["id"] == ks), "model")[0]["id"] == view
    win = next(n for n in wf["nodes"] if n["id"] == ctx)
    assert widgets(wf, win, targets)["start_percent"] == 0.25 and widgets(wf, win, targets)["guarantee_steps"] == 3
    assert not report.kept
    # Views Only context options: only the motion windows
    g = UIGraph()
    ckpt, ks = sd_base(g)
    gen2(g, ckpt, ks, context=None)
    use = next(n["id"] for n in g.nodes if n["type"] == "ADE_UseEvolvedSampling")
    only = g.ade("ADE_ViewsOnlyContextOptions")
    view = g.ade(view_kind)
    g.link(view, 0, only, "view_opts_req")
    g.link(only, 0, use, "context_options")
    wf, report = convert(g, targets)
    assert feeder(wf, next(n for n in wf["nodes"] if n["id"] == ks), "model")[0]["type"] == "MotionKitMotionWindows"
    assert not report.kept
    wf, report = convert(g, todays_targets())  # without Motion Windows: kept and reported
    assert "MotionKit has no equivalent yet" in report.text() and KEPT in statuses(report, view)


def test_multivals_lora_keyframes():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    mask = g.node("LoadImageMask", {}, ["MASK"], ["m.png", "alpha", "image"])
    load, app, use, ctx = gen2(g, ckpt, ks)
    effect = g.ade("ADE_MultivalDynamic", float_val=0.6)
    scale = g.ade("ADE_MultivalScaledMask", min_float_val=0.0, max_float_val=1.3, scaling="absolute")
    g.link(mask, 0, effect, "mask_optional")
    g.link(mask, 0, scale, "mask")
    g.link(effect, 0, app, "effect_multival")
    g.link(scale, 0, app, "scale_multival")
    l1 = g.ade("ADE_AnimateDiffLoRALoader", name="v2_lora_PanLeft.ckpt", strength=0.5)
    l2 = g.ade("ADE_AnimateDiffLoRALoader", name="v2_lora_ZoomIn.ckpt", strength=0.8)
    g.link(l1, 0, l2, "prev_motion_lora")
    g.link(l2, 0, app, "motion_lora")
    k1 = g.ade("ADE_AnimateDiffKeyframe", start_percent=0.0)
    k2 = g.ade("ADE_AnimateDiffKeyframe", start_percent=0.5, guarantee_steps=2, inherit_missing=False)
    k_effect = g.ade("ADE_MultivalDynamic", float_val=0.0)
    g.link(k_effect, 0, k2, "effect_multival")
    g.link(k1, 0, k2, "prev_ad_keyframes")
    g.link(k2, 0, app, "ad_keyframes")
    wf, report = convert(g)
    apply_node = next(n for n in wf["nodes"] if n["id"] == app)
    assert widgets(wf, apply_node)["motion_scale"] == 0.6
    region, _ = feeder(wf, apply_node, "regional_motion")
    assert region["type"] == "MotionKitRegionalMotion" and widgets(wf, region)["attention_scale"] == 1.3
    assert feeder(wf, region, "motion_scale_mask")[0]["id"] == mask
    assert feeder(wf, region, "attention_scale_mask")[0]["id"] == mask
    lora2, _ = feeder(wf, apply_node, "motion_lora")
    assert lora2["id"] == l2 and widgets(wf, lora2) == {"lora_name": "v2_lora_ZoomIn.ckpt", "strength": 0.8}
    assert feeder(wf, lora2, "prev_motion_lora")[0]["id"] == l1
    kf2, _ = feeder(wf, apply_node, "motion_keyframes")
    assert kf2["id"] == k2 and widgets(wf, kf2) == {"start_percent": 0.5, "motion_scale": 0.0,
                                                    "attention_scale": -1.0, "inherit_missing": False,
                                                    "guarantee_steps": 2}
    assert feeder(wf, kf2, "prev_keyframes")[0]["id"] == k1
    for n in (effect, scale, k_effect):
        assert n not in {x["id"] for x in wf["nodes"]} and REMOVED in statuses(report, n)


def test_values_outside_motionkit_ranges_are_clamped_and_reported():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load, app, use, ctx = gen2(g, ckpt, ks)
    effect = g.ade("ADE_MultivalDynamic", float_val=3.5)
    g.link(effect, 0, app, "effect_multival")
    wf, report = convert(g)
    assert widgets(wf, next(n for n in wf["nodes"] if n["id"] == app))["motion_scale"] == 2.0
    assert "motion_scale 3.5 is outside MotionKitApplyMotionModel's range [0.0, 2.0]: set to 2.0" in report.text()


def test_multival_motionkit_cannot_express_is_kept_and_reported():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    mask = g.node("LoadImageMask", {}, ["MASK"], ["m.png", "alpha", "image"])
    load, app, use, ctx = gen2(g, ckpt, ks)
    scaled = g.ade("ADE_MultivalScaledMask", min_float_val=0.4, max_float_val=1.0)
    g.link(mask, 0, scaled, "mask")
    g.link(scaled, 0, app, "effect_multival")
    wf, report = convert(g)
    assert KEPT in statuses(report, scaled) and NOT_CARRIED in statuses(report, app)
    assert scaled in {n["id"] for n in wf["nodes"]}


def test_sample_settings_freeinit_and_reports():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load, app, use, ctx = gen2(g, ckpt, ks)
    ss = g.ade("ADE_AnimateDiffSamplingSettings", noise_type="FreeNoise", seed_gen="auto1111", seed_offset=2)
    fi = g.ade("ADE_IterationOptsFreeInit", iterations=3, filter="butterworth", d_s=0.3, d_t=0.2, n_butterworth=6,
               init_type="DinkInit_v1")
    layer = g.ade("ADE_NoiseLayerAdd")
    g.link(fi, 0, ss, "iteration_opts")
    g.link(layer, 0, ss, "noise_layers")
    g.link(ss, 0, use, "sample_settings")
    wf, report = convert(g, todays_targets())
    k = next(n for n in wf["nodes"] if n["id"] == ks)
    free, _ = feeder(wf, k, "model")
    assert free["id"] == fi and free["type"] == "MotionKitFreeInit"
    assert widgets(wf, free) == {"iterations": 3, "filter": "butterworth", "d_s": 0.3, "d_t": 0.2, "order": 6}
    assert feeder(wf, free, "model")[0]["id"] == ctx
    text = report.text()
    for words in ("noise_type FreeNoise", "seed_gen auto1111", "seed_offset 2", "init_type DinkInit_v1",
                  "noise_layers"):
        assert words in text, words
    assert KEPT in statuses(report, layer)


def test_seed_options_and_noise_layers_become_sample_settings_on_the_model_chain():
    """ADE's seed options and Noise Layer chain -> Sample Settings (Noise) after Context Windows (KSampler keeps
    working off its MODEL output) fed by a Noise Layer chain in ADE's order, each value by name."""
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load, app, use, ctx = gen2(g, ckpt, ks)
    ss = g.ade("ADE_AnimateDiffSamplingSettings", noise_type="FreeNoise", seed_gen="auto1111", seed_offset=2,
               batch_offset=3)
    fi = g.ade("ADE_IterationOptsFreeInit", iterations=2)
    first = g.ade("ADE_NoiseLayerAddWeighted", noise_weight=0.25, balance_multiplier=12.0, seed_offset=5,
                  seed_gen_override="comfy [gpu]", noise_type="constant", batch_offset=1)
    second = g.ade("ADE_NoiseLayerReplace", seed_offset=-7)
    third = g.ade("ADE_NoiseLayerNormalizedSum", noise_weight=0.4)
    mask = g.node("LoadImageMask", {}, ["MASK"], ["m.png", "alpha", "image"])
    seed = g.node("PrimitiveInt", {}, ["INT"], [9])
    g.link(mask, 0, second, "mask_optional")
    g.link(seed, 0, third, "seed_override")
    g.link(first, 0, second, "prev_noise_layers")
    g.link(second, 0, third, "prev_noise_layers")
    g.link(third, 0, ss, "noise_layers")
    g.link(fi, 0, ss, "iteration_opts")
    g.link(ss, 0, use, "sample_settings")
    wf, report = convert(g)
    k = next(n for n in wf["nodes"] if n["id"] == ks)
    free, _ = feeder(wf, k, "model")
    assert free["type"] == "MotionKitFreeInit"
    settings, slot = feeder(wf, free, "model")
    assert settings["id"] == ss and settings["type"] == "MotionKitSampleSettings" and slot == 0
    assert feeder(wf, settings, "model")[0]["id"] == ctx
    assert widgets(wf, settings) == {"noise_seed": 0, "batch_offset": 3, "noise_type": "FreeNoise",
                                     "seed_gen": "auto1111", "seed_offset": 2, "seed_override": ""}
    chain, node = [], feeder(wf, settings, "noise_layers")[0]
    while node is not None:
        chain.append(node)
        up = feeder(wf, node, "prev_noise_layers")
        node = up[0] if up else None
    assert [n["id"] for n in chain] == [third, second, first]
    assert all(n["type"] == "MotionKitNoiseLayer" for n in chain)
    assert widgets(wf, chain[2]) == {"application": "add_weighted", "noise_weight": 0.25, "balance_multiplier": 10.0,
                                     "seed_offset": 5, "seed_gen_override": "comfy [gpu]", "noise_type": "constant",
                                     "batch_offset": 1, "seed_override": ""}
    assert widgets(wf, chain[1])["application"] == "replace" and widgets(wf, chain[1])["seed_offset"] == -7
    assert feeder(wf, chain[1], "mask")[0]["id"] == mask
    assert widgets(wf, chain[0])["application"] == "normalized_sum" and widgets(wf, chain[0])["noise_weight"] == 0.4
    text = report.text()
    assert "balance_multiplier 12.0 is outside" in text and "seed_override from a link" in text
    for nid in (ss, first, second, third):
        assert CONVERTED in statuses(report, nid) and KEPT not in statuses(report, nid)
    assert not report.kept


def test_default_sample_settings_add_no_node():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load, app, use, ctx = gen2(g, ckpt, ks)
    ss = g.ade("ADE_AnimateDiffSamplingSettings")
    g.link(ss, 0, use, "sample_settings")
    wf, report = convert(g)
    assert not by_type(wf, "MotionKitSampleSettings") and REMOVED in statuses(report, ss)


def test_context_ref_and_naive_reuse_go_on_the_model_chain():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load, app, use, ctx = gen2(g, ckpt, ks, context=None)
    c = g.ade("ADE_StandardUniformContextOptions", context_length=16)
    ref = g.ade("ADE_ContextExtras_ContextRef", start_percent=0.1, end_percent=0.3)
    mode = g.ade("ADE_ContextExtras_ContextRef_ModeIndexes", switch_on_idxs="0, 48", always_include_0=False)
    tune = g.ade("ADE_ContextExtras_ContextRef_TuneAttnAdain", attn_style_fidelity=0.6, attn_ref_weight=0.7,
                 attn_strength=0.5)
    strength = g.ade("ADE_MultivalDynamic", float_val=0.8)
    kf = g.ade("ADE_ContextExtras_ContextRef_Keyframe")
    reuse = g.ade("ADE_ContextExtras_NaiveReuse", weighted_mean=0.9, end_percent=0.2)
    s = g.ade("ADE_ContextExtras_Set")
    for a, b, name in ((mode, ref, "contextref_mode"), (tune, ref, "contextref_tune"),
                       (strength, ref, "strength_multival"), (kf, ref, "contextref_kf"), (ref, reuse, "prev_extras"),
                       (reuse, s, "context_extras"), (c, s, "context_opts"), (s, use, "context_options")):
        g.link(a, 0, b, name)
    wf, report = convert(g)
    k = next(n for n in wf["nodes"] if n["id"] == ks)
    nr, _ = feeder(wf, k, "model")
    assert nr["id"] == reuse and nr["type"] == "MotionKitContextNaiveReuse"
    assert widgets(wf, nr) == {"weighted_mean": 0.9, "start_percent": 0.0, "end_percent": 0.2}
    cr, _ = feeder(wf, nr, "model")
    assert cr["id"] == ref and cr["type"] == "MotionKitContextRef"
    assert widgets(wf, cr) == {"strength": pytest.approx(0.4), "style_fidelity": 0.6, "ref_weight": 0.7,
                               "mode": "indexes", "start_percent": 0.1, "end_percent": 0.3, "sliding_width": 2,
                               "reference_frames": "0, 48"}
    win, _ = feeder(wf, cr, "model")
    assert win["id"] == c and win["type"] == "MotionKitContextWindows"
    text = report.text()
    for words in ("always_include_0 off", "adain", "contextref_kf"):
        assert words in text, words
    assert KEPT in statuses(report, kf) and kf in {n["id"] for n in wf["nodes"]}
    assert {s, mode, tune, strength} & {n["id"] for n in wf["nodes"]} == set()


def test_context_ref_sliding_with_defaults():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load, app, use, ctx = gen2(g, ckpt, ks, context=None)
    c = g.ade("ADE_StandardUniformContextOptions")
    ref = g.ade("ADE_ContextExtras_ContextRef")
    mode = g.ade("ADE_ContextExtras_ContextRef_ModeSliding", sliding_width=4)
    s = g.ade("ADE_ContextExtras_Set")
    for a, b, name in ((mode, ref, "contextref_mode"), (ref, s, "context_extras"), (c, s, "context_opts"),
                       (s, use, "context_options")):
        g.link(a, 0, b, name)
    wf, report = convert(g)
    cr = next(n for n in wf["nodes"] if n["id"] == ref)
    assert widgets(wf, cr) == {"strength": 1.0, "style_fidelity": 1.0, "ref_weight": 1.0, "mode": "sliding",
                               "start_percent": 0.0, "end_percent": 0.25, "sliding_width": 4, "reference_frames": "0"}
    assert not report.kept


@pytest.mark.parametrize("pia_input, motion, frame, values", [
    (None, "animation, moderate motion", 0, "1.0"),
    ("Loop (Medium Motion)", "loop, moderate motion", -1, ""),
    ("Style Transfer (Large Motion)", "style transfer, large motion", 3, ""),
    ("multival", "animation, moderate motion", 0, "0.75")])
def test_pia_becomes_apply_motion_model_and_apply_pia_image(pia_input, motion, frame, values):
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load, app, use, ctx = gen2(g, ckpt, ks, apply="ADE_ApplyAnimateDiffModelWithPIA", end_percent=0.9)
    img = g.node("LoadImage", {}, ["IMAGE", "MASK"], ["cat.png", "image"])
    g.link(img, 0, app, "image")
    g.link(ckpt, 2, app, "vae")
    extra = None
    if pia_input == "multival":
        extra = g.ade("ADE_InputPIA_Multival")
        mv = g.ade("ADE_MultivalDynamic", float_val=0.75)
        g.link(mv, 0, extra, "multival")
    elif pia_input:
        extra = g.ade("ADE_InputPIA_PaperPresets", preset=pia_input, batch_index=frame)
    if extra:
        g.link(extra, 0, app, "pia_input")
    wf, report = convert(g)
    win = next(n for n in wf["nodes"] if n["id"] == ctx)
    p, _ = feeder(wf, win, "model")
    assert p["type"] == "MotionKitApplyPIAImage"
    assert widgets(wf, p) == {"motion": motion, "image_frame": frame, "values": values}
    assert feeder(wf, p, "image")[0]["id"] == img and feeder(wf, p, "vae") == (next(
        n for n in wf["nodes"] if n["id"] == ckpt), 2)
    apply_node, _ = feeder(wf, p, "model")
    assert apply_node["id"] == app and apply_node["type"] == "MotionKitApplyMotionModel"
    assert widgets(wf, apply_node)["end_percent"] == 0.9 and feeder(wf, apply_node, "motion_model")[0]["id"] == load
    assert CONVERTED in statuses(report, app) and not report.kept
    assert NOTE in statuses(report, app) and "the original PIA (and MotionKit) pools only the resnet norms" in report.text()
    if extra:
        assert REMOVED in statuses(report, extra) and extra not in {n["id"] for n in wf["nodes"]}


def test_cameractrl_becomes_load_apply_and_pose_presets():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load = g.ade("ADE_LoadAnimateDiffModelWithCameraCtrl", model_name="v3_sd15_mm.ckpt",
                 camera_ctrl="CameraCtrl_pruned.safetensors")
    app = g.ade("ADE_ApplyAnimateDiffModelWithCameraCtrl", start_percent=0.05, end_percent=0.95)
    first = g.ade("ADE_CameraPoseBasic", motion_type="Pan Left", speed=0.5, frame_length=8)
    second = g.ade("ADE_CameraPoseBasic", motion_type="Zoom In", speed=2.0, frame_length=8)
    strength = g.ade("ADE_MultivalDynamic", float_val=0.6)
    use = g.ade("ADE_UseEvolvedSampling", beta_schedule="sqrt_linear (AnimateDiff)")
    ctx = g.ade("ADE_StandardUniformContextOptions")
    for a, b, name in ((load, app, "motion_model"), (first, second, "prev_poses"), (second, app, "cameractrl_poses"),
                       (strength, app, "cameractrl_multival"), (app, use, "m_models"), (ckpt, use, "model"),
                       (ctx, use, "context_options"), (use, ks, "model")):
        g.link(a, 0, b, name)
    wf, report = convert(g)
    win = next(n for n in wf["nodes"] if n["id"] == ctx)
    cam, _ = feeder(wf, win, "model")
    assert cam["type"] == "MotionKitApplyCameraCtrl"
    assert widgets(wf, cam) == {"strength": 0.6, "start_percent": 0.05, "end_percent": 0.95,
                                "repeat_last_pose": False}
    cc, _ = feeder(wf, cam, "cameractrl")
    assert cc["type"] == "MotionKitLoadCameraCtrl" and widgets(wf, cc) == {"cameractrl_name":
                                                                           "CameraCtrl_pruned.safetensors"}
    p2, _ = feeder(wf, cam, "poses")
    assert p2["id"] == second and p2["type"] == "MotionKitCameraPosesPreset"
    assert widgets(wf, p2) == {"motion": "Zoom In", "speed": 2.0, "frames": 8, "orbit_radius": 1.5}
    p1, _ = feeder(wf, p2, "previous")
    assert p1["id"] == first and widgets(wf, p1)["motion"] == "Pan Left" and widgets(wf, p1)["speed"] == 0.5
    apply_node, _ = feeder(wf, cam, "model")
    assert apply_node["id"] == app and apply_node["type"] == "MotionKitApplyMotionModel"
    assert widgets(wf, apply_node)["start_percent"] == 0.05
    mm, _ = feeder(wf, apply_node, "motion_model")
    assert mm["id"] == load and widgets(wf, mm) == {"model_name": "v3_sd15_mm.ckpt"}
    assert not report.kept


def camera_graph(g: UIGraph, poses: int) -> int:
    """Load / Apply AnimateDiff+CameraCtrl with `poses` as its cameractrl_poses, in Use Evolved Sampling; returns
    the apply node's id."""
    ckpt, ks = sd_base(g)
    load = g.ade("ADE_LoadAnimateDiffModelWithCameraCtrl")
    app = g.ade("ADE_ApplyAnimateDiffModelWithCameraCtrl")
    use = g.ade("ADE_UseEvolvedSampling")
    for a, b, name in ((load, app, "motion_model"), (poses, app, "cameractrl_poses"), (app, use, "m_models"),
                       (ckpt, use, "model"), (use, ks, "model")):
        g.link(a, 0, b, name)
    return app


@pytest.mark.parametrize("kind, values, mask_input, strength", [
    ("ADE_MultivalDynamic", {"float_val": 0.4}, "mask_optional", 0.4),
    ("ADE_MultivalScaledMask", {"min_float_val": 0.0, "max_float_val": 1.7, "scaling": "absolute"}, "mask", 1.7),
])
def test_cameractrl_multival_mask_becomes_strength_mask(kind, values, mask_input, strength):
    """float_val × mask (ADE's cameractrl effect per pixel and frame) -> Apply CameraCtrl's strength × strength_mask;
    the multival node is folded in, the mask node kept and linked. A MotionKit without strength_mask: reported."""
    g = UIGraph()
    poses = g.ade("ADE_CameraPoseBasic", motion_type="Pan Left", speed=1.0, frame_length=16)
    app = camera_graph(g, poses)
    mask = g.node("LoadImageMask", {}, ["MASK"], ["m.png", "alpha", "image"])
    mv = g.ade(kind, **values)
    g.link(mask, 0, mv, mask_input)
    g.link(mv, 0, app, "cameractrl_multival")
    wf, report = convert(g)
    (cam,) = by_type(wf, "MotionKitApplyCameraCtrl")
    assert widgets(wf, cam)["strength"] == strength
    assert feeder(wf, cam, "strength_mask")[0]["id"] == mask
    assert REMOVED in statuses(report, mv) and mv not in {n["id"] for n in wf["nodes"]}
    assert "cameractrl_multival's mask" not in report.text() and not report.kept
    older = json.loads(json.dumps(TARGETS))
    older["MotionKitApplyCameraCtrl"]["inputs"] = [e for e in older["MotionKitApplyCameraCtrl"]["inputs"]
                                                   if e["name"] != "strength_mask"]
    wf, report = convert(g, older)
    assert widgets(wf, by_type(wf, "MotionKitApplyCameraCtrl")[0], older)["strength"] == strength
    assert NOT_CARRIED in statuses(report, app) and "cameractrl_multival's mask" in report.text()


STATIC_SLOT = {"motion_3": "Static", "strength_3": 1.0, "motion_4": "Static", "strength_4": 1.0}


def test_cameractrl_combo_and_advanced_poses_become_camera_poses_mix():
    """Basic -> Combo -> Adv. chained by prev_poses: Preset -> Mix -> Mix by `previous`. Static and strength-0 slots
    are dropped; a motion chosen twice keeps its two slots while they fit (the motions add up: the same poses)."""
    g = UIGraph()
    basic = g.ade("ADE_CameraPoseBasic", motion_type="Tilt Up", speed=0.8, frame_length=5)
    combo = g.ade("ADE_CameraPoseCombo", motion_type1="Pan Left", motion_type2="Static", motion_type3="Zoom In",
                  motion_type4="Pan Left", speed=0.5, frame_length=12)
    adv = g.ade("ADE_CameraPoseAdvanced", motion_type1="Pan Up", strength1=0.5, motion_type2="Static", strength2=3.0,
                motion_type3="Roll Clockwise", strength3=2.0, motion_type4="Zoom Out", strength4=0.0,
                motion_type5="Tilt Left", strength5=1.5, speed=-2.0, frame_length=8)
    g.link(basic, 0, combo, "prev_poses")
    g.link(combo, 0, adv, "prev_poses")
    app = camera_graph(g, adv)
    wf, report = convert(g)
    cam = by_type(wf, "MotionKitApplyCameraCtrl")[0]
    a, _ = feeder(wf, cam, "poses")
    assert a["id"] == adv and a["type"] == "MotionKitCameraPosesMix"
    assert widgets(wf, a) == {"motion_1": "Pan Up", "strength_1": 0.5, "motion_2": "Roll Clockwise", "strength_2": 2.0,
                              "motion_3": "Tilt Left", "strength_3": 1.5, "motion_4": "Static", "strength_4": 1.0,
                              "speed": -2.0, "frames": 8}
    c, _ = feeder(wf, a, "previous")
    assert c["id"] == combo and c["type"] == "MotionKitCameraPosesMix"
    assert widgets(wf, c) == {"motion_1": "Pan Left", "strength_1": 1.0, "motion_2": "Zoom In", "strength_2": 1.0,
                              "motion_3": "Pan Left", "strength_3": 1.0, "motion_4": "Static", "strength_4": 1.0,
                              "speed": 0.5, "frames": 12}
    b, _ = feeder(wf, c, "previous")
    assert b["id"] == basic and b["type"] == "MotionKitCameraPosesPreset" and widgets(wf, b)["motion"] == "Tilt Up"
    assert feeder(wf, b, "previous") is None
    for nid in (basic, combo, adv):
        assert CONVERTED in statuses(report, nid) and nid not in {n["id"] for n in wf["nodes"] if
                                                                   n["type"].startswith("ADE_")}
    assert "chosen more than once" not in report.text()
    assert CONVERTED in statuses(report, app) and not report.kept


def test_cameractrl_repeated_motions_merge_only_to_fit_and_within_the_strength_range():
    """Five pairs with Pan Left twice: one Pan Left slot with the strengths added (4 slots). A sum past Camera Poses
    Mix's strength range (10) would change the poses: that node is reported and kept instead."""
    g = UIGraph()
    adv = g.ade("ADE_CameraPoseAdvanced", motion_type1="Pan Left", strength1=2.0, motion_type2="Zoom In",
                motion_type3="Tilt Left", motion_type4="Roll Clockwise", motion_type5="Pan Left", strength5=1.5,
                frame_length=8)
    camera_graph(g, adv)
    wf, report = convert(g)
    a = next(n for n in wf["nodes"] if n["id"] == adv)
    assert a["type"] == "MotionKitCameraPosesMix"
    assert widgets(wf, a) == {"motion_1": "Pan Left", "strength_1": 3.5, "motion_2": "Zoom In", "strength_2": 1.0,
                              "motion_3": "Tilt Left", "strength_3": 1.0, "motion_4": "Roll Clockwise",
                              "strength_4": 1.0, "speed": 1.0, "frames": 8}
    assert NOTE in statuses(report, adv) and "'Pan Left' is chosen more than once" in report.text()
    g = UIGraph()
    adv = g.ade("ADE_CameraPoseAdvanced", motion_type1="Pan Left", strength1=8.0, motion_type2="Zoom In",
                motion_type3="Tilt Left", motion_type4="Roll Clockwise", motion_type5="Pan Left", strength5=7.0)
    app = camera_graph(g, adv)
    wf, report = convert(g)
    assert KEPT in statuses(report, adv) and NOT_CARRIED in statuses(report, app)
    assert "adds up past the strength range" in report.text() and "is outside" not in report.text()


def test_cameractrl_combo_all_static_is_a_still_camera():
    g = UIGraph()
    combo = g.ade("ADE_CameraPoseCombo", frame_length=0)  # ADE's default: all Static; 0 frames: ADE fails there
    camera_graph(g, combo)
    wf, report = convert(g)
    c = next(n for n in wf["nodes"] if n["id"] == combo)
    assert c["type"] == "MotionKitCameraPosesMix"
    assert widgets(wf, c) == {"motion_1": "Static", "strength_1": 1.0, "motion_2": "Static", "strength_2": 1.0,
                              **STATIC_SLOT, "speed": 1.0, "frames": 1}
    assert NOT_CARRIED in statuses(report, combo) and "frames 0 is outside" in report.text()
    assert not report.kept


def test_cameractrl_mix_of_more_motions_than_the_node_takes_is_reported_and_kept():
    g = UIGraph()
    adv = g.ade("ADE_CameraPoseAdvanced", motion_type1="Pan Up", motion_type2="Pan Left", motion_type3="Zoom In",
                motion_type4="Tilt Left", motion_type5="Roll Clockwise", motion_type6="Pan Up")
    app = camera_graph(g, adv)
    wf, report = convert(g)
    assert KEPT in statuses(report, adv) and next(n for n in wf["nodes"] if n["id"] == adv)["type"] == \
        "ADE_CameraPoseAdvanced"
    assert NOT_CARRIED in statuses(report, app)
    assert "mixes 5 different motions, MotionKitCameraPosesMix takes 4" in report.text()
    assert "connect poses to MotionKitApplyCameraCtrl by hand" in report.text()


def test_cameractrl_other_poses_are_reported_and_file_poses_converted():
    g = UIGraph()
    edited = g.ade("ADE_ReplaceCameraParameters")
    basic = g.ade("ADE_CameraPoseBasic")
    g.link(basic, 0, edited, "poses")
    camera_graph(g, edited)
    wf, report = convert(g)
    assert KEPT in statuses(report, edited) and "connect poses to MotionKitApplyCameraCtrl by hand" in report.text()
    g = UIGraph()
    poses = g.ade("ADE_LoadCameraPoses", pose_filename="rotate.txt")
    camera_graph(g, poses)
    wf, report = convert(g)
    f = next(n for n in wf["nodes"] if n["id"] == poses)
    assert f["type"] == "MotionKitCameraPosesFromFile" and widgets(wf, f)["pose_file"] == "rotate.txt"
    assert not report.kept


@pytest.mark.parametrize("noise_type", ["default", "FreeNoise"])
def test_sample_settings_noise_for_sampler_custom_advanced(noise_type):
    """SamplerCustomAdvanced makes its noise from its NOISE input: Sample Settings' noise output goes there with
    RandomNoise's seed (unless FreeNoise already feeds it)."""
    g = UIGraph()
    ckpt = g.node("CheckpointLoaderSimple", {}, ["MODEL", "CLIP", "VAE"], ["sd15.safetensors"])
    guider = g.node("CFGGuider", {"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING"},
                    ["GUIDER"], [7.0])
    noise = g.node("RandomNoise", {}, ["NOISE"], [4242, "fixed"])
    sampler = g.node("SamplerCustomAdvanced", {"noise": "NOISE", "guider": "GUIDER", "sampler": "SAMPLER",
                                               "sigmas": "SIGMAS", "latent_image": "LATENT"}, ["LATENT", "LATENT"])
    load = g.ade("ADE_LoadAnimateDiffModel")
    app = g.ade("ADE_ApplyAnimateDiffModelSimple")
    ctx = g.ade("ADE_StandardUniformContextOptions")
    ss = g.ade("ADE_AnimateDiffSamplingSettings", noise_type=noise_type, seed_gen="auto1111")
    use = g.ade("ADE_UseEvolvedSampling")
    for a, b, name in ((ckpt, use, "model"), (load, app, "motion_model"), (app, use, "m_models"),
                       (ctx, use, "context_options"), (ss, use, "sample_settings"), (use, guider, "model"),
                       (guider, sampler, "guider"), (noise, sampler, "noise")):
        g.link(a, 0, b, name)
    wf, report = convert(g)
    s = next(n for n in wf["nodes"] if n["id"] == sampler)
    src, slot = feeder(wf, s, "noise")
    settings, _ = feeder(wf, next(n for n in wf["nodes"] if n["id"] == guider), "model")
    assert settings["type"] == "MotionKitSampleSettings" and widgets(wf, settings)["seed_gen"] == "auto1111"
    if noise_type == "default":
        assert (src["id"], slot) == (settings["id"], 1) and widgets(wf, settings)["noise_seed"] == 4242
    else:
        assert src["type"] == "MotionKitFreeNoise" and "which has no seed options" in report.text()


def test_freenoise_becomes_the_noise_of_sampler_custom_advanced():
    g = UIGraph()
    ckpt = g.node("CheckpointLoaderSimple", {}, ["MODEL", "CLIP", "VAE"], ["sd15.safetensors"])
    cond = g.node("CLIPTextEncode", {"clip": "CLIP"}, ["CONDITIONING"], ["a cat"])
    guider = g.node("CFGGuider", {"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING"},
                    ["GUIDER"], [7.0])
    noise = g.node("RandomNoise", {}, ["NOISE"], [4242, "fixed"])
    sampler = g.node("SamplerCustomAdvanced", {"noise": "NOISE", "guider": "GUIDER", "sampler": "SAMPLER",
                                               "sigmas": "SIGMAS", "latent_image": "LATENT"}, ["LATENT", "LATENT"])
    load = g.ade("ADE_LoadAnimateDiffModel")
    app = g.ade("ADE_ApplyAnimateDiffModelSimple")
    ctx = g.ade("ADE_StandardUniformContextOptions", context_length=16, context_overlap=4)
    ss = g.ade("ADE_AnimateDiffSamplingSettings", noise_type="FreeNoise")
    use = g.ade("ADE_UseEvolvedSampling")
    for a, s_, b, name in ((ckpt, 0, use, "model"), (load, 0, app, "motion_model"), (app, 0, use, "m_models"),
                           (ctx, 0, use, "context_options"), (ss, 0, use, "sample_settings"),
                           (use, 0, guider, "model"), (ckpt, 1, cond, "clip"), (cond, 0, guider, "positive"),
                           (cond, 0, guider, "negative"), (guider, 0, sampler, "guider"),
                           (noise, 0, sampler, "noise")):
        g.link(a, s_, b, name)
    wf, report = convert(g)
    s = next(n for n in wf["nodes"] if n["id"] == sampler)
    fn, _ = feeder(wf, s, "noise")
    assert fn["type"] == "MotionKitFreeNoise" and widgets(wf, fn) == {
        "noise_seed": 4242, "context_length": 16, "context_stride": 12, "mode": "shuffle_context"}
    assert noise in {n["id"] for n in wf["nodes"]} and NOTE in statuses(report, noise)
    assert feeder(wf, next(n for n in wf["nodes"] if n["id"] == guider), "model")[0]["id"] == ctx


@pytest.mark.parametrize("loader", ["ADE_AnimateDiffLoaderGen1", "ADE_AnimateDiffLoaderWithContext"])
def test_gen1_loader_becomes_load_apply_context(loader):
    g = UIGraph()
    ckpt, ks = sd_base(g)
    gen1 = g.ade(loader, model_name="v3_sd15_mm.ckpt", beta_schedule="lcm")
    ctx = g.ade("ADE_StandardStaticContextOptions", context_length=12, context_overlap=3)
    ss = g.ade("ADE_AnimateDiffSamplingSettings")
    g.link(ckpt, 0, gen1, "model")
    g.link(ctx, 0, gen1, "context_options")
    g.link(ss, 0, gen1, "sample_settings")
    g.link(gen1, 0, ks, "model")
    before = g.workflow()
    wf, report = convert(g)
    k = next(n for n in wf["nodes"] if n["id"] == ks)
    win, _ = feeder(wf, k, "model")
    assert win["id"] == ctx and widgets(wf, win)["schedule"] == "static"
    app, _ = feeder(wf, win, "model")
    assert app["id"] == gen1 and app["type"] == "MotionKitApplyMotionModel"
    assert widgets(wf, app)["noise_schedule"] == "lcm (SD default schedule)"
    load, _ = feeder(wf, app, "motion_model")
    assert load["id"] > before["last_node_id"] and widgets(wf, load) == {"model_name": "v3_sd15_mm.ckpt"}
    assert abs(load["pos"][0] - app["pos"][0]) < 400 and abs(load["pos"][1] - app["pos"][1]) < 400


@pytest.mark.parametrize("loader", ["AnimateDiffLoaderV1", "ADE_AnimateDiffLoaderV1Advanced"])
def test_v1_loaders_pass_latents_through(loader):
    g = UIGraph()
    ckpt, ks = sd_base(g)
    lat = next(n["id"] for n in g.nodes if n["type"] == "EmptyLatentImage")
    g.links = [l for l in g.links if not (l[1] == lat)]  # the latent goes through the loader now
    g.by_id[lat]["outputs"][0]["links"] = []
    g.by_id[ks]["inputs"][3]["link"] = None
    v1 = g.ade(loader, model_name="mm_sd_v15.ckpt", beta_schedule="sqrt_linear (AnimateDiff)")
    g.link(ckpt, 0, v1, "model")
    g.link(lat, 0, v1, "latents")
    g.link(v1, 0, ks, "model")
    g.link(v1, 1, ks, "latent_image")
    wf, report = convert(g)
    k = next(n for n in wf["nodes"] if n["id"] == ks)
    assert feeder(wf, k, "latent_image")[0]["id"] == lat
    last, _ = feeder(wf, k, "model")
    assert last["type"] == ("MotionKitContextWindows" if loader.endswith("Advanced") else "MotionKitApplyMotionModel")


def test_animatelcm_i2v():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    img = g.node("LoadImage", {}, ["IMAGE", "MASK"], ["cat.png", "image"])
    load = g.ade("ADE_LoadAnimateLCMI2VModel", model_name="AnimateLCM_sd15_i2v.ckpt")
    enc = g.ade("ADE_UpscaleAndVAEEncode")
    lat = next(n["id"] for n in g.nodes if n["type"] == "EmptyLatentImage")
    app = g.ade("ADE_ApplyAnimateLCMI2VModel", ref_drift=0.1)
    use = g.ade("ADE_UseEvolvedSampling", beta_schedule="autoselect")
    g.link(img, 0, enc, "image")
    g.link(ckpt, 2, enc, "vae")
    g.link(lat, 0, enc, "latent_size")
    g.link(load, 0, app, "motion_model")
    g.link(enc, 0, app, "ref_latent")
    g.link(app, 0, use, "m_models")
    g.link(ckpt, 0, use, "model")
    g.link(use, 0, ks, "model")
    wf, report = convert(g)
    k = next(n for n in wf["nodes"] if n["id"] == ks)
    i2v, _ = feeder(wf, k, "model")
    assert i2v["type"] == "MotionKitI2VImage"
    assert feeder(wf, i2v, "image")[0]["id"] == img and feeder(wf, i2v, "vae") == (
        next(n for n in wf["nodes"] if n["id"] == ckpt), 2)
    assert feeder(wf, i2v, "model")[0]["id"] == app
    assert enc not in {n["id"] for n in wf["nodes"]}
    assert "ref_drift 0.1" in report.text()


def test_sparsectrl_through_advanced_controlnet():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    gen2(g, ckpt, ks)
    frames = g.node("VHS_LoadImagesPath", {}, ["IMAGE", "MASK", "INT"], {"directory": "kf"})
    sc = g.ade("ACN_SparseCtrlLoaderAdvanced", sparsectrl_name="v3_sd15_sparsectrl_rgb.ckpt", motion_strength=0.7,
               context_aware="off", sparse_hint_mult=1.5)
    idx = g.ade("ACN_SparseCtrlIndexMethodNode", indexes="0, 15")
    rgb = g.ade("ACN_SparseCtrlRGBPreprocessor")
    lat = next(n["id"] for n in g.nodes if n["type"] == "EmptyLatentImage")
    cn = g.node("ControlNetApplyAdvanced", {"positive": "CONDITIONING", "negative": "CONDITIONING",
                                            "control_net": "CONTROL_NET", "image": "IMAGE", "vae": "VAE"},
                ["CONDITIONING", "CONDITIONING"], [1.0, 0.0, 1.0])
    g.link(idx, 0, sc, "sparse_method")
    g.link(frames, 0, rgb, "image")
    g.link(ckpt, 2, rgb, "vae")
    g.link(lat, 0, rgb, "latent_size")
    g.link(sc, 0, cn, "control_net")
    g.link(rgb, 0, cn, "image")
    wf, report = convert(g)
    c = next(n for n in wf["nodes"] if n["id"] == cn)
    keys, _ = feeder(wf, c, "control_net")
    assert keys["type"] == "MotionKitSparseCtrlKeyframes" and keys["id"] == sc
    assert widgets(wf, keys) == {"placement": "indices", "indices": "0, 15", "hint_multiplier": 1.5,
                                 "nonhint_multiplier": 1.0, "motion_strength": 0.7,
                                 "window_without_hint": "zero condition"}
    loader, _ = feeder(wf, keys, "control_net")
    assert loader["type"] == "MotionKitLoadSparseCtrl" and widgets(wf, loader) == {
        "sparsectrl_name": "v3_sd15_sparsectrl_rgb.ckpt"}
    assert feeder(wf, c, "image")[0]["id"] == frames
    assert feeder(wf, c, "vae")[0]["id"] == ckpt


@pytest.mark.parametrize("kind", ["ADE_ApplyAnimateDiffModelWithCameraCtrl", "ADE_ApplyAnimateDiffModelWithPIA"])
def test_cameractrl_and_pia_are_kept_and_reported(kind):
    g = UIGraph()
    ckpt, ks = sd_base(g)
    loader = "ADE_LoadAnimateDiffModelWithCameraCtrl" if "Camera" in kind else "ADE_LoadAnimateDiffModel"
    load = g.ade(loader)
    app = g.ade(kind)
    use = g.ade("ADE_UseEvolvedSampling")
    g.link(load, 0, app, "motion_model")
    g.link(app, 0, use, "m_models")
    g.link(ckpt, 0, use, "model")
    g.link(use, 0, ks, "model")
    wf, report = convert(g, todays_targets())
    assert KEPT in statuses(report, app) and "MotionKit has no equivalent yet" in report.text()
    assert app in {n["id"] for n in wf["nodes"]}
    assert feeder(wf, next(n for n in wf["nodes"] if n["id"] == ks), "model")[0]["id"] == ckpt


def test_converted_widget_inputs_keep_their_links():
    """A PrimitiveNode driving context_length (a widget converted to a socket) drives MotionKit's too."""
    g = UIGraph()
    ckpt, ks = sd_base(g)
    *_, ctx = gen2(g, ckpt, ks)
    prim = g.node("PrimitiveNode", [], [{"name": "INT", "type": "INT", "links": [], "widget": {"name": "x"}}], [24])
    g.link(prim, 0, ctx, "context_length", widget=True)
    wf, report = convert(g)
    win = next(n for n in wf["nodes"] if n["id"] == ctx)
    inp = next(i for i in win["inputs"] if i["name"] == "context_length")
    assert inp["widget"] == {"name": "context_length"} and feeder(wf, win, "context_length")[0]["id"] == prim


def test_reroutes_labels_and_old_position_format():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load = g.ade("ADE_LoadAnimateDiffModel")
    app = g.ade("ADE_ApplyAnimateDiffModel")
    use = g.ade("ADE_UseEvolvedSampling")
    ctx = g.ade("ADE_StandardUniformContextOptions")
    # a Reroute between Apply and Use Evolved Sampling (ADE's type only: goes), one after it (MODEL: stays)
    r1 = g.node("Reroute", [{"name": "", "type": "*", "link": None}], [{"name": "", "type": "M_MODELS", "links": []}])
    r2 = g.node("Reroute", [{"name": "", "type": "*", "link": None}], [{"name": "", "type": "MODEL", "links": []}])
    g.link(load, 0, app, "motion_model")
    g.link(ckpt, 0, use, "model")
    g.link(ctx, 0, use, "context_options")
    g.link(app, 0, r1, "")
    g.link(r1, 0, use, "m_models")
    g.link(use, 0, r2, "")
    g.link(r2, 0, ks, "model")
    g.by_id[app]["pos"] = {"0": 700, "1": 900}
    g.by_id[app]["size"] = {"0": 315, "1": 100}
    g.by_id[app]["inputs"][0]["label"] = "动态模型"
    wf, report = convert(g)
    ids = {n["id"] for n in wf["nodes"]}
    assert r1 not in ids and r2 in ids and REMOVED in statuses(report, r1)
    apply_node = next(n for n in wf["nodes"] if n["id"] == app)
    assert apply_node["type"] == "MotionKitApplyMotionModel"
    assert apply_node["pos"] == [700, 900] and apply_node["size"] == [315, 100]
    rr = next(n for n in wf["nodes"] if n["id"] == r2)
    assert feeder(wf, rr, "")[0]["id"] == ctx


# ------------------------------------------------------------------------------------------------- every node claimed
def coverage_graph(kind):
    """A small graph that uses `kind` where ADE users put it."""
    g = UIGraph()
    ckpt, ks = sd_base(g)
    if kind in ("ADE_AnimateDiffLoaderGen1", "ADE_AnimateDiffLoaderWithContext"):
        n = g.ade(kind)
        g.link(ckpt, 0, n, "model")
        g.link(n, 0, ks, "model")
        return g, n
    if kind in ("AnimateDiffLoaderV1", "ADE_AnimateDiffLoaderV1Advanced"):
        n = g.ade(kind)
        lat = next(x["id"] for x in g.nodes if x["type"] == "EmptyLatentImage")
        g.link(ckpt, 0, n, "model")
        g.link(lat, 0, n, "latents")
        g.link(n, 0, ks, "model")
        return g, n
    if kind in ("ADE_ApplyAnimateDiffModelSimple",):
        return g, gen2(g, ckpt, ks, apply=kind)[1]
    load, app, use, ctx = gen2(g, ckpt, ks)
    simple = {"ADE_LoadAnimateDiffModel": load, "ADE_ApplyAnimateDiffModel": app, "ADE_UseEvolvedSampling": use,
              "ADE_StandardUniformContextOptions": ctx}
    if kind in simple:
        return g, simple[kind]
    if kind in ("ADE_MultivalDynamic", "ADE_MultivalScaledMask", "ADE_MultivalDynamicFloatInput"):
        n = g.ade(kind)
        if kind == "ADE_MultivalDynamicFloatInput":
            f = g.node("PrimitiveFloat", {}, ["FLOAT"], [0.8])
            g.link(f, 0, n, "float_val")
        if kind == "ADE_MultivalScaledMask":
            m = g.node("LoadImageMask", {}, ["MASK"], ["m.png", "alpha", "image"])
            g.link(m, 0, n, "mask")
        g.link(n, 0, app, "effect_multival")
        return g, n
    if kind == "ADE_AnimateDiffLoRALoader":
        n = g.ade(kind, name="v2_lora_TiltUp.ckpt")
        g.link(n, 0, app, "motion_lora")
        return g, n
    if kind == "ADE_AnimateDiffKeyframe":
        n = g.ade(kind)
        g.link(n, 0, app, "ad_keyframes")
        return g, n
    use_node = g.by_id[use]
    if kind.endswith("ContextOptions") or kind == "ADE_ContextExtras_Set":
        g.links = [l for l in g.links if l[1] != ctx]
        g.nodes.remove(g.by_id[ctx])
        use_node["inputs"][[i["name"] for i in use_node["inputs"]].index("context_options")]["link"] = None
        n = g.ade(kind)
        if kind == "ADE_ContextExtras_Set":
            c = g.ade("ADE_StandardUniformContextOptions")
            g.link(c, 0, n, "context_opts")
            ref = g.ade("ADE_ContextExtras_ContextRef")
            g.link(ref, 0, n, "context_extras")
        g.link(n, 0, use, "context_options")
        return g, n
    if kind in ("ADE_AnimateDiffSamplingSettings", "ADE_IterationOptsFreeInit", "ADE_IterationOptsDefault"):
        ss = g.ade("ADE_AnimateDiffSamplingSettings")
        g.link(ss, 0, use, "sample_settings")
        if kind == "ADE_AnimateDiffSamplingSettings":
            return g, ss
        n = g.ade(kind)
        g.link(n, 0, ss, "iteration_opts")
        return g, n
    if kind in ("ADE_LoadAnimateLCMI2VModel", "ADE_ApplyAnimateLCMI2VModel", "ADE_UpscaleAndVAEEncode"):
        l2 = g.ade("ADE_LoadAnimateLCMI2VModel")
        a2 = g.ade("ADE_ApplyAnimateLCMI2VModel")
        enc = g.ade("ADE_UpscaleAndVAEEncode")
        img = g.node("LoadImage", {}, ["IMAGE", "MASK"], ["cat.png", "image"])
        lat = next(x["id"] for x in g.nodes if x["type"] == "EmptyLatentImage")
        g.link(img, 0, enc, "image")
        g.link(ckpt, 2, enc, "vae")
        g.link(lat, 0, enc, "latent_size")
        g.link(l2, 0, a2, "motion_model")
        g.link(enc, 0, a2, "ref_latent")
        g.link(app, 0, a2, "prev_m_models")
        g.links = [l for l in g.links if not (l[1] == app and l[3] == use)]
        g.by_id[app]["outputs"][0]["links"] = [l for l in g.by_id[app]["outputs"][0]["links"]
                                               if any(x[0] == l for x in g.links)]
        use_node["inputs"][[i["name"] for i in use_node["inputs"]].index("m_models")]["link"] = None
        g.link(a2, 0, use, "m_models")
        return g, {"ADE_LoadAnimateLCMI2VModel": l2, "ADE_ApplyAnimateLCMI2VModel": a2,
                   "ADE_UpscaleAndVAEEncode": enc}[kind]
    if kind.startswith("ACN_SparseCtrl"):
        sc = g.ade("ACN_SparseCtrlLoaderAdvanced")
        cn = g.node("ControlNetApplyAdvanced", {"positive": "CONDITIONING", "negative": "CONDITIONING",
                                                "control_net": "CONTROL_NET", "image": "IMAGE", "vae": "VAE"},
                    ["CONDITIONING", "CONDITIONING"], [1.0, 0.0, 1.0])
        g.link(sc, 0, cn, "control_net")
        img = g.node("LoadImage", {}, ["IMAGE", "MASK"], ["kf.png", "image"])
        if kind == "ACN_SparseCtrlRGBPreprocessor":
            n = g.ade(kind)
            g.link(img, 0, n, "image")
            g.link(ckpt, 2, n, "vae")
            g.link(n, 0, cn, "image")
            return g, n
        g.link(img, 0, cn, "image")
        if kind == "ACN_SparseCtrlLoaderAdvanced":
            return g, sc
        n = g.ade(kind)
        g.link(n, 0, sc, "sparse_method")
        return g, n
    if kind == "CheckpointLoaderSimpleWithNoiseSelect":
        n = g.ade(kind)
        g.link(n, 1, next(x["id"] for x in g.nodes if x["type"] == "CLIPTextEncode"), "clip", )
        return g, n
    if kind == "ADE_EmptyLatentImageLarge":
        n = g.ade(kind, width=768)
        return g, n
    if kind == "ADE_AnimateDiffUnload":
        n = g.ade(kind)
        g.links = [l for l in g.links if not (l[1] == use and l[3] == ks)]
        g.by_id[use]["outputs"][0]["links"] = []
        g.link(use, 0, n, "model")
        g.by_id[ks]["inputs"][0]["link"] = None
        g.link(n, 0, ks, "model")
        return g, n
    if kind == "ADE_AnimateDiffCombine":
        n = g.ade(kind, format="image/webp", frame_rate=12)
        dec = next(x["id"] for x in g.nodes if x["type"] == "VAEDecode")
        g.link(dec, 0, n, "images")
        return g, n
    raise AssertionError(f"no coverage graph for {kind}")


@pytest.mark.parametrize("kind", COVERED)
def test_every_covered_node_is_converted(kind):
    assert kind in SPECS, f"{kind} is not an ADE 90fb133 / ACN node"
    g, nid = coverage_graph(kind)
    before = g.workflow()
    wf, report = convert_workflow(before)
    check(before, wf, report)
    got = statuses(report, nid)
    assert got & {CONVERTED, REMOVED} and KEPT not in got, (kind, report.text())
    left = [n for n in wf["nodes"] if n["type"] in SPECS]
    assert all(KEPT in statuses(report, n["id"]) for n in left)


# ------------------------------------------------------------------------------------------------- versions, bad input
def test_older_node_versions_map_with_defaults_and_unknown_ones_are_kept():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    old = g.ade("ADE_AnimateDiffLoaderWithContext")
    g.by_id[old]["widgets_values"] = ["temporaldiff-v1-animatediff.safetensors", "sqrt_linear (AnimateDiff)"]
    ctx = g.ade("ADE_AnimateDiffUniformContextOptions")
    g.by_id[ctx]["widgets_values"] = [16, 4, 4, "uniform", False]  # before fuse_method etc. existed
    g.link(ckpt, 0, old, "model")
    g.link(ctx, 0, old, "context_options")
    g.link(old, 0, ks, "model")
    wf, report = convert(g)
    assert NOTE in statuses(report, old) and NOTE in statuses(report, ctx)
    assert "older version" in report.text()
    win = next(n for n in wf["nodes"] if n["id"] == ctx)
    assert widgets(wf, win)["context_overlap"] == 4 and widgets(wf, win)["fuse_method"] == "flat"

    g = UIGraph()
    ckpt, ks = sd_base(g)
    load, app, use, ctx = gen2(g, ckpt, ks)
    g.by_id[ctx]["widgets_values"] = [16, 1, 4, "pyramid", False, 0, 1, "an extra value"]
    g.by_id[use]["widgets_values"] = ["no such schedule"]
    new_type = g.node("ADE_SomethingFromTheFuture", {}, ["M_MODELS"], [1])
    wf, report = convert(g)
    for nid in (ctx, use, new_type):
        assert KEPT in statuses(report, nid), report.text()
        assert nid in {n["id"] for n in wf["nodes"]}
    assert "an ADE version the converter does not know" in report.text()


def test_nodes_saved_without_widgets_values_and_inside_subgraphs():
    g = UIGraph()
    ckpt, ks = sd_base(g)
    load, app, use, ctx = gen2(g, ckpt, ks, apply="ADE_ApplyAnimateDiffModelSimple")
    del g.by_id[app]["widgets_values"]  # frontends leave it out for a node without widgets
    wf = g.workflow()
    wf["definitions"] = {"subgraphs": [{"id": "abc", "name": "motion", "nodes": [
        {"id": 1, "type": "ADE_UseEvolvedSampling", "widgets_values": ["autoselect"]}]}]}
    after, report = convert_workflow(wf)
    check(wf, after, report)
    assert CONVERTED in statuses(report, app)
    assert "inside subgraph/group node 'motion': not converted" in report.text()


def test_every_other_ade_node_is_kept_with_a_reason():
    """Each ADE / ACN SparseCtrl node type not converted, alone in a graph: kept, one report line saying why."""
    for kind in sorted(set(SPECS) - set(COVERED) - set(VIEWS)):
        g = UIGraph()
        nid = g.ade(kind)
        wf, report = convert(g)
        lines = [l for l in report.lines if l.node == nid]
        assert lines and all(l.status == KEPT for l in lines), (kind, report.text())
        assert any(w in lines[0].message for w in ("no equivalent", "deprecated", "not connected", "by hand",
                                                   "not used")), (kind, lines[0].message)


def test_map_widgets_control_after_generate_and_dict_values():
    spec = {"inputs": [{"name": "seed", "type": "INT", "widget": True, "control_after_generate": True,
                        "section": "required"},
                       {"name": "steps", "type": "INT", "widget": True, "section": "required", "default": 20},
                       {"name": "warn", "type": "ADEWARN", "widget": False, "ui_widget": True, "section": "optional"}]}
    assert map_widgets({"widgets_values": [5, "randomize", 30]}, spec)[0] == {"seed": 5, "steps": 30}
    assert map_widgets({"widgets_values": [5, "fixed", 30, ""]}, spec)[0] == {"seed": 5, "steps": 30}
    assert map_widgets({"widgets_values": {"seed": 1, "steps": 2}}, spec)[0] == {"seed": 1, "steps": 2}
    node = {"widgets_values": [5, "fixed", 30], "inputs": [{"name": "steps", "widget": {"name": "steps"}, "link": 9}]}
    assert map_widgets(node, spec)[0]["steps"] == Linked(9)
    with pytest.raises(VersionMismatch):
        map_widgets({"widgets_values": [5, 30]}, spec)
    with pytest.raises(VersionMismatch):
        map_widgets({"widgets_values": [5, "fixed", 30], "inputs": [{"name": "bogus", "link": None}]}, spec)


def test_bad_input_is_refused_clearly(tmp_path):
    api = {"3": {"class_type": "ADE_UseEvolvedSampling", "inputs": {"model": ["4", 0]}}}
    with pytest.raises(AdeImportError, match="API-format"):
        parse_workflow(api)
    for bad in ([1, 2], {"a": 1}, "text"):
        with pytest.raises(AdeImportError, match="not a ComfyUI workflow"):
            parse_workflow(bad)
    p = tmp_path / "api.json"
    p.write_text(json.dumps(api))
    with pytest.raises(AdeImportError, match=str(p)):
        read_workflow(p)
    p.write_text("{not json")
    with pytest.raises(AdeImportError, match="not valid JSON"):
        read_workflow(p)
    with pytest.raises(AdeImportError, match="no such file"):
        read_workflow(tmp_path / "missing.json")


def test_png_and_webp_with_embedded_workflow(tmp_path):
    from PIL import Image, PngImagePlugin
    g = UIGraph()
    ckpt, ks = sd_base(g)
    gen2(g, ckpt, ks)
    wf = g.workflow()
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"1": {"class_type": "KSampler", "inputs": {}}}))
    info.add_text("workflow", json.dumps(wf))
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png", pnginfo=info)
    assert read_workflow(tmp_path / "a.png") == wf
    img = Image.new("RGB", (8, 8))
    exif = img.getexif()
    exif[0x0110] = "prompt:{}"
    exif[0x010F] = "workflow:" + json.dumps(wf)  # as SaveAnimatedWEBP writes it
    img.save(tmp_path / "a.webp", exif=exif)
    assert read_workflow(tmp_path / "a.webp") == wf
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "{}")
    Image.new("RGB", (8, 8)).save(tmp_path / "api.png", pnginfo=info)
    with pytest.raises(AdeImportError, match="only the API-format prompt"):
        read_workflow(tmp_path / "api.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(AdeImportError, match="no ComfyUI workflow embedded"):
        read_workflow(tmp_path / "plain.png")


def test_cli(tmp_path):
    src = tmp_path / "my_ade.json"
    src.write_text(LARGE.read_text())
    bad = tmp_path / "api.json"
    bad.write_text(json.dumps({"1": {"class_type": "X", "inputs": {}}}))
    run = subprocess.run([sys.executable, str(REPO / "motionkit_ade_import.py"), str(src)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "my_ade_motionkit.json"
    assert out.is_file() and "Converted" in run.stdout and str(out) in run.stdout
    assert any(n["type"] == "MotionKitApplyMotionModel" for n in json.loads(out.read_text())["nodes"])
    run = subprocess.run([sys.executable, "-m", "motionkit_ade_import", str(bad), "-o", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 2 and "API-format" in run.stderr


# ------------------------------------------------------------------------------------------------- a large graph
def test_large_controlnet_vhs_workflow():
    """tests/data/ade_large_controlnet_vhs.json (see tests/ade_graphs.py large_graph): vid2vid with ADE Gen2 and
    a Gen1 loader, two ControlNets (core and Advanced-ControlNet), SparseCtrl, VideoHelperSuite in and out, prompt
    travel, reroutes, a primitive, old-frontend positions. Other packs' and core nodes stay as they were."""
    before = json.loads(LARGE.read_text())
    assert len(before["nodes"]) >= 40
    after, report = convert_workflow(before)
    check(before, after, report)
    old = {n["id"]: n for n in before["nodes"]}
    new = {n["id"]: n for n in after["nodes"]}
    for nid, node in old.items():
        if not node["type"].startswith(("ADE_", "ACN_Sparse")) and node["type"] != "Reroute":
            assert nid in new and new[nid]["type"] == node["type"] and new[nid]["widgets_values"] == \
                node.get("widgets_values", new[nid].get("widgets_values")), f"#{nid} {node['type']} changed"
    assert not any(n["type"] in ("ADE_UseEvolvedSampling", "ADE_AnimateDiffLoaderWithContext") for n in after["nodes"])
    assert sum(n["type"] == "MotionKitApplyMotionModel" for n in after["nodes"]) == 2
    kept = {l.node_type for l in report.kept}
    assert kept == {"ADE_AnimateDiffSettings", "ADE_AdjustPEFullStretch"}, report.text()


def test_large_fixture_is_what_the_builder_makes():
    import ade_graphs
    assert json.loads(LARGE.read_text()) == ade_graphs.large_graph()


# ------------------------------------------------------------------------------------------------- the live registry
@pytest.mark.comfyui
def test_motionkit_specs_match_the_live_registry():
    """motionkit_nodes.json (what the CLI converts to) is the registry now: regenerate it when nodes change
    (python tests/extract_ade_node_specs.py motionkit --comfyui /opt/ComfyUI)."""
    import comfy_env
    comfy_env.comfy_on_cpu()
    from motionkit.ade_import import registry_specs
    from motionkit.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    live = json.loads(json.dumps(registry_specs(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS)))
    stale = {k for k in set(live) | set(TARGETS) if live.get(k) != TARGETS.get(k)}
    # model-file lists differ between machines: compare those inputs without their options
    for k in list(stale):
        strip = lambda spec: [{**e, "options": None} if e["name"].endswith("_name") else e  # noqa: E731
                              for e in spec["inputs"]] if spec else None
        if strip(live.get(k)) == strip(TARGETS.get(k)):
            stale.discard(k)
    assert not stale, f"ade_import/motionkit_nodes.json is stale for {sorted(stale)}: regenerate it"
    before = json.loads(LARGE.read_text())
    after, report = convert_workflow(before, live)
    check(before, after, report, live)


@pytest.mark.comfyui
def test_server_route_converts_against_the_live_registry():
    import comfy_env
    comfy_env.comfy_on_cpu()
    from motionkit.nodes.ade_import_route import convert_request, register
    assert register() is False  # no PromptServer in this process: nothing registered, nothing fails
    status, reply = convert_request({"workflow": json.loads(LARGE.read_text())})
    assert status == 200 and reply["kept"] == 2 and "Converted" in reply["report_text"]
    assert any(n["type"] == "MotionKitContextWindows" for n in reply["workflow"]["nodes"])
    json.dumps(reply)  # what the route sends
    status, reply = convert_request({"workflow": {"1": {"class_type": "KSampler", "inputs": {}}}})
    assert status == 400 and "API-format" in reply["error"]
    status, reply = convert_request({"graph": {}})
    assert status == 400 and "workflow" in reply["error"]


def test_converted_example_is_what_the_converter_makes_of_its_ade_source():
    """example_workflows/converted_from_ade.json is the converter's output for tests/data/ade_txt2anim_context.json
    (an ADE workflow built from ADE 90fb133's definitions) as it converts today: same nodes, widget values and links;
    only positions, sizes and the description Note were added by hand."""
    source = json.loads((REPO / "tests" / "data" / "ade_txt2anim_context.json").read_text())
    assert any(n["type"] == "ADE_UseEvolvedSampling" for n in source["nodes"])
    converted, report = convert_workflow(source)
    assert not report.kept
    example = json.loads((REPO / "example_workflows" / "converted_from_ade.json").read_text())

    def essence(wf):
        nodes = {n["id"]: (n["type"], n["widgets_values"], [(i["name"], i.get("link")) for i in n["inputs"]])
                 for n in wf["nodes"] if n["type"] != "Note"}
        return nodes, sorted(map(tuple, wf["links"]))
    assert essence(example) == essence(converted)
