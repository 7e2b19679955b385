"""The dtype the motion modules compute in, and the loaded motion model's weights in that dtype.

* `auto` (default): the UNet's own compute dtype; the weights are converted to it and the motion modules run in
  the dtype of the activations they get, exactly as before this option existed.
* `bf16` / `fp16` / `fp32`: the motion modules compute what they add (delta) in that dtype, with their weights
  stored in it; the residual sum x + scale·delta stays in the UNet's dtype (motion.model.MotionModule). On CPUs
  with bf16 instructions (avx512_bf16, AMX) bf16 runs the motion modules about 2× faster than fp32 at a small
  numeric cost (bench/README.md); on CPUs without them (AVX2 only) bf16 is emulated and the motion modules run 4-8x
  slower than fp32 (apply warns). CPU fp16 matrix products are slower than fp32, so fp16 is for GPUs.

Weights per dtype (`weights_in`): the loaded motion model (cached by ComfyUI and shared by every graph using the
file) holds one set of weights. A graph that needs another dtype gets a converted copy, made once per dtype and
kept on the loaded model while a graph uses it, so two Apply nodes asking for one dtype share one copy (their
MotionLoRAs go on per-graph ModelPatcher clones, see motion.lora). When nothing runs the loaded weights yet and
the new dtype holds them exactly (fp16/bf16 → fp32), they are widened in place instead of copied, so an fp16
file run by an fp32 UNet is in memory once, not twice.

Plain torch; nothing here imports ComfyUI.
"""
from __future__ import annotations

import weakref

import torch

from .errors import MotionKitError
from .lora import _BASE_PATCHER, unpatched_copy

AUTO = "auto"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CHOICES = [AUTO, *DTYPES]

_COPIES = "motionkit_dtype_copies"  # on the loaded model: {dtype: copy}, weak (a copy lives while a graph uses it)


def precision_dtype(precision: str) -> torch.dtype | None:
    """The dtype a precision choice computes in; None for auto (the dtype of the activations)."""
    if precision == AUTO:
        return None
    if precision not in DTYPES:
        raise MotionKitError(f"Apply Motion Model: precision '{precision}' is not one of {', '.join(CHOICES)}. "
                             f"Choose auto (the UNet's own dtype) unless you want bf16's speed on CPU or fp16 on a GPU.")
    return DTYPES[precision]


def cpu_bf16_instructions() -> bool | None:
    """Whether this CPU has bf16 matrix instructions (avx512_bf16 or AMX tiles); None when torch cannot tell.

    Without them (e.g. AVX2-only CPUs) torch's bf16 matrix products are emulated and run several times slower than
    fp32 (bench/README.md: 8-10x per GEMM, motion modules 4-8x), so bf16 does not pay there."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [c for c in checks if callable(c)]
    if not checks:
        return None
    return any(c() for c in checks)


def _dtypes(model: torch.nn.Module) -> set:
    return {t.dtype for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()}


def weights_in(motion_model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`motion_model` with its weights in `dtype`: the loaded model itself, or one copy per dtype shared by the
    graphs that ask for it. The weights are always the ones loaded from the file (no other graph's LoRA)."""
    stored = _dtypes(motion_model)
    if stored <= {dtype}:
        return motion_model
    copies = motion_model.__dict__.setdefault(_COPIES, weakref.WeakValueDictionary())  # plain attribute, no submodule
    shared = copies.get(dtype)
    if shared is not None:
        return shared
    if _BASE_PATCHER not in motion_model.__dict__ and all(torch.promote_types(d, dtype) == dtype for d in stored):
        # no graph runs these weights (a graph that did would own a ModelPatcher of them) and `dtype` holds every
        # value exactly: widen in place. Copies made from it later in any dtype equal copies of the file's weights.
        return motion_model.to(dtype)
    copies[dtype] = shared = unpatched_copy(motion_model, dtype)
    return shared
