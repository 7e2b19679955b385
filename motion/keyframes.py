"""Motion strength per frame, from the text an artist types into 'Motion Scale Schedule'.

Two forms, entries separated by commas or line breaks:
* a list, one value per frame: "0, 0.25, 0.5, 1" (frame 0, 1, 2, 3); the last value holds for later frames;
* keyframes "frame:value": "0:0.0, 8:1.0, 15:1.0", linear in between, held before the first keyframe
  and after the last one. Frames count from 0.
Empty text means the same strength on every frame (1). A list is keyframes at frames 0, 1, 2, ...,
so both forms become one thing: sorted (frame, value) points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from .errors import MotionScaleScheduleError

HOW = ("Write one value per frame ('0, 0.25, 0.5, 1') or frame:value keyframes ('0:0.0, 8:1.0, 15:1.0'), "
       "separated by commas or line breaks.")


@dataclass(frozen=True)
class MotionScaleSchedule:
    """What flows along a MOTION_SCALE wire: a multiplier per frame."""
    points: tuple[tuple[int, float], ...] = ()  # (frame, value), frames strictly increasing; () = 1 everywhere

    def at(self, frame: int) -> float:
        if not self.points:
            return 1.0
        (first, v_first), (last, v_last) = self.points[0], self.points[-1]
        if frame <= first:
            return v_first
        if frame >= last:
            return v_last
        for (f0, v0), (f1, v1) in zip(self.points, self.points[1:]):
            if f0 <= frame <= f1:
                return v0 + (v1 - v0) * (frame - f0) / (f1 - f0)
        raise AssertionError("unreachable: points are sorted")

    def values(self, frames: Iterable[int]) -> list[float]:
        return [self.at(f) for f in frames]


def _entries(text: str) -> list[str]:
    """Entries of the text; blank lines and a comma at the end of a line are fine, an empty entry
    between two commas is a typo that would shift every later frame, so it is refused."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if parts and not parts[-1]:
            parts.pop()
        for i, part in enumerate(parts):
            if not part:
                after = f" after '{parts[i - 1]}'" if i else " at the start of a line"
                raise MotionScaleScheduleError(
                    f"Motion scale schedule: empty entry{after} in '{line.strip()}' (two commas in a row?). {HOW}")
        out += parts
    return out


def _value(text: str, entry: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MotionScaleScheduleError(f"Motion scale schedule: '{entry}' is not a number. {HOW}") from None
    if not math.isfinite(value) or value < 0:
        raise MotionScaleScheduleError(
            f"Motion scale schedule: '{entry}' must be a number of 0 or more (0 = no motion, 1 = as trained).")
    return value


def _frame(text: str, entry: str) -> int:
    if not text.isdigit():
        raise MotionScaleScheduleError(
            f"Motion scale schedule: in '{entry}' the frame before ':' must be a whole number of 0 or more "
            f"(frames count from 0). {HOW}")
    return int(text)


def parse_motion_scale(text: str) -> MotionScaleSchedule:
    entries = _entries(text or "")
    if not entries:
        return MotionScaleSchedule()
    keyed = [e for e in entries if ":" in e]
    if keyed and len(keyed) != len(entries):
        plain = next(e for e in entries if ":" not in e)
        raise MotionScaleScheduleError(
            f"Motion scale schedule: '{plain}' has no frame but '{keyed[0]}' has one; use either a plain list "
            f"(one value per frame) or frame:value keyframes everywhere. {HOW}")
    if not keyed:
        return MotionScaleSchedule(tuple((i, _value(e, e)) for i, e in enumerate(entries)))
    points: dict[int, tuple[float, str]] = {}
    for entry in entries:
        frame_text, _, value_text = (s.strip() for s in entry.partition(":"))
        frame, value = _frame(frame_text, entry), _value(value_text, entry)
        if frame in points:
            raise MotionScaleScheduleError(
                f"Motion scale schedule: frame {frame} has two keyframes ('{points[frame][1]}' and '{entry}'); "
                f"keep one.")
        points[frame] = (value, entry)
    return MotionScaleSchedule(tuple((f, points[f][0]) for f in sorted(points)))
