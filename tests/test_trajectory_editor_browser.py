"""The trajectory editor's canvas (web/motionkit_trajectory.js) shows what the run will use, in a real browser
(headless Chromium on the real ComfyUI frontend; same set-up and skip rules as tests/test_preview_browser.py,
whose module-scoped page fixture it reuses: one browser for all checks). Each check is one complaint of
issue 16: the canvas's size at zoom 2, the frame dots with spacing "per point", width/height changed after
drawing, a drag cut off by pointercancel, single-quoted JSON, and the toolbar of a narrow node."""
from __future__ import annotations

import json

import pytest

from browser import APP, MARKS, diagnostics, page, screenshot  # noqa: F401  (page: the fixture)

pytestmark = MARKS
from motionkit.trajectory.encoding import ARC_LENGTH, PER_POINT, path_positions


def add_trajectory(page, width, height, frames=4, size=(420, 560)):
    """A fresh graph with one Trajectory node at zoom 1; returns its id (a number or a string, as the frontend
    makes it)."""
    node = page.evaluate(f"""([w, h, f, size]) => {{
        const a = {APP};
        a.graph.clear();
        const t = LiteGraph.createNode("MotionKitTrajectory");
        a.graph.add(t);
        t.pos = [100, 100];
        t.size = size;
        for (const [k, v] of [["width", w], ["height", h], ["frames", f]]) {{
            const x = t.widgets.find(x => x.name === k); x.value = v; x.callback?.(v);
        }}
        a.canvas.ds.scale = 1; a.canvas.ds.offset = [0, 0];
        a.canvas.setDirty(true, true);
        return t.id;
    }}""", [width, height, frames, list(size)])
    editor(page, node).locator("canvas").wait_for(state="visible", timeout=30_000)
    return node


def editor(page, node):
    return page.locator(f'.motionkit-trajectory[data-node-id="{node}"]')


def set_widget(page, node, name, value):
    """As the frontend does when the user changes a widget: the value, then its callback."""
    page.evaluate(f"""([id, name, v]) => {{ const n = {APP}.graph.getNodeById(id);
        const w = n.widgets.find(w => w.name === name); w.value = v; w.callback?.(v, {APP}.canvas, n);
        {APP}.canvas.setDirty(true, true); }}""", [node, name, value])


def paths_text(page, node):
    return page.evaluate(f"(id) => {APP}.graph.getNodeById(id).widgets.find(w => w.name === 'paths').value", node)


def wait_paths_shown(page, node, count, timeout=5000):
    page.wait_for_function("([id, n]) => document.querySelector(`.motionkit-trajectory[data-node-id='${id}']`)"
                           "?.dataset.paths === n", arg=[str(node), str(count)], timeout=timeout)


def next_frames(page, n=3):
    page.evaluate("(n) => new Promise(r => { const f = () => (--n ? requestAnimationFrame(f) : r()); "
                  "requestAnimationFrame(f); })", n)


def test_canvas_keeps_its_aspect_at_zoom_2(page):
    """Fitted while the graph is zoomed (here: the size changed at zoom 2), a square picture stays square and
    fills the editor's space, as at zoom 1 (it was fitted to zoomed screen pixels, then squeezed by CSS)."""
    node = add_trajectory(page, 128, 128, size=(900, 560))
    page.evaluate(f"() => {{ const a = {APP}; a.canvas.ds.scale = 2; a.canvas.ds.offset = [0, 0]; "
                  "a.canvas.setDirty(true, true); }")
    # the premise: the editor is drawn scaled 2x on screen
    page.wait_for_function("(id) => { const s = document.querySelector(`.motionkit-trajectory[data-node-id='${id}'] "
                           ".mk-stage`); return s && Math.abs(s.getBoundingClientRect().width - 2 * s.clientWidth) < 2; }",
                           arg=str(node), timeout=10_000)
    set_widget(page, node, "width", 256)
    set_widget(page, node, "height", 256)
    next_frames(page)
    cw, ch, sw, sh = editor(page, node).locator("canvas").evaluate(
        "c => [c.clientWidth, c.clientHeight, c.parentElement.clientWidth, c.parentElement.clientHeight]")
    assert sw > sh + 50, (sw, sh)  # a wide stage: a squeezed canvas would not be square
    assert abs(cw - ch) <= 1 and abs(cw - min(sw, sh)) <= 1, (cw, ch, sw, sh)
    page.evaluate(f"() => {{ {APP}.canvas.ds.scale = 1; {APP}.canvas.setDirty(true, true); }}")


def dot_alpha(page, node, points):
    """Alpha of the canvas's own pixels (the CSS background is not in them) at each (x, y)."""
    return editor(page, node).locator("canvas").evaluate(
        "(c, pts) => { const g = c.getContext('2d'); "
        "return pts.map(([x, y]) => g.getImageData(Math.floor(x), Math.floor(y), 1, 1).data[3]); }", points)


@pytest.mark.parametrize("spacing, other", [(PER_POINT, ARC_LENGTH), (ARC_LENGTH, PER_POINT)])
def test_frame_dots_follow_the_spacing(page, spacing, other):
    """The dots sit where trajectory/encoding.py places the frames for the chosen spacing, and not where the
    other spacing would. A horizontal, unselected path on 512x512 (lines 4 px wide, dots 4.8 px in radius):
    3.5 px below the line only a frame dot colours the canvas."""
    frames, y = 9, 64.0
    line = [[10.0, y], [100.0, y], [100.0, y], [500.0, y]]  # with a zero-length segment, as Python skips it
    node = add_trajectory(page, 512, 512, frames=frames)
    text = json.dumps([{"points": [[400, 400], [450, 450]]}, {"points": line}])  # path 1 is selected
    set_widget(page, node, "paths", text)
    set_widget(page, node, "spacing", spacing)
    wait_paths_shown(page, node, 2)
    next_frames(page)
    want = [x for x, _ in path_positions(line, frames, spacing)]
    not_want = [x for x, _ in path_positions(line, frames, other)]
    ctrl = [p[0] for p in line]
    # only where neither a control point (radius 12) nor a wanted dot is near
    absent = [x for x in not_want if min(abs(x - c) for c in ctrl + want) > 14]
    present = [x for x in want if min(abs(x - c) for c in ctrl) > 14]
    assert len(absent) >= 2 and len(present) >= 2, (absent, present)  # the case tells the spacings apart
    shown = dot_alpha(page, node, [[x, y + 3.5] for x in present])
    missing = dot_alpha(page, node, [[x, y + 3.5] for x in absent])
    assert min(shown) > 200 and max(missing) == 0, (spacing, present, shown, absent, missing)


def test_width_height_change_scales_the_paths_and_outside_points_are_noted(page):
    node = add_trajectory(page, 128, 128)
    set_widget(page, node, "paths", json.dumps([{"points": [[16, 16], [120, 100]], "start_frame": 0, "end_frame": -1},
                                                {"points": [[64, 32]], "start_frame": 1, "end_frame": 2}]))
    wait_paths_shown(page, node, 2)
    note = editor(page, node).locator(".mk-note")
    assert not note.is_visible()
    set_widget(page, node, "width", 256)
    set_widget(page, node, "height", 64)
    got = json.loads(paths_text(page, node))
    assert [p["points"] for p in got] == [[[32, 8], [240, 50]], [[128, 16]]], got
    assert [(p["start_frame"], p["end_frame"]) for p in got] == [(0, -1), (1, 2)]
    assert not note.is_visible()
    # points the run would refuse (trajectory/encoding.py check_paths): said on the canvas, before the run
    set_widget(page, node, "paths", json.dumps([{"points": [[16, 16], [300, 10]]}]))
    note.wait_for(state="visible", timeout=5000)
    assert "outside" in note.inner_text() and "256x64" in note.inner_text(), note.inner_text()
    # such points were drawn for another size: setting it does not scale them
    set_widget(page, node, "width", 512)
    assert json.loads(paths_text(page, node))[0]["points"] == [[16, 16], [300, 10]]
    note.wait_for(state="hidden", timeout=5000)


def test_pointercancel_ends_a_drag(page):
    node = add_trajectory(page, 128, 128)
    set_widget(page, node, "paths", json.dumps([{"points": [[64, 64]]}]))
    wait_paths_shown(page, node, 1)
    canvas = editor(page, node).locator("canvas")
    box = canvas.bounding_box()

    def at(x, y):
        return box["x"] + x / 128 * box["width"], box["y"] + y / 128 * box["height"]

    page.mouse.move(*at(64, 64))
    page.mouse.down()
    # the browser takes the pointer (a touch turned into a scroll, a system gesture): no pointerup follows
    canvas.evaluate("c => c.dispatchEvent(new PointerEvent('pointercancel', {pointerId: 1, bubbles: true}))")
    page.mouse.move(*at(100, 100), steps=4)
    page.mouse.up()
    assert json.loads(paths_text(page, node))[0]["points"] == [[64, 64]]


def test_single_quoted_json_is_shown_as_the_run_reads_it(page):
    node = add_trajectory(page, 128, 128)
    set_widget(page, node, "paths", json.dumps([{"points": [[10, 10]]}, {"points": [[20, 20]]}]))
    wait_paths_shown(page, node, 2)
    root = editor(page, node)
    # trajectory/encoding.py parse_paths reads single quotes (as core's WanTrackToVideo does)
    set_widget(page, node, "paths", "[{'points': [[10, 10], [60, 60]], 'start_frame': 1, 'end_frame': 3}]")
    wait_paths_shown(page, node, 1)
    assert root.locator(".mk-start_frame").input_value() == "1"
    assert root.locator(".mk-end_frame").input_value() == "3"
    set_widget(page, node, "paths", "[[{'x': 5, 'y': 6}, {'x': 7, 'y': 8}], [{'x': 1, 'y': 2}]]")  # WanTrack tracks
    wait_paths_shown(page, node, 2)
    # text the run would refuse: the last good paths stay drawn, and the canvas says why
    note = root.locator(".mk-note")
    assert not note.is_visible()
    set_widget(page, node, "paths", "[{'points': [[10, 10]")
    note.wait_for(state="visible", timeout=5000)
    assert "JSON" in note.inner_text() and root.get_attribute("data-paths") == "2"


def test_toolbar_stays_inside_a_narrow_node(page):
    node = add_trajectory(page, 512, 512, size=(260, 420))
    set_widget(page, node, "paths", json.dumps([{"points": [[10, 10]]}, {"points": [[20, 20]]}]))
    wait_paths_shown(page, node, 2)
    next_frames(page)
    screenshot(page, "trajectory_narrow")
    boxes = page.evaluate(f"""(id) => {{
        const a = {APP}, n = a.graph.getNodeById(id), ds = a.canvas.ds;
        const c = a.canvas.canvas.getBoundingClientRect();
        const left = c.left + (n.pos[0] + ds.offset[0]) * ds.scale, top = c.top + (n.pos[1] + ds.offset[1]) * ds.scale;
        const root = document.querySelector(`.motionkit-trajectory[data-node-id='${{id}}']`);
        const box = (e) => {{ const r = e.getBoundingClientRect();
            return [e.className || e.tagName, r.left, r.top, r.right, r.bottom]; }};
        return {{ node: [left, top, left + n.size[0] * ds.scale, top + n.size[1] * ds.scale],
                  stage: box(root.querySelector(".mk-stage")),
                  bar: [...root.querySelectorAll(".mk-bar button, .mk-bar span, .mk-bar input")]
                       .filter(e => e.offsetParent).map(box) }};
    }}""", node)
    left, top, right, bottom = boxes["node"]
    stage_top = boxes["stage"][2]
    bad = [b for b in boxes["bar"] if b[1] < left - 0.5 or b[3] > right + 0.5 or b[2] < top - 0.5 or b[4] > stage_top + 0.5]
    assert len(boxes["bar"]) >= 5 and not bad, (boxes["node"], stage_top, bad)
    wrapped = [b for b in boxes["bar"] if b[4] - b[2] > 24]  # text wrapped inside a button or the label
    assert not wrapped, wrapped
    assert not [e for e in page.errors if "motionkit" in e.lower()], diagnostics(page)
