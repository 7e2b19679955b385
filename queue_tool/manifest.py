"""The sweep's manifest: one row per prompt (prompt id, inputs set, server, status, output files, seconds),
as JSON (what ``--resume`` reads) and CSV (for a spreadsheet), rewritten after every change so that an
interrupted sweep can be continued from it."""
from __future__ import annotations

import csv
import hashlib
import json
import os
from typing import Any, Dict, List, Optional

from .batch import UsageError, read_json

VERSION = 1
DONE = "success"
STATUSES = ("pending", "queued", "running", "success", "failed", "refused", "retrying")
CSV_FIELDS = ["index", "prompt_id", "inputs", "server", "status", "outputs", "seconds", "attempts", "error"]


def workflow_digest(workflow: dict) -> str:
    return hashlib.sha256(json.dumps(workflow, sort_keys=True).encode()).hexdigest()


def csv_path(path: str) -> str:
    root, ext = os.path.splitext(path)
    return (root if ext.lower() == ".json" else path) + ".csv"


class Manifest:
    def __init__(self, path: str, workflow_path: str, workflow: dict, sets: List[str], zip_: bool):
        self.path = path
        self.data: Dict[str, Any] = {
            "motionkit_queue_manifest": VERSION,
            "workflow": os.path.abspath(workflow_path),
            "workflow_sha256": workflow_digest(workflow),
            "sets": list(sets), "zip": bool(zip_),
            "prompts": [],
        }

    @property
    def rows(self) -> List[dict]:
        return self.data["prompts"]

    def row(self, index: int) -> dict:
        return self.rows[index - 1]

    def start(self, combos_inputs: List[Dict[str, Any]], previous: Optional["Manifest"] = None) -> None:
        """One row per prompt; rows of *previous* (a resumed sweep) are kept as they were."""
        old = {r["index"]: r for r in previous.rows} if previous else {}
        rows = []
        for i, inputs in enumerate(combos_inputs, 1):
            r = old.get(i)
            if r is None or r.get("inputs") != inputs:
                r = {"index": i, "prompt_id": None, "inputs": inputs, "server": None, "status": "pending",
                     "outputs": [], "seconds": None, "attempts": 0, "error": None}
            rows.append(r)
        self.data["prompts"] = rows
        self.write()

    def update(self, index: int, **fields) -> None:
        self.row(index).update(fields)
        self.write()

    def write(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)
        cpath = csv_path(self.path)
        with open(cpath + ".tmp", "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            for r in self.rows:
                w.writerow({**{k: r.get(k) for k in CSV_FIELDS},
                            "inputs": json.dumps(r["inputs"], ensure_ascii=False),
                            "outputs": ";".join(r.get("outputs") or []),
                            "seconds": "" if r.get("seconds") is None else r["seconds"],
                            "prompt_id": r.get("prompt_id") or "", "server": r.get("server") or "",
                            "error": r.get("error") or ""})
        os.replace(cpath + ".tmp", cpath)

    @classmethod
    def load(cls, path: str) -> "Manifest":
        data = read_json(path, "manifest")
        if not isinstance(data, dict) or data.get("motionkit_queue_manifest") != VERSION:
            raise UsageError(f"{path} is not a motionkit_queue manifest (write one with --manifest)")
        m = cls.__new__(cls)
        m.path, m.data = path, data
        return m
