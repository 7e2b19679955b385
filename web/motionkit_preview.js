// MotionKit: plays a node's animation output inside the node, with play/pause and a frame slider.
//
// Which outputs: ComfyUI's convention for animated results, {"images": [{filename, subfolder, type}],
// "animated": [true]} (core SaveAnimatedWEBP / SaveAnimatedPNG / SaveVideo / SaveWEBM and MotionKit's
// Save Animation), and on MotionKit nodes also "gifs" / "videos" / "video" lists. webp/gif/png/avif
// are decoded frame by frame with the browser's ImageDecoder (where it has none: a plain <img> that
// animates by itself, paused by showing a still of it); mp4/webm/mov/mkv play in a <video>.
// The file is read from the server's /view route; nothing is decoded on the server.
//
// Which nodes: MotionKit's own. Core's animated savers (Save Animated WEBP/PNG, Save Video/WEBM) only
// when the user opts in (setting "MotionKit > Preview > Core nodes"); every other node is left alone.
// Nothing runs per frame on a node without an animation: outputs arrive through onExecuted and the
// frontend's onNodeOutputsUpdated (tab switches, queue history), and only while the player shows a
// node's output does that node skip the frontend's own preview of it (its onDrawBackground, chained),
// so the animation is not drawn twice. Widgets are removed with the frontend's node.removeWidget. If the
// file cannot be played here the player steps aside and the frontend's preview returns.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "MotionKit.AnimationPreview";
const WIDGET = "motionkit_animation";
const SETTING_CORE = "MotionKit.Preview.CoreNodes";
// core nodes that save animations, hooked only with SETTING_CORE on
const CORE_SAVERS = new Set(["SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveVideo", "SaveWEBM"]);
// names of the frontend's own preview widgets (comfyui-frontend 1.2x), removed when we take over
const CORE_WIDGETS = ["$$comfy_animation_preview", "video-preview"];
const IMAGE_EXT = new Set(["webp", "gif", "png", "apng", "avif"]);
const VIDEO_EXT = new Set(["mp4", "webm", "mov", "mkv", "m4v", "ogv"]);
const BAR_HEIGHT = 28;
const DEFAULT_FRAME_MS = 125; // 8 fps, when a file carries no frame duration

const css = `
.motionkit-player { display: flex; flex-direction: column; width: 100%; height: 100%;
  box-sizing: border-box; pointer-events: none; }
.motionkit-player .mk-stage { flex: 1 1 auto; min-height: 0; display: flex; align-items: center;
  justify-content: center; overflow: hidden; }
.motionkit-player .mk-stage canvas, .motionkit-player .mk-stage video, .motionkit-player .mk-stage img {
  width: 100%; height: 100%; object-fit: contain; display: block; }
.motionkit-player .mk-stage > div { width: 100%; height: 100%; }
.motionkit-player .mk-bar { flex: 0 0 ${BAR_HEIGHT}px; display: flex; align-items: center; gap: 6px;
  font: 11px sans-serif; color: var(--input-text, #ddd); pointer-events: auto; }
.motionkit-player button { background: var(--comfy-input-bg, #222); color: inherit; cursor: pointer;
  border: 1px solid var(--border-color, #555); border-radius: 4px; min-width: 26px; height: 22px;
  padding: 0 6px; }
.motionkit-player input[type=range] { flex: 1 1 auto; min-width: 30px; }
.motionkit-player .mk-label { min-width: 52px; text-align: right; font-variant-numeric: tabular-nums; }
.motionkit-player .mk-error { color: #e66; font: 11px sans-serif; padding: 4px; }
.motionkit-player a { color: inherit; text-decoration: none; font-size: 14px; padding: 0 2px; }
`;

function setting(id, fallback) {
  try {
    const v = app.extensionManager?.setting?.get?.(id);
    if (v !== undefined && v !== null) return v;
  } catch (_) { /* older frontends */ }
  return app.ui?.settings?.getSettingValue?.(id, fallback) ?? fallback;
}

function extOf(name) {
  const m = /\.([a-z0-9]+)$/i.exec(name || "");
  return m ? m[1].toLowerCase() : "";
}

function mediaKind(item) {
  const fmt = String(item.format || "");
  if (fmt.startsWith("video/")) return "video";
  if (fmt.startsWith("image/")) return "image";
  const e = extOf(item.filename);
  return VIDEO_EXT.has(e) ? "video" : IMAGE_EXT.has(e) ? "image" : null;
}

function viewURL(item) {
  const q = new URLSearchParams({
    filename: item.filename, subfolder: item.subfolder || "", type: item.type || "output",
  });
  return api.apiURL(`/view?${q}`);
}

function nodeClass(node) {
  return String(node.comfyClass || node.type || "");
}

function isOurs(node) {
  return nodeClass(node).startsWith("MotionKit");
}

/** Whether the player may take this node: MotionKit's own always, core savers when opted in. */
function wanted(node) {
  return isOurs(node) || (CORE_SAVERS.has(nodeClass(node)) && !!setting(SETTING_CORE, false));
}

/** Remove a widget through the frontend's widget API (LGraphNode.removeWidget: calls its onRemove). */
function dropWidget(node, widget) {
  if (widget && node.widgets?.includes(widget)) node.removeWidget(widget);
}

/** The animated files in a node's output, or [] when it has none for us to play. */
export function animatedItems(node, output) {
  if (!output) return [];
  const ours = isOurs(node);
  if (!wanted(node)) return [];
  let items = [];
  const animated = Array.isArray(output.animated) ? output.animated.some(Boolean) : !!output.animated;
  if (animated && Array.isArray(output.images)) items = output.images;
  if (ours) {
    for (const key of ["gifs", "videos", "video"]) {
      if (Array.isArray(output[key])) items = items.concat(output[key]);
    }
  }
  return items.filter((it) => it && typeof it.filename === "string" && mediaKind(it));
}

// ------------------------------------------------------------------------------------------------
// Sources: one per file; each draws into the stage and answers play/pause/seek.

/** webp/gif/png frames decoded one at a time with ImageDecoder, drawn on a canvas. */
class DecodedImage {
  constructor(url, onFrame) {
    this.url = url;
    this.onFrame = onFrame;
    this.el = document.createElement("canvas");
    this.mode = "decoder";
    this.frame = 0;
    this.count = 0;
    this.durations = [];
    this.playing = false;
    this.timer = null;
    this.token = 0;
  }

  async load(signal) {
    const resp = await fetch(this.url, { signal });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const type = (resp.headers.get("content-type") || "").split(";")[0].trim()
      || `image/${extOf(this.url)}`;
    if (!(await ImageDecoder.isTypeSupported(type))) throw new Error(`cannot decode ${type}`);
    this.decoder = new ImageDecoder({ data: await resp.arrayBuffer(), type });
    await this.decoder.tracks.ready;
    const track = this.decoder.tracks.selectedTrack;
    this.count = Math.max(1, track ? track.frameCount : 1);
    await this.draw(0);
    this.width = this.el.width;
    this.height = this.el.height;
  }

  async draw(i) {
    const { image } = await this.decoder.decode({ frameIndex: i });
    try {
      if (this.el.width !== image.displayWidth || this.el.height !== image.displayHeight) {
        this.el.width = image.displayWidth;
        this.el.height = image.displayHeight;
      }
      this.el.getContext("2d").drawImage(image, 0, 0);
      // duration is in microseconds; 0/absent means "as fast as possible": use a sane default
      this.durations[i] = image.duration ? Math.max(20, image.duration / 1000) : DEFAULT_FRAME_MS;
    } finally {
      image.close();
    }
    this.frame = i;
    this.onFrame();
  }

  play() {
    if (this.playing || this.count < 2) return;
    this.playing = true;
    const token = ++this.token;
    const step = async () => {
      if (!this.playing || token !== this.token) return;
      const next = (this.frame + 1) % this.count;
      const t0 = performance.now();
      try {
        await this.draw(next);
      } catch (_) {
        this.pause();
        return;
      }
      if (!this.playing || token !== this.token) return;
      const wait = (this.durations[next] || DEFAULT_FRAME_MS) - (performance.now() - t0);
      this.timer = setTimeout(step, Math.max(0, wait));
    };
    this.timer = setTimeout(step, this.durations[this.frame] || DEFAULT_FRAME_MS);
    this.onFrame();
  }

  pause() {
    this.playing = false;
    this.token++;
    clearTimeout(this.timer);
    this.onFrame();
  }

  async seek(i) {
    this.pause();
    await this.draw(Math.max(0, Math.min(this.count - 1, i)));
  }

  dispose() {
    this.pause();
    try { this.decoder?.close(); } catch (_) { /* already closed */ }
  }
}

/** Fallback where the browser has no ImageDecoder: an <img> animates by itself; pause shows a still. */
class PlainImage {
  constructor(url, onFrame) {
    this.url = url;
    this.onFrame = onFrame;
    this.mode = "img";
    this.el = document.createElement("div");
    this.img = document.createElement("img");
    this.still = document.createElement("canvas");
    this.still.style.display = "none";
    this.el.append(this.img, this.still);
    this.frame = 0;
    this.count = 0; // unknown: no slider
    this.playing = true;
  }

  load(signal) {
    return new Promise((resolve, reject) => {
      signal.addEventListener("abort", () => reject(new Error("aborted")));
      this.img.onload = () => {
        this.width = this.img.naturalWidth;
        this.height = this.img.naturalHeight;
        resolve();
      };
      this.img.onerror = () => reject(new Error("the browser could not load the file"));
      this.img.src = this.url;
    });
  }

  play() {
    this.playing = true;
    this.still.style.display = "none";
    this.img.style.display = "";
    this.onFrame();
  }

  pause() {
    // a canvas copy of what the <img> shows now stays put while the <img> is hidden
    this.still.width = this.img.naturalWidth;
    this.still.height = this.img.naturalHeight;
    this.still.getContext("2d").drawImage(this.img, 0, 0);
    this.playing = false;
    this.img.style.display = "none";
    this.still.style.display = "";
    this.onFrame();
  }

  async seek() {}

  dispose() {
    this.img.removeAttribute("src");
  }
}

/** mp4/webm/...: a muted, looping <video>; our bar drives it. */
class VideoSource {
  constructor(url, onFrame) {
    this.url = url;
    this.onFrame = onFrame;
    this.mode = "video";
    this.el = document.createElement("video");
    Object.assign(this.el, { muted: true, loop: true, playsInline: true, preload: "auto" });
    this.el.addEventListener("timeupdate", () => this.onFrame());
    this.el.addEventListener("play", () => this.onFrame());
    this.el.addEventListener("pause", () => this.onFrame());
    this.count = 1000; // slider resolution: per mille of the duration
  }

  get frame() {
    const d = this.el.duration;
    return d && isFinite(d) ? Math.round((this.el.currentTime / d) * (this.count - 1)) : 0;
  }

  get playing() {
    return !this.el.paused;
  }

  load(signal) {
    return new Promise((resolve, reject) => {
      signal.addEventListener("abort", () => reject(new Error("aborted")));
      this.el.onloadeddata = () => {
        this.width = this.el.videoWidth;
        this.height = this.el.videoHeight;
        resolve();
      };
      this.el.onerror = () => reject(new Error("the browser cannot play this video"));
      this.el.src = this.url;
    });
  }

  play() {
    this.el.play().catch(() => this.onFrame());
  }

  pause() {
    this.el.pause();
  }

  async seek(i) {
    this.el.pause();
    if (isFinite(this.el.duration)) this.el.currentTime = (i / (this.count - 1)) * this.el.duration;
  }

  label() {
    return `${this.el.currentTime.toFixed(1)}s`;
  }

  dispose() {
    this.el.pause();
    this.el.removeAttribute("src");
    this.el.load();
  }
}

function makeSource(item, onFrame) {
  const url = viewURL(item);
  if (mediaKind(item) === "video") return new VideoSource(url, onFrame);
  return typeof ImageDecoder === "function" ? new DecodedImage(url, onFrame) : new PlainImage(url, onFrame);
}

// ------------------------------------------------------------------------------------------------
// The player widget

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Scroll-wheel over the player zooms the canvas, as over any other part of the node. */
function forwardWheel(event) {
  const canvasEl = app.canvas?.canvas;
  if (!canvasEl) return;
  event.preventDefault();
  event.stopPropagation();
  canvasEl.dispatchEvent(new WheelEvent("wheel", event));
}

class Player {
  constructor(node) {
    this.node = node;
    this.root = el("div", "motionkit-player");
    this.root.dataset.state = "loading";
    this.root.dataset.nodeId = String(node.id);
    this.stage = el("div", "mk-stage");
    const bar = el("div", "mk-bar");
    this.prevBtn = el("button", "motionkit-prev", "‹");
    this.nextBtn = el("button", "motionkit-next", "›");
    this.fileLabel = el("span", "mk-files");
    this.playBtn = el("button", "motionkit-play", "❚❚");
    this.playBtn.title = "Play / pause";
    this.slider = el("input", "motionkit-frame");
    Object.assign(this.slider, { type: "range", min: 0, max: 0, step: 1, value: 0 });
    this.slider.title = "Frame";
    this.label = el("span", "mk-label");
    this.open = el("a", "motionkit-open", "↗");
    this.open.target = "_blank";
    this.open.rel = "noopener";
    this.open.title = "Open the file in a new tab";
    bar.append(this.prevBtn, this.fileLabel, this.nextBtn, this.playBtn, this.slider, this.label, this.open);
    this.root.append(this.stage, bar);
    this.root.addEventListener("wheel", forwardWheel, { passive: false });
    for (const b of [this.playBtn, this.prevBtn, this.nextBtn, this.slider]) {
      // keep clicks on the controls from starting a canvas drag
      b.addEventListener("pointerdown", (e) => e.stopPropagation());
    }
    this.playBtn.addEventListener("click", () => this.toggle());
    this.prevBtn.addEventListener("click", () => this.showFile(this.index - 1));
    this.nextBtn.addEventListener("click", () => this.showFile(this.index + 1));
    this.slider.addEventListener("input", () => this.source?.seek(Number(this.slider.value)));
    this.items = [];
    this.index = 0;
    this.aspect = 1;

    this.widget = node.addDOMWidget(WIDGET, "motionkit-preview", this.root, {
      hideOnZoom: false, serialize: false,
    });
    this.widget.serialize = false;
    this.widget.serializeValue = () => undefined;
    this.widget.computeLayoutSize = () => {
      const w = Math.max(64, (node.size?.[0] || 256) - 20);
      return { minHeight: Math.min(768, Math.max(64, w / this.aspect)) + BAR_HEIGHT, minWidth: 0 };
    };
  }

  setItems(items) {
    this.items = items;
    const many = items.length > 1;
    for (const e of [this.prevBtn, this.nextBtn, this.fileLabel]) e.style.display = many ? "" : "none";
    return this.showFile(0);
  }

  async showFile(i) {
    const n = this.items.length;
    this.index = ((i % n) + n) % n;
    this.fileLabel.textContent = `${this.index + 1}/${n}`;
    this.abort?.abort();
    this.source?.dispose();
    const abort = (this.abort = new AbortController());
    const item = this.items[this.index];
    const source = (this.source = makeSource(item, () => this.update()));
    this.open.href = source.url;
    this.root.dataset.src = source.url;
    this.root.dataset.mode = source.mode;
    this.root.dataset.state = "loading";
    this.stage.replaceChildren(source.el);
    try {
      await source.load(abort.signal);
    } catch (err) {
      if (abort.signal.aborted || source !== this.source) return false;
      if (source instanceof DecodedImage) {
        // e.g. a type this browser's ImageDecoder lacks: let the <img> animate it
        return this.fallback(item, abort);
      }
      this.fail(item, err);
      return false;
    }
    if (source !== this.source) return false;
    this.ready(source);
    return true;
  }

  async fallback(item, abort) {
    const source = (this.source = new PlainImage(viewURL(item), () => this.update()));
    this.root.dataset.mode = source.mode;
    this.stage.replaceChildren(source.el);
    try {
      await source.load(abort.signal);
    } catch (err) {
      if (source === this.source) this.fail(item, err);
      return false;
    }
    if (source !== this.source) return false;
    this.ready(source);
    return true;
  }

  ready(source) {
    this.aspect = source.width && source.height ? source.width / source.height : 1;
    this.slider.max = Math.max(0, source.count - 1);
    this.slider.disabled = source.count < 2;
    this.slider.style.visibility = source.count ? "" : "hidden";
    this.playBtn.disabled = source.mode === "decoder" && source.count < 2;
    this.fit();
    source.play();
    this.update();
  }

  fail(item, err) {
    this.root.dataset.state = "error";
    this.stage.replaceChildren(el("div", "mk-error", `Cannot play ${item.filename}: ${err.message || err}`));
    this.update();
  }

  fit() {
    // grow the node to show the whole animation; never shrink what the user sized
    const node = this.node;
    const want = node.computeSize?.();
    if (want && want[1] > node.size[1]) node.setSize([Math.max(node.size[0], want[0]), want[1]]);
    node.graph?.setDirtyCanvas(true, true);
  }

  toggle() {
    const s = this.source;
    if (!s) return;
    if (s.playing) s.pause();
    else s.play();
  }

  update() {
    const s = this.source;
    if (!s || this.root.dataset.state === "error") return;
    const playing = !!s.playing;
    this.root.dataset.state = playing ? "playing" : "paused";
    this.root.dataset.frame = String(s.frame);
    this.playBtn.textContent = playing ? "❚❚" : "▶";
    if (document.activeElement !== this.slider) this.slider.value = String(s.frame);
    this.label.textContent = s.label ? s.label() : s.count ? `${s.frame + 1}/${s.count}` : "";
  }

  remove() {
    this.abort?.abort();
    this.source?.dispose();
    this.source = null;
    dropWidget(this.node, this.widget);
    this.root.remove();
  }
}

// ------------------------------------------------------------------------------------------------
// Wiring

function removeCorePreviews(node) {
  for (const w of (node.widgets || []).filter((x) => CORE_WIDGETS.includes(x.name))) dropWidget(node, w);
  node.videoContainer = undefined;
}

/** While a player shows this node's output, skip the frontend's preview of it. Installed on the node
 * only then (and taken off with the player), so other nodes draw exactly as before. */
function skipCorePreview(node, on) {
  const mk = node.motionkit;
  if (on && !mk.drawHook) {
    const original = node.onDrawBackground;
    const hook = function () {
      if (this.motionkit?.player) return undefined;
      return original?.apply(this, arguments);
    };
    hook.motionkit = true;
    mk.drawHook = { hook, original, own: Object.prototype.hasOwnProperty.call(node, "onDrawBackground") };
    node.onDrawBackground = hook;
  } else if (!on && mk.drawHook) {
    const { hook, original, own } = mk.drawHook;
    mk.drawHook = null;
    if (node.onDrawBackground === hook) {
      if (own) node.onDrawBackground = original;
      else delete node.onDrawBackground;
    }
  }
}

function dropPlayer(node) {
  const mk = node.motionkit;
  if (!mk?.player) return;
  mk.player.remove();
  mk.player = null;
  skipCorePreview(node, false);
  node.setDirtyCanvas?.(true, true);
}

function itemsKey(items) {
  return JSON.stringify(items.map((x) => [x.filename, x.subfolder || "", x.type || "output"]));
}

function showOutput(node, output) {
  const items = animatedItems(node, output);
  const mk = node.motionkit;
  if (!items.length) {
    dropPlayer(node);
    mk.output = output;
    return;
  }
  mk.output = output;
  const key = itemsKey(items);
  if (key === mk.gaveUp) return;
  if (mk.player && itemsKey(mk.player.items) === key && mk.player.root.dataset.state !== "error") return;
  removeCorePreviews(node);
  if (!mk.player) mk.player = new Player(node);
  skipCorePreview(node, true);
  const player = mk.player;
  player.setItems(items).catch((err) => {
    console.error("[MotionKit] animation preview", err);
    player.fail(items[player.index] || items[0], err);
    return false;
  }).then((ok) => {
    if (!ok && mk.player === player && player.root.dataset.state === "error"
        && !isOurs(node)) {
      // a core node whose file we cannot play: give the frontend's own preview back
      dropPlayer(node);
      mk.gaveUp = key;
    }
  });
}

/** Chain the node's onExecuted/onRemoved (nothing per frame). Done once per node. */
function hook(node) {
  if (node.motionkit) return;
  node.motionkit = { player: null, output: undefined, gaveUp: undefined, drawHook: null };
  const onExecuted = node.onExecuted;
  node.onExecuted = function (output) {
    const r = onExecuted?.apply(this, arguments);
    try {
      this.motionkit.gaveUp = undefined;
      if (wanted(this)) showOutput(this, output);
      else dropPlayer(this); // opted out since: the frontend's preview takes it
    } catch (err) {
      console.error("[MotionKit] animation preview", err);
    }
    return r;
  };
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    dropPlayer(this);
    return onRemoved?.apply(this, arguments);
  };
}

function hookGraphNodes() {
  for (const node of app.graph?.nodes || []) if (wanted(node)) hook(node);
}

app.registerExtension({
  name: EXT,
  settings: [
    {
      id: SETTING_CORE,
      category: ["MotionKit", "Preview", "Core nodes"],
      name: "Animation player (play/pause, frames) on core nodes too: Save Animated WEBP/PNG, Save Video",
      tooltip: "MotionKit's own nodes always use it. Off (default): core nodes are left to the frontend's own preview.",
      type: "boolean",
      defaultValue: false,
      onChange: (value) => {
        if (value) hookGraphNodes();
      },
    },
  ],

  setup() {
    const style = document.createElement("style");
    style.dataset.motionkit = "preview";
    style.textContent = css;
    document.head.append(style);
  },

  nodeCreated(node) {
    if (wanted(node)) hook(node);
  },

  /** Outputs restored by the frontend (switching workflow tabs, loading from the queue history). */
  onNodeOutputsUpdated(outputs) {
    for (const node of app.graph?.nodes || []) {
      if (!node.motionkit) continue;
      const output = outputs?.[String(node.id)];
      if (output === node.motionkit.output) continue;
      try {
        if (output) {
          showOutput(node, output);
        } else {
          dropPlayer(node);
          node.motionkit.output = undefined;
        }
      } catch (err) {
        console.error("[MotionKit] animation preview", err);
      }
    }
  },
});
