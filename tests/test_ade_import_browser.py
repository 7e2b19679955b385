"""The frontend action: in the real ComfyUI frontend (served by the test server, MotionKit installed, ADE not),
the command "MotionKit: convert AnimateDiff-Evolved workflow" sends the open ADE graph to /motionkit/ade_import,
opens the MotionKit workflow it gets back and shows the report; the frontend's own app.graphToPrompt() (what Run
sends) then has MotionKit's nodes with the ADE values, by name, and the links re-wired."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from browser import APP, MARKS, diagnostics, page  # noqa: F401  (page: the fixture)

pytestmark = MARKS
LARGE = Path(__file__).resolve().parent / "data" / "ade_large_controlnet_vhs.json"
COMMAND = "MotionKit.ConvertAdeWorkflow"


def test_convert_command_opens_the_motionkit_workflow(page):
    ade = json.loads(LARGE.read_text())
    page.evaluate(f"async (wf) => {{ await {APP}.loadGraphData(wf, true, false, null, "
                  "{showMissingNodesDialog: false, showMissingModelsDialog: false}); }", ade)
    labels = page.evaluate(f"() => {APP}.extensionManager.command.commands.map(c => c.label ?? '')")
    assert "MotionKit: convert AnimateDiff-Evolved workflow" in labels, diagnostics(page)
    page.evaluate(f"async () => {{ await {APP}.extensionManager.command.execute('{COMMAND}'); }}")
    page.wait_for_function(f"() => {APP}.graph.nodes.some(n => n.type === 'MotionKitApplyMotionModel')",
                           timeout=30_000)
    report = page.evaluate("() => document.querySelector('.comfy-modal-content')?.innerText ?? ''")
    assert "Converted to MotionKit" in report and "ADE_AdjustPEFullStretch" in report, report
    prompt = page.evaluate(f"async () => (await {APP}.graphToPrompt()).output")
    by_type = {}
    for nid, node in prompt.items():
        by_type.setdefault(node["class_type"], []).append((nid, node["inputs"]))
    assert "ADE_UseEvolvedSampling" not in by_type, sorted(by_type)
    ((apply_id, apply_in),) = [x for x in by_type["MotionKitApplyMotionModel"] if x[0] == "33"]
    assert apply_in["motion_scale"] == 1.1 and apply_in["end_percent"] == 0.95
    assert apply_in["motion_model"] == ["27", 0] and apply_in["motion_lora"] == ["28", 0]
    assert apply_in["motion_keyframes"] == ["32", 0] and apply_in["model"] == ["7", 0]  # IPAdapter's MODEL
    windows = dict(by_type["MotionKitContextWindows"])
    assert windows["34"]["context_length"] == 16 and windows["34"]["model"] == ["33", 0]
    sampler = dict(by_type["KSampler"])
    assert sampler["40"]["model"] == ["34", 0], sampler["40"]  # through the Reroute, which the prompt skips
    keys = dict(by_type["MotionKitSparseCtrlKeyframes"])["20"]
    assert keys["placement"] == "from start" and keys["motion_strength"] == 0.9
