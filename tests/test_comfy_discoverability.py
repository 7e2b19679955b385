"""A new user finds MotionKit in a real ComfyUI: the node search finds Load / Apply Motion Model for
"animatediff", and MotionKit's errors carry a clean type name in the error dialog and report."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.comfyui

LOAD, APPLY = "MotionKitLoadMotionModel", "MotionKitApplyMotionModel"


def frontend_matches(info: dict, query: str) -> list[str]:
    """Nodes whose search keys contain *query*, best first, as frontend 1.27.10's NodeSearchService ranks
    substring hits: its keys are the class name and display_name (plus `search_aliases` where the server sends
    them); a hit earlier in the text (then a shorter text) ranks higher."""
    ranked = []
    for name, node in info.items():
        texts = [name, node.get("display_name")] + list(node.get("search_aliases") or [])
        texts = [t for t in texts if isinstance(t, str)]
        hits = [(t.lower().index(query), len(t)) for t in texts if query in t.lower()]
        if hits:
            ranked.append((min(hits), name))
    return [name for _, name in sorted(ranked)]


def test_searching_animatediff_finds_load_and_apply_motion_model_first(comfy_server):
    info = comfy_server.object_info()
    found = frontend_matches(info, "animatediff")
    assert found[:2] == [LOAD, APPLY], found
    for name in (LOAD, APPLY):
        assert "Motion Model (AnimateDiff)" in info[name]["display_name"]
        if "search_aliases" in info[name]:  # ComfyUI releases with SEARCH_ALIASES support
            assert "animatediff" in info[name]["search_aliases"]
    assert frontend_matches(info, "motion model")[:2] == [LOAD, APPLY]


def test_error_type_names_no_server_path(comfy_server):
    prompt = {"1": {"class_type": "MotionKitLoadImageFolder",
                    "inputs": {"folder": "", "frame_cap": 1, "skip_first": 0, "every_nth": 1, "width": 0,
                               "height": 0, "resize_method": "lanczos", "crop": "center"}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    res = comfy_server.run(prompt, timeout=120)
    assert res.status == "error"
    # ComfyUI reports `type(e).__module__ + "." + name`; the pack is imported by its file path
    assert res.execution_error["exception_type"] == "motionkit.PathNotAllowedError"
    assert str(comfy_server.base_dir) not in res.execution_error["exception_type"]
