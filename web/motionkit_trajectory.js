// MotionKit: a path editor on the Trajectory node (MotionKitTrajectory).
//
// The paths live in the node's own "paths" widget as JSON ([{points: [[x, y], ...], start_frame, end_frame}],
// pixels of the node's width x height), so a saved or shared workflow carries them and they can be edited as
// text; this canvas only reads and writes that value. Click on empty canvas: add a point to the selected path
// (a first path is made when there is none). Drag a point: move it. Right-click (or Alt-click) a point: delete
// it. Buttons: new path, delete the selected path, clear all. The selected path's start/end frames are set
// in the bar (end -1 = the last frame). Dots show where each frame lands (by the node's spacing, as it encodes
// them). Changing width/height scales the paths with the picture; what the run would refuse (points outside,
// unreadable text, frame ranges) is said on the canvas. Background: the node's background IMAGE after a run
// (sent back as "motionkit_background"), else blank at the chosen size.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "MotionKit.TrajectoryEditor";
const NODE = "MotionKitTrajectory";
const WIDGET = "motionkit_trajectory_editor";
const BAR = 30;
const COLOURS = ["#ff4040", "#40a0ff", "#40c840", "#ffb400", "#c840ff", "#00c8c8"];
const HIT = 8; // px on screen
const PER_POINT = "per point"; // trajectory/encoding.py PER_POINT

const css = `
.motionkit-trajectory { display: flex; flex-direction: column; width: 100%; height: 100%; box-sizing: border-box; }
.motionkit-trajectory .mk-bar { flex: 0 0 auto; min-height: ${BAR}px; display: flex; flex-wrap: wrap; align-items: center;
  align-content: center; gap: 2px 4px; font: 11px sans-serif; color: var(--input-text, #ddd); white-space: nowrap; }
.motionkit-trajectory button, .motionkit-trajectory input { background: var(--comfy-input-bg, #222); color: inherit;
  border: 1px solid var(--border-color, #555); border-radius: 4px; height: 22px; font: 11px sans-serif; }
.motionkit-trajectory .mk-range { display: inline-flex; align-items: center; gap: 4px; }
.motionkit-trajectory button { cursor: pointer; padding: 0 6px; }
.motionkit-trajectory input { width: 42px; padding: 0 3px; }
.motionkit-trajectory .mk-stage { flex: 1 1 auto; min-height: 0; display: flex; align-items: center;
  justify-content: center; position: relative; }
.motionkit-trajectory .mk-note { position: absolute; left: 0; right: 0; top: 0; padding: 2px 4px; pointer-events: none;
  font: 11px sans-serif; color: #fff; background: rgba(160, 20, 20, 0.85); white-space: pre-line; }
.motionkit-trajectory canvas { max-width: 100%; max-height: 100%; cursor: crosshair; background: #fff; }
`;

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

// The paths text read as trajectory/encoding.py parse_paths reads it (single quotes too, as core's WanTrackToVideo
// does), so the canvas shows what will run; throws, with the reason, where the run would stop.
function parsePaths(text) {
  text = (text || "").trim();
  if (!text) return [];
  let data;
  try {
    data = JSON.parse(text);
  } catch (_) {
    try {
      data = JSON.parse(text.replaceAll("'", '"'));
    } catch (e) {
      throw new Error(`not valid JSON: ${e.message}`);
    }
  }
  if (data && typeof data === "object" && !Array.isArray(data)) data = "paths" in data ? data.paths : [data];
  if (!Array.isArray(data)) throw new Error("not a list of paths");
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (data.length && isObject(data[0]) && "x" in data[0]) data = [data]; // one WanTrack-style track
  const whole = (v) => {
    const n = Number(v);
    if (v === null || typeof v === "object" || !Number.isFinite(n)) throw new Error("start_frame/end_frame must be whole numbers");
    return Math.trunc(n);
  };
  const point = (q) => {
    const xy = isObject(q) && "x" in q && "y" in q ? [q.x, q.y] : q;
    if (!Array.isArray(xy) || xy.length < 2) throw new Error("a point must be [x, y] or {x, y}");
    const p = [Number(xy[0]), Number(xy[1])];
    if (!p.every(Number.isFinite) || xy.slice(0, 2).some((c) => c === null || typeof c === "object")) {
      throw new Error("a point is not two numbers");
    }
    return p;
  };
  return data.map((p) => {
    if (!Array.isArray(p) && !isObject(p)) throw new Error("a path must be an object with points or a list of points");
    const pts = Array.isArray(p) ? p : p.points ?? [];
    if (!Array.isArray(pts)) throw new Error('"points" must be a list of [x, y]');
    return {
      points: pts.map(point),
      start_frame: Array.isArray(p) ? 0 : whole(p.start_frame ?? 0),
      end_frame: Array.isArray(p) ? -1 : whole(p.end_frame ?? -1),
    };
  });
}

// positions of `count` frames along the polyline, as trajectory/encoding.py path_positions: frame k's parameter
// k / (count - 1) placed between the points' parameters (each point's arc length so far / the total, or with
// "per point" its index / (points - 1)) like np.interp, which skips zero-length segments
function framePositions(points, count, spacing) {
  if (!points.length || count < 1) return [];
  if (points.length === 1 || count === 1) return Array(count).fill(points[0]);
  let param;
  if (spacing === PER_POINT) {
    param = points.map((_, j) => j / (points.length - 1));
  } else {
    const cum = [0];
    for (let i = 1; i < points.length; i++) {
      const dx = points[i][0] - points[i - 1][0], dy = points[i][1] - points[i - 1][1];
      cum.push(cum[i - 1] + Math.sqrt(dx * dx + dy * dy));
    }
    const total = cum[cum.length - 1];
    if (total === 0) return Array(count).fill(points[0]);
    param = cum.map((c) => c / total);
  }
  const out = [];
  for (let k = 0; k < count; k++) out.push(interp(k / (count - 1), param, points));
  return out;
}

// np.interp(t, xp, points) on both coordinates, xp non-decreasing
function interp(t, xp, points) {
  const n = xp.length;
  if (t >= xp[n - 1]) return points[n - 1];
  if (t <= xp[0]) return points[0];
  let j = 0; // the last parameter at or before t: xp[j] <= t < xp[j + 1]
  while (xp[j + 1] <= t) j++;
  const a = points[j], b = points[j + 1], d = t - xp[j], span = xp[j + 1] - xp[j];
  return [((b[0] - a[0]) / span) * d + a[0], ((b[1] - a[1]) / span) * d + a[1]];
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
    const range = document.createElement("span"); // label and frame range: one piece when the bar wraps
    range.className = "mk-range";
    range.append(this.label, this.startInput, this.endInput);
    bar.append(this.newBtn, this.delBtn, this.clearBtn, range);
    this.bar = bar;

    const stage = document.createElement("div");
    stage.className = "mk-stage";
    this.canvas = document.createElement("canvas");
    this.note = document.createElement("div");
    this.note.className = "mk-note";
    stage.append(this.canvas, this.note);
    this.stage = stage;
    // the canvas keeps the image's aspect and fills the space the node gives it
    this.resizer = typeof ResizeObserver === "function" ? new ResizeObserver(() => this.fit()) : null;
    this.resizer?.observe(stage);
    this.root.append(bar, stage);
    for (const el of [bar, this.canvas]) el.addEventListener("pointerdown", (e) => e.stopPropagation());
    this.canvas.addEventListener("pointerdown", (e) => this.down(e));
    this.canvas.addEventListener("pointermove", (e) => this.move(e));
    // a drag ends with the pointer: released, or taken by the browser (touch scroll, gesture, lost capture)
    for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
      this.canvas.addEventListener(type, () => { this.drag = null; });
    }
    this.canvas.addEventListener("contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); });

    this.widget = node.addDOMWidget(WIDGET, "motionkit-trajectory", this.root, { hideOnZoom: false, serialize: false });
    this.widget.serialize = false;
    this.widget.serializeValue = () => undefined;
    this.widget.computeLayoutSize = () => {
      const w = Math.max(96, (node.size?.[0] || 300) - 20);
      const [cw, ch] = this.size();
      // the bar wraps onto more rows in a narrow node
      return { minHeight: Math.min(640, Math.max(96, (w * ch) / cw)) + Math.max(BAR, bar.offsetHeight), minWidth: 0 };
    };
    this.sync(true);
  }

  fit() {
    // the stage's layout size, in the CSS pixels the canvas's style is in: its screen rectangle is scaled by the
    // graph's zoom (the frontend draws DOM widgets with a CSS transform)
    const [w, h] = this.size();
    const s = Math.min(this.stage.clientWidth / w, this.stage.clientHeight / h);
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

  spacing() {
    return widget(this.node, "spacing")?.value;
  }

  // the paths widget is the truth: re-read it when its text changed (typed, pasted, loaded with a workflow)
  sync(force = false) {
    const text = widget(this.node, "paths")?.value ?? "[]";
    const key = [text, ...this.size(), this.frames(), this.spacing(), this.node.id].join("|");
    if (!force && key === this.lastKey) return; // called on every canvas redraw: only work on a change
    this.lastKey = key;
    if (force || text !== this.lastText) this.read(text);
    this.shownSize = this.size();
    this.draw();
  }

  read(text) {
    try {
      this.paths = parsePaths(text);
      this.parseError = null;
    } catch (e) {
      this.parseError = e.message; // being edited, or the run would refuse it: keep drawing the last good paths
    }
    this.lastText = text;
    this.selected = Math.min(this.selected, Math.max(0, this.paths.length - 1));
  }

  // The user changed width/height: the drawn paths scale with the picture, so each point keeps its place in it
  // (as trajectory/encoding.py `resized` scales a trajectory made for another size). Not when a point was
  // already outside: such paths were made for another size, which the user is likely setting now.
  rescale() {
    const text = widget(this.node, "paths")?.value ?? "[]";
    if (text !== this.lastText) this.read(text);
    const [w, h] = this.size();
    const [w0, h0] = this.shownSize ?? [w, h];
    this.shownSize = [w, h];
    if ((w === w0 && h === h0) || this.parseError || this.outside(w0, h0).length) return;
    if (!this.paths.some((p) => p.points.length)) return;
    const sx = w / w0, sy = h / h0;
    for (const p of this.paths) p.points = p.points.map(([x, y]) => [x * sx, y * sy]);
    this.commit();
  }

  outside(w, h) {
    return this.paths.flatMap((p) => p.points.filter(([x, y]) => !(x >= 0 && x <= w && y >= 0 && y <= h)));
  }

  // what the run would refuse (trajectory/encoding.py parse_paths / check_paths), said on the canvas now
  problems() {
    const [w, h] = this.size();
    const frames = this.frames();
    const out = [];
    if (this.parseError) {
      out.push(`The paths text cannot be read (${this.parseError}); the run would stop. Shown: the last good paths.`);
    }
    const outside = this.outside(w, h);
    if (outside.length) {
      out.push(`${outside.length} point(s) outside the ${w}x${h} canvas, e.g. (${outside[0].map((c) => +c.toFixed(2)).join(", ")}): ` +
               "the run would stop. Move them inside (in the paths text), or set width/height to the size they were drawn for.");
    }
    this.paths.forEach((p, i) => {
      const last = p.end_frame < 0 ? frames - 1 : p.end_frame;
      if (p.start_frame < 0 || p.start_frame >= frames || last < p.start_frame) {
        out.push(`Path ${i + 1} runs from frame ${p.start_frame} to ${p.end_frame}, outside the frames 0-${frames - 1}.`);
      }
    });
    return out;
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
    this.parseError = null;
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
      for (const [x, y] of framePositions(p.points, Math.max(0, last - p.start_frame + 1), this.spacing())) {
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
    const problems = this.problems();
    this.note.textContent = problems.join("\n");
    this.note.style.display = problems.length ? "" : "none";
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
    for (const name of ["width", "height", "frames", "spacing", "paths"]) {
      const w = widget(node, name);
      if (!w) continue;
      const cb = w.callback;
      w.callback = function () {
        const r = cb?.apply(this, arguments);
        if (name === "width" || name === "height") editor.rescale();
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
