"""MotionKit's web extensions in the newer frontend's "Nodes 2.0" (setting Comfy.VueNodes.Enabled: nodes drawn as
Vue components instead of on the canvas): the animation player (web/motionkit_preview.js) plays and pauses, and
the trajectory editor (web/motionkit_trajectory.js) takes clicks and saves the path. Frontend 1.27 has no Nodes
2.0 (only a hidden experiment): the test is skipped there and runs with MOTIONKIT_FRONTEND_ROOT set to a newer
frontend (README, "Run the tests"). Same set-up and skip rules as tests/test_preview_browser.py."""
from __future__ import annotations

import pytest

from browser import (APP, MARKS, SIZE, diagnostics, flat, frames_seen, load, make_graph, page,  # noqa: F401
                     paths_value, queue_and_wait, set_core_nodes, tiny_ui_workflow)

pytestmark = MARKS

VUE_NODES = "Comfy.VueNodes.Enabled"


def set_setting(page, key, value):
    page.evaluate(f"async ([k, v]) => {{ await {APP}.extensionManager.setting.set(k, v); }}", [key, value])


@pytest.fixture
def nodes2(page):
    version = page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")
    if tuple(int(x) for x in version.split(".")[:2]) < (1, 30):
        pytest.skip(f"frontend {version} has no Nodes 2.0; set MOTIONKIT_FRONTEND_ROOT to a newer one (README)")
    set_setting(page, VUE_NODES, True)
    try:
        yield page
    finally:
        # the setting is stored on the server, which the other browser tests share
        set_setting(page, VUE_NODES, False)


def test_player_and_path_editor_work_in_nodes_2(nodes2):
    page = nodes2
    set_core_nodes(page, True)
    try:
        load(page, tiny_ui_workflow())
        # the nodes are Vue components now (HTML with the frontend's own test ids), not canvas drawings
        page.wait_for_selector("[data-testid='node-header-9']", timeout=30_000)
        loc = queue_and_wait(page, 9)
        assert loc.get_attribute("data-state") == "playing", diagnostics(page)
        assert frames_seen(loc) == {"0", "1"}
        assert loc.is_visible()
        loc.locator(".motionkit-play").click()  # a real click, on the Vue node
        assert loc.get_attribute("data-state") == "paused"
        assert len(frames_seen(loc, 0.6)) == 1
    finally:
        set_core_nodes(page, False)

    node, _ = make_graph(page)
    canvas = page.locator(f'.motionkit-trajectory[data-node-id="{node}"] canvas')
    canvas.wait_for(state="visible", timeout=30_000)
    box = canvas.bounding_box()
    assert box["width"] > 50 and box["height"] > 50, box
    for x, y in [(20, 20), (100, 60)]:
        page.mouse.click(box["x"] + x / SIZE * box["width"], box["y"] + y / SIZE * box["height"])
    drawn = paths_value(page, node)
    assert len(drawn) == 1 and flat(drawn[0]["points"]) == pytest.approx([20, 20, 100, 60], abs=1.5), drawn
    assert not [e for e in page.errors if "motionkit" in e.lower()], diagnostics(page)
