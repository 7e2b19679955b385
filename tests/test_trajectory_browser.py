"""The trajectory editor (web/motionkit_trajectory.js) in a real browser: headless Chromium on the real ComfyUI
frontend. Draw a path with the mouse (click to add points, drag one, right-click to delete one), check the saved
workflow JSON holds it, queue, and check the run used it (the prompt's input and the preview image). Same
set-up and skip rules as tests/test_preview_browser.py (tests/browser.py)."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from browser import APP, MARKS, SIZE, diagnostics, flat, make_graph, page, paths_value  # noqa: F401  (page: fixture)

pytestmark = MARKS

def test_draw_a_path_save_it_and_the_run_uses_it(page):
    node, save = make_graph(page)
    canvas = page.locator(f'.motionkit-trajectory[data-node-id="{node}"] canvas')
    canvas.wait_for(state="visible", timeout=30_000)
    box = canvas.bounding_box()

    def at(x, y):
        return box["x"] + x / SIZE * box["width"], box["y"] + y / SIZE * box["height"]

    for x, y in [(16, 16), (112, 16), (112, 112), (40, 100)]:
        page.mouse.click(*at(x, y))
    assert flat(paths_value(page, node)[0]["points"]) == pytest.approx(flat([[16, 16], [112, 16], [112, 112], [40, 100]]),
                                                                      abs=1.5)
    page.mouse.move(*at(112, 16))  # drag the second point
    page.mouse.down()
    page.mouse.move(*at(100, 30), steps=5)
    page.mouse.move(*at(100, 40), steps=5)
    page.mouse.up()
    page.mouse.click(*at(40, 100), button="right")  # delete the last point
    drawn = paths_value(page, node)
    assert len(drawn) == 1 and drawn[0]["start_frame"] == 0 and drawn[0]["end_frame"] == -1
    assert flat(drawn[0]["points"]) == pytest.approx(flat([[16, 16], [100, 40], [112, 112]]), abs=1.5), drawn

    # the saved workflow carries the path in the node's widget values
    saved = page.evaluate(f"() => JSON.stringify({APP}.graph.serialize())")
    (traj,) = [n for n in json.loads(saved)["nodes"] if n["type"] == "MotionKitTrajectory"]
    assert json.loads(traj["widgets_values"][0]) == drawn

    # The server is shared with other browser tests whose prompts reuse the same node ids: only look at new
    # history entries whose node is this trajectory node.
    server = page.server
    before = set(server.get_json("/history"))
    page.evaluate(f"async () => {{ await {APP}.queuePrompt(0, 1); }}")
    entry, end = None, time.monotonic() + 120
    while time.monotonic() < end and entry is None:
        for prompt_id, item in server.get_json("/history").items():
            prompt = item["prompt"][2]
            if (prompt_id not in before and prompt.get(str(node), {}).get("class_type") == "MotionKitTrajectory"
                    and item.get("status", {}).get("completed")):
                entry = item
        time.sleep(0.3)
    assert entry is not None, diagnostics(page)
    assert json.loads(entry["prompt"][2][str(node)]["inputs"]["paths"]) == drawn
    images = entry["outputs"][str(save)]["images"]
    assert len(images) == 4
    frame0 = np.asarray(Image.open(server.output_file(images[0])))
    first = drawn[0]["points"][0]
    assert frame0[int(first[1]), int(first[0])].tolist() == [255, 64, 64]  # frame 0's dot sits on the first point
    assert not [e for e in page.errors if "motionkit" in e.lower()], diagnostics(page)


def test_typed_json_shows_on_the_canvas_and_clear_empties_it(page):
    node, _ = make_graph(page)
    text = json.dumps([{"points": [[10, 10], [60, 60]], "start_frame": 1, "end_frame": 3},
                       {"points": [[100, 20]], "start_frame": 0, "end_frame": -1}])
    page.evaluate(f"""([id, t]) => {{ const n = {APP}.graph.getNodeById(id);
        const w = n.widgets.find(w => w.name === 'paths'); w.value = t; w.callback?.(t);
        {APP}.canvas.setDirty(true, true); }}""", [node, text])
    root = page.locator(f'.motionkit-trajectory[data-node-id="{node}"]')
    page.wait_for_function("(id) => document.querySelector(`.motionkit-trajectory[data-node-id='${id}']`)"
                           "?.dataset.paths === '2'", arg=node, timeout=10_000)
    assert root.locator(".mk-start_frame").input_value() == "1"  # the selected (first) path's frame range
    assert root.locator(".mk-end_frame").input_value() == "3"
    root.locator(".mk-clear").click()
    assert paths_value(page, node) == []
