"""Prompt schedules: a prompt per frame, typed as keyframes, encoded into one CONDITIONING row per frame.

Text, one keyframe a line: "0: a cat sitting" / "16: a cat jumping" (frames count from 0, blank lines
ignored; the prompt is everything after the first ':'). Before the first keyframe its prompt holds, after
the last one that one holds. In between:
* "linear": the embeddings of the two keyframes around a frame are blended, by how far the frame is
  between them (the pooled output too);
* "hold": each keyframe's prompt holds until the next keyframe.

Each distinct prompt is encoded once, as core's CLIPTextEncode does, and the frames' embeddings are
stacked along the batch axis: cond [frames, tokens, dim], pooled_output [frames, dim]. The sampler then
gives frame i row i (the latent's frames ride in the batch); sampling.context_handler cuts the rows to
each context window's frames. Prompts longer than 77 tokens come in multiples of 77: shorter ones are
repeated along the token axis up to the least common multiple, as core's CONDCrossAttn.concat pads
conds it batches together (cross-attention over repeated tokens gives the same result).

Imports without ComfyUI: only the CLIP object given by ComfyUI is used.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import torch

from .errors import PromptScheduleError

LOG = logging.getLogger("MotionKit")
INTERPOLATIONS = ("linear", "hold")
HOW = "Write one keyframe per line as 'frame: prompt', e.g. '0: a cat sitting' and '16: a cat jumping' (frames count from 0)."
LINE = re.compile(r"^\s*(\S+?)\s*:(.*)$")


@dataclass(frozen=True)
class PromptSchedule:
    keyframes: tuple[tuple[int, str], ...]  # (frame, prompt), frames strictly increasing, at least one

    def prompts(self) -> list[str]:
        """The distinct prompts, in order of first appearance: each is encoded once."""
        return list(dict.fromkeys(p for _, p in self.keyframes))

    def weights(self, frames: int, interpolation: str = "linear") -> list[dict[int, float]]:
        """Per frame: {index in prompts(): weight}, weights summing to 1."""
        if interpolation not in INTERPOLATIONS:
            raise PromptScheduleError(f"Prompt schedule: interpolation '{interpolation}' is unknown; "
                                      f"use one of {', '.join(INTERPOLATIONS)}.")
        index = {p: i for i, p in enumerate(self.prompts())}
        points = [(f, index[p]) for f, p in self.keyframes]
        out = []
        for frame in range(frames):
            before = [pt for pt in points if pt[0] <= frame]
            after = [pt for pt in points if pt[0] > frame]
            if not before:
                out.append({points[0][1]: 1.0})
            elif not after or interpolation == "hold":
                out.append({before[-1][1]: 1.0})
            else:
                (f0, a), (f1, b) = before[-1], after[0]
                t = (frame - f0) / (f1 - f0)
                w: dict[int, float] = {}
                for i, v in ((a, 1.0 - t), (b, t)):
                    if v > 0:
                        w[i] = w.get(i, 0.0) + v
                out.append(w)
        return out


def parse_prompt_schedule(text: str, frames: int) -> PromptSchedule:
    keyframes: dict[int, str] = {}
    lines: dict[int, str] = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        m = LINE.match(line)
        if m is None:
            raise PromptScheduleError(f"Prompt schedule: the line '{line}' has no 'frame:' in front. {HOW}")
        frame_text, prompt = m.group(1), m.group(2).strip()
        if not frame_text.isdigit():
            raise PromptScheduleError(f"Prompt schedule: in the line '{line}' the frame before ':' must be a "
                                      f"whole number of 0 or more. {HOW}")
        if not prompt:
            raise PromptScheduleError(f"Prompt schedule: the line '{line}' has no prompt after ':'. {HOW}")
        frame = int(frame_text)
        if frame >= frames:
            raise PromptScheduleError(
                f"Prompt schedule: the line '{line}' is a keyframe at frame {frame}, but the animation has "
                f"{frames} frames (0 to {frames - 1}). Use a frame below {frames} or raise 'frames'.")
        if frame in keyframes:
            raise PromptScheduleError(f"Prompt schedule: frame {frame} has two keyframes ('{lines[frame]}' and "
                                      f"'{line}'); keep one.")
        keyframes[frame], lines[frame] = prompt, line
    if not keyframes:
        raise PromptScheduleError(f"Prompt schedule: the schedule is empty. {HOW}")
    return PromptSchedule(tuple(sorted(keyframes.items())))


def pad_tokens(conds: list[torch.Tensor]) -> list[torch.Tensor]:
    """Conds [1, tokens, dim] of different token lengths, repeated along the tokens to a common length."""
    length = math.lcm(*(c.shape[1] for c in conds))
    return [c if c.shape[1] == length else c.repeat(1, length // c.shape[1], 1) for c in conds]


def blend(rows: torch.Tensor, weights: list[dict[int, float]]) -> torch.Tensor:
    """rows [prompts, ...] -> [frames, ...]; a frame with one prompt gets that prompt's row bit for bit."""
    out = []
    for w in weights:
        if len(w) == 1:
            out.append(rows[next(iter(w))])
        else:
            out.append(sum(rows[i] * v for i, v in w.items()))
    return torch.stack(out)


def encode_prompt(clip, text: str) -> tuple[torch.Tensor, dict]:
    """As core's CLIPTextEncode (without CLIP hooks): cond [1, tokens, dim] and the rest of the dict."""
    out = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True, return_dict=True)
    cond = out.pop("cond")
    return cond, out


def prompt_schedule_conditioning(clip, text: str, frames: int, interpolation: str = "linear") -> list:
    """One CONDITIONING entry with a row per frame: [[cond [frames, T, dim], {"pooled_output": [frames, dim], ...}]].
    The other keys of the dict are the first keyframe's."""
    if clip is None:
        raise PromptScheduleError("Prompt schedule: the clip input is empty; connect the CLIP output of your "
                                  "checkpoint loader.")
    schedule = parse_prompt_schedule(text, frames)
    weights = schedule.weights(frames, interpolation)
    encoded = [encode_prompt(clip, p) for p in schedule.prompts()]
    conds = torch.cat(pad_tokens([c for c, _ in encoded]))
    extra = dict(encoded[0][1])
    pooled = [d.get("pooled_output") for _, d in encoded]
    if all(isinstance(p, torch.Tensor) for p in pooled):
        extra["pooled_output"] = blend(torch.cat(pooled), weights)
    LOG.info(f"MotionKit prompt schedule: {len(schedule.keyframes)} keyframes, {len(encoded)} prompts, for "
             f"{frames} frames; sample it with a latent batch of {frames} frames (another batch size would "
             f"repeat or cut the prompts' rows).")
    return [[blend(conds, weights), extra]]
