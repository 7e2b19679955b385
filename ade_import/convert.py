"""Convert an AnimateDiff-Evolved workflow (UI format) to MotionKit's nodes.

ADE builds a motion model stack as side data (M_MODELS, CONTEXT_OPTIONS, SAMPLE_SETTINGS) that a sampler wrapper
(Use Evolved Sampling, or a Gen1 loader) puts on the MODEL; MotionKit patches the MODEL directly, node after node.
So each ADE sink becomes a MODEL chain: the sink's input model -> Apply Motion Model (one per motion model in
ADE's stack, in ADE's order) [-> Apply AnimateLCM-I2V Image / Apply PIA Image / Apply CameraCtrl] -> Context Windows
[-> Motion Windows] [-> Context Reference / Context Naive Reuse] [-> Sample Settings (Noise), fed by Noise Layers]
-> FreeInit, and whatever used the sink's MODEL uses the chain's end. Settings nodes (multivals, keyframes, context
options, sample settings) fold into those nodes' widgets; what MotionKit cannot express is listed in the report, never
silently dropped. Other packs' nodes and core nodes are left as they are.

Two phases: `plan` reads the original graph and builds the new MotionKit nodes (reusing the id and position of
the ADE node each replaces, new ids after last_node_id for the extra ones), `apply` removes the replaced ADE nodes
and re-wires every link that came out of them."""
from __future__ import annotations

from dataclasses import dataclass

from .graph import REROUTE, Graph
from .report import CONVERTED, KEPT, NO_EQUIVALENT, NOT_CARRIED, NOTE, REMOVED, Report
from .specs import Linked, VersionMismatch, ade_commit, ade_specs, default_of, map_widgets, motionkit_specs
from .table import (ADE_PREFIXES, APPLIES, APPLY, BETA_SCHEDULES, CAMERA_APPLY, CAMERA_COMBO_SLOTS, CAMERA_COMBOS,
                    CAMERA_FILE, CAMERA_LOAD, CAMERA_MIX, CAMERA_PRESET, CONTEXT, CONTEXT_AWARE, CONTEXT_SCHEDULES,
                    CONVERTED_FEATURES, CORE_SPECS,
                    FEATURES, FREEINIT, FREENOISE, FUSE_METHODS, GUIDERS, I2V, KEPT_BY_PREFIX, KEYFRAME, LABELS, LOAD,
                    LOADERS, LORA, MOTION_WINDOWS, NOISE_LAYER, NOISE_LAYERS, PIA_APPLY, PIA_PRESETS, REGION,
                    SAMPLE_SETTINGS, SAVE_FORMATS, SINKS, SPARSE_KEYS, SPARSE_LOAD, SPREADS, UNSUPPORTED,
                    VIEW_SCHEDULES)


def xy(value, default: list) -> list:
    """A position or size as [x, y]: old frontends saved {"0": x, "1": y}."""
    if isinstance(value, dict):
        return [value.get("0", default[0]), value.get("1", default[1])]
    return list(value[:2]) if isinstance(value, (list, tuple)) and len(value) >= 2 else list(default)


@dataclass(frozen=True)
class Src:
    """An output feeding an input: of an original node (new=False) or of a node this conversion makes."""
    node: int
    slot: int
    kind: str
    new: bool = False


class Converter:
    def __init__(self, workflow: dict, targets: dict | None = None):
        self.g = Graph(workflow)
        self.targets = targets if targets is not None else motionkit_specs()
        self.ade = ade_specs()
        self.report = Report()
        self.values: dict[int, dict] = {}     # ADE node id -> its inputs by name
        self.new_nodes: dict[int, dict] = {}  # new node id -> node
        self.pending: list[tuple[int, int, Src]] = []  # (new node, input index, source)
        self.replaced: dict[tuple[int, int], Src] = {}  # (old node, slot) -> its replacement
        self.delete: set[int] = set()         # old nodes removed
        self.claimed: set[int] = set()        # old ids reused by new nodes
        self.done: dict[tuple, Src] = {}      # memo: what a converted settings node became
        self.used: set[int] = set()           # ADE nodes a conversion read (folded in, or converted)
        self.vae_moves: list[tuple[int, str, Src]] = []  # (apply node, its vae input, the VAE) for RGB SparseCtrl
        self.moves: list[tuple[int, str, Src]] = []  # (kept node, input, new source): links replaced

    # ----------------------------------------------------------------------------------------- helpers
    def has(self, feature: str) -> bool:
        kind, name = FEATURES[feature]
        return kind in self.targets and (name is None or any(e["name"] == name for e in self.targets[kind]["inputs"]))

    def no_equivalent(self, node: dict, feature: str, what: str, status: str = NOT_CARRIED) -> None:
        kind, name = FEATURES[feature]
        if kind in self.targets and (name is None or self.has(feature)) and feature in CONVERTED_FEATURES:
            self.report.add(node, status, f"{what}: converted where it reaches a sampler through ADE's nodes "
                                          f"({CONVERTED_FEATURES[feature]}); this one does not: convert it by hand "
                                          f"to {kind}")
        elif kind in self.targets and (name is None or self.has(feature)):
            self.report.add(node, status, f"{what}: convert it by hand to {kind} (not done automatically yet)")
        else:
            self.report.add(node, status, f"{what}: {NO_EQUIVALENT} ({LABELS[feature]})")

    def node(self, nid: int) -> dict:
        return self.g.nodes[nid]

    def val(self, node: dict, name: str):
        return self.values.get(node["id"], {}).get(name)

    def src(self, node: dict, name: str) -> Src | None:
        """The output feeding `name` (a socket, or a widget converted to one), reroutes kept."""
        link = self.g.input_link(node, name)
        return Src(link[1], link[2], link[5]) if link else None

    def upstream(self, node: dict, name: str) -> dict | None:
        """The node feeding `name`, through reroutes (for ADE's own types, which only ADE nodes make)."""
        found = self.g.source(node, name)
        return found[0] if found else None

    def value_or_link(self, node: dict, name: str):
        v = self.val(node, name)
        if isinstance(v, Linked):
            s = self.g.link_source(v.link)
            return Src(*s) if s else None
        return v

    def emit(self, kind: str, values: dict, at: dict, reuse: bool = False, offset=(0, 0)) -> dict:
        """A new MotionKit node of class `kind` with `values` (literals or Src), placed at node `at` (+offset)."""
        spec = self.targets[kind] if kind in self.targets else CORE_SPECS[kind]
        nid = at["id"] if reuse and at["id"] not in self.claimed else self.g.new_id()
        self.claimed.add(nid)
        widgets, inputs, links = [], [], []
        for entry in spec["inputs"]:
            v = values.get(entry["name"])
            if entry["widget"]:
                if isinstance(v, Src):
                    links.append((len(inputs), v))
                    inputs.append({"name": entry["name"], "type": entry["type"], "widget": {"name": entry["name"]},
                                   "link": None})
                    v = None
                v = default_of(entry) if v is None else self.within(entry, v, kind, at)
                widgets.append(v)
                if entry.get("control_after_generate"):
                    widgets.append("fixed")
            else:
                if isinstance(v, Src):
                    links.append((len(inputs), v))
                inputs.append({"name": entry["name"], "type": entry["type"], "link": None})
        pos, size = xy(at.get("pos"), [0, 0]), xy(at.get("size"), [315, 130])
        node = {"id": nid, "type": kind, "pos": [pos[0] + offset[0], pos[1] + offset[1]], "size": size, "flags": {},
                "order": at.get("order", 0), "mode": at.get("mode", 0), "inputs": inputs,
                "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                            for i, (t, n) in enumerate(zip(spec["outputs"], spec["output_names"]))],
                "properties": {"Node name for S&R": kind}, "widgets_values": widgets}
        for key in ("title", "color", "bgcolor"):
            if key in at and reuse and not at.get("title", "").endswith("🎭🅐🅓"):
                node[key] = at[key]
        self.new_nodes[nid] = node
        self.pending += [(nid, i, s) for i, s in links]
        return node

    def within(self, entry: dict, value, kind: str, at: dict):
        """`value` inside the MotionKit input's range (the server refuses values outside), reported if moved."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value
        lo, hi = entry.get("min"), entry.get("max")
        moved = lo if lo is not None and value < lo else hi if hi is not None and value > hi else value
        if moved != value:
            self.report.add(at, NOT_CARRIED, f"{entry['name']} {value} is outside {kind}'s range "
                                             f"[{lo}, {hi}]: set to {moved}")
        return moved

    def out(self, node: dict, slot: int = 0) -> Src:
        return Src(node["id"], slot, node["outputs"][slot]["type"], new=True)

    def replace(self, old: dict, new: Src | None, slot: int = 0) -> None:
        self.delete.add(old["id"])
        if new is not None:
            self.replaced[(old["id"], slot)] = new

    # ----------------------------------------------------------------------------------------- the run
    def run(self) -> tuple[dict, Report]:
        self.nested()
        for node in list(self.g.nodes.values()):
            self.read(node)
        for node in list(self.g.nodes.values()):
            if node["id"] in self.values and node["type"] in SINKS:
                self.guarded(self.sink, node)
        for node in list(self.g.nodes.values()):  # stand-alone nodes (and ones no sink reached)
            if node["id"] in self.values and node["id"] not in self.delete and node["id"] not in self.used:
                self.guarded(self.standalone, node)
        self.apply()
        return self.g.to_workflow(), self.report

    def guarded(self, step, node: dict) -> None:
        """One graph the converter did not foresee must not cost the rest of the conversion: the node stays."""
        try:
            step(node)
        except Exception as e:  # noqa: BLE001  (reported, the node kept)
            self.delete.discard(node["id"])
            self.report.add(node, KEPT, f"could not be converted ({type(e).__name__}: {e}): kept as it is; please "
                                        f"report this workflow")

    def nested(self) -> None:
        """ADE nodes inside subgraphs or (legacy) group nodes are not converted: say so."""
        wf = self.g.wf
        inner = [(sg.get("name") or sg.get("id", "?"), n) for sg in (wf.get("definitions") or {}).get("subgraphs") or []
                 for n in sg.get("nodes") or []]
        inner += [(name, n) for name, group in ((wf.get("extra") or {}).get("groupNodes") or {}).items()
                  for n in group.get("nodes") or []]
        for where, n in inner:
            if n.get("type", "") in self.ade or str(n.get("type", "")).startswith(ADE_PREFIXES):
                self.report.add(None, KEPT, f"{n.get('type')} inside subgraph/group node '{where}': not converted "
                                            f"(unpack it, convert again)")

    def read(self, node: dict) -> None:
        kind = node.get("type", "")
        spec = self.ade.get(kind)
        if spec is None:
            if kind.startswith(ADE_PREFIXES):
                self.report.add(node, KEPT, f"not an ADE node at {ade_commit()} (a newer or older node type): kept")
            return
        try:
            values, notes = map_widgets(node, spec)
        except VersionMismatch as e:
            self.report.add(node, KEPT, f"an ADE version the converter does not know ({e}): kept as it is")
            return
        self.values[node["id"]] = values
        for n in notes:
            self.report.add(node, NOTE, n)

    # ----------------------------------------------------------------------------------------- sinks
    def sink(self, node: dict) -> None:
        """Use Evolved Sampling or a Gen1 loader: its MODEL becomes a MotionKit MODEL chain."""
        kind = node["type"]
        cur = self.src(node, "model")
        if cur is None:
            self.report.add(node, KEPT, "no model connected: kept as it is")
            return
        schedule = self.schedule(node)
        if kind == "ADE_UseEvolvedSampling":
            applies = []
            a = self.upstream(node, "m_models")
            while a is not None:
                applies.insert(0, a)
                a = self.upstream(a, "prev_m_models") if a["type"] in APPLIES or "WithCameraCtrl" in a["type"] \
                    or "WithPIA" in a["type"] else None
            if not applies:
                self.report.add(node, NOTE, "no motion model connected (m_models): the chain has no Apply Motion Model")
            for a in applies:
                cur = self.apply_node(a, cur, schedule)
        else:
            cur = self.gen1(node, cur, schedule)
        ctx = self.upstream(node, "context_options")
        if ctx is not None:
            cur = self.context(ctx, cur, node)
        elif kind == "ADE_AnimateDiffLoaderV1Advanced":
            cur = self.gen1_context(node, cur)
        settings = self.upstream(node, "sample_settings")
        if settings is not None:
            cur = self.sample_settings(settings, cur, node)
        self.replace(node, cur)
        if kind in ("AnimateDiffLoaderV1", "ADE_AnimateDiffLoaderV1Advanced"):
            self.replace(node, self.src(node, "latents"), slot=1)  # the LATENT output passed latents through
        what = "Use Evolved Sampling" if kind == "ADE_UseEvolvedSampling" else "the loader's sampling part"
        self.report.add(node, REMOVED, f"{what}: MotionKit needs no sampler wrapper; its MODEL links now come "
                                       f"from node #{cur.node} ({self.kind_of(cur)})")

    def kind_of(self, s: Src) -> str:
        return (self.new_nodes.get(s.node) if s.new else self.g.nodes.get(s.node, {})).get("type", "?")

    def schedule(self, node: dict) -> str:
        beta = self.val(node, "beta_schedule")
        if beta is None or isinstance(beta, Linked):
            return "autoselect"
        if beta not in BETA_SCHEDULES:
            self.report.add(node, NOT_CARRIED, f"beta_schedule '{beta}': {NO_EQUIVALENT} (autoselect used)")
        return BETA_SCHEDULES.get(beta, "autoselect")

    def gen1(self, node: dict, cur: Src, schedule: str) -> Src:
        """A Gen1 loader's motion part: Load Motion Model (new node) + Apply Motion Model (in the loader's place)."""
        load = self.emit(LOAD, {"model_name": self.value_or_link(node, "model_name")}, node, offset=(0, -160))
        self.report.add(node, CONVERTED, f"motion model loading -> #{load['id']} {LOAD}")
        if self.upstream(node, "ad_settings") is not None:
            self.no_equivalent(node, "ad_settings", "ad_settings (PE / weight adjustments)")
            self.used.add(self.upstream(node, "ad_settings")["id"])
        if self.val(node, "unlimited_area_hack"):
            self.report.add(node, NOT_CARRIED, "unlimited_area_hack: not needed in MotionKit (no area limit)")
        if node["type"] == "ADE_AnimateDiffLoaderWithContext":
            scale = self.value_or_link(node, "motion_scale")  # ADE's attention scale, as Regional Motion's
            extra = {"scale": (scale, None)} if scale != 1.0 else {}
            if self.val(node, "apply_v2_models_properly") is False:
                self.report.add(node, NOT_CARRIED, "apply_v2_models_properly off: MotionKit always applies v2 "
                                                   "models properly")
        else:
            extra = {}
        return self.apply_common(node, cur, self.out(load), schedule, reuse=True, extra_multivals=extra)

    def gen1_context(self, node: dict, cur: Src) -> Src:
        """AnimateDiff Loader V1 Advanced's own context settings."""
        closed = bool(self.val(node, "closed_loop"))
        values = {"model": cur, "context_length": self.value_or_link(node, "context_length"),
                  "context_overlap": self.value_or_link(node, "context_overlap"),
                  "context_stride": self.value_or_link(node, "context_stride"),
                  "schedule": "uniform looped", "fuse_method": "flat", "closed_loop": closed}
        win = self.emit(CONTEXT, values, node, offset=(0, 200))
        self.report.add(node, CONVERTED, f"context settings -> #{win['id']} {CONTEXT}")
        return self.out(win)

    # ----------------------------------------------------------------------------------------- motion models
    def loader(self, node: dict | None, at: dict) -> Src | None:
        if node is None:
            self.report.add(at, NOTE, "no motion model connected")
            return None
        key = ("loader", node["id"])
        if key in self.done:
            return self.done[key]
        self.used.add(node["id"])
        if node["id"] not in self.values:
            return None  # kept, already reported
        camera = node["type"] == "ADE_LoadAnimateDiffModelWithCameraCtrl" and self.has("camera_ctrl")
        if node["type"] not in LOADERS and not camera:
            feature = UNSUPPORTED.get(node["type"])
            if feature:
                self.no_equivalent(node, feature, "this motion model loader", status=KEPT)
            else:
                self.report.add(node, KEPT, f"{NO_EQUIVALENT} for this loader: kept")
            self.done[key] = None
            return None
        load = self.emit(LOAD, {"model_name": self.value_or_link(node, "model_name")}, node, reuse=True)
        self.replace(node, self.out(load))
        self.report.add(node, CONVERTED, f"-> #{load['id']} {LOAD}")
        if camera:
            cam = self.emit(CAMERA_LOAD, {"cameractrl_name": self.value_or_link(node, "camera_ctrl")}, node,
                            offset=(0, 140))
            self.done[("cameractrl", node["id"])] = self.out(cam)
            self.report.add(node, CONVERTED, f"its camera_ctrl -> #{cam['id']} {CAMERA_LOAD}")
        if self.upstream(node, "ad_settings") is not None:
            self.no_equivalent(node, "ad_settings", "ad_settings (PE / weight adjustments)")
        if node["type"] == "ADE_LoadAnimateLCMI2VModel" and self.g.out_links(node["id"], 1):
            self.report.add(node, NOT_CARRIED, f"the encoder_only output: {NO_EQUIVALENT} (MotionKit loads the "
                                               f"I2V encoder with the motion model)")
        self.done[key] = self.out(load)
        return self.done[key]

    def apply_node(self, node: dict, cur: Src, schedule: str) -> Src:
        self.used.add(node["id"])
        if node["id"] not in self.values:
            self.report.add(node, NOTE, "kept (see above): its motion model is not in the converted chain")
            return cur
        pia = node["type"] == "ADE_ApplyAnimateDiffModelWithPIA" and self.has("pia")
        camera = node["type"] == "ADE_ApplyAnimateDiffModelWithCameraCtrl" and self.has("camera_ctrl")
        if node["type"] not in APPLIES and not pia and not camera:
            feature = UNSUPPORTED.get(node["type"])
            self.no_equivalent(node, feature or "camera_ctrl", "this motion model (not applied in the converted "
                                                               "chain)", status=KEPT)
            return cur
        mm = self.loader(self.upstream(node, "motion_model"), node)
        if mm is None:
            self.report.add(node, KEPT, "its motion model could not be converted: kept, not in the chain")
            return cur
        if camera and self.upstream(node, "motion_model")["type"] != "ADE_LoadAnimateDiffModelWithCameraCtrl":
            self.report.add(node, KEPT, "its motion model does not come from Load AnimateDiff+CameraCtrl: kept, not "
                                        "in the chain")
            return cur
        cur = self.apply_common(node, cur, mm, schedule, reuse=True)
        if camera:
            return self.camera(node, cur)
        return self.pia(node, cur) if pia else cur

    def camera(self, node: dict, cur: Src) -> Src:
        """ADE's Apply AnimateDiff+CameraCtrl: after Apply Motion Model, Apply CameraCtrl with the CameraCtrl model
        (from the loader), the poses, cameractrl_multival as strength (its mask as strength_mask), the same
        start/end_percent."""
        loader = self.upstream(node, "motion_model")
        values = {"model": cur, "cameractrl": self.done.get(("cameractrl", loader["id"])),
                  "start_percent": self.value_or_link(node, "start_percent"),
                  "end_percent": self.value_or_link(node, "end_percent")}
        mv = self.upstream(node, "cameractrl_multival")
        if mv is not None:
            strength, mask = self.multival(mv, node, "cameractrl_multival")
            values["strength"] = strength
            if mask is not None and any(e["name"] == "strength_mask" for e in self.targets[CAMERA_APPLY]["inputs"]):
                values["strength_mask"] = mask
            elif mask is not None:  # a MotionKit from before Apply CameraCtrl's strength_mask
                self.report.add(node, NOT_CARRIED, f"cameractrl_multival's mask: {NO_EQUIVALENT} (one strength)")
        poses = self.upstream(node, "cameractrl_poses")
        values["poses"] = self.camera_poses(poses, node) if poses is not None else None
        if values["poses"] is None:
            self.report.add(node, NOT_CARRIED, f"camera poses not converted: connect poses to {CAMERA_APPLY} by hand")
        new = self.emit(CAMERA_APPLY, values, node, offset=(0, 200))
        self.replace(node, None)
        self.report.add(node, CONVERTED, f"the camera -> #{new['id']} {CAMERA_APPLY}")
        return self.out(new)

    def camera_poses(self, node: dict, at: dict) -> Src | None:
        """ADE's Camera Pose [Basic] chain -> Camera Poses (Preset) chain (same motion names, speed, frames, the
        earlier poses first); Camera Poses (Combo) / (Adv.) -> Camera Poses Mix (same chaining); Load CameraCtrl
        Poses (File) -> Camera Poses From File. The rest: reported, kept."""
        key = ("poses", node["id"])
        if key in self.done:
            return self.done[key]
        self.used.add(node["id"])
        v = lambda n: self.value_or_link(node, n)  # noqa: E731
        kind, new = node["type"], None
        if node["id"] not in self.values:
            return None
        if kind == "ADE_CameraPoseBasic" and v("motion_type") in self.option_list(CAMERA_PRESET, "motion"):
            prev = self.upstream(node, "prev_poses")
            values = {"motion": v("motion_type"), "speed": v("speed"), "frames": v("frame_length"),
                      "previous": self.camera_poses(prev, node) if prev is not None else None}
            new = self.emit(CAMERA_PRESET, values, node, reuse=True)
        elif kind in CAMERA_COMBOS and CAMERA_MIX in self.targets:
            pairs = self.camera_mix_pairs(node, at)
            if pairs is None:
                self.done[key] = None
                return None
            prev = self.upstream(node, "prev_poses")
            values = {"speed": v("speed"), "frames": v("frame_length"),
                      "previous": self.camera_poses(prev, node) if prev is not None else None}
            for i, (motion, strength) in enumerate(pairs + [("Static", 1.0)] * (self.mix_slots() - len(pairs)), 1):
                values.update({f"motion_{i}": motion, f"strength_{i}": strength})
            new = self.emit(CAMERA_MIX, values, node, reuse=True)
        elif kind == "ADE_LoadCameraPoses":
            new = self.emit(CAMERA_FILE, {"pose_file": v("pose_filename")}, node, reuse=True)
            self.report.add(node, NOTE, f"#{new['id']} reads the file from ComfyUI's input folder (ADE: its "
                                        f"camera poses folder) with source_width/height 1280x720 "
                                        f"(RealEstate10K's): move the file there, check the sizes")
        if new is None:
            self.report.add(at, NOT_CARRIED, f"poses from #{node['id']} {kind}: {NO_EQUIVALENT} in the converter "
                                             f"(combined or edited poses): build them with Camera Poses nodes")
            self.report.add(node, KEPT, "camera poses not converted; kept")
            self.done[key] = None
            return None
        self.replace(node, self.out(new))
        self.report.add(node, CONVERTED, f"-> #{new['id']} {new['type']}")
        self.done[key] = self.out(new)
        return self.done[key]

    def mix_slots(self) -> int:
        return sum(e["name"].startswith("motion_") for e in self.targets[CAMERA_MIX]["inputs"])

    def camera_mix_pairs(self, node: dict, at: dict) -> list | None:
        """ADE's 6 (motion, strength) of a Combo (strength 1) / Adv. node as Camera Poses Mix's pairs: Static and
        strength 0 dropped (they add nothing). Only when more pairs than the node's slots remain, one motion chosen
        twice becomes one pair with the strengths added (the motions add up, so the poses are the same), unless that
        sum lies outside the node's strength range. Still too many, or out of range: reported, None."""
        pairs, options = [], self.option_list(CAMERA_MIX, "motion_1")
        for i in range(1, CAMERA_COMBO_SLOTS + 1):
            motion = self.value_or_link(node, f"motion_type{i}")
            strength = self.value_or_link(node, f"strength{i}") if CAMERA_COMBOS[node["type"]] else 1.0
            if motion == "Static" or strength == 0:
                continue
            if isinstance(motion, str) and motion not in options:
                self.report.add(at, NOT_CARRIED, f"poses from #{node['id']}: its motion '{motion}' is not one of "
                                                 f"{CAMERA_MIX}'s motions: build them with Camera Poses nodes")
                self.report.add(node, KEPT, "camera poses not converted; kept")
                return None
            pairs.append((motion, strength))
        if len(pairs) > self.mix_slots():
            pairs = self.merge_repeated_motions(node, pairs)
        if pairs is None or len(pairs) > self.mix_slots():
            why = ("a motion chosen more than once adds up past the strength range"
                   if pairs is None else f"it mixes {len(pairs)} different motions")
            self.report.add(at, NOT_CARRIED, f"poses from #{node['id']}: {why}, {CAMERA_MIX} takes "
                                             f"{self.mix_slots()} pairs: build them by hand with fewer")
            self.report.add(node, KEPT, "camera poses not converted; kept")
            return None
        return pairs

    def merge_repeated_motions(self, node: dict, pairs: list) -> list | None:
        """One pair per motion, strengths added (None when a sum leaves Camera Poses Mix's strength range)."""
        top = next(e.get("max", 10.0) for e in self.targets[CAMERA_MIX]["inputs"] if e["name"] == "strength_1")
        merged = []
        for motion, strength in pairs:
            same = next((j for j, (m, s) in enumerate(merged) if isinstance(motion, str) and m == motion
                         and not isinstance(s, Src) and not isinstance(strength, Src)), None)
            if same is None:
                merged.append((motion, strength))
                continue
            total = merged[same][1] + strength
            if abs(total) > top:
                return None
            merged[same] = (motion, total)
            self.report.add(node, NOTE, f"'{motion}' is chosen more than once: one slot with the strengths "
                                        f"added ({total:g}), the same poses")
        return merged

    def option_list(self, kind: str, name: str) -> list:
        return next((e.get("options") or [] for e in self.targets[kind]["inputs"] if e["name"] == name), [])

    def pia(self, node: dict, cur: Src) -> Src:
        """ADE's Apply AnimateDiff+PIA: after Apply Motion Model (pia.ckpt), Apply PIA Image with the image, the VAE
        and the motion strength (ADE's paper preset by name, its batch_index as image_frame; no pia_input is ADE's
        constant strength 1.0, values '1.0')."""
        values = {"model": cur, "image": self.src(node, "image"), "vae": self.src(node, "vae"), "values": "1.0"}
        pia_input = self.upstream(node, "pia_input")
        if pia_input is not None and pia_input["id"] in self.values:
            self.used.add(pia_input["id"])
            folded = False
            if pia_input["type"] == "ADE_InputPIA_PaperPresets":
                preset = self.val(pia_input, "preset")
                if preset in PIA_PRESETS:
                    values.update(motion=PIA_PRESETS[preset], image_frame=self.value_or_link(pia_input, "batch_index"),
                                  values="")
                    folded = True
                if self.upstream(pia_input, "mult_multival") is not None:
                    self.report.add(pia_input, NOT_CARRIED, f"mult_multival (the preset times a value or mask): "
                                                            f"{NO_EQUIVALENT}")
            elif pia_input["type"] == "ADE_InputPIA_Multival":
                mv = self.upstream(pia_input, "multival")
                value, mask = self.multival(mv, pia_input, "multival") if mv is not None else (None, None)
                if isinstance(value, (int, float)) and mask is None:
                    values["values"] = str(float(value))
                    folded = True
                elif mask is not None:
                    self.report.add(pia_input, NOT_CARRIED, f"a mask as PIA strength: {NO_EQUIVALENT} (one value "
                                                            f"per frame)")
            if folded:
                self.replace(pia_input, None)
                self.report.add(pia_input, REMOVED, f"folded into the motion strength of #{node['id']}'s PIA image")
            else:
                self.report.add(pia_input, KEPT, f"PIA input not carried: set 'motion' / 'values' of Apply PIA "
                                                 f"Image by hand; kept")
        if values["image"] is None or values["vae"] is None:
            self.report.add(node, NOT_CARRIED, "image or vae not connected: connect them to Apply PIA Image")
        new = self.emit(PIA_APPLY, values, node, offset=(0, 200))
        self.replace(node, None)
        self.report.add(node, CONVERTED, f"the PIA image -> #{new['id']} {PIA_APPLY}")
        self.report.add(node, NOTE, "over more than one frame the animation differs from ADE's: for PIA, ADE pools "
                                    "every GroupNorm over the frames, where the original PIA (and MotionKit) pools "
                                    "only the resnet norms")
        return self.out(new)

    def apply_common(self, node: dict, cur: Src, mm: Src, schedule: str, reuse: bool = False,
                     extra_multivals: dict | None = None) -> Src:
        """Apply Motion Model from an ADE apply node or Gen1 loader: scale/effect multivals, LoRA, keyframes."""
        values = {"model": cur, "motion_model": mm, "noise_schedule": schedule,
                  "start_percent": self.value_or_link(node, "start_percent"),
                  "end_percent": self.value_or_link(node, "end_percent")}
        values = {k: v for k, v in values.items() if v is not None}
        lora = self.upstream(node, "motion_lora")
        if lora is not None:
            values["motion_lora"] = self.lora(lora)
        kf = self.upstream(node, "ad_keyframes")
        if kf is not None:
            values["motion_keyframes"] = self.keyframes(kf)
        if self.upstream(node, "per_block") is not None:
            self.no_equivalent(node, "per_block", "per_block (per-block scale/effect)")
            self.used.add(self.upstream(node, "per_block")["id"])
        multivals = dict(extra_multivals or {})
        for role, name in (("effect", "effect_multival"), ("scale", "scale_multival")):
            mv = self.upstream(node, name)
            if mv is not None:
                multivals[role] = self.multival(mv, node, name)
        region = {}
        effect = multivals.get("effect")
        if effect is not None and effect != (None, None):
            values["motion_scale"] = effect[0] if effect[0] is not None else 1.0
            if effect[1] is not None:
                region["motion_scale_mask"] = effect[1]
        scale = multivals.get("scale")
        if scale is not None and scale != (None, None):
            if scale[0] is not None and scale[0] != 1.0:
                region["attention_scale"] = scale[0]
            if scale[1] is not None:
                region["attention_scale_mask"] = scale[1]
        if region:
            reg = self.emit(REGION, region, node, offset=(-340, 120))
            values["regional_motion"] = self.out(reg)
            self.report.add(node, CONVERTED, f"masks / scale -> #{reg['id']} {REGION}")
        app = self.emit(APPLY, values, node, reuse=reuse, offset=(0, 0) if reuse else (0, 40))
        self.report.add(node, CONVERTED, f"-> #{app['id']} {APPLY}")
        cur = self.out(app)
        if node["type"] == "ADE_ApplyAnimateLCMI2VModel":
            cur = self.i2v(node, cur)
        if node["type"] in APPLIES:
            self.replace(node, None)
        return cur

    def i2v(self, node: dict, cur: Src) -> Src:
        """AnimateLCM-I2V: MotionKit takes the image and VAE (it encodes them itself), ADE a ref_latent."""
        enc = self.upstream(node, "ref_latent")
        image = vae = None
        if enc is not None and enc["type"] in ("ADE_UpscaleAndVAEEncode", "VAEEncode"):
            image = self.src(enc, "image" if enc["type"] == "ADE_UpscaleAndVAEEncode" else "pixels")
            vae = self.src(enc, "vae")
        if enc is not None and enc["type"] == "ADE_UpscaleAndVAEEncode" and image is not None and vae is not None \
                and all(l[3] == node["id"] for l in self.g.out_links(enc["id"])):
            self.replace(enc, None)
            self.used.add(enc["id"])
            self.report.add(enc, REMOVED, f"MotionKit's {I2V} resizes and encodes the image itself")
        if image is None or vae is None:
            self.report.add(node, NOT_CARRIED, "ref_latent does not come from a VAE Encode of an image: connect "
                                               f"the image and VAE to {I2V} by hand")
        if self.val(node, "ref_drift") not in (0, 0.0, None):
            self.report.add(node, NOT_CARRIED, f"ref_drift {self.val(node, 'ref_drift')}: {NO_EQUIVALENT}")
        if self.val(node, "apply_ref_when_disabled"):
            self.report.add(node, NOT_CARRIED, f"apply_ref_when_disabled: {NO_EQUIVALENT}")
        img = self.emit(I2V, {"model": cur, "image": image, "vae": vae}, node, offset=(0, 200))
        self.report.add(node, CONVERTED, f"the reference image -> #{img['id']} {I2V} (motion_scale 0.8, the "
                                         f"original's; ADE has no such setting)")
        return self.out(img)

    def lora(self, node: dict) -> Src | None:
        key = ("lora", node["id"])
        if key not in self.done:
            self.used.add(node["id"])
            if node["type"] != "ADE_AnimateDiffLoRALoader" or node["id"] not in self.values:
                self.report.add(node, KEPT, "not a motion LoRA loader MotionKit knows: kept")
                self.done[key] = None
                return None
            prev = self.upstream(node, "prev_motion_lora")
            values = {"lora_name": self.value_or_link(node, "name"), "strength": self.value_or_link(node, "strength"),
                      "prev_motion_lora": self.lora(prev) if prev is not None else None}
            new = self.emit(LORA, values, node, reuse=True)
            self.replace(node, self.out(new))
            self.report.add(node, CONVERTED, f"-> #{new['id']} {LORA}")
            self.done[key] = self.out(new)
        return self.done[key]

    def multival(self, node: dict, at: dict, name: str) -> tuple:
        """(value or Src, mask Src or None) of a multival; (None, None) when MotionKit cannot express it."""
        self.used.add(node["id"])
        kind = node["type"]
        found = None
        if node["id"] in self.values:
            if kind == "ADE_MultivalDynamic":
                found = self.value_or_link(node, "float_val"), self.src(node, "mask_optional")
            if kind == "ADE_MultivalDynamicFloatInput":
                link = self.g.input_link(node, "float_val")
                if link is not None and link[5] == "FLOAT":
                    found = Src(link[1], link[2], "FLOAT"), self.src(node, "mask_optional")
            if kind == "ADE_MultivalScaledMask":
                lo, hi = self.val(node, "min_float_val"), self.val(node, "max_float_val")
                if lo == 0 and self.val(node, "scaling") == "absolute" and not isinstance(hi, Linked):
                    found = hi, self.src(node, "mask")
        if found is not None:
            self.replace(node, None)
            self.report.add(node, REMOVED, f"folded into #{at['id']}'s {name} (value times mask)")
            return found
        self.report.add(at, NOT_CARRIED, f"{name} from #{node['id']} {kind}: MotionKit takes one value times a "
                                         f"mask (0..1): a list of floats per frame, min_float_val other than 0 and "
                                         f"relative scaling: {NO_EQUIVALENT}")
        self.report.add(node, KEPT, f"not folded into #{at['id']}: kept")
        return None, None

    def keyframes(self, node: dict) -> Src | None:
        key = ("kf", node["id"])
        if key not in self.done:
            self.used.add(node["id"])
            if node["type"] != "ADE_AnimateDiffKeyframe" or node["id"] not in self.values:
                feature = UNSUPPORTED.get(node["type"])
                if feature:
                    self.no_equivalent(node, feature, "this keyframe", status=KEPT)
                else:
                    self.report.add(node, KEPT, "not a keyframe MotionKit knows: kept")
                self.done[key] = None
                return None
            prev = self.upstream(node, "prev_ad_keyframes")
            values = {"start_percent": self.value_or_link(node, "start_percent"),
                      "inherit_missing": self.value_or_link(node, "inherit_missing"),
                      "guarantee_steps": self.value_or_link(node, "guarantee_steps"),
                      "prev_keyframes": self.keyframes(prev) if prev is not None else None}
            for role, mk_value, mk_mask in (("effect_multival", "motion_scale", "motion_scale_mask"),
                                            ("scale_multival", "attention_scale", "attention_scale_mask")):
                mv = self.upstream(node, role)
                if mv is not None:
                    v, mask = self.multival(mv, node, role)
                    if v is not None:
                        values[mk_value] = v
                        values[mk_mask] = mask
            if self.upstream(node, "per_block_replace") is not None:
                self.no_equivalent(node, "per_block", "per_block_replace")
            new = self.emit(KEYFRAME, values, node, reuse=True)
            self.replace(node, self.out(new))
            self.report.add(node, CONVERTED, f"-> #{new['id']} {KEYFRAME}")
            self.done[key] = self.out(new)
        return self.done[key]

    # ----------------------------------------------------------------------------------------- context
    def context(self, node: dict, cur: Src, sink: dict) -> Src:
        self.used.add(node["id"])
        if node["id"] not in self.values:
            self.report.add(sink, NOTE, f"context options #{node['id']} kept (see above): not applied")
            return cur
        if node["type"] == "ADE_ContextExtras_Set":
            self.replace(node, None)
            self.report.add(node, REMOVED, "its context options and extras are converted (see their lines)")
            inner = self.upstream(node, "context_opts")
            cur = self.context(inner, cur, sink) if inner is not None else cur
            extras = list(self.extras_chain(self.upstream(node, "context_extras")))
            for e in reversed(extras):  # ADE's chain: prev_extras first
                cur = self.context_extra(e, cur)
            return cur
        if node["type"] == "ADE_ViewsOnlyContextOptions":
            view = self.upstream(node, "view_opts_req")
            if view is None:
                return cur
            out = self.views(view, cur, node, reuse=True)
            if out is not cur:
                self.replace(node, None)
                self.report.add(node, CONVERTED, f"Views Only: motion-only windows -> #{out.node} {MOTION_WINDOWS}")
            else:
                self.report.add(node, KEPT, "Views Only context options: not converted (see its view options)")
            return out
        if node["type"] not in CONTEXT_SCHEDULES:
            self.report.add(node, KEPT, f"context options of this kind: {NO_EQUIVALENT}; kept")
            return cur
        v = lambda n: self.value_or_link(node, n)  # noqa: E731
        fuse = v("fuse_method")
        if isinstance(fuse, str) and fuse not in FUSE_METHODS:
            self.report.add(node, NOT_CARRIED, f"fuse_method '{fuse}': {NO_EQUIVALENT} (pyramid used)")
            fuse = "pyramid"
        schedule = CONTEXT_SCHEDULES[node["type"]]
        values = {"model": cur, "context_length": v("context_length"), "schedule": schedule,
                  "context_overlap": 0 if schedule == "batched" else v("context_overlap"),
                  "context_stride": v("context_stride") if schedule in ("uniform", "uniform looped") else 1,
                  "fuse_method": fuse if fuse is not None else "pyramid", "closed_loop": bool(v("closed_loop"))}
        if self.val(node, "context_schedule") not in (None, "uniform"):
            self.report.add(node, NOT_CARRIED, f"context_schedule '{self.val(node, 'context_schedule')}': uniform "
                                               f"looped used")
        start, steps = v("start_percent"), v("guarantee_steps")
        if start not in (None, 0, 0.0) or steps not in (None, 1):
            if self.has("scheduled_context"):
                values.update(start_percent=start, guarantee_steps=steps)
            else:
                self.no_equivalent(node, "scheduled_context", f"start_percent {start} / guarantee_steps {steps}")
        prev = self.upstream(node, "prev_context")
        if prev is not None and self.has("context_chain"):
            cur = self.context(prev, cur, sink)  # the earlier ones first: Context Windows chain in start order
            values["model"] = cur
        elif prev is not None:
            self.no_equivalent(node, "context_chain", "prev_context (several context options over sampling: only "
                                                      "this one is converted)")
        win = self.emit(CONTEXT, values, node, reuse=node["id"] not in self.claimed)
        self.replace(node, None)
        self.report.add(node, CONVERTED, f"-> #{win['id']} {CONTEXT} (schedule {schedule})")
        cur = self.out(win)
        view = self.upstream(node, "view_opts")
        if view is not None:
            cur = self.views(view, cur, node)
        return cur

    def context_extra(self, node: dict, cur: Src) -> Src:
        """ADE's ContextRef / NaiveReuse context extras -> Context Reference / Context Naive Reuse on the MODEL."""
        kind = node["type"]
        feature = "naive_reuse" if kind == "ADE_ContextExtras_NaiveReuse" else "context_ref"
        if node["id"] not in self.values or kind not in ("ADE_ContextExtras_ContextRef",
                                                         "ADE_ContextExtras_NaiveReuse") or not self.has(feature):
            self.no_equivalent(node, UNSUPPORTED.get(kind, feature), "context extras", status=KEPT)
            return cur
        v = lambda n: self.value_or_link(node, n)  # noqa: E731
        values = {"model": cur, "start_percent": v("start_percent"), "end_percent": v("end_percent")}
        strength = 1.0
        mv = self.upstream(node, "strength_multival")
        if mv is not None:
            strength, mask = self.multival(mv, node, "strength_multival")
            if mask is not None:
                self.report.add(node, NOT_CARRIED, f"strength_multival's mask: {NO_EQUIVALENT} (one strength for "
                                                   f"the whole frame)")
            if strength is None:
                strength = 1.0
        for name in ("naivereuse_kf", "contextref_kf"):
            kf = self.upstream(node, name)
            if kf is not None:
                self.used.add(kf["id"])
                self.report.add(node, NOT_CARRIED, f"{name} (strength keyframes over sampling): {NO_EQUIVALENT}; "
                                                   f"start/end_percent and one strength are carried")
                self.report.add(kf, KEPT, f"feeds #{node['id']}'s {name}: {NO_EQUIVALENT}; kept")
        if kind == "ADE_ContextExtras_NaiveReuse":
            if strength not in (1, 1.0):
                self.report.add(node, NOT_CARRIED, f"strength {strength}: {NO_EQUIVALENT} (Context Naive Reuse "
                                                   f"has weighted_mean only)")
            values["weighted_mean"] = v("weighted_mean")
            target = "MotionKitContextNaiveReuse"
        else:
            target = "MotionKitContextRef"
            attn = 1.0
            tune = self.upstream(node, "contextref_tune")
            if tune is not None and tune["id"] in self.values:
                self.used.add(tune["id"])
                t = lambda n: self.val(tune, n)  # noqa: E731
                values.update(style_fidelity=t("attn_style_fidelity"), ref_weight=t("attn_ref_weight"))
                attn = t("attn_strength")
                if tune["type"] == "ADE_ContextExtras_ContextRef_TuneAttnAdain":
                    self.report.add(tune, NOT_CARRIED, f"the AdaIN part (adain_*): {NO_EQUIVALENT} (attention "
                                                       f"only)")
                self.replace(tune, None)
                self.report.add(tune, REMOVED, f"folded into #{node['id']}'s style_fidelity / ref_weight / strength")
            if isinstance(strength, (int, float)) and isinstance(attn, (int, float)):
                values["strength"] = strength * attn  # MotionKit's strength is ADE's strength times attn_strength
            else:
                values["strength"] = strength
            mode = self.upstream(node, "contextref_mode")
            if mode is not None and mode["id"] in self.values:
                self.used.add(mode["id"])
                m = mode["type"]
                if m.endswith("ModeSliding"):
                    values.update(mode="sliding", sliding_width=self.value_or_link(mode, "sliding_width"))
                elif m.endswith("ModeIndexes"):
                    values.update(mode="indexes", reference_frames=self.value_or_link(mode, "switch_on_idxs") or "0")
                    if self.val(mode, "always_include_0") is False:
                        self.report.add(mode, NOT_CARRIED, f"always_include_0 off: {NO_EQUIVALENT} (frame 0 is "
                                                           f"always a reference in MotionKit)")
                self.replace(mode, None)
                self.report.add(mode, REMOVED, f"folded into #{node['id']}'s mode")
        new = self.emit(target, values, node, reuse=True)
        self.replace(node, None)
        self.report.add(node, CONVERTED, f"-> #{new['id']} {target}")
        return self.out(new)

    def extras_chain(self, node):
        while node is not None:
            self.used.add(node["id"])
            yield node
            node = self.upstream(node, "prev_extras")

    def views(self, node: dict, cur: Src, at: dict, reuse: bool = False) -> Src:
        """View options (motion-only windows inside each context window) -> Motion Windows, once it exists."""
        self.used.add(node["id"])
        if node["id"] not in self.values or node["type"] not in VIEW_SCHEDULES:
            return cur
        if not self.has("view_options"):
            self.no_equivalent(node, "view_options", "view options (motion-only windows)", status=KEPT)
            return cur
        v = lambda n: self.value_or_link(node, n)  # noqa: E731
        fuse = v("fuse_method")
        values = {"model": cur, "context_length": v("view_length"), "context_overlap": v("view_overlap"),
                  "schedule": VIEW_SCHEDULES[node["type"]], "fuse_method": fuse if fuse in FUSE_METHODS else "pyramid",
                  "context_stride": v("view_stride") or 1, "closed_loop": bool(v("closed_loop"))}
        win = self.emit(MOTION_WINDOWS, values, at if reuse else node, reuse=True, offset=(0, 0))
        self.replace(node, None)
        self.report.add(node, CONVERTED, f"-> #{win['id']} {MOTION_WINDOWS}")
        return self.out(win)

    # ----------------------------------------------------------------------------------------- sample settings
    def sample_settings(self, node: dict, cur: Src, sink: dict) -> Src:
        """ADE's Sample Settings: noise options and noise layers -> Sample Settings (Noise) on the MODEL chain (its
        MODEL output takes the KSampler's seed), FreeNoise for SamplerCustomAdvanced, iteration options -> FreeInit."""
        self.used.add(node["id"])
        if node["id"] not in self.values:
            return cur
        v = lambda n: self.val(node, n)  # noqa: E731
        has = self.has("seed_options")
        carry = {}  # Sample Settings (Noise) values that differ from the defaults
        noise = v("noise_type")
        if noise in ("FreeNoise", "repeated_context"):
            if not self.free_noise(node, sink, "shuffle_context" if noise == "FreeNoise" else "repeat_context",
                                   quiet=has):
                carry["noise_type"] = noise
        elif noise not in (None, "default"):
            if has:
                carry["noise_type"] = noise
            else:
                self.report.add(node, NOT_CARRIED, f"noise_type {noise}: {NO_EQUIVALENT}")
        for name, default in (("seed_gen", "comfy"), ("batch_offset", 0), ("seed_offset", 0)):
            if v(name) not in (None, default):
                if has:
                    carry[name] = self.value_or_link(node, name)
                else:
                    self.no_equivalent(node, "seed_options", f"{name} {v(name)}")
        override = isinstance(v("seed_override"), Linked) or self.g.input_link(node, "seed_override")
        if override and not has:
            self.no_equivalent(node, "seed_options", "seed_override")
        if v("adapt_denoise_steps"):
            self.report.add(node, NOT_CARRIED, f"adapt_denoise_steps: {NO_EQUIVALENT}")
        for name in ("noise_layers", "custom_cfg", "sigma_schedule", "image_inject", "ancestral_opts"):
            up = self.upstream(node, name)
            if up is None:
                continue
            if name == "noise_layers" and has and self.has("noise_layers"):
                carry["noise_layers"] = self.noise_layer(up, node)
                continue
            self.no_equivalent(node, name, name)
            self.report.add(up, KEPT, f"feeds #{node['id']}'s {name}: {NO_EQUIVALENT}; kept")
            self.used.add(up["id"])
        if carry or override:
            samplers = [x for guider in self.consumers(sink["id"]) if guider["type"] in GUIDERS
                        for x in self.consumers(guider["id"]) if x["type"] == "SamplerCustomAdvanced"]
            noisy = {d for d, name, _ in self.moves if name == "noise"}  # FreeNoise put in already
            sources = [(x, self.upstream(x, "noise")) for x in samplers if x["id"] not in noisy]
            seeds = [self.random_noise_seed(src) for _, src in sources]
            ss = self.emit(SAMPLE_SETTINGS, {"model": cur, **carry, "noise_seed": seeds[0] if seeds else None}, node,
                           reuse=True)
            cur = self.out(ss)
            self.report.add(node, CONVERTED, f"-> #{ss['id']} {SAMPLE_SETTINGS} on the MODEL chain (its MODEL output "
                                             f"uses the KSampler's seed)")
            for x in samplers:
                if x["id"] in noisy:
                    self.report.add(node, NOT_CARRIED, f"#{x['id']} SamplerCustomAdvanced takes its noise from the "
                                                       f"FreeNoise node, which has no seed options: for both, set "
                                                       f"#{ss['id']}'s noise_type to FreeNoise and connect its noise "
                                                       f"output instead")
            for (sampler, src), seed in zip(sources, seeds):
                if seed != seeds[0]:
                    self.report.add(sampler, NOTE, f"its noise seed differs from the first SamplerCustomAdvanced's: "
                                                   f"#{ss['id']}'s noise (noise_seed {seeds[0]}) is used; add "
                                                   f"another {SAMPLE_SETTINGS} for this one")
                self.moves.append((sampler["id"], "noise", self.out(ss, 1)))
                self.report.add(sampler, NOTE, f"its noise now comes from #{ss['id']} {SAMPLE_SETTINGS} (noise_seed "
                                               f"taken from its RandomNoise)" if src is not None and
                                src["type"] == "RandomNoise" else f"its noise now comes from #{ss['id']} "
                                                                  f"{SAMPLE_SETTINGS}: set its noise_seed")
            if override:
                self.report.add(node, NOT_CARRIED, f"seed_override from a link (an INT): MotionKit's seed_override "
                                                   f"is text on #{ss['id']}: type the seed (or one per frame) there")
        it = self.upstream(node, "iteration_opts")
        if it is not None:
            cur = self.iterations(it, cur, node)
        self.replace(node, None)
        if not (carry or override):
            self.report.add(node, REMOVED, "sample settings: folded into the chain (see the lines above for any "
                                           "setting not carried over)")
        return cur

    def random_noise_seed(self, source: dict | None):
        """RandomNoise's noise_seed (a value, or the Src linked to it); None for another noise source."""
        if source is None or source["type"] != "RandomNoise":
            return None
        linked = self.g.input_link(source, "noise_seed")
        values = source.get("widgets_values") or [0]
        return Src(linked[1], linked[2], linked[5]) if linked else values[0] if isinstance(values, list) \
            else values.get("noise_seed", 0)

    def noise_layer(self, node: dict, at: dict) -> Src | None:
        """ADE's Noise Layer [Add/Add Weighted/Normalized Sum/Replace] chain -> MotionKit's Noise Layer chain (the
        same order: each node puts its layer first, as ADE's)."""
        self.used.add(node["id"])
        if ("layer", node["id"]) in self.done:
            return self.done[("layer", node["id"])]
        if node["id"] not in self.values or node["type"] not in NOISE_LAYERS:
            self.report.add(at, NOT_CARRIED, f"noise layers from #{node['id']} {node['type']}: not converted")
            if node["id"] in self.values:
                self.report.add(node, KEPT, f"feeds #{at['id']}'s noise layers: not converted; kept")
            return None
        v = lambda n: self.value_or_link(node, n)  # noqa: E731
        values = {n: v(n) for n in ("batch_offset", "noise_type", "seed_gen_override", "seed_offset", "noise_weight",
                                    "balance_multiplier")}
        values.update(application=NOISE_LAYERS[node["type"]], mask=self.src(node, "mask_optional"))
        if node["type"] == "ADE_NoiseLayerReplace":
            values["noise_weight"] = 1.0  # ADE's replace has no weight (MotionKit's ignores it): the neutral value
        prev = self.upstream(node, "prev_noise_layers")
        if prev is not None:
            values["prev_noise_layers"] = self.noise_layer(prev, node)
        new = self.emit(NOISE_LAYER, values, node, reuse=True)
        self.replace(node, self.out(new))
        self.done[("layer", node["id"])] = self.out(new)
        self.report.add(node, CONVERTED, f"-> #{new['id']} {NOISE_LAYER} ({values['application']})")
        if isinstance(self.val(node, "seed_override"), Linked) or self.g.input_link(node, "seed_override"):
            self.report.add(node, NOT_CARRIED, f"seed_override from a link (an INT): MotionKit's seed_override is "
                                               f"text on #{new['id']}: type the seed there")
        return self.out(new)

    def consumers(self, nid: int, slot: int = 0, depth: int = 0) -> list[dict]:
        """The nodes taking output `slot` of node `nid`, through reroutes."""
        found = []
        for link in self.g.out_links(nid, slot):
            dst = self.g.nodes.get(link[3])
            if dst is not None and dst["type"] == REROUTE and depth < 50:
                found += self.consumers(dst["id"], 0, depth + 1)
            elif dst is not None:
                found.append(dst)
        return found

    def free_noise(self, settings: dict, sink: dict, mode: str, quiet: bool = False) -> bool:
        """ADE's FreeNoise / repeated_context noise is MotionKit's FreeNoise node, a NOISE for
        SamplerCustomAdvanced: put in where the sink's MODEL reaches one through a guider. Else False (reported
        unless `quiet`: then Sample Settings (Noise) carries it, for KSampler)."""
        noise_type = self.val(settings, "noise_type")
        ctx = self.upstream(sink, "context_options")
        if ctx is not None and ctx["type"] == "ADE_ContextExtras_Set":
            ctx = self.upstream(ctx, "context_opts")
        if ctx is None:
            self.report.add(settings, NOTE, f"noise_type {noise_type} without context options: it changed nothing "
                                            f"in ADE either (not converted)")
            return True
        length, overlap = self.val(ctx, "context_length"), self.val(ctx, "context_overlap")
        if ctx["type"] == "ADE_BatchedContextOptions":
            overlap = 0
        samplers = [s for guider in self.consumers(sink["id"]) if guider["type"] in GUIDERS
                    for s in self.consumers(guider["id"]) if s["type"] == "SamplerCustomAdvanced"]
        if not samplers or not isinstance(length, int) or not isinstance(overlap, int):
            if quiet:
                return False
            self.report.add(settings, NOT_CARRIED, f"noise_type {noise_type}: in MotionKit it is the noise node "
                                                   f"'FreeNoise 🎞️' (mode {mode}) for SamplerCustomAdvanced's "
                                                   f"noise input (KSampler makes its own noise): switch the sampler "
                                                   f"and add it, context_length as your Context Windows'")
            return True
        for sampler in samplers:
            source = self.upstream(sampler, "noise")
            seed = None
            if source is not None and source["type"] == "RandomNoise":
                linked = self.g.input_link(source, "noise_seed")
                values = source.get("widgets_values") or [0]
                seed = Src(linked[1], linked[2], linked[5]) if linked else values[0] if isinstance(values, list) \
                    else values.get("noise_seed", 0)
            else:
                self.report.add(sampler, NOTE, "its noise does not come from RandomNoise: FreeNoise's seed is 0, "
                                               "set it")
            values = {"noise_seed": seed, "context_length": length, "mode": mode,
                      "context_stride": max(1, min(length, length - overlap))}  # ADE's step: length - overlap
            new = self.emit(FREENOISE, values, source or sampler, offset=(0, 140))
            self.moves.append((sampler["id"], "noise", self.out(new)))
            self.report.add(settings, CONVERTED, f"noise_type {noise_type} -> #{new['id']} {FREENOISE} as "
                                                 f"#{sampler['id']} SamplerCustomAdvanced's noise (context_stride "
                                                 f"{values['context_stride']} = context_length - overlap, as ADE)")
            if source is not None:
                self.report.add(source, NOTE, f"no longer feeds #{sampler['id']}'s noise (FreeNoise #{new['id']} "
                                              f"does)")
        return True

    def iterations(self, node: dict, cur: Src, at: dict) -> Src:
        self.used.add(node["id"])
        if node["id"] not in self.values:
            return cur
        v = lambda n: self.value_or_link(node, n)  # noqa: E731
        if node["type"] == "ADE_IterationOptsDefault":
            if v("iterations") not in (1, None):
                self.report.add(node, KEPT, f"plain repeated iterations ({v('iterations')}): {NO_EQUIVALENT}; kept")
            else:
                self.replace(node, None)
                self.report.add(node, REMOVED, "one iteration: nothing to do")
            return cur
        if node["type"] != "ADE_IterationOptsFreeInit":
            return cur
        defaults = {"sigma_step": 999, "apply_to_1st_iter": False, "init_type": "FreeInit [sampler sigma]",
                    "iter_batch_offset": 0, "iter_seed_offset": 1}
        for name, default in defaults.items():
            if v(name) not in (default, None):
                self.report.add(node, NOT_CARRIED, f"{name} {v(name)}: {NO_EQUIVALENT} (MotionKit's FreeInit is "
                                                   f"{name} {default})")
        values = {"model": cur, "iterations": v("iterations"), "filter": v("filter"), "d_s": v("d_s"),
                  "d_t": v("d_t"), "order": v("n_butterworth")}
        new = self.emit(FREEINIT, values, node, reuse=True)
        self.replace(node, None)
        self.report.add(node, CONVERTED, f"-> #{new['id']} {FREEINIT}")
        return self.out(new)

    # ----------------------------------------------------------------------------------------- stand-alone nodes
    def standalone(self, node: dict) -> None:
        kind = node["type"]
        if kind == "ADE_AnimateDiffLoRALoader":
            self.lora(node)
        elif kind == "ADE_AnimateDiffKeyframe":
            self.keyframes(node)
        elif kind in LOADERS:
            self.loader(node, node)
        elif kind == "ACN_SparseCtrlLoaderAdvanced":
            self.sparsectrl(node)
        elif kind in ("ACN_SparseCtrlRGBPreprocessor",):
            self.rgb_preprocessor(node)
        elif kind in ("ACN_SparseCtrlIndexMethodNode", "ACN_SparseCtrlSpreadMethodNode") and \
                not self.g.out_links(node["id"]):
            self.report.add(node, KEPT, "not connected to a SparseCtrl loader: kept")
        elif kind == "CheckpointLoaderSimpleWithNoiseSelect":
            new = self.emit("CheckpointLoaderSimple", {"ckpt_name": self.value_or_link(node, "ckpt_name")}, node,
                            reuse=True)
            for slot in range(3):
                self.replace(node, self.out(new, slot), slot)
            self.report.add(node, CONVERTED, f"-> #{new['id']} CheckpointLoaderSimple (core); its beta_schedule "
                                             f"'{self.val(node, 'beta_schedule')}' is Apply Motion Model's "
                                             f"noise_schedule in MotionKit")
            if self.val(node, "use_custom_scale_factor"):
                self.report.add(node, NOT_CARRIED, f"custom scale_factor: {NO_EQUIVALENT}")
        elif kind == "ADE_EmptyLatentImageLarge":
            new = self.emit("EmptyLatentImage", {n: self.value_or_link(node, n) for n in ("width", "height",
                                                                                       "batch_size")}, node, reuse=True)
            self.replace(node, self.out(new))
            self.report.add(node, CONVERTED, f"-> #{new['id']} EmptyLatentImage (core)")
        elif kind == "ADE_AnimateDiffUnload":
            self.replace(node, self.src(node, "model"))
            self.report.add(node, REMOVED, "MotionKit leaves the input MODEL unchanged: nothing to unload; links "
                                           "re-wired to its input")
        elif kind == "ADE_AnimateDiffCombine":
            fmt = self.val(node, "format")
            values = {"images": self.src(node, "images"), "fps": self.value_or_link(node, "frame_rate"),
                      "loop_count": self.value_or_link(node, "loop_count"),
                      "filename_prefix": self.value_or_link(node, "filename_prefix"),
                      "pingpong": self.value_or_link(node, "pingpong"), "format": SAVE_FORMATS.get(fmt, "gif")}
            if fmt not in SAVE_FORMATS:
                self.report.add(node, NOT_CARRIED, f"format '{fmt}': gif used")
            if self.val(node, "save_image") is False:
                self.report.add(node, NOT_CARRIED, "save_image off: MotionKit's Save Animation always saves")
            new = self.emit("MotionKitSaveAnimation", values, node, reuse=True)
            self.replace(node, None)
            self.report.add(node, CONVERTED, f"-> #{new['id']} MotionKitSaveAnimation")
        elif kind in UNSUPPORTED:
            self.no_equivalent(node, UNSUPPORTED[kind], "this node", status=KEPT)
        elif any(kind.startswith(p) for p, _ in KEPT_BY_PREFIX):
            why = next(w for p, w in KEPT_BY_PREFIX if kind.startswith(p))
            if why in FEATURES:
                self.no_equivalent(node, why, "this node", status=KEPT)
            else:
                self.report.add(node, KEPT, why)
        elif not kind.startswith("ACN_SparseCtrl") or kind == "ACN_SparseCtrlMergedLoaderAdvanced":
            self.report.add(node, KEPT, f"{NO_EQUIVALENT} (or not used by a converted sampler): kept as it is")

    def sparsectrl(self, node: dict) -> None:
        """ACN's SparseCtrl loader -> Load SparseCtrl + SparseCtrl Keyframes (placement from its sparse_method)."""
        v = lambda n: self.value_or_link(node, n)  # noqa: E731
        load = self.emit(SPARSE_LOAD, {"sparsectrl_name": v("sparsectrl_name")}, node, offset=(0, -140))
        values = {"control_net": self.out(load), "placement": "uniform", "hint_multiplier": v("sparse_hint_mult"),
                  "nonhint_multiplier": v("sparse_nonhint_mult"),
                  "motion_strength": v("motion_strength") if v("use_motion") is not False else 0.0,
                  "window_without_hint": CONTEXT_AWARE.get(v("context_aware"), "nearest hint")}
        method = self.upstream(node, "sparse_method")
        if method is not None and method["id"] in self.values:
            self.used.add(method["id"])
            if method["type"] == "ACN_SparseCtrlIndexMethodNode":
                values.update(placement="indices", indices=self.value_or_link(method, "indexes"))
            else:
                values["placement"] = SPREADS.get(self.val(method, "spread"), "uniform")
            self.replace(method, None)
            self.report.add(method, REMOVED, f"-> placement of #{node['id']}")
        for name, default in (("motion_scale", 1.0), ("sparse_mask_mult", 1.0)):
            if v(name) not in (default, None):
                self.report.add(node, NOT_CARRIED, f"{name} {v(name)}: {NO_EQUIVALENT}")
        if self.g.input_link(node, "tk_optional") is not None:
            self.report.add(node, NOT_CARRIED, f"tk_optional (timestep keyframes): {NO_EQUIVALENT} on the loader; "
                                               f"use the apply node's start/end_percent")
        keys = self.emit(SPARSE_KEYS, values, node, reuse=True)
        self.replace(node, self.out(keys))
        self.report.add(node, CONVERTED, f"-> #{load['id']} {SPARSE_LOAD} + #{keys['id']} {SPARSE_KEYS}")
        for link in self.g.out_links(node["id"]):
            dst = self.g.nodes.get(link[3])
            if dst is not None and dst["type"].startswith("ACN_"):
                self.report.add(dst, NOTE, "Advanced-ControlNet's apply node with MotionKit's SparseCtrl: MotionKit "
                                           "documents core's Apply ControlNet (Advanced) for it; switch if it fails")

    def rgb_preprocessor(self, node: dict) -> None:
        """ACN's RGB SparseCtrl preprocessor: MotionKit encodes RGB keyframes itself with the VAE given to Apply
        ControlNet, so the images go straight through and the VAE moves to the apply node."""
        image, vae = self.src(node, "image"), self.src(node, "vae")
        self.replace(node, image)
        moved = False
        for link in self.g.out_links(node["id"]):
            dst = self.g.nodes.get(link[3])
            for name in ("vae", "vae_optional"):
                if dst is not None and vae is not None and self.g.input_index(dst, name) is not None \
                        and self.g.input_link(dst, name) is None:
                    self.vae_moves.append((dst["id"], name, vae))
                    moved = True
        self.report.add(node, REMOVED, "RGB preprocessing: the images go straight to the apply node"
                        + (" and the VAE to its vae input" if moved else "; connect the VAE to Apply ControlNet's "
                                                                          "vae input (RGB needs it)"))

    # ----------------------------------------------------------------------------------------- phase 2
    def resolve(self, s: Src | None) -> Src | None:
        seen = 0
        while s is not None and not s.new and s.node in self.delete:
            s = self.replaced.get((s.node, s.slot))
            seen += 1
            if seen > 1000:
                return None
        return s

    def apply(self) -> None:
        g = self.g
        # a Reroute left carrying only a removed ADE output goes with it
        changed = True
        while changed:
            changed = False
            for node in list(g.nodes.values()):
                if node["type"] == REROUTE and node["id"] not in self.delete:
                    link = g.input_link(node, node["inputs"][0]["name"]) if node.get("inputs") else None
                    if link and link[1] in self.delete and self.resolve(Src(link[1], link[2], link[5])) is None:
                        self.delete.add(node["id"])
                        self.report.add(node, REMOVED, "carried an ADE output that is gone")
                        changed = True
        outgoing = [l[:] for l in g.links.values() if l[1] in self.delete and l[3] not in self.delete]
        for nid in self.delete:
            g.remove_node(nid)
        for nid, node in self.new_nodes.items():
            g.add_node(node)
        for nid, index, s in self.pending:
            s = self.resolve(s)
            if s is not None and (s.node in g.nodes):
                g.add_link(s.node, s.slot, nid, index, s.kind)
        for lid, src, slot, dst, dst_slot, kind in outgoing:
            target = self.resolve(Src(src, slot, kind))
            if dst not in g.nodes:
                continue
            if target is None or target.node not in g.nodes:
                self.report.add(g.nodes[dst], NOT_CARRIED, f"input {g.nodes[dst]['inputs'][dst_slot]['name']} lost "
                                                           f"its link from a removed ADE node ({kind})")
                continue
            g.add_link(target.node, target.slot, dst, dst_slot, target.kind)
        for dst, name, src in self.moves:
            s = self.resolve(src)
            index = g.input_index(g.nodes[dst], name) if dst in g.nodes else None
            if index is not None and s is not None and s.node in g.nodes:
                old = g.nodes[dst]["inputs"][index].get("link")
                if old is not None:
                    g.remove_link(old)
                g.add_link(s.node, s.slot, dst, index, s.kind)
        for dst, name, vae in self.vae_moves:
            s = self.resolve(vae)
            if dst in g.nodes and s is not None and s.node in g.nodes:
                g.add_link(s.node, s.slot, dst, g.input_index(g.nodes[dst], name), s.kind)
        for node in g.nodes.values():
            if node["id"] in self.values and node["id"] not in self.delete and \
                    not any(l.node == node["id"] and l.status == KEPT for l in self.report.lines):
                self.report.add(node, KEPT, "not used by any converted node: kept as it is")


def convert_workflow(workflow: dict, targets: dict | None = None) -> tuple[dict, Report]:
    """(the MotionKit workflow, the report). `targets`: MotionKit node specs (default: motionkit_nodes.json)."""
    return Converter(workflow, targets).run()
