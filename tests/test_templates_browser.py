"""Every template (example_workflows/*.json), opened in the real ComfyUI frontend and converted by the
frontend's own ``app.graphToPrompt()`` - what pressing Run sends - equals its API twin
example_workflows/api/<name>_api.json, node by node (class_type and inputs; links as [id, slot]).

The frontend adds widgets the node's INPUT_TYPES do not list (a "control after generate" combo after every
INT input named seed or noise_seed, an upload button after an image combo) and fills widgets missing from
``widgets_values`` with their defaults; a template that forgets one gets every later value shifted, which only
this conversion shows (once: "training_dtype: 'True' not in ['fp32', 'bf16']"). Every seed's control is
"fixed" too: a template gives the same result on every Run, and a second Run of a training template is cached
instead of training again.

Model combos keep the template's file name: the frontend keeps a saved combo value even when the server lacks
the file (it resets values only when it opens its own default graph), so the comparison is with what the
template says, with no files installed under those names. All templates load in one page (the browser
fixture of test_preview_browser.py); one report per template."""
from __future__ import annotations

import json

import pytest

import example_layout as el
from browser import APP, MARKS, diagnostics, page  # noqa: F401  (page: the fixture)

pytestmark = MARKS

TEMPLATES = el.ui_workflows()
IDS = [p.stem for p in TEMPLATES]

# loadGraphData(graph, clean, restore_view, workflow, options): the same positional API in 1.27 and 1.58
CONVERT_JS = f"""async (wf) => {{
    const a = {APP};
    await a.loadGraphData(wf, true, false, null, {{showMissingNodesDialog: false, showMissingModelsDialog: false}});
    const p = await a.graphToPrompt();
    const controls = [];
    for (const n of a.graph.nodes)
        for (const w of n.widgets ?? [])
            for (const c of w.linkedWidgets ?? [])
                if (c.name?.endsWith('control_after_generate'))
                    controls.push([String(n.id), n.type, w.name, c.value]);
    return {{output: p.output, controls}};
}}"""


@pytest.fixture(scope="module")
def converted(page):
    """{template name: {"output": graphToPrompt().output, "controls": [[node, type, widget, mode], ...]}}."""
    out = {}
    for path in TEMPLATES:
        out[path.stem] = page.evaluate(CONVERT_JS, json.loads(path.read_text(encoding="utf-8")))
    return out


def differences(sent: dict, twin: dict) -> list:
    """What the frontend sends that the API twin does not say, one line each."""
    out = []
    for nid in sorted(set(sent) | set(twin), key=str):
        if nid not in twin:
            out.append(f"node {nid} ({sent[nid]['class_type']}): sent, not in the API twin")
            continue
        if nid not in sent:
            out.append(f"node {nid} ({twin[nid]['class_type']}): in the API twin, not sent")
            continue
        s, t = sent[nid], twin[nid]
        if s["class_type"] != t["class_type"]:
            out.append(f"node {nid}: class_type {s['class_type']!r}, the API twin says {t['class_type']!r}")
        for key in sorted(set(s["inputs"]) | set(t["inputs"])):
            a, b = s["inputs"].get(key, "<missing>"), t["inputs"].get(key, "<missing>")
            if a != b:
                out.append(f"node {nid} ({s['class_type']}) {key}: sent {a!r}, the API twin says {b!r}")
    return out


@pytest.mark.parametrize("path", TEMPLATES, ids=IDS)
def test_run_sends_what_the_api_twin_says(converted, path, page):
    got = converted[path.stem]
    twin = json.loads((el.EXAMPLES / "api" / f"{path.stem}_api.json").read_text(encoding="utf-8"))
    twin = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in twin.items()}
    sent = {str(k): {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in got["output"].items()}
    diff = differences(sent, twin)
    assert not diff, f"{path.name}, converted by the frontend, differs from api/{path.stem}_api.json:\n  " \
        + "\n  ".join(diff)
    randomized = [c for c in got["controls"] if c[3] != "fixed"]
    assert not randomized, f"{path.name}: seeds whose control after generate is not 'fixed' " \
        f"(a second Run would change them): {randomized}"
    assert not [e for e in page.errors if "motionkit" in e.lower()], diagnostics(page)


def test_differences_names_what_differs():
    twin = {"1": {"class_type": "A", "inputs": {"seed": 0, "dtype": "bf16", "x": ["2", 0]}}}
    assert differences(twin, twin) == []
    shifted = {"1": {"class_type": "A", "inputs": {"seed": 0, "dtype": True, "x": ["2", 0]}}}
    assert differences(shifted, twin) == ["node 1 (A) dtype: sent True, the API twin says 'bf16'"]
    assert differences({}, twin) == ["node 1 (A): in the API twin, not sent"]
