"""Geometry of the example workflows (example_workflows/*.json, UI format), and the tool that lays them out
and renders their template thumbnails.

ComfyUI's template browser (frontend 1.27) lists every top-level ``example_workflows/*.json`` of a pack and
shows ``<name>.jpg`` next to it as the card's thumbnail; a custom pack's card shows its file name as title and
description, so each graph carries its description in a Note node at its top left.

A node's rectangle on the canvas is ``pos`` .. ``pos + size`` plus the title bar above ``pos``
(``LiteGraph.NODE_TITLE_HEIGHT``, 30 px). ``size`` must be at least what the frontend computes for the
node's inputs and widgets, or the widgets overflow the node and hide whatever lies below.

Run as a script (it starts a ComfyUI server without checkpoint and drives the system Chromium; wrap it in
the heavy lock)::

    flock /tmp/motionkit-heavy.lock python tests/example_layout.py [NAME ...]

to re-lay the examples (sizes measured in the real frontend, nodes placed in columns by data flow) and
write their thumbnails. ``--check`` only measures and reports.
"""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "example_workflows"
TITLE_HEIGHT = 30          # LiteGraph.NODE_TITLE_HEIGHT in frontend 1.27
COLLAPSED_HEIGHT = 0       # a collapsed node is its title bar only
THUMB_SIZE = (512, 320)
THUMB_MAX_BYTES = 50_000
NOTE_TYPES = ("Note", "MarkdownNote")  # frontend-only nodes: never sent to the server
GAP_X, GAP_Y = 50, 30      # free space between columns / between a node and the next one's title bar


def ui_workflows() -> List[Path]:
    """Every workflow ComfyUI lists as a template of this pack (the top-level JSON files)."""
    return sorted(EXAMPLES.glob("*.json"))


def rect(node: dict) -> Tuple[float, float, float, float]:
    """(left, top, right, bottom) of a node on the canvas, title bar included."""
    x, y = (float(v) for v in _xy(node["pos"]))
    w, h = (float(v) for v in _xy(node["size"]))
    if (node.get("flags") or {}).get("collapsed"):
        h = COLLAPSED_HEIGHT
    return x, y - TITLE_HEIGHT, x + w, y + h


def _xy(v) -> Tuple[float, float]:
    if isinstance(v, dict):  # very old workflows: {"0": x, "1": y}
        return v["0"], v["1"]
    return v[0], v[1]


def label(node: dict) -> str:
    return f"{node['id']} {node.get('title') or node['type']}"


def overlaps(ui: dict) -> List[Tuple[str, str]]:
    """Pairs of nodes whose rectangles (title bars included) overlap."""
    nodes = ui["nodes"]
    out = []
    for i, a in enumerate(nodes):
        ra = rect(a)
        for b in nodes[i + 1:]:
            rb = rect(b)
            if ra[0] < rb[2] and rb[0] < ra[2] and ra[1] < rb[3] and rb[1] < ra[3]:
                out.append((label(a), label(b)))
    return out


# ------------------------------------------------------------------------------------------------
# Layout: columns by data flow, each node at least the size the frontend computes for it

def columns(ui: dict) -> Dict[int, int]:
    """Column of each node: one right of its furthest input; a node without inputs sits just left of the
    first node that uses it (so an Empty Latent Image stands next to its sampler, not at the far left)."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    srcs: Dict[int, set] = {i: set() for i in nodes}
    dsts: Dict[int, set] = {i: set() for i in nodes}
    for link in ui["links"]:
        _, a, _, b = link[:4]
        if a in nodes and b in nodes:
            srcs[b].add(a)
            dsts[a].add(b)
    col: Dict[int, int] = {}

    def depth(i, seen=()):
        if i not in col:
            if i in seen:
                raise ValueError("the graph has a cycle")
            col[i] = 1 + max((depth(s, seen + (i,)) for s in srcs[i]), default=-1)
        return col[i]

    for i in nodes:
        depth(i)
    # pull pure sources right, next to their first consumer (repeat: a source feeding a source)
    for _ in range(len(nodes)):
        moved = False
        for i in nodes:
            if not srcs[i] and dsts[i]:
                want = min(col[d] for d in dsts[i]) - 1
                if want > col[i]:
                    col[i], moved = want, True
        if not moved:
            break
    return col


def relayout(ui: dict, min_sizes: Dict[int, Sequence[float]], origin=(40.0, 60.0)) -> dict:
    """Place the nodes in columns (by data flow), keeping their vertical order within a column, each at
    least ``min_sizes[id]`` (the frontend's computeSize); Note nodes go first in the first column."""
    nodes = ui["nodes"]
    col = columns(ui)
    notes = [n for n in nodes if n["type"] in NOTE_TYPES]
    for n in notes:
        col[n["id"]] = -1
    for n in nodes:
        want = min_sizes.get(n["id"], min_sizes.get(str(n["id"])))  # 1.58 measures string ids, 1.27 numbers
        if want is not None:
            n["size"] = [max(float(n["size"][0]), float(want[0])), max(float(n["size"][1]), float(want[1]))]
        n["size"] = [round(n["size"][0]), round(n["size"][1])]
    # the notes stack on top of the first column
    first = min((c for c in col.values() if c >= 0), default=0)
    order = sorted(nodes, key=lambda n: (max(col[n["id"]], first), col[n["id"]] >= 0,
                                         _xy(n["pos"])[1], _xy(n["pos"])[0]))
    x = origin[0]
    by_col: Dict[int, List[dict]] = {}
    for n in order:
        by_col.setdefault(max(col[n["id"]], first), []).append(n)
    for c in sorted(by_col):
        y = origin[1]
        width = max(n["size"][0] for n in by_col[c])
        for n in by_col[c]:
            n["pos"] = [round(x), round(y)]
            y += n["size"][1] + GAP_Y + TITLE_HEIGHT
        x += width + GAP_X
    return ui


def note_node(node_id: int, text: str, width: float = 340, height: float = 200) -> dict:
    return {"id": node_id, "type": "Note", "pos": [0, 0], "size": [width, height], "flags": {}, "order": 0,
            "mode": 0, "properties": {"text": ""}, "widgets_values": [text],
            "color": "#432", "bgcolor": "#653", "title": "About this example"}


# ------------------------------------------------------------------------------------------------
# In the real frontend (Chromium through Playwright)

APP = "window.comfyAPI.app.app"

MEASURE_JS = f"""async (wf) => {{
    const a = {APP};
    await a.loadGraphData(wf);
    return a.graph.nodes.map(n => ({{id: n.id, type: n.type, pos: [...n.pos], size: [...n.size],
        min: [...n.computeSize()], known: !!LiteGraph.registered_node_types[n.type],
        title: LiteGraph.NODE_TITLE_HEIGHT}}));
}}"""


def measure(page, ui: dict) -> List[dict]:
    """Load *ui* in the frontend; per node its position, size, the size the frontend computes for its
    inputs and widgets (``min``), whether the frontend knows its type (``known``), the title height."""
    return page.evaluate(MEASURE_JS, ui)


def frontend_problems(measured: Iterable[dict], ui: dict, tolerance: float = 0.5) -> List[str]:
    """Nodes of *ui* whose saved size is smaller than what the frontend computes for their inputs and
    widgets (the widgets would spill out of the node over its neighbours), and node types the frontend
    does not know."""
    saved = {str(n["id"]): n for n in ui["nodes"]}  # frontend 1.58 gives node ids as strings, 1.27 as numbers
    out = []
    for m in measured:
        n = saved.get(str(m["id"]))
        if n is None:
            out.append(f"node {m['id']} {m['type']} is not in the workflow")
            continue
        w, h = _xy(n["size"])
        if m["min"][0] > w + tolerance or m["min"][1] > h + tolerance:
            out.append(f"node {label(n)}: saved size {[w, h]} is smaller than its content "
                       f"{[round(v) for v in m['min']]}")
        if not m.get("known", True):
            out.append(f"node {label(n)}: the frontend does not know the type {m['type']}")
    return out


def fit_view(page, ui: dict, margin: float = 30) -> None:
    rs = [rect(n) for n in ui["nodes"]]
    x0, y0 = min(r[0] for r in rs), min(r[1] for r in rs)
    x1, y1 = max(r[2] for r in rs), max(r[3] for r in rs)
    page.evaluate(f"""([x0, y0, x1, y1, m]) => {{
        const c = {APP}.canvas, el = c.canvas;
        const w = el.clientWidth, h = el.clientHeight;
        const s = Math.min(w / (x1 - x0 + 2 * m), h / (y1 - y0 + 2 * m));
        c.show_info = false;
        c.ds.scale = s;
        // center the graph: screen = (pos + offset) * scale
        c.ds.offset = [-(x0 + x1) / 2 + w / 2 / s, -(y0 + y1) / 2 + h / 2 / s];
        c.setDirty(true, true);
    }}""", [x0, y0, x1, y1, margin])


def thumbnail(png: bytes) -> bytes:
    """A JPEG under THUMB_MAX_BYTES of a canvas screenshot, letterboxed to THUMB_SIZE."""
    from PIL import Image
    im = Image.open(io.BytesIO(png)).convert("RGB")
    im.thumbnail(THUMB_SIZE, Image.LANCZOS)
    bg = Image.new("RGB", THUMB_SIZE, im.getpixel((0, 0)))
    bg.paste(im, ((THUMB_SIZE[0] - im.width) // 2, (THUMB_SIZE[1] - im.height) // 2))
    for q in (80, 70, 60, 50, 40):
        buf = io.BytesIO()
        bg.save(buf, "JPEG", quality=q, optimize=True, progressive=True)
        if buf.tell() <= THUMB_MAX_BYTES:
            return buf.getvalue()
    raise RuntimeError("thumbnail does not fit in THUMB_MAX_BYTES")


# ------------------------------------------------------------------------------------------------
# The input file of controlnet_per_frame: OpenPose-style skeletons, one per frame

# COCO-18 keypoint pairs the OpenPose renderer draws, each with its limb colour
LIMBS = [((1, 2), (255, 0, 0)), ((1, 5), (255, 85, 0)), ((2, 3), (255, 170, 0)), ((3, 4), (255, 255, 0)),
         ((5, 6), (170, 255, 0)), ((6, 7), (85, 255, 0)), ((1, 8), (0, 255, 0)), ((8, 9), (0, 255, 85)),
         ((9, 10), (0, 255, 170)), ((1, 11), (0, 255, 255)), ((11, 12), (0, 170, 255)),
         ((12, 13), (0, 85, 255)), ((1, 0), (0, 0, 255)), ((0, 14), (85, 0, 255)), ((14, 16), (170, 0, 255)),
         ((0, 15), (255, 0, 255)), ((15, 17), (255, 0, 170))]


JOINT_COLORS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
                (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)]


def pose_keypoints(t: float, size: int) -> List[Tuple[float, float]]:
    """18 keypoints of a figure walking on the spot, phase *t* in [0, 1)."""
    import math
    s = size / 256.0
    sw = math.sin(2 * math.pi * t)
    cx, bob = 128 + 6 * math.sin(2 * math.pi * t), 3 * abs(math.cos(2 * math.pi * t))
    neck = (cx, 70 + bob)
    pts = {1: neck, 0: (cx, 45 + bob), 14: (cx - 6, 40 + bob), 15: (cx + 6, 40 + bob),
           16: (cx - 13, 43 + bob), 17: (cx + 13, 43 + bob),
           2: (cx - 28, 72 + bob), 5: (cx + 28, 72 + bob), 8: (cx - 16, 140 + bob), 11: (cx + 16, 140 + bob)}
    # side -1: the figure's right (image left), +1: its left; arms and legs swing in opposite phase
    for sho, elb, wri, side in ((2, 3, 4, -1), (5, 6, 7, 1)):
        a = side * (0.35 + 0.25 * sw * side)
        x, y = pts[sho]
        pts[elb] = (x + 34 * math.sin(a), y + 34 * math.cos(a))
        pts[wri] = (pts[elb][0] + 30 * math.sin(a * 0.6), pts[elb][1] + 30 * math.cos(a * 0.6))
    for hip, knee, ank, side in ((8, 9, 10, -1), (11, 12, 13, 1)):
        a = side * 0.08 - 0.22 * sw * side
        x, y = pts[hip]
        pts[knee] = (x + 48 * math.sin(a), y + 48 * math.cos(a))
        pts[ank] = (pts[knee][0] + 46 * math.sin(a * 0.5), pts[knee][1] + 46 * math.cos(a * 0.5))
    return [(pts[i][0] * s, pts[i][1] * s) for i in range(18)]


def make_pose_frames(path: Path, frames: int = 32, size: int = 256) -> None:
    """An animated WebP of *frames* OpenPose-style skeletons (a figure walking), for the ControlNet example."""
    from PIL import Image, ImageDraw
    ims = []
    for f in range(frames):
        im = Image.new("RGB", (size, size), (0, 0, 0))
        d = ImageDraw.Draw(im)
        pts = pose_keypoints(f / frames, size)
        for (a, b), color in LIMBS:
            d.line([pts[a], pts[b]], fill=tuple(int(c * 0.6) for c in color), width=max(2, size // 64))
        for i, (x, y) in enumerate(pts):
            r = max(2, size // 80)
            d.ellipse([x - r, y - r, x + r, y + r], fill=JOINT_COLORS[i])
        ims.append(im)
    path.parent.mkdir(parents=True, exist_ok=True)
    ims[0].save(path, "WEBP", save_all=True, append_images=ims[1:], duration=125, loop=0, lossless=True)


# ------------------------------------------------------------------------------------------------
# The tool

def _open_frontend(server):
    """(playwright, context, page) on *server*'s frontend, ready once its first graph is open."""
    from playwright.sync_api import sync_playwright
    import shutil
    import tempfile
    chromium = os.environ.get("MOTIONKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    server.post_json("/settings", {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False,
                                   "Comfy.Graph.CanvasMenu": False,
                                   # draw titles and widgets even when zoomed out to fit the thumbnail
                                   "LiteGraph.Canvas.MinFontSizeForLOD": 1})
    pw = sync_playwright().start()
    ctx = pw.chromium.launch_persistent_context(
        tempfile.mkdtemp(prefix="motionkit_chromium_"), executable_path=chromium, headless=True,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-proxy-server",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        viewport={"width": 2048, "height": 1280})
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto(server.url, wait_until="load", timeout=120_000)
    page.wait_for_function(f"() => window.comfyAPI?.app?.app?.vueAppReady && {APP}.graph?.nodes?.length",
                           timeout=120_000)
    return pw, ctx, page


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="example names (default: all)")
    p.add_argument("--check", action="store_true", help="measure and report only; write nothing")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from comfy_server import ComfyServer

    paths = [EXAMPLES / f"{n}.json" for n in args.names] if args.names else ui_workflows()
    bad = 0
    with ComfyServer() as server:
        pw, ctx, page = _open_frontend(server)
        try:
            for path in paths:
                ui = json.loads(path.read_text())
                got = measure(page, ui)
                problems = frontend_problems(got, ui) + [f"{a} / {b} overlap" for a, b in overlaps(ui)]
                print(f"{path.name}: {len(problems)} problem(s)" + "".join(f"\n  {x}" for x in problems))
                if args.check:
                    bad += bool(problems)
                    continue
                relayout(ui, {m["id"]: m["min"] for m in got})
                path.write_text(json.dumps(ui, indent=2, ensure_ascii=False) + "\n")
                got = measure(page, ui)
                problems = frontend_problems(got, ui) + [f"{a} / {b} overlap" for a, b in overlaps(ui)]
                if problems:
                    bad += 1
                    print("  still:\n  " + "\n  ".join(problems))
                page.evaluate(f"() => {APP}.canvas.deselectAll?.()")
                fit_view(page, ui)
                page.wait_for_timeout(400)
                png = page.locator("#graph-canvas").screenshot()
                jpg = thumbnail(png)
                path.with_suffix(".jpg").write_bytes(jpg)
                print(f"  wrote {path.with_suffix('.jpg').name} ({len(jpg)} bytes)")
        finally:
            ctx.close()
            pw.stop()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
