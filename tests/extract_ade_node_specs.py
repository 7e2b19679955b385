#!/usr/bin/env python3
"""Write the converter's node data (ade_import/*.json): names, types, defaults and order of node inputs, which it
needs to map a UI workflow's positional widgets_values to input names. Data only, no code of the packs.

    # ADE's nodes (and Advanced-ControlNet's SparseCtrl nodes): needs ComfyUI and the two checkouts
    git -C ADE_REPO archive 90fb133 | tar -x -C /tmp --one-top-level=ade
    git -C ACN_REPO archive f9a1225 | tar -x -C /tmp --one-top-level=acn
    python tests/extract_ade_node_specs.py ade --ade /tmp/ade --commit 90fb133 --acn /tmp/acn --acn-commit f9a1225 \\
        --comfyui /opt/ComfyUI
    # MotionKit's own nodes (the CLI's view of the registry; tests/test_ade_import.py checks it is current)
    python tests/extract_ade_node_specs.py motionkit --comfyui /opt/ComfyUI
"""
from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ACN_PREFIX = "ACN_SparseCtrl"  # of Advanced-ControlNet only its SparseCtrl nodes (MotionKit has SparseCtrl)


def as_package(folder: Path, name: str):
    """`folder` importable as package `name` without running its __init__ (which needs a full ComfyUI)."""
    if name not in sys.modules:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        sys.modules[name] = importlib.util.module_from_spec(spec)
    return name


def write(path: Path, head: dict, nodes: dict) -> None:
    # one node a line: small, and a regenerated file diffs node by node
    lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False, separators=(',', ':'))}" for k, v in nodes.items()]
    fields = "".join(f"{json.dumps(k)}: {json.dumps(v)}, " for k, v in head.items())
    path.write_text("{" + fields + '"nodes": {\n' + ",\n".join(lines) + "\n}}\n", encoding="utf-8")
    print(f"{len(nodes)} nodes -> {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=["ade", "motionkit"])
    ap.add_argument("--comfyui", required=True, type=Path, help="a ComfyUI checkout")
    ap.add_argument("--ade", type=Path, help="an AnimateDiff-Evolved checkout")
    ap.add_argument("--commit", help="the ADE commit the checkout is (recorded in the data)")
    ap.add_argument("--acn", type=Path, help="an Advanced-ControlNet checkout (for its SparseCtrl nodes)")
    ap.add_argument("--acn-commit", help="the Advanced-ControlNet commit the checkout is")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.comfyui))
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    specs = importlib.import_module(as_package(REPO, "motionkit") + ".ade_import.specs")
    if args.which == "motionkit":
        nodes = importlib.import_module("motionkit.nodes")
        write(specs.MOTIONKIT_DATA, {}, specs.registry_specs(nodes.NODE_CLASS_MAPPINGS,
                                                             nodes.NODE_DISPLAY_NAME_MAPPINGS))
        return 0
    if not (args.ade and args.commit):
        ap.error("ade needs --ade and --commit")
    out = {}
    packs = [(as_package(args.ade, "ade_pack") + ".animatediff.nodes", "")]
    if args.acn:
        packs.append((as_package(args.acn, "acn_pack") + ".adv_control.nodes", ACN_PREFIX))
    for module, prefix in packs:
        nodes = importlib.import_module(module)
        mappings = {k: c for k, c in nodes.NODE_CLASS_MAPPINGS.items() if k.startswith(prefix)}
        out.update(specs.registry_specs(mappings, nodes.NODE_DISPLAY_NAME_MAPPINGS))
    write(specs.ADE_DATA, {"ade_commit": args.commit, "acn_commit": args.acn_commit}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
