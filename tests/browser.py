"""The browser tests' shared set-up (no tests here): headless Chromium through Playwright on the real ComfyUI
frontend served by the test server (the module-scoped `page` fixture; a module imports it), and helpers.

Needs Debian's chromium (`apt-get install chromium`, or $MOTIONKIT_CHROMIUM) and the `playwright` Python
package (no `playwright install`: the system Chromium is driven); MARKS skips a module, with the reason,
without them. Set MOTIONKIT_SCREENSHOTS=DIR to keep screenshots.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from comfy_graphs import CKPT
from model_cache import cached, place

MOTION = "mm_v2_random.safetensors"
REPO = Path(__file__).resolve().parent.parent


def _chromium():
    return os.environ.get("MOTIONKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _missing() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the browser test needs the playwright Python package (pip install playwright)"
    if not _chromium():
        return "the browser test needs Chromium: apt-get install chromium (or set MOTIONKIT_CHROMIUM)"
    return ""


# every browser module: pytestmark = browser.MARKS (skipped, with the reason, without Chromium or playwright)
MARKS = [pytest.mark.comfyui, pytest.mark.skipif(bool(_missing()), reason=_missing() or "-")]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-proxy-server"]
APP = "window.comfyAPI.app.app"


def tiny_ui_workflow() -> dict:
    """example_workflows/txt2anim_sd15.json (UI format) at 64x64, 2 frames, 1 step, with the test models."""
    ui = json.loads((REPO / "example_workflows" / "txt2anim_sd15.json").read_text())
    for node in ui["nodes"]:
        w = node["widgets_values"]
        if node["type"] == "CheckpointLoaderSimple":
            w[0] = CKPT
        elif node["type"] == "MotionKitLoadMotionModel":
            w[0] = MOTION
        elif node["type"] == "EmptyLatentImage":
            w[:] = [64, 64, 2]
        elif node["type"] == "KSampler":
            w[2] = 1
        elif node["type"] == "SaveAnimatedWEBP":
            w[0] = "ptest/webp"
    return ui


@pytest.fixture(scope="module")
def page(comfy_server):
    from playwright.sync_api import sync_playwright

    place(comfy_server, {"animatediff_models": {MOTION: cached(MOTION)}})
    # a fresh user shows the templates dialog over the canvas on first load
    comfy_server.post_json("/settings", {"Comfy.TutorialCompleted": True})
    profile = tempfile.mkdtemp(prefix="motionkit_chromium_")
    errors = []
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                profile, executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1400, "height": 900}, timeout=60_000)
            try:
                pg = ctx.pages[0] if ctx.pages else ctx.new_page()
                pg.set_default_timeout(30_000)
                console = []
                pg.on("pageerror", lambda e: errors.append(f"{e}\n{getattr(e, 'stack', '')}"))
                pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                pg.errors, pg.console, pg.server = errors, console, comfy_server
                pg.goto(comfy_server.url, wait_until="load", timeout=120_000)
                # ready once the frontend has opened its first workflow (a fresh user's default graph):
                # a graph loaded before that would be replaced by it
                pg.wait_for_function(f"() => window.comfyAPI?.app?.app?.vueAppReady && {APP}.graph?.nodes?.length",
                                     timeout=120_000)
                yield pg
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def player(page, node_id):
    return page.locator(f'.motionkit-player[data-node-id="{node_id}"]')


def frames_seen(loc, seconds=1.2):
    seen, end = set(), time.monotonic() + seconds
    while time.monotonic() < end:
        seen.add(loc.get_attribute("data-frame"))
        time.sleep(0.05)
    return seen


def screenshot(page, name):
    d = os.environ.get("MOTIONKIT_SCREENSHOTS")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(d) / f"{name}.png"))


def load(page, workflow):
    page.evaluate(f"async (wf) => {{ await {APP}.loadGraphData(wf); }}", workflow)
    types = page.evaluate(f"() => {APP}.graph.nodes.map(n => n.type).sort()")
    assert types == sorted(n["type"] for n in workflow["nodes"]), types


def diagnostics(page) -> str:
    return ("console:\n  " + "\n  ".join(page.console[-25:]) + "\npage errors: " + repr(page.errors)
            + "\nComfyUI log:\n" + page.server.log_tail(30))


def queue_and_wait(page, node_id, timeout=240):
    page.evaluate(f"(id) => {{ const a = {APP}; a.canvas.centerOnNode(a.graph.getNodeById(id)); "
                  "a.canvas.setDirty(true, true); }", node_id)
    page.evaluate(f"async () => {{ await {APP}.queuePrompt(0, 1); }}")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        page.wait_for_function(
            "(id) => ['playing', 'error'].includes(document.querySelector("
            "`.motionkit-player[data-node-id='${id}']`)?.dataset.state)", arg=node_id, timeout=timeout * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"no player on node {node_id} after {timeout}s\n{diagnostics(page)}")
    return player(page, node_id)


def set_core_nodes(page, on: bool):
    page.evaluate(f"async (on) => {{ await {APP}.extensionManager.setting.set('MotionKit.Preview.CoreNodes', on); }}",
                  on)


# ---------------------------------------------------------------------------------------------
# The trajectory editor

SIZE = 128


def make_graph(page):
    return page.evaluate(f"""async () => {{
        const a = {APP};
        a.graph.clear();
        const t = LiteGraph.createNode("MotionKitTrajectory");
        a.graph.add(t);
        t.pos = [100, 100];
        t.size = [420, 560];
        for (const [k, v] of [["width", {SIZE}], ["height", {SIZE}], ["frames", 4]]) {{
            const w = t.widgets.find(w => w.name === k); w.value = v; w.callback?.(v);
        }}
        const s = LiteGraph.createNode("SaveImage");
        a.graph.add(s);
        s.pos = [600, 100];
        s.widgets.find(w => w.name === "filename_prefix").value = "ptest/trajectory";
        t.connect(1, s, 0);
        a.canvas.ds.scale = 1; a.canvas.ds.offset = [0, 0];
        a.canvas.setDirty(true, true);
        return [t.id, s.id];
    }}""")


def flat(points):
    return [c for p in points for c in p]


def paths_value(page, node_id):
    return json.loads(page.evaluate(f"(id) => {APP}.graph.getNodeById(id).widgets.find(w => w.name === 'paths').value",
                                    node_id))
