"""The UNet's spatial transformers in batches of at most N frames per pass, so the memory a spatial transformer needs
stays that of N frames however many frames a UNet call holds (motion-only windows give it all of them).

Each SpatialTransformer of the loaded UNet runs on the frames of a call in batches of `limit` frames of every cond
(cond and uncond rows keep their layout, so patches that split a batch by `cond_or_uncond` still see it), and the
batches' outputs are put together. A spatial transformer treats every frame on its own, so the result is the same
(bit for bit up to the attention kernel's own batching). ResBlocks are left whole: for AnimateDiff v1 and
Hotshot-XL their GroupNorms pool statistics over all frames of the call. The motion modules' feed-forward, per pixel
and frame, runs in as many slices (motion.windows.CallWindows), when they work in motion windows.

How, through the extension points the motion layers use (motion.injection): a `PatcherInjection` puts each spatial
transformer inside a `FrameBatchedTransformer` while the clone is patched in (key paths come back on eject, before
any weight patch runs), and a `forward_timestep_embed_patch` runs it with the step's transformer_options. Imports
ComfyUI lazily.
"""
from __future__ import annotations

from torch import nn

from ..common.unet_call import frames_in_call

KEY = "motionkit_spatial_batch"


class FrameBatchedTransformer(nn.Module):
    """Stands in a UNet block in place of a SpatialTransformer; runs it `limit` frames at a time."""

    def __init__(self, transformer: nn.Module, limit: int):
        super().__init__()
        self.transformer = transformer
        self.limit = limit

    def forward(self, x):  # only reached if ComfyUI ever calls the layer without our patch
        raise RuntimeError("MotionKit spatial batching called without transformer_options; this ComfyUI version "
                           "does not support forward_timestep_embed_patch.")


def frame_batches(chunks: int, frames: int, limit: int) -> list[list[int]]:
    """Rows of a (chunks·frames) batch, `limit` frames of every chunk at a time."""
    return [[c * frames + f for c in range(chunks) for f in range(start, min(start + limit, frames))]
            for start in range(0, frames, limit)]


def _rows_of(value, rows: list[int], batch: int):
    if isinstance(value, list):
        return [_rows_of(v, rows, batch) for v in value]
    if getattr(value, "ndim", 0) > 0 and value.shape[0] == batch:
        return value[rows]
    return value


def run_in_frame_batches(transformer: nn.Module, x, context, transformer_options: dict, limit: int):
    frames = frames_in_call(x.shape[0], transformer_options)
    if limit <= 0 or frames <= limit:
        return transformer(x, context, transformer_options)
    out = None
    for rows in frame_batches(x.shape[0] // frames, frames, limit):
        part = transformer(x[rows], _rows_of(context, rows, x.shape[0]), transformer_options)
        if out is None:
            out = part.new_empty((x.shape[0],) + tuple(part.shape[1:]))
        out[rows] = part
    return out


def frame_batched_handler(layer, x, emb, context, transformer_options, *args, **kwargs):
    out = run_in_frame_batches(layer.transformer, x, context, transformer_options, layer.limit)
    if "transformer_index" in transformer_options:  # what core does after a SpatialTransformer
        transformer_options["transformer_index"] += 1
    return out


def make_injection(limit: int):
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.patcher_extension import PatcherInjection

    backups: list = []

    def inject(patcher):
        unet = patcher.model.diffusion_model
        for block in [*unet.input_blocks, unet.middle_block, *unet.output_blocks]:
            for name, layer in list(block._modules.items()):
                if type(layer) is SpatialTransformer:  # not SpatialVideoTransformer (SVD)
                    block._modules[name] = FrameBatchedTransformer(layer, limit)
                    backups.append((block, name, layer))

    def eject(patcher):
        while backups:
            block, name, layer = backups.pop()
            block._modules[name] = layer

    return PatcherInjection(inject=inject, eject=eject)


def set_spatial_batch_limit(model_patcher, limit: int) -> None:
    """On a clone: its spatial transformers run `limit` frames at a time (0: all frames at once)."""
    model_patcher.remove_injections(KEY)
    if limit <= 0:
        return
    model_patcher.set_injections(KEY, [make_injection(limit)])
    patches = model_patcher.model_options["transformer_options"].get("patches", {}).get("forward_timestep_embed_patch", [])
    if not any(cls is FrameBatchedTransformer for cls, _ in patches):
        model_patcher.set_model_forward_timestep_embed_patch((FrameBatchedTransformer, frame_batched_handler))
