"""The example workflows as ComfyUI's template browser serves them: only UI workflows at the top of
example_workflows/ (API twins in api/), each with a thumbnail and a description, laid out so that no node
covers another, every node at least the size the real frontend computes for it. Applies to every UI
workflow in the folder, including ones added later."""
from __future__ import annotations

import io
import json

import pytest

import example_layout as el

UI_FILES = el.ui_workflows()
IDS = [p.stem for p in UI_FILES]


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_only_ui_workflows_are_listed_as_templates():
    assert UI_FILES, "no example workflows found"
    for path in UI_FILES:
        ui = load(path)
        # the frontend refuses a template without "version" ("Workflow does not contain a valid version")
        assert isinstance(ui, dict) and "version" in ui and isinstance(ui.get("nodes"), list) \
            and isinstance(ui.get("links"), list), f"{path.name} is not a UI-format workflow: move it to api/"
    api_dir = el.EXAMPLES / "api"
    twins = {p.name for p in api_dir.glob("*.json")}
    assert twins == {f"{p.stem}_api.json" for p in UI_FILES}, \
        "every example_workflows/NAME.json has its API twin example_workflows/api/NAME_api.json and back"
    for name in twins:
        api = load(api_dir / name)
        assert api and all("class_type" in v for v in api.values()), f"api/{name} is not API format"


@pytest.mark.parametrize("path", UI_FILES, ids=IDS)
def test_no_node_covers_another(path):
    ui = load(path)
    assert el.overlaps(ui) == [], f"{path.name}: overlapping nodes (title bars included)"


def test_overlap_check_sees_title_bars():
    a = {"id": 1, "type": "A", "pos": [0, 100], "size": [200, 100]}
    b = {"id": 2, "type": "B", "pos": [0, 215], "size": [200, 100]}  # its title bar starts at 185 < 200
    assert el.overlaps({"nodes": [a, b]}) == [("1 A", "2 B")]
    b["pos"] = [0, 230]
    assert el.overlaps({"nodes": [a, b]}) == []
    b["pos"] = [150, 110]
    assert el.overlaps({"nodes": [a, b]}) == [("1 A", "2 B")]


@pytest.mark.parametrize("path", UI_FILES, ids=IDS)
def test_thumbnail_and_description(path):
    from PIL import Image
    jpg = path.with_suffix(".jpg")  # what frontend 1.27 shows on a custom pack's template card
    assert jpg.is_file(), f"no thumbnail {jpg.name}: run tests/example_layout.py {path.stem}"
    data = jpg.read_bytes()
    assert len(data) <= el.THUMB_MAX_BYTES, f"{jpg.name} is {len(data)} bytes"
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == el.THUMB_SIZE
        # a real render: not one flat colour
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 60
    notes = [n for n in load(path)["nodes"] if n["type"] in el.NOTE_TYPES]
    assert notes and len(notes[0]["widgets_values"][0]) > 80, f"{path.name}: no description note"


def test_controlnet_example_ships_its_pose_frames():
    from PIL import Image
    ui = load(el.EXAMPLES / "controlnet_per_frame.json")
    (loader,) = [n for n in ui["nodes"] if n["type"] == "LoadImage"]
    (latent,) = [n for n in ui["nodes"] if n["type"] == "EmptyLatentImage"]
    shipped = el.EXAMPLES / "input" / loader["widgets_values"][0]
    assert shipped.is_file()
    with Image.open(shipped) as im:
        assert im.n_frames == latent["widgets_values"][2], "one pose image per frame"
    note = [n for n in ui["nodes"] if n["type"] == "Note"][0]["widgets_values"][0]
    assert "example_workflows/input/" + shipped.name in note and "ComfyUI/input" in note


# The check against the sizes the real frontend computes is in test_preview_browser.py
# (test_example_nodes_are_as_large_as_the_frontend_draws_them), which has the browser open already.
