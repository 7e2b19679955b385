"""LoRA layers for the motion modules' attention projections, in the published MotionLoRA layout (§4.9).

What is trained: for every motion-module attention block, a pair (down [r, C], up [C, r]) on each of to_q, to_k,
to_v and to_out.0, meaning W' = W + up @ down (no alpha, no rank scaling: the published files' rule, which
motion.lora applies as ComfyUI weight patches). Nothing else of the motion model or the UNet changes.

How it acts: each pair is a *weight adapter*, a module `w -> w + up @ down` that computes the layer's weight for
one forward; the frozen weight itself is never written, so the base weights stay bit-identical, and it is re-run
when gradient checkpointing recomputes a layer. Two ways to put the adapters on the layers, one per setting:

* Inside ComfyUI (training.comfy_train, what the node runs): the adapters are core's own
  `comfy.weight_adapter.lora.LoraDiff` (alpha = rank, so its scale alpha/rank is exactly 1), registered with
  `ModelPatcher.add_weight_wrapper` on the motion model's ModelPatcher, exactly as core's Train LoRA does for UNet
  layers; ComfyUI then runs them as the layers' `weight_function` (comfy.ops).
* Without ComfyUI (the pure-torch unit tests, whose motion model has plain torch layers, which have no
  `weight_function`): `WeightDelta`, the same function with the same parameter names, put on the layers with
  torch's own `torch.nn.utils.parametrize` for the duration of `MotionLoRALayers.attached`.

The parameters, their names, initialisation, saving and resuming are this module's, whichever adapter holds them.
They are named with the published keys, so saving is a rename-free copy and resuming reads a published file as it
is. Initialisation as diffusers' LoRALinearLayer (which the published MotionLoRAs were trained with):
down ~ N(0, 1/r), up = 0, so training starts exactly at the base motion model.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..motion import lora as motion_lora
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


class _Matrix(nn.Module):
    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(value)


class WeightDelta(nn.Module):
    """w -> w + up @ down, computed in fp32 and returned in w's dtype: LoraDiff's arithmetic at scale 1, with its
    parameter names (`lora_up.weight`, `lora_down.weight`). Only for training without ComfyUI (see the module
    docstring); inside ComfyUI the adapter is core's LoraDiff itself."""

    def __init__(self, up: torch.Tensor, down: torch.Tensor):
        super().__init__()
        self.lora_up = _Matrix(up)
        self.lora_down = _Matrix(down)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return (w + self.lora_up.weight @ self.lora_down.weight).to(w.dtype)


class MotionLoRALayers(nn.Module):
    """The trainable LoRA of one motion model: one weight adapter per layer, `adapters[i]` for layer `names[i]`.

    `adapter(up, down)` makes an adapter holding the two matrices as `.lora_up.weight` / `.lora_down.weight` and
    computing w + up @ down (WeightDelta by default; training.comfy_train passes core's LoraDiff)."""

    def __init__(self, motion_model: nn.Module, rank: int, generator: torch.Generator | None = None, adapter=WeightDelta):
        super().__init__()
        if rank < 1:
            raise TrainingError(f"rank must be at least 1 (got {rank}); the published MotionLoRAs use 64.")
        self.rank = rank
        self.targets = target_layers(motion_model)
        self.names = list(self.targets)
        modules = dict(motion_model.named_modules())
        self.adapters = nn.ModuleList()
        for name in self.names:
            out_features, in_features = modules[self.targets[name]].weight.shape
            up = torch.zeros(out_features, rank)
            down = torch.randn(rank, in_features, generator=generator) / rank  # std 1/r, as diffusers
            a = adapter(up, down)
            # whatever init an adapter class has of its own (LoraDiff's create_train: the reverse), start from this one
            if not (torch.equal(a.lora_up.weight.detach().cpu().float(), up)
                    and torch.equal(a.lora_down.weight.detach().cpu().float(), down)):
                raise TrainingError(f"internal: the LoRA adapter {type(a).__name__} did not take the initial weights.")
            self.adapters.append(a)

    @property
    def down(self) -> list[nn.Parameter]:
        return [a.lora_down.weight for a in self.adapters]

    @property
    def up(self) -> list[nn.Parameter]:
        return [a.lora_up.weight for a in self.adapters]

    def trainable(self) -> list[nn.Parameter]:
        """What the optimizer updates: every down, then every up (LoraDiff's fixed alpha is not among them)."""
        return self.down + self.up

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
        ups, downs = self.up, self.down
        with torch.no_grad():
            for i, layer in enumerate(self.names):
                up, down = pairs[layer]
                if tuple(up.shape) != tuple(ups[i].shape) or tuple(down.shape) != tuple(downs[i].shape):
                    raise TrainingError(
                        f"Cannot resume from '{name}': {layer} has shapes up {tuple(up.shape)} / down "
                        f"{tuple(down.shape)}, this motion model needs {tuple(ups[i].shape)} / "
                        f"{tuple(downs[i].shape)}. Resume with the motion model it was trained on.")
                ups[i].copy_(up.float())
                downs[i].copy_(down.float())

    # -- applying it without ComfyUI --------------------------------------------------------------
    @contextmanager
    def attached(self, motion_model: nn.Module):
        """Pure torch only: within the block, each target layer's weight is computed through its adapter
        (torch.nn.utils.parametrize; removed on exit, even on error, leaving the original weight in place)."""
        from torch.nn.utils import parametrize

        modules = dict(motion_model.named_modules())
        done = []
        try:
            for name, adapter in zip(self.names, self.adapters):
                layer = modules[self.targets[name]]
                parametrize.register_parametrization(layer, "weight", adapter, unsafe=True)
                done.append(layer)
            yield self
        finally:
            for layer in reversed(done):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
