"""ContextRef (AnimateDiff-Evolved's context extra): later windows attend to the first window too. Pure torch.

Each window's spatial self-attention (attn1 of every transformer block) sees, besides its own tokens, the tokens
a reference window had at the same block and step (the "bank"), frame by frame (a window's k-th frame attends to
the reference window's k-th frame). So faces and colours the first window settled on carry over to the windows
after it, instead of each window drifting on its own.

The definition is Advanced-ControlNet's reference attention (adv_control/control_reference.py,
_forward_inject_BasicTransformerBlock) as AnimateDiff-Evolved's ContextRef drives it (context_extras.py,
ContextRefHandler):
* keys and values: `cat([context, bank'], tokens)`, bank' = `s * bank + (1 - s) * context`, s = strength;
* uncond rows: `fidelity * plain + (1 - fidelity) * with_bank` (plain: attention without the bank), so with
  style_fidelity 1 the negative prompt's pass keeps its own look and only the positive one is pulled;
* which blocks: the transformer blocks sorted by width, widest first (stable), block i of N takes part when
  ref_weight > i / N (ref_weight 1: all);
* the bank is the block's normalised input (norm1(x)) of the window that writes, kept per cond (uuid), and is
  cleared at the end of every step; which window writes and which read is the mode (`window_state`).
Here it runs through ComfyUI's own attn1_patch / attn1_output_patch (sampling.consistency wires them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FIRST, SLIDING, INDEXES = "first", "sliding", "indexes"
MODES = (FIRST, SLIDING, INDEXES)
OFF, READ, WRITE, READ_WRITE = "off", "read", "write", "read_write"


@dataclass(frozen=True)
class ContextRef:
    strength: float = 1.0
    style_fidelity: float = 1.0
    ref_weight: float = 1.0
    mode: str = FIRST
    sliding_width: int = 2
    indexes: tuple[int, ...] = (0,)
    start_percent: float = 0.0
    end_percent: float = 0.25

    def runs(self, sigma: float, start_sigma: float, end_sigma: float) -> bool:
        """ADE's ContextExtra.should_run (sigma in the percent range) and Advanced-ControlNet's (weight and strength
        not 0)."""
        return (end_sigma <= sigma <= start_sigma and not math.isclose(self.ref_weight, 0.0)
                and not math.isclose(self.strength, 0.0))


class WindowStates:
    """Which windows write the bank and which read it, over one step (ADE's ContextRefHandler.prepare_referencecn).

    first: the step's first window writes, all others read it. sliding: also every (sliding_width - 1)-th window
    reads and then writes, so the reference moves along. indexes: a window holding one of the frames (each frame
    once per step) reads and writes; the first window writes."""

    def __init__(self, ref: ContextRef):
        self.ref = ref
        self.first = True
        self.remaining = set(ref.indexes)

    def state(self, window_idx: int, index_list: list[int]) -> str:
        ref = self.ref
        state = WRITE if self.first else READ
        if not self.first and ref.mode == SLIDING and window_idx % (ref.sliding_width - 1) == 0:
            state = READ_WRITE
        if ref.mode == INDEXES:
            hit = [i for i in index_list if i in self.remaining]
            self.remaining.difference_update(hit)
            state = (WRITE if self.first else READ_WRITE) if hit else READ
        return state

    def window_done(self) -> None:
        self.first = False


def block_weights(blocks: list[tuple[object, int]]) -> dict[object, float]:
    """{block key: i / N} for (key, width) in the UNet's order, widest first, stable (Advanced-ControlNet's
    attn_weight: a block writes when ref_weight > its weight)."""
    ranked = sorted(range(len(blocks)), key=lambda i: -blocks[i][1])
    return {blocks[i][0]: rank / len(blocks) for rank, i in enumerate(ranked)}


def rows_per_cond(rows: int, uuids: list) -> list[slice]:
    """The batch holds each cond's frames in turn (cond and uncond, as calc_cond_batch batched them)."""
    per = rows // len(uuids)
    return [slice(i * per, (i + 1) * per) for i in range(len(uuids))]


def frames_of(bank: torch.Tensor, frames: int) -> torch.Tensor:
    """The bank for a window of `frames` frames: frame by frame; a window of another length (a last, shorter window
    of some schedules) takes the bank's frames cyclically (Advanced-ControlNet would fail there)."""
    if bank.size(0) == frames:
        return bank
    return bank[torch.arange(frames, device=bank.device) % bank.size(0)]


def keys_with_bank(context: torch.Tensor, value: torch.Tensor, banks: list, strength: float):
    """attn1's keys and values with the bank appended on the token axis, one bank per cond in the batch (None, or
    a bank of other tokens (a cond with another area): that cond attends to itself twice, the same attention as
    without a bank)."""
    parts = []
    for rows, bank in zip(rows_per_cond(context.size(0), banks), banks):
        own = context[rows]
        if bank is None or bank.shape[1:] != own.shape[1:]:  # none, or another area's tokens: attend to itself
            parts.append(own)
            continue
        bank = frames_of(bank, own.size(0)).to(own)
        if not math.isclose(strength, 1.0):
            bank = bank * strength + own * (1.0 - strength)
        parts.append(bank)
    bank = torch.cat(parts, dim=0)
    return torch.cat([context, bank], dim=1), torch.cat([value, bank], dim=1)


def with_fidelity(with_bank: torch.Tensor, plain_uncond: torch.Tensor, uncond_rows: list[int],
                  fidelity: float) -> torch.Tensor:
    """Uncond rows: `fidelity * plain + (1 - fidelity) * with_bank`; cond rows keep the bank's result."""
    out = with_bank.clone()
    out[uncond_rows] = fidelity * plain_uncond + (1.0 - fidelity) * with_bank[uncond_rows]
    return out


def uncond_rows(rows: int, cond_or_uncond: list[int]) -> list[int]:
    """Batch rows of the uncond chunks (cond_or_uncond: 0 cond, 1 uncond, per chunk)."""
    per = rows // max(len(cond_or_uncond), 1)
    return [c * per + r for c, kind in enumerate(cond_or_uncond) if kind == 1 for r in range(per)]
