// MotionKit: a path editor on the Trajectory node (MotionKitTrajectory).
//
// The paths live in the node's own "paths" widget as JSON ([{points: [[x, y], ...], start_frame, end_frame}],
// pixels of the node's width x height), so a saved or shared workflow carries them and they can be edited as
// text; this canvas only reads and writes that value. Click on empty canvas: add a point to the selected path
// (a first path is made when there is none). Drag a point: move it. Right-click (or Alt-click) a point: delete
// it. Buttons: new path, delete the selected path, clear all. The selected path's start/end frames are set
// in the bar (end -1 = the last frame). Dots show where each frame lands (even by arc length, as the node
// encodes them). Background: the node's background IMAGE after a run (sent back as "motionkit_background"),
// else blank at the chosen size.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "MotionKit.TrajectoryEditor";
const NODE = "MotionKitTrajectory";
const WIDGET = "motionkit_trajectory_editor";
const BAR = 30;
const COLOURS = ["#ff4040", "#40a0ff", "#40c840", "#ffb400", "#c840ff", "#00c8c8"];
const HIT = 8; // px on screen

const css = `
.motionkit-trajectory { display: flex; flex-direction: column; width: 100%; height: 100%; box-sizing: border-box; }
.motionkit-trajectory .mk-bar { flex: 0 0 ${BAR}px; display: flex; align-items: center; gap: 4px;
  font: 11px sans-serif; color: var(--input-text, #ddd); }
.motionkit-trajectory button, .motionkit-trajectory input { background: var(--comfy-input-bg, #222); color: inherit;
  border: 1px solid var(--border-color, #555); border-radius: 4px; height: 22px; font: 11px sans-serif; }
.motionkit-trajectory button { cursor: pointer; padding: 0 6px; }
.motionkit-trajectory input { width: 42px; padding: 0 3px; }
.motionkit-trajectory .mk-stage { flex: 1 1 auto; min-height: 0; display: flex; align-items: center;
  justify-content: center; }
.motionkit-trajectory canvas { max-width: 100%; max-height: 100%; cursor: crosshair; background: #fff; }
`;

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function parsePaths(text) {
  try {
    let data = JSON.parse(text || "[]");
    if (data && !Array.isArray(data)) data = data.paths || [data];
    if (data.length && data[0] && typeof data[0] === "object" && "x" in data[0]) data = [data];
    return data.map((p) => {
      const pts = Array.isArray(p) ? p : p.points || [];
      return {
        points: pts.map((q) => (Array.isArray(q) ? [Number(q[0]), Number(q[1])] : [Number(q.x), Number(q.y)])),
        start_frame: Array.isArray(p) ? 0 : p.start_frame ?? 0,
        end_frame: Array.isArray(p) ? -1 : p.end_frame ?? -1,
      };
    });
  } catch (_) {
    return null; // the text is being edited: keep drawing the last good value
  }
}

// positions of `count` frames spread evenly by arc length along the polyline (as trajectory/encoding.py)
function framePositions(points, count) {
  if (!points.length || count < 1) return [];
  if (points.length === 1 || count === 1) return Array(count).fill(points[0]);
  const cum = [0];
  for (let i = 1; i < points.length; i++) {
    cum.push(cum[i - 1] + Math.hypot(points[i][0] - points[i - 1][0], points[i][1] - points[i - 1][1]));
  }
  const total = cum[cum.length - 1];
  if (total === 0) return Array(count).fill(points[0]);
  const out = [];
  for (let k = 0; k < count; k++) {
    const d = (total * k) / (count - 1);
    let i = 1;
    while (i < cum.length - 1 && cum[i] < d) i++;
    const seg = cum[i] - cum[i - 1];
    const t = seg > 0 ? (d - cum[i - 1]) / seg : 0;
    out.push([points[i - 1][0] + t * (points[i][0] - points[i - 1][0]),
              points[i - 1][1] + t * (points[i][1] - points[i - 1][1])]);
  }
  return out;
}

class TrajectoryEditor {
  constructor(node) {
    this.node = node;
    this.selected = 0;
    this.drag = null;
    this.background = null;
    this.lastText = null;
    this.paths = [];

    this.root = document.createElement("div");
    this.root.className = "motionkit-trajectory";
    const bar = document.createElement("div");
    bar.className = "mk-bar";
    const button = (label, title, cls, fn) => {
      const b = document.createElement("button");
      b.textContent = label;
      b.title = title;
      b.className = cls;
      b.addEventListener("click", fn);
      return b;
    };
    this.newBtn = button("+ path", "Start a new path (then click on the canvas to add its points)", "mk-new",
                         () => { this.paths.push({ points: [], start_frame: 0, end_frame: -1 });
                                 this.selected = this.paths.length - 1; this.commit(); });
    this.delBtn = button("delete", "Delete the selected path", "mk-delete",
                         () => { this.paths.splice(this.selected, 1);
                                 this.selected = Math.max(0, this.selected - 1); this.commit(); });
    this.clearBtn = button("clear", "Delete all paths", "mk-clear",
                           () => { this.paths = []; this.selected = 0; this.commit(); });
    this.label = document.createElement("span");
    const frameInput = (title, key) => {
      const i = document.createElement("input");
      i.type = "number";
      i.title = title;
      i.className = `mk-${key}`;
      i.addEventListener("change", () => {
        const p = this.paths[this.selected];
        if (p) { p[key] = Math.round(Number(i.value) || 0); this.commit(); }
      });
      return i;
    };
    this.startInput = frameInput("First frame of the selected path", "start_frame");
    this.endInput = frameInput("Last frame of the selected path (-1 = the last frame)", "end_frame");
    bar.append(this.newBtn, this.delBtn, this.clearBtn, this.label, this.startInput, this.endInput);

    const stage = document.createElement("div");
    stage.className = "mk-stage";
    this.canvas = document.createElement("canvas");
    stage.append(this.canvas);
    this.stage = stage;
    // the canvas keeps the image's aspect and fills the space the node gives it
    this.resizer = typeof ResizeObserver === "function" ? new ResizeObserver(() => this.fit()) : null;
    this.resizer?.observe(stage);
    this.root.append(bar, stage);
    for (const el of [bar, this.canvas]) el.addEventListener("pointerdown", (e) => e.stopPropagation());
    this.canvas.addEventListener("pointerdown", (e) => this.down(e));
    this.canvas.addEventListener("pointermove", (e) => this.move(e));
    this.canvas.addEventListener("pointerup", () => { this.drag = null; });
    this.canvas.addEventListener("contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); });

    this.widget = node.addDOMWidget(WIDGET, "motionkit-trajectory", this.root, { hideOnZoom: false, serialize: false });
    this.widget.serialize = false;
    this.widget.serializeValue = () => undefined;
    this.widget.computeLayoutSize = () => {
      const w = Math.max(96, (node.size?.[0] || 300) - 20);
      const [cw, ch] = this.size();
      return { minHeight: Math.min(640, Math.max(96, (w * ch) / cw)) + BAR, minWidth: 0 };
    };
    this.sync(true);
  }

  fit() {
    const r = this.stage.getBoundingClientRect();
    const [w, h] = this.size();
    const s = Math.min(r.width / w, r.height / h);
    if (s > 0 && Number.isFinite(s)) {
      this.canvas.style.width = `${Math.floor(w * s)}px`;
      this.canvas.style.height = `${Math.floor(h * s)}px`;
    }
  }

  size() {
    return [Number(widget(this.node, "width")?.value) || 512, Number(widget(this.node, "height")?.value) || 512];
  }

  frames() {
    return Number(widget(this.node, "frames")?.value) || 16;
  }

  // the paths widget is the truth: re-read it when its text changed (typed, pasted, loaded with a workflow)
  sync(force = false) {
    const text = widget(this.node, "paths")?.value ?? "[]";
    const key = [text, ...this.size(), this.frames(), this.node.id].join("|");
    if (!force && key === this.lastKey) return; // called on every canvas redraw: only work on a change
    this.lastKey = key;
    if (force || text !== this.lastText) {
      const parsed = parsePaths(text);
      if (parsed) this.paths = parsed;
      this.lastText = text;
      this.selected = Math.min(this.selected, Math.max(0, this.paths.length - 1));
    }
    this.draw();
  }

  commit() {
    const w = widget(this.node, "paths");
    const text = JSON.stringify(this.paths.map((p) => ({
      points: p.points.map(([x, y]) => [Math.round(x * 100) / 100, Math.round(y * 100) / 100]),
      start_frame: p.start_frame, end_frame: p.end_frame,
    })));
    if (w) {
      w.value = text;
      w.callback?.(text);
    }
    this.lastText = text;
    this.node.setDirtyCanvas?.(true, true);
    this.draw();
  }

  toImage(e) {
    const r = this.canvas.getBoundingClientRect();
    const [w, h] = this.size();
    return [((e.clientX - r.left) / r.width) * w, ((e.clientY - r.top) / r.height) * h, r.width / w];
  }

  hit(x, y, scale) {
    for (let i = this.paths.length - 1; i >= 0; i--) {
      const pts = this.paths[i].points;
      for (let j = pts.length - 1; j >= 0; j--) {
        if (Math.hypot(pts[j][0] - x, pts[j][1] - y) * scale <= HIT) return [i, j];
      }
    }
    return null;
  }

  down(e) {
    const [x, y, scale] = this.toImage(e);
    const [w, h] = this.size();
    const hit = this.hit(x, y, scale);
    if (hit && (e.button === 2 || e.altKey)) {
      this.paths[hit[0]].points.splice(hit[1], 1);
      this.selected = hit[0];
      this.commit();
      return;
    }
    if (hit) {
      this.selected = hit[0];
      this.drag = hit;
      this.canvas.setPointerCapture?.(e.pointerId);
      this.draw();
      return;
    }
    if (e.button !== 0) return;
    if (!this.paths.length) this.paths.push({ points: [], start_frame: 0, end_frame: -1 });
    this.paths[this.selected].points.push([Math.min(Math.max(x, 0), w), Math.min(Math.max(y, 0), h)]);
    this.commit();
  }

  move(e) {
    if (!this.drag) return;
    const [x, y] = this.toImage(e);
    const [w, h] = this.size();
    this.paths[this.drag[0]].points[this.drag[1]] = [Math.min(Math.max(x, 0), w), Math.min(Math.max(y, 0), h)];
    this.commit();
  }

  setBackground(item) {
    if (!item) return;
    const params = new URLSearchParams({ filename: item.filename, subfolder: item.subfolder || "",
                                         type: item.type || "temp", rand: String(Math.random()) });
    const img = new Image();
    img.onload = () => { this.background = img; this.draw(); };
    img.src = api.apiURL(`/view?${params}`);
  }

  draw() {
    const [w, h] = this.size();
    const c = this.canvas;
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; this.fit(); }
    const g = c.getContext("2d");
    g.clearRect(0, 0, w, h);
    if (this.background) g.drawImage(this.background, 0, 0, w, h);
    const unit = Math.max(1, Math.min(w, h) / 128);
    const frames = this.frames();
    this.paths.forEach((p, i) => {
      const colour = COLOURS[i % COLOURS.length];
      g.strokeStyle = colour;
      g.fillStyle = colour;
      g.lineWidth = (i === this.selected ? 2 : 1) * unit;
      g.beginPath();
      p.points.forEach(([x, y], j) => (j ? g.lineTo(x, y) : g.moveTo(x, y)));
      g.stroke();
      const last = p.end_frame < 0 ? frames - 1 : Math.min(p.end_frame, frames - 1);
      for (const [x, y] of framePositions(p.points, Math.max(0, last - p.start_frame + 1))) {
        g.beginPath();
        g.arc(x, y, 1.2 * unit, 0, 2 * Math.PI);
        g.fill();
      }
      p.points.forEach(([x, y], j) => {
        g.beginPath();
        g.arc(x, y, (j === 0 ? 4 : 3) * unit, 0, 2 * Math.PI);
        g.fill();
        g.lineWidth = unit;
        g.strokeStyle = "#000";
        g.stroke();
        g.strokeStyle = colour;
      });
    });
    const p = this.paths[this.selected];
    this.label.textContent = this.paths.length ? `path ${this.selected + 1}/${this.paths.length}, frames` : "click to draw";
    this.startInput.style.display = this.endInput.style.display = p ? "" : "none";
    if (p && document.activeElement !== this.startInput) this.startInput.value = p.start_frame;
    if (p && document.activeElement !== this.endInput) this.endInput.value = p.end_frame;
    this.root.dataset.paths = String(this.paths.length);
    this.root.dataset.nodeId = String(this.node.id); // known only once the node is in a graph
  }
}

app.registerExtension({
  name: EXT,
  setup() {
    const style = document.createElement("style");
    style.dataset.motionkit = "trajectory";
    style.textContent = css;
    document.head.append(style);
  },
  nodeCreated(node) {
    if (node.comfyClass !== NODE) return;
    const editor = new TrajectoryEditor(node);
    node.motionkitTrajectory = editor;
    for (const name of ["width", "height", "frames", "paths"]) {
      const w = widget(node, name);
      if (!w) continue;
      const cb = w.callback;
      w.callback = function () {
        const r = cb?.apply(this, arguments);
        editor.sync();
        return r;
      };
    }
    // typed edits of the JSON text, and workflows loaded after the node was made
    const onDrawBackground = node.onDrawBackground;
    node.onDrawBackground = function () {
      editor.sync();
      return onDrawBackground?.apply(this, arguments);
    };
    const onConfigure = node.onConfigure;
    node.onConfigure = function () {
      const r = onConfigure?.apply(this, arguments);
      editor.sync(true);
      return r;
    };
    const onExecuted = node.onExecuted;
    node.onExecuted = function (output) {
      const r = onExecuted?.apply(this, arguments);
      editor.setBackground(output?.motionkit_background?.[0]);
      return r;
    };
    const onRemoved = node.onRemoved;
    node.onRemoved = function () {
      editor.resizer?.disconnect();
      return onRemoved?.apply(this, arguments);
    };
  },
});
