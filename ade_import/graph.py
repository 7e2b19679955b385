"""Editing a UI-format workflow in place: nodes by id, links as [id, from, from_slot, to, to_slot, type]."""
from __future__ import annotations

import copy

REROUTE = "Reroute"


class Graph:
    def __init__(self, workflow: dict):
        self.wf = copy.deepcopy(workflow)
        links = self.wf.get("links") or []
        if links and isinstance(links[0], dict):  # schema 1 saves links as objects
            links = [[l["id"], l["origin_id"], l["origin_slot"], l["target_id"], l["target_slot"], l.get("type", "*")]
                     for l in links]
        self.links = {l[0]: list(l) for l in links}
        self.nodes = {n["id"]: n for n in self.wf["nodes"]}
        self.last_node_id = max([self.wf.get("last_node_id") or 0, *self.nodes], default=0)
        self.last_link_id = max([self.wf.get("last_link_id") or 0, *self.links], default=0)

    # ---- reading
    def input_index(self, node: dict, name: str) -> int | None:
        for i, inp in enumerate(node.get("inputs") or []):
            if inp.get("name") == name:
                return i
        return None

    def input_link(self, node: dict, name: str) -> list | None:
        i = self.input_index(node, name)
        link = None if i is None else node["inputs"][i].get("link")
        return self.links.get(link) if link is not None else None

    def source(self, node: dict, name: str) -> tuple[dict, int] | None:
        """The node and output slot feeding input `name`, through Reroute nodes."""
        link = self.input_link(node, name)
        seen = set()
        while link is not None:
            src = self.nodes.get(link[1])
            if src is None:
                return None
            if src["type"] != REROUTE or src["id"] in seen:
                return src, link[2]
            seen.add(src["id"])
            inputs = src.get("inputs") or []
            link = self.links.get(inputs[0].get("link")) if inputs and inputs[0].get("link") is not None else None
        return None

    def link_source(self, link_id: int) -> tuple[int, int, str] | None:
        link = self.links.get(link_id)
        return (link[1], link[2], link[5]) if link else None

    def out_links(self, node_id: int, slot: int | None = None) -> list[list]:
        return [l for l in self.links.values() if l[1] == node_id and (slot is None or l[2] == slot)]

    # ---- writing
    def new_id(self) -> int:
        self.last_node_id += 1
        return self.last_node_id

    def add_link(self, src: int, src_slot: int, dst: int, dst_slot: int, kind: str) -> int:
        self.last_link_id += 1
        lid = self.last_link_id
        self.links[lid] = [lid, src, src_slot, dst, dst_slot, kind]
        out = self.nodes[src].setdefault("outputs", [])
        while len(out) <= src_slot:
            out.append({"name": kind, "type": kind, "links": []})
        out[src_slot]["links"] = (out[src_slot].get("links") or []) + [lid]
        self.nodes[dst]["inputs"][dst_slot]["link"] = lid
        return lid

    def remove_link(self, lid: int) -> None:
        link = self.links.pop(lid, None)
        if link is None:
            return
        src, dst = self.nodes.get(link[1]), self.nodes.get(link[3])
        if src is not None:
            for out in src.get("outputs") or []:
                if lid in (out.get("links") or []):
                    out["links"] = [x for x in out["links"] if x != lid]
        if dst is not None:
            for inp in dst.get("inputs") or []:
                if inp.get("link") == lid:
                    inp["link"] = None

    def retarget_origin(self, lid: int, src: int, src_slot: int, kind: str) -> None:
        """Keep link `lid`'s target, make it come from (src, src_slot)."""
        link = self.links[lid]
        old = self.nodes.get(link[1])
        if old is not None:
            for out in old.get("outputs") or []:
                if lid in (out.get("links") or []):
                    out["links"] = [x for x in out["links"] if x != lid]
        link[1], link[2], link[5] = src, src_slot, kind
        out = self.nodes[src].setdefault("outputs", [])
        out[src_slot]["links"] = (out[src_slot].get("links") or []) + [lid]
        dst = self.nodes.get(link[3])
        if dst is not None and link[4] < len(dst.get("inputs") or []):
            dst["inputs"][link[4]]["type"] = kind

    def remove_node(self, node_id: int) -> None:
        for lid in [l[0] for l in self.links.values() if node_id in (l[1], l[3])]:
            self.remove_link(lid)
        self.nodes.pop(node_id, None)

    def add_node(self, node: dict) -> dict:
        self.nodes[node["id"]] = node
        return node

    def to_workflow(self) -> dict:
        wf = self.wf
        wf["nodes"] = sorted(self.nodes.values(), key=lambda n: n["id"])
        wf["links"] = [self.links[k] for k in sorted(self.links)]
        wf["last_node_id"], wf["last_link_id"] = self.last_node_id, self.last_link_id
        if str(wf.get("version", "0.4")) not in ("0.4",):
            wf["version"] = 0.4  # links are written as arrays, the 0.4 schema
        return wf
