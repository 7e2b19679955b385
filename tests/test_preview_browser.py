"""The in-node animation player (web/motionkit_preview.js) in a real browser: headless Chromium, driven by
Playwright, opens the real ComfyUI frontend served by the test server, loads the example workflow, queues
it, and the Save node plays the result with a working play/pause button.

Needs Debian's chromium (`apt-get install chromium`, or $MOTIONKIT_CHROMIUM) and the `playwright` Python
package (no `playwright install`: the system Chromium is driven); skipped, with the reason, without them.
Set MOTIONKIT_SCREENSHOTS=DIR to keep screenshots of the players.
"""
from __future__ import annotations

import json

from browser import (APP, MARKS, diagnostics, frames_seen, load, page, player, queue_and_wait,  # noqa: F401 (page: fixture)
                     screenshot, set_core_nodes, tiny_ui_workflow)

pytestmark = MARKS


def draw_hooks(page):
    """Ids of the nodes whose drawing MotionKit wraps (only those showing an animation may have it), as strings:
    frontend 1.27 keeps node ids as numbers, 1.58 as strings."""
    return page.evaluate(f"() => {APP}.graph.nodes.filter(n => n.onDrawBackground?.motionkit).map(n => String(n.id))")


def test_core_savers_are_left_alone_by_default(page):
    """Without the opt-in setting a core saver keeps the frontend's own preview and gets no MotionKit hook;
    MotionKit's nodes are hooked, and nodes without an animation have nothing that runs per frame."""
    set_core_nodes(page, False)
    load(page, tiny_ui_workflow())
    rerun_webp(page, "ptest/default")
    page.evaluate(f"async () => {{ await {APP}.queuePrompt(0, 1); }}")
    # the run's file has reached the node (app.nodeOutputs: the frontend's own record, 1.27 and 1.58)
    page.wait_for_function(
        f"() => {APP}.nodeOutputs?.['9']?.images?.some(i => i.filename.startsWith('default'))", timeout=240_000)
    page.wait_for_timeout(500)  # a player would be added by then
    assert player(page, 9).count() == 0
    # the frontend shows it its own way: its preview widget (1.27) or the node's images (1.58)
    assert page.evaluate(f"""() => {{ const n = {APP}.graph.getNodeById(9);
        return !!(n.imgs?.length || n.widgets?.some(w => w.name === '$$comfy_animation_preview')); }}""")
    hooked = page.evaluate(f"() => {APP}.graph.nodes.filter(n => n.motionkit).map(n => n.type).sort()")
    assert hooked == ["MotionKitApplyMotionModel", "MotionKitLoadMotionModel"], hooked
    assert draw_hooks(page) == []
    assert not [e for e in page.errors if "motionkit" in e.lower()], diagnostics(page)


def test_example_workflow_plays_in_the_save_node(page):
    set_core_nodes(page, True)  # node 9 is core's SaveAnimatedWEBP: opted in
    load(page, tiny_ui_workflow())
    loc = queue_and_wait(page, 9)  # node 9: core SaveAnimatedWEBP
    assert loc.get_attribute("data-state") == "playing"
    assert loc.get_attribute("data-mode") == "decoder"  # frame by frame through ImageDecoder
    src = loc.get_attribute("data-src")
    assert src.startswith("/api/view?") and "subfolder=ptest" in src and "type=output" in src, src
    assert src.split("filename=")[1].split("&")[0].endswith(".webp")
    status, ctype = page.evaluate("async (u) => { const r = await fetch(u); return [r.status, "
                                  "r.headers.get('content-type')]; }", src)
    assert (status, ctype) == (200, "image/webp")
    assert frames_seen(loc) == {"0", "1"}, "the two frames must alternate while playing"
    # the frontend's own preview of this output is not drawn as well
    names = page.evaluate(f"() => {APP}.graph.getNodeById(9).widgets.map(w => w.name)")
    assert "motionkit_animation" in names and "$$comfy_animation_preview" not in names, names
    screenshot(page, "webp_playing")

    button = loc.locator(".motionkit-play")
    button.click()  # a real click: the control must be reachable over the canvas
    assert loc.get_attribute("data-state") == "paused" and button.inner_text() == "▶"
    still = frames_seen(loc, 0.6)
    assert len(still) == 1, f"paused, yet frames changed: {still}"
    # the slider shows one frame while paused
    other = "1" if still == {"0"} else "0"
    loc.locator(".motionkit-frame").evaluate(
        "(s, v) => { s.value = v; s.dispatchEvent(new Event('input')); }", other)
    page.wait_for_function("(id) => document.querySelector(`.motionkit-player[data-node-id='${id}']`)"
                           ".dataset.frame === '" + other + "'", arg=9, timeout=5000)
    assert loc.get_attribute("data-state") == "paused"
    button.click()
    assert loc.get_attribute("data-state") == "playing" and button.inner_text() == "❚❚"
    assert frames_seen(loc) == {"0", "1"}
    # per-frame work only on the node that shows an animation
    assert draw_hooks(page) == ["9"]

    # outputs restored by the frontend (a workflow tab switched away and back): the player follows them
    # (a copy: frontend 1.58's nodeOutputs is a live view that the assignment below empties)
    page.evaluate(f"() => {{ window.__mkSaved = JSON.parse(JSON.stringify({APP}.nodeOutputs)); "
                  f"{APP}.nodeOutputs = {{}}; }}")
    assert player(page, 9).count() == 0 and draw_hooks(page) == []
    page.evaluate(f"() => {{ {APP}.nodeOutputs = window.__mkSaved; }}")
    page.wait_for_function("() => document.querySelector(`.motionkit-player[data-node-id='9']`)"
                           "?.dataset.state === 'playing'", timeout=30_000)
    assert draw_hooks(page) == ["9"]
    assert not [e for e in page.errors if "motionkit" in e.lower()], diagnostics(page)


def test_save_animation_video_and_gif_play(page):
    """MotionKit's Save Animation: mp4 in a <video>, gif frame by frame (the rest of the graph is cached)."""
    load(page, tiny_ui_workflow())
    ids = page.evaluate(f"""() => {{
        const a = {APP};
        const decode = a.graph.findNodesByType("VAEDecode")[0];
        const out = [];
        for (const [fmt, x] of [["mp4", 0], ["gif", 1]]) {{
            const n = LiteGraph.createNode("MotionKitSaveAnimation");
            a.graph.add(n);
            n.pos = [decode.pos[0] + 300 * x, decode.pos[1] + 700];
            n.widgets.find(w => w.name === "format").value = fmt;
            n.widgets.find(w => w.name === "filename_prefix").value = "ptest/" + fmt;
            decode.connect(0, n, 0);
            out.push(n.id);
        }}
        return out;
    }}""")
    mp4, gif = ids
    loc = queue_and_wait(page, mp4)
    assert loc.get_attribute("data-state") == "playing", loc.inner_text()
    assert loc.get_attribute("data-mode") == "video"
    assert ".mp4" in loc.get_attribute("data-src")
    video = loc.locator("video")
    t0 = video.evaluate("v => v.currentTime")
    page.wait_for_function("(t) => document.querySelector(`.motionkit-player[data-mode=video] video`)"
                           ".currentTime !== t", arg=t0, timeout=10_000)
    loc.locator(".motionkit-play").click()
    assert video.evaluate("v => v.paused") is True
    page.wait_for_function("(id) => document.querySelector(`.motionkit-player[data-node-id='${id}']`)"
                           ".dataset.state === 'paused'", arg=mp4, timeout=5000)
    loc.locator(".motionkit-play").click()
    assert video.evaluate("v => v.paused") is False

    g = player(page, gif)
    page.wait_for_function("(id) => document.querySelector(`.motionkit-player[data-node-id='${id}']`)"
                           "?.dataset.state === 'playing'", arg=gif, timeout=30_000)
    assert g.get_attribute("data-mode") == "decoder" and ".gif" in g.get_attribute("data-src")
    assert frames_seen(g) == {"0", "1"}
    screenshot(page, "save_animation")
    assert not [e for e in page.errors if "motionkit" in e.lower()], diagnostics(page)


def rerun_webp(page, prefix):
    """Queue again with a new filename prefix on node 9: only the save node runs, giving a new file."""
    page.evaluate(f"""(p) => {{ const n = {APP}.graph.getNodeById(9);
        n.widgets.find(w => w.name === "filename_prefix").value = p; }}""", prefix)


def test_fallback_without_imagedecoder(page):
    set_core_nodes(page, True)
    load(page, tiny_ui_workflow())
    # a browser without ImageDecoder: the <img> animates by itself, pause shows a still of it
    page.evaluate("() => { window.__mkImageDecoder = window.ImageDecoder; window.ImageDecoder = undefined; }")
    try:
        rerun_webp(page, "ptest/img")
        loc = queue_and_wait(page, 9)
        assert loc.get_attribute("data-mode") == "img" and "ptest" in loc.get_attribute("data-src")
        img, still = loc.locator("img"), loc.locator("canvas")
        assert img.is_visible() and not still.is_visible()
        loc.locator(".motionkit-play").click()
        assert loc.get_attribute("data-state") == "paused"
        assert not img.is_visible() and still.is_visible()
        assert still.evaluate("c => [c.width, c.height]") == [64, 64]
        loc.locator(".motionkit-play").click()
        assert loc.get_attribute("data-state") == "playing" and img.is_visible()
    finally:
        page.evaluate("() => { window.ImageDecoder = window.__mkImageDecoder; }")

    assert not [e for e in page.errors if "motionkit" in e.lower()], diagnostics(page)


def test_example_nodes_are_as_large_as_the_frontend_draws_them(page):
    """Every example workflow (example_workflows/*.json), loaded in the frontend: each node's saved size
    holds what the frontend computes for its inputs and widgets (else the widgets spill over the node
    below, as a CLIP Text Encode once hid Apply Motion Model's last widgets), and every node type is known.
    Together with test_example_workflows.py's overlap check: no node covers another on the canvas."""
    import example_layout as el
    problems = []
    for path in el.ui_workflows():
        ui = json.loads(path.read_text(encoding="utf-8"))
        problems += [f"{path.name}: {p}" for p in el.frontend_problems(el.measure(page, ui), ui)]
    assert not problems, "\n".join(problems) + "\n(re-lay them with tests/example_layout.py)"
