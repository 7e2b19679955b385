"""The command line: convert ADE workflow files, write <name>_motionkit.json next to them (or into --out), print
the report. Exit status: 0 converted (the report may list nodes kept), 2 a file could not be read."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .convert import convert_workflow
from .errors import AdeImportError
from .read import read_workflow
from .specs import ade_commit


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="motionkit_ade_import",
        description="Convert AnimateDiff-Evolved workflows (UI-format .json, or a .png/.webp ComfyUI saved with the "
                    f"workflow in it) to MotionKit workflows. Knows ADE's nodes as of commit {ade_commit()}.")
    ap.add_argument("inputs", nargs="+", type=Path, help="workflow files to convert")
    ap.add_argument("-o", "--out", type=Path, help="a folder for the results, or a .json file for one input "
                                                   "(default: <name>_motionkit.json beside each input)")
    ap.add_argument("--report-json", action="store_true", help="print the report as JSON")
    return ap


def out_path(src: Path, out: Path | None, many: bool) -> Path:
    name = f"{src.stem}_motionkit.json"
    if out is None:
        return src.with_name(name)
    if out.suffix.lower() == ".json" and not many:
        return out
    return out / name


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    status = 0
    for src in args.inputs:
        try:
            workflow = read_workflow(src)
        except AdeImportError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 2
            continue
        converted, report = convert_workflow(workflow)
        dst = out_path(src, args.out, len(args.inputs) > 1)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(json.dumps(converted, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if args.report_json:
            print(json.dumps({"input": str(src), "output": str(dst), "report": report.as_list()}, indent=1))
        else:
            print(f"{src} -> {dst}\n{report.text()}\n")
    return status
