"""Build UI-format workflows with ADE's nodes as the ComfyUI frontend saves them, from ADE's input specs
(ade_import/ade_nodes.json, ADE 90fb133): widgets_values in INPUT_TYPES order with control_after_generate after
seed INTs, socket inputs listed with their links. Other nodes (core, VideoHelperSuite) are given their sockets."""
from __future__ import annotations

import json
from pathlib import Path

SPECS = json.loads((Path(__file__).resolve().parent.parent / "ade_import" / "ade_nodes.json").read_text())["nodes"]


def default(entry):
    if "default" in entry:
        return entry["default"]
    if entry["type"] == "COMBO":
        return entry["options"][0] if entry.get("options") else "model.safetensors"
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[entry["type"]]


class UIGraph:
    def __init__(self):
        self.nodes, self.links = [], []
        self.by_id = {}

    def ade(self, kind: str, pos=None, **values) -> int:
        """An ADE node; `values` by input name (the rest at ADE's defaults)."""
        spec = SPECS[kind]
        unknown = set(values) - {e["name"] for e in spec["inputs"]}
        assert not unknown, f"{kind} has no inputs {unknown}"
        widgets = []
        for e in spec["inputs"]:
            if e["widget"]:
                widgets.append(values.get(e["name"], default(e)))
                if e.get("control_after_generate"):
                    widgets.append("randomize")
        inputs = [{"name": e["name"], "type": e["type"], "link": None} for e in spec["inputs"] if not e["widget"]
                  and not e.get("ui_widget")]
        outputs = [{"name": n, "type": t, "links": []} for t, n in zip(spec["outputs"], spec["output_names"])]
        return self.node(kind, inputs, outputs, widgets, pos)

    def node(self, kind, inputs, outputs, widgets=None, pos=None) -> int:
        nid = len(self.nodes) + 1
        if isinstance(inputs, dict):
            inputs = [{"name": n, "type": t, "link": None} for n, t in inputs.items()]
        if isinstance(outputs, (list, tuple)) and outputs and isinstance(outputs[0], str):
            outputs = [{"name": t, "type": t, "links": []} for t in outputs]
        node = {"id": nid, "type": kind, "pos": list(pos or [100 * nid, 50 * nid]), "size": [300, 120], "flags": {},
                "order": nid, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": kind},
                "widgets_values": widgets if isinstance(widgets, dict) else list(widgets or [])}
        self.nodes.append(node)
        self.by_id[nid] = node
        return nid

    def link(self, src: int, src_slot: int, dst: int, name: str, widget: bool = False) -> int:
        lid = len(self.links) + 1
        s, d = self.by_id[src], self.by_id[dst]
        kind = s["outputs"][src_slot]["type"]
        slot = next((i for i, inp in enumerate(d["inputs"]) if inp["name"] == name), None)
        if slot is None:  # a widget converted to a socket
            assert widget, f"{d['type']} has no socket {name}"
            d["inputs"].append({"name": name, "type": kind, "widget": {"name": name}, "link": None})
            slot = len(d["inputs"]) - 1
        d["inputs"][slot]["link"] = lid
        s["outputs"][src_slot]["links"].append(lid)
        self.links.append([lid, src, src_slot, dst, slot, kind])
        return lid

    def workflow(self) -> dict:
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def sd_base(g: UIGraph):
    """Checkpoint, prompts, empty latent, KSampler, decode, VHS Video Combine: (ckpt, ksampler) ids."""
    ckpt = g.node("CheckpointLoaderSimple", {}, ["MODEL", "CLIP", "VAE"], ["sd15.safetensors"], pos=[0, 0])
    pos_ = g.node("CLIPTextEncode", {"clip": "CLIP"}, ["CONDITIONING"], ["a cat"], pos=[400, 0])
    neg = g.node("CLIPTextEncode", {"clip": "CLIP"}, ["CONDITIONING"], ["bad"], pos=[400, 200])
    lat = g.node("EmptyLatentImage", {}, ["LATENT"], [512, 512, 32], pos=[400, 400])
    ks = g.node("KSampler", {"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING",
                             "latent_image": "LATENT"}, ["LATENT"], [1, "fixed", 20, 7.5, "euler", "normal", 1.0],
                pos=[900, 0])
    dec = g.node("VAEDecode", {"samples": "LATENT", "vae": "VAE"}, ["IMAGE"], pos=[1200, 0])
    vhs = g.node("VHS_VideoCombine", {"images": "IMAGE", "audio": "AUDIO", "meta_batch": "VHS_BatchManager",
                                      "vae": "VAE"}, ["VHS_FILENAMES"],
                 {"frame_rate": 8, "loop_count": 0, "filename_prefix": "AnimateDiff", "format": "video/h264-mp4",
                  "pingpong": False, "save_output": True}, pos=[1500, 0])
    g.link(ckpt, 1, pos_, "clip")
    g.link(ckpt, 1, neg, "clip")
    g.link(pos_, 0, ks, "positive")
    g.link(neg, 0, ks, "negative")
    g.link(lat, 0, ks, "latent_image")
    g.link(ks, 0, dec, "samples")
    g.link(ckpt, 2, dec, "vae")
    g.link(dec, 0, vhs, "images")
    return ckpt, ks
