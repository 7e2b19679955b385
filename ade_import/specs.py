"""Node input specs: ADE's (and Advanced-ControlNet's SparseCtrl nodes') from ade_nodes.json, MotionKit's from
motionkit_nodes.json or the live registry; and the one mapping of a UI node's positional widgets_values to names.

A UI workflow stores widget values as a list in INPUT_TYPES order (widget inputs only, each seed INT followed by
its control_after_generate value; a widget converted to a socket keeps its place), so the names come from the
node's spec. Both JSON files are generated (tests/extract_ade_node_specs.py), never edited by hand."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
ADE_DATA = HERE / "ade_nodes.json"
MOTIONKIT_DATA = HERE / "motionkit_nodes.json"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
SEED_NAMES = {"seed", "noise_seed"}  # the frontend adds control_after_generate to these INTs unasked
UI_WIDGET_TYPES = {"ADEWARN", "ACNAUTOSIZE"}  # display-only widgets of ADE / ACN: a "" may sit in widgets_values
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}


def input_spec(name: str, spec, section: str) -> dict:
    """One INPUT_TYPES entry as data: name, type (COMBO for a list), section, widget or socket, default."""
    kind, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
    if isinstance(kind, (list, tuple)):
        entry = {"name": name, "type": "COMBO", "options": [str(o) for o in kind][:64]}
        widget = True
    else:
        entry = {"name": name, "type": str(kind)}
        widget = kind in WIDGET_TYPES and not opts.get("forceInput", False)
    entry["section"] = section
    entry["widget"] = widget
    if isinstance(kind, str) and kind in UI_WIDGET_TYPES:
        entry["ui_widget"] = True
    if "default" in opts and isinstance(opts["default"], (int, float, str, bool)):
        entry["default"] = opts["default"]
    for bound in ("min", "max"):
        if kind in ("INT", "FLOAT") and isinstance(opts.get(bound), (int, float)) and abs(opts[bound]) < 2 ** 53:
            entry[bound] = opts[bound]
    if widget and (opts.get("control_after_generate") or (kind == "INT" and name in SEED_NAMES)):
        entry["control_after_generate"] = True
    return entry


def class_spec(cls, display_name: str) -> dict:
    """A node class's spec (its INPUT_TYPES, outputs) as data."""
    types = cls.INPUT_TYPES()
    return {"display_name": display_name,
            "inputs": [input_spec(n, s, sec) for sec in ("required", "optional") for n, s in types.get(sec, {}).items()],
            "outputs": [t if isinstance(t, str) else "COMBO" for t in cls.RETURN_TYPES],
            "output_names": list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES)}


def registry_specs(class_mappings: dict, display_names: dict) -> dict:
    return {k: class_spec(c, display_names.get(k, k)) for k, c in sorted(class_mappings.items())}


@lru_cache(maxsize=None)
def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def ade_specs() -> dict:
    return _load(ADE_DATA)["nodes"]


def ade_commit() -> str:
    return _load(ADE_DATA)["ade_commit"]


def motionkit_specs() -> dict:
    """MotionKit's nodes as last generated (the CLI's view; the server passes the live registry instead)."""
    return _load(MOTIONKIT_DATA)["nodes"]


def default_of(entry: dict):
    if "default" in entry:
        return entry["default"]
    if entry["type"] == "COMBO":
        return entry["options"][0] if entry.get("options") else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(entry["type"])


@dataclass(frozen=True)
class Linked:
    """A widget input fed by a link instead of a value (a widget converted to a socket)."""
    link: int


class VersionMismatch(Exception):
    """The node's saved values do not fit the known spec: another version of the node."""


def _fits(entry: dict, value) -> bool:
    kind = entry["type"]
    if kind == "INT":
        return (isinstance(value, int) and not isinstance(value, bool)) or \
            (isinstance(value, float) and value.is_integer())
    if kind == "FLOAT":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "BOOLEAN":
        return isinstance(value, bool)
    if kind == "STRING":
        return isinstance(value, str)
    if kind == "COMBO":
        options = entry.get("options") or []
        # model-file lists are empty in the data (no models where it was generated): any name fits there
        return isinstance(value, str) and (not options or value in options or not _enum_like(options))
    return entry.get("ui_widget", False)


FILE_NAME = re.compile(r"\.[A-Za-z0-9]{2,12}$")


def _enum_like(options) -> bool:
    """A combo of fixed choices (not file names): a value outside it means another version of the node."""
    return not any(FILE_NAME.search(o) for o in options)


def _slots(spec: dict, with_ui: bool):
    """(entry, is_control) per widgets_values position."""
    slots = []
    for entry in spec["inputs"]:
        if not entry["widget"] and not (with_ui and entry.get("ui_widget")):
            continue
        slots.append((entry, False))
        if entry.get("control_after_generate"):
            slots.append((entry, True))
    return slots


def _match(slots, values) -> dict | None:
    named = {}
    for (entry, control), value in zip(slots, values):
        if control:
            if not isinstance(value, str):
                return None
        elif entry.get("ui_widget"):
            if value not in ("", None):
                return None
        elif _fits(entry, value):
            named[entry["name"]] = int(value) if entry["type"] == "INT" else value
        else:
            return None
    return named


def map_widgets(node: dict, spec: dict) -> tuple[dict, list[str]]:
    """{input name: value or Linked} for every widget input of `node`, and notes (defaults filled in).

    Raises VersionMismatch when the saved values cannot be this spec's (an ADE version the data does not know)."""
    raw = node.get("widgets_values")
    raw = [] if raw is None else raw
    notes: list[str] = []
    widgets = [e for e in spec["inputs"] if e["widget"]]
    if isinstance(raw, dict):  # newer frontends may save {name: value}
        unknown = sorted(set(raw) - {e["name"] for e in spec["inputs"]})
        if unknown:
            raise VersionMismatch(f"saved values for inputs this version does not have: {', '.join(unknown)}")
        named = {e["name"]: raw[e["name"]] for e in widgets if e["name"] in raw and _fits(e, raw[e["name"]])}
    else:
        named = None
        for with_ui in (False, True):
            slots = _slots(spec, with_ui)
            if len(slots) == len(raw):
                named = _match(slots, raw)
                if named is not None:
                    break
        if named is None:
            slots = _slots(spec, False)
            missing = slots[len(raw):]
            # an older version of the node: the same widgets, fewer optional ones at the end
            if len(raw) < len(slots) and all(e["section"] == "optional" for e, _ in missing):
                named = _match(slots[:len(raw)], raw)
                if named is not None:
                    notes.append("saved by an older version of the node: "
                                 + ", ".join(sorted({e['name'] for e, _ in missing})) + " at ADE's defaults")
        if named is None:
            expected = [e["name"] + (" (+control)" if c else "") for e, c in _slots(spec, False)]
            raise VersionMismatch(f"{len(raw)} saved widget values {raw!r:.120} do not fit this version's "
                                  f"{len(expected)} ({', '.join(expected)})")
    for entry in widgets:
        named.setdefault(entry["name"], default_of(entry))
    for inp in node.get("inputs") or []:
        widget = inp.get("widget")
        if widget and inp.get("link") is not None:
            named[widget.get("name", inp["name"])] = Linked(inp["link"])
    known = {e["name"] for e in spec["inputs"]}
    odd = [i["name"] for i in node.get("inputs") or [] if i.get("name") not in known]
    if odd:
        raise VersionMismatch(f"inputs this version does not have: {', '.join(odd)}")
    return named, notes
