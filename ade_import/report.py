"""The conversion report: one line per ADE node (converted, removed, kept) and per setting not carried over."""
from __future__ import annotations

from dataclasses import dataclass, field

CONVERTED, REMOVED, KEPT, NOT_CARRIED, NOTE = "converted", "removed", "kept", "not carried over", "note"
NO_EQUIVALENT = "MotionKit has no equivalent yet"


@dataclass
class Line:
    node: int | None
    node_type: str
    status: str
    message: str

    def as_dict(self) -> dict:
        return {"node": self.node, "type": self.node_type, "status": self.status, "message": self.message}


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)

    def add(self, node: dict | None, status: str, message: str) -> None:
        line = Line(node["id"] if node else None, node["type"] if node else "", status, message)
        if line not in self.lines:
            self.lines.append(line)

    def of(self, status: str) -> list[Line]:
        return [l for l in self.lines if l.status == status]

    @property
    def kept(self) -> list[Line]:
        return self.of(KEPT)

    def text(self) -> str:
        order = (KEPT, NOT_CARRIED, CONVERTED, REMOVED, NOTE)
        titles = {KEPT: "Not converted (kept as they are)", NOT_CARRIED: "Settings not carried over",
                  CONVERTED: "Converted", REMOVED: "Removed (their job is done by the nodes above)", NOTE: "Notes"}
        out = []
        for status in order:
            lines = self.of(status)
            if lines:
                out.append(f"{titles[status]} ({len(lines)}):")
                out += [f"  #{l.node} {l.node_type}: {l.message}" if l.node is not None else f"  {l.message}"
                        for l in lines]
        return "\n".join(out) if out else "No AnimateDiff-Evolved nodes found: nothing to convert."

    def as_list(self) -> list[dict]:
        return [l.as_dict() for l in self.lines]
