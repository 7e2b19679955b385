"""LoRA layers for the motion modules' attention projections, in the published MotionLoRA layout (§4.9).

What is trained: for every motion-module attention block, a pair (down [r, C], up [C, r]) on each of to_q, to_k,
to_v and to_out.0, meaning W' = W + up @ down (no alpha, no rank scaling: the published files' rule, which
motion.lora applies as ComfyUI weight patches). Nothing else of the motion model or the UNet changes.

While training, the LoRA acts through forward hooks on the motion model's Linear layers: out + (x·downᵀ)·upᵀ, the
same function as (W + up·down)·x. A hook never writes the frozen weight, so the base weights stay bit-identical,
and it is re-run when gradient checkpointing recomputes a block. The parameters are named with the published
keys, so saving is a rename-free copy and resuming reads a published file as it is.

Initialisation as diffusers' LoRALinearLayer (which the published MotionLoRAs were trained with): down ~ N(0, 1/r),
up = 0, so training starts exactly at the base motion model.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ._motion import motion_lora
from .errors import TrainingError

PROJECTIONS = ("to_q", "to_k", "to_v", "to_out")

def target_layers(motion_model: nn.Module) -> dict[str, str]:
    """{published layer name `…attention_blocks.a.processor.to_q`: module path `…attention_blocks.a.to_q`}."""
    keys = [k for k, _ in motion_model.named_parameters()]
    found = motion_lora.motion_lora_key_map(keys)
    if not found:
        raise TrainingError("The motion model has no motion-module attention layers to train a MotionLoRA on; choose an "
                            "AnimateDiff-family motion model (e.g. mm_sd_v15_v2.ckpt).")
    return {layer: key.removesuffix(".weight") for layer, key in sorted(found.items())}

class MotionLoRALayers(nn.Module):
    """The trainable LoRA of one motion model. Parameters: `down[i]`, `up[i]` for layer `names[i]`."""

    def __init__(self, motion_model: nn.Module, rank: int, generator: torch.Generator | None = None):
        super().__init__()
        if rank < 1:
            raise TrainingError(f"rank must be at least 1 (got {rank}); the published MotionLoRAs use 64.")
        self.rank = rank
        self.targets = target_layers(motion_model)
        self.names = list(self.targets)
        modules = dict(motion_model.named_modules())
        self.down, self.up = nn.ParameterList(), nn.ParameterList()
        for name in self.names:
            out_features, in_features = modules[self.targets[name]].weight.shape
            down = torch.randn(rank, in_features, generator=generator) / rank
            self.down.append(nn.Parameter(down))
            self.up.append(nn.Parameter(torch.zeros(out_features, rank)))

    # -- published layout -------------------------------------------------------------------------
    def state_dict_published(self) -> dict[str, torch.Tensor]:
        """The LoRA as a MotionLoRA file holds it: `<layer>_lora.{down,up}.weight`, fp32, on the CPU."""
        out = {}
        for name, down, up in zip(self.names, self.down, self.up):
            out[f"{name}_lora.down.weight"] = down.detach().float().cpu().clone().contiguous()
            out[f"{name}_lora.up.weight"] = up.detach().float().cpu().clone().contiguous()
        return out

    def load_published(self, sd: dict[str, torch.Tensor], name: str) -> None:
        """Start from a saved MotionLoRA (resume). Its layers must be exactly this motion model's, at this rank."""
        pairs = motion_lora.lora_pairs(sd, name, motion_lora._MOTION_LAYER, "a MotionLoRA")
        ranks = sorted({up.shape[1] for up, _ in pairs.values()})
        if ranks != [self.rank]:
            raise TrainingError(
                f"Cannot resume from '{name}': it has rank {', '.join(map(str, ranks))} but rank is set to {self.rank}. "
                f"Set rank to {ranks[0]} to continue it, or leave resume_from empty to start a new MotionLoRA.")
        missing = [n for n in self.names if n not in pairs]
        extra = [n for n in pairs if n not in self.targets]
        if missing or extra:
            what = (f"it has no weights for {len(missing)} of this motion model's layers (e.g. {missing[0]})" if missing
                    else f"it has {len(extra)} layers this motion model lacks (e.g. {extra[0]})")
            raise TrainingError(
                f"Cannot resume from '{name}': {what}, so it was trained on another motion model family (a mid block "
                f"only v2/AnimateLCM have, or SD1.5 vs SDXL). Resume with the motion model it was trained on, or leave "
                f"resume_from empty to start a new MotionLoRA.")
        with torch.no_grad():
            for i, layer in enumerate(self.names):
                up, down = pairs[layer]
                if tuple(up.shape) != tuple(self.up[i].shape) or tuple(down.shape) != tuple(self.down[i].shape):
                    raise TrainingError(
                        f"Cannot resume from '{name}': {layer} has shapes up {tuple(up.shape)} / down "
                        f"{tuple(down.shape)}, this motion model needs {tuple(self.up[i].shape)} / "
                        f"{tuple(self.down[i].shape)}. Resume with the motion model it was trained on.")
                self.up[i].copy_(up.float())
                self.down[i].copy_(down.float())

    # -- applying it while training ---------------------------------------------------------------
    @contextmanager
    def attached(self, motion_model: nn.Module):
        """Within the block, the motion model computes with W + up @ down (hooks; removed on exit, even on error)."""
        modules = dict(motion_model.named_modules())
        handles = []
        try:
            for i, name in enumerate(self.names):
                handles.append(modules[self.targets[name]].register_forward_hook(self._hook(i)))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, i: int):
        def add_lora(module, args, out):
            x = args[0]
            down, up = self.down[i], self.up[i]
            # low-rank path in the activations' dtype (autocast picks its own); out + up·(down·x)
            return out + F.linear(F.linear(x, down.to(x.dtype)), up.to(x.dtype)).to(out.dtype)
        return add_lora
