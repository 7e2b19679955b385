"""A new user types "animatediff" into ComfyUI's node search (double-click on the canvas) in a real browser and
gets Load / Apply Motion Model first (frontend 1.27's search box, and the default one of 1.58). Headless Chromium through Playwright, as test_preview_browser.py (whose
browser fixture this reuses); skipped, with the reason, without Chromium or playwright."""
from __future__ import annotations

from browser import MARKS, diagnostics, page, screenshot  # noqa: F401 (page: the fixture)

pytestmark = MARKS


def search(page, query: str, shown: int = 8) -> list[str]:
    """Display names of the first *shown* results of the frontend's node search box for *query*."""
    canvas = page.locator("#graph-canvas")
    box = canvas.bounding_box()
    page.evaluate("() => window.comfyAPI.app.app.graph.clear()")  # an empty canvas: the double-click hits no node
    page.mouse.dblclick(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    # the box focuses its own text field: 1.27's (and 1.58's "v1 (legacy)") autocomplete, or 1.58's default
    page.wait_for_function("() => document.activeElement?.tagName === 'INPUT'"
                           " && document.activeElement.closest('.comfy-vue-node-search-container, [role=dialog]')",
                           timeout=15_000)
    page.keyboard.type(query)
    options = page.locator(".comfy-vue-node-search-container ~ * .option-display-name, "
                           ".p-autocomplete-option .option-display-name, "  # 1.27
                           "#results-list [data-testid=result-item]")  # 1.58's default search box
    try:
        options.first.wait_for(state="visible", timeout=15_000)
        page.wait_for_timeout(400)  # the list settles after the last keystroke
        # each option shows the display name, then (a second line) the pack it comes from
        names = [t.replace("\xa0", " ").strip().splitlines()[0].strip() for t in options.all_inner_texts()[:shown]]
    finally:
        screenshot(page, f"search_{query}")
        page.keyboard.press("Escape")
    return names


def test_searching_animatediff_lists_load_and_apply_motion_model_first(page):
    names = search(page, "animatediff")
    assert names[:2] == ["Load Motion Model (AnimateDiff) 🎞️", "Apply Motion Model (AnimateDiff) 🎞️"], \
        f"{names}\n{diagnostics(page)}"
