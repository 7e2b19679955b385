"""Consistency across context windows (ContextRef, NaiveReuse) for one sampling step, as the context handler runs it.

The nodes leave their settings in transformer_options (REF_KEY, NAIVE_KEY) and ContextRef's two attention patches
(`attn1_patch`, `attn1_output_patch`, ComfyUI's own patch points); the context handler (sampling.context_handler)
opens a `ConsistencyStep` at every step it runs in windows, tells it each window (`begin_window` / `window_done`)
and lets it blend the result (`finish`). The step lives in the run's transformer_options under STEP_KEY while the
step runs, so the bank is new every step and gone after it (as ADE's ContextRefHandler cleans it per step), and
nothing is left on the MODEL between runs.
"""
from __future__ import annotations

from typing import Optional

import torch

from .context_ref import (OFF, READ, READ_WRITE, WRITE, ContextRef, WindowStates, block_weights, keys_with_bank,
                          rows_per_cond, uncond_rows, with_fidelity)
from .naive_reuse import NaiveReuse, reuse_first_window

REF_KEY = "motionkit_context_ref"
NAIVE_KEY = "motionkit_naive_reuse"
STEP_KEY = "motionkit_consistency_step"


def transformer_blocks(diffusion_model) -> dict[tuple, torch.nn.Module]:
    """{(part, block id, index in its transformer): spatial transformer block} in the UNet's order (input, middle,
    output), with the keys ComfyUI's blocks see (transformer_options["block"] + ["block_index"])."""
    parts = [("input", getattr(diffusion_model, "input_blocks", None) or []),
             ("middle", [diffusion_model.middle_block] if getattr(diffusion_model, "middle_block", None) else []),
             ("output", getattr(diffusion_model, "output_blocks", None) or [])]
    found = {}
    for part, blocks in parts:
        for block_id, block in enumerate(blocks):
            for module in block.modules():
                inner = getattr(module, "transformer_blocks", None)
                if not isinstance(inner, torch.nn.ModuleList):
                    continue
                for index, tb in enumerate(inner):
                    if hasattr(tb, "attn1") and hasattr(tb, "norm1") and hasattr(tb.norm1, "normalized_shape"):
                        found[(part, block_id, index)] = tb
    return found


def block_key(extra_options: dict) -> Optional[tuple]:
    block = extra_options.get("block")
    return None if block is None else (block[0], block[1], extra_options.get("block_index", 0))


class ConsistencyStep:
    """One step's ContextRef bank and window states, and NaiveReuse's first window."""

    def __init__(self, ref: Optional[ContextRef], naive: Optional[NaiveReuse], blocks: dict, sdxl: bool):
        self.ref, self.naive = ref, naive
        self.windows = WindowStates(ref) if ref is not None else None
        self.state = OFF
        self.blocks = blocks
        self.weights = block_weights([(k, b.norm1.normalized_shape[0]) for k, b in blocks.items()])
        # Advanced-ControlNet cubes the style fidelity for SDXL (sd-webui-controlnet: SDXL is more sensitive to it)
        self.fidelity = ref.style_fidelity ** 3.0 if ref is not None and sdxl else getattr(ref, "style_fidelity", 0.0)
        self.banks: dict[tuple, torch.Tensor] = {}  # (block key, cond uuid) -> norm1(x) of the writing window
        self.pending: dict[tuple, tuple] = {}  # block key -> what attn1_output_patch needs for the uncond rows
        self.first: Optional[tuple[list[int], list[torch.Tensor]]] = None  # NaiveReuse: window, outputs per cond

    # the handler's per-window hooks -----------------------------------------------------------------------

    def begin_window(self, window_idx: int, index_list: list[int]) -> None:
        if self.windows is not None:
            self.state = self.windows.state(window_idx, list(index_list))

    def window_done(self, window_idx: int, index_list: list[int], outputs: list[torch.Tensor]) -> None:
        if self.windows is not None:
            self.windows.window_done()
        if self.naive is not None and window_idx == 0:
            self.first = (list(index_list), [o.clone() for o in outputs])
        self.state = OFF

    def finish(self, fused: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.naive is None or self.first is None:
            return fused
        window, outputs = self.first
        return [reuse_first_window(f, o, window, self.naive.weighted_mean) for f, o in zip(fused, outputs)]

    # ContextRef in attn1 ---------------------------------------------------------------------------------

    def attn1(self, n, context, value, extra_options):
        key = block_key(extra_options)
        uuids = list(extra_options.get("uuids") or [])
        if self.state == OFF or key not in self.blocks or not uuids or self.ref.ref_weight <= self.weights[key]:
            return n, context, value
        written = n.detach().clone() if self.state in (WRITE, READ_WRITE) else None
        if self.state in (READ, READ_WRITE):
            banks = [self.banks.get((key, u)) for u in uuids]
            if any(b is not None for b in banks):
                plain_context, plain_value = context, value
                context, value = keys_with_bank(context, value, banks, self.ref.strength)
                rows = uncond_rows(n.size(0), list(extra_options.get("cond_or_uncond") or []))
                if rows and self.fidelity != 0.0:
                    self.pending[key] = (n[rows], plain_context[rows], plain_value[rows], rows)
        if written is not None:  # after reading: READ_WRITE reads the previous bank, then replaces it
            for u, rows in zip(uuids, rows_per_cond(written.size(0), uuids)):
                self.banks[(key, u)] = written[rows]
        return n, context, value

    def attn1_output(self, out, extra_options):
        pending = self.pending.pop(block_key(extra_options), None)
        if pending is None:
            return out
        n, context, value, rows = pending
        attn1 = self.blocks[block_key(extra_options)].attn1
        plain = attn1(n, context=context, value=value, transformer_options=extra_options)
        return with_fidelity(out, plain, rows, self.fidelity)


def open_step(transformer_options: dict, model, sigma: float) -> Optional[ConsistencyStep]:
    """The step's ConsistencyStep when ContextRef or NaiveReuse is set and runs at this sigma (None otherwise);
    `model`: ComfyUI's BaseModel (its model_sampling maps the percents, its diffusion_model has the blocks)."""
    ref, naive = transformer_options.get(REF_KEY), transformer_options.get(NAIVE_KEY)
    if ref is None and naive is None:
        return None

    def runs(extra):
        to_sigma = model.model_sampling.percent_to_sigma
        return extra is not None and extra.runs(sigma, float(to_sigma(extra.start_percent)),
                                                float(to_sigma(extra.end_percent)))
    ref, naive = (ref if runs(ref) else None), (naive if runs(naive) else None)
    if ref is None and naive is None:
        return None
    blocks = transformer_blocks(model.diffusion_model) if ref is not None else {}
    return ConsistencyStep(ref, naive, blocks, sdxl=type(model).__name__ == "SDXL")


# ComfyUI's patch points (module functions: a MODEL's deep copy keeps them the same, so applying twice is seen)

def attn1_patch(n, context, value, extra_options):
    step = extra_options.get(STEP_KEY)
    return (n, context, value) if step is None else step.attn1(n, context, value, extra_options)


def attn1_output_patch(out, extra_options):
    step = extra_options.get(STEP_KEY)
    return out if step is None else step.attn1_output(out, extra_options)
