"""Putting motion modules into ComfyUI's loaded SD1.5/SDXL UNet, through official extension points only.

How (all on a ModelPatcher clone; the input MODEL is never touched):
* `PatcherInjection` (ComfyUI's hook for adding modules to a model): while the clone is patched
  in, each motion module sits in its UNet block as a `MotionLayer`, after the spatial transformer and
  before any upsampler (MOTION_FORMATS.md §3). Weight patches (LoRAs) run while ejected, so key
  paths of the UNet never change. For v1 and Hotshot-XL the UNet's resnet/output GroupNorms are
  swapped for frame-pooled ones (§7) the same way; eject restores every original.
* `forward_timestep_embed_patch` (a transformer_options patch) runs each MotionLayer with the
  step's transformer_options, so it knows the frame count even when cond and uncond share a batch.
* The motion model is an additional model of the clone: it loads and offloads with the UNet.
* wrappers: OUTER_SAMPLE checks the frame count before anything is loaded; DIFFUSION_MODEL keeps
  the per-call frame count for the pooled norms.

This file imports ComfyUI lazily, so `motion` stays importable (and testable) without it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from .errors import IncompatibleModelError, TooManyFramesError
from .formats import MotionModelInfo
from .model import POOLED, MotionModel
from .keyframes_sampling import KeyframeSelection, keyframed_settings
from .regional import attention_key_scale, block_scale, log_mask_notes, masked_scale
from .spatial_batch import FrameBatchedTransformer, set_spatial_batch_limit
from .windows import KEY as WINDOWS_KEY, MotionWindows, call_windows

from ..common.patch import new_key, patched_clone
from ..common.unet_call import frames_in_call, in_sigma_range, transformer_options_of, window_frames

LAYER_NAME = "motionkit_motion"
# transformer_options entry: {motion module: tensor added to its input} (AnimateLCM-I2V image features,
# put there per UNet call by motion.image_conditioning)
IMAGE_FEATURES = "motionkit_image_features"
# transformer_options entry: {motion module: {attention block index: function of its input}} (CameraCtrl's camera
# features, put there per UNet call by camera.apply; motion.model.TemporalTransformerBlock applies them)
ATTENTION_INPUTS = "motionkit_attention_inputs"


@dataclass
class MotionSettings:
    scale: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    # sigma bounds, filled in before each sampling run from the model's own sampling schedule
    start_sigma: float = float("inf")
    end_sigma: float = 0.0
    # motion.keyframes.MotionScaleSchedule: multiplies `scale` per frame (None = the same on every frame)
    schedule: object = None
    # motion.regional.MotionMask: multiplies the scale per pixel and frame (regional motion; None = everywhere)
    mask: object = None
    # {"down"|"mid"|"up": factor}: multiplies the scale of that UNet block group's motion modules (None = 1 each)
    block_scales: dict | None = None
    # multiplies the motion modules' attention keys (ADE's scale_multival), and a MotionMask of it per pixel and frame
    attention_scale: float = 1.0
    attention_mask: object = None
    # motion.keyframes_sampling.MotionKeyframes: values that multiply the above from given start percents on
    keyframes: object = None


def in_range(settings: MotionSettings, transformer_options: dict) -> bool:
    """Whether this UNet call's sigma lies in the part of sampling the motion model acts in."""
    return in_sigma_range(settings, transformer_options)


def frame_scale(settings: MotionSettings, frames: int, transformer_options: dict):
    """The motion scale of this call: a number, or a tensor [frames] when the schedule varies over them.

    The schedule is indexed by absolute frame: inside a context window (core's handler puts the window
    in transformer_options) by the window's frames, else frames 0..F-1."""
    if settings.schedule is None:
        return settings.scale
    window = getattr(transformer_options.get("context_window"), "index_list", None)
    indices = window if window is not None and len(window) == frames else range(frames)
    values = [settings.scale * v for v in settings.schedule.values(indices)]
    return values[0] if len(set(values)) == 1 else torch.tensor(values)


@dataclass
class FrameContext:
    """Frames per batch item in the current UNet call, and whether the motion model acts in it
    (start/end percent); set by the DIFFUSION_MODEL wrapper."""
    frames: int = 1
    active: bool = True


@dataclass
class MotionApplication:
    """One motion model applied to one MODEL: everything its injection needs."""
    motion_model: MotionModel
    info: MotionModelInfo
    name: str
    settings: MotionSettings
    context: FrameContext = field(default_factory=FrameContext)
    key: str = field(default_factory=lambda: new_key("motion"))
    dtype: torch.dtype | None = None  # what the motion modules compute in (motion.precision); None = the activations'
    # with keyframes: which one is in force (motion.keyframes_sampling.KeyframeSelection), and the settings it makes
    selection: object = None
    current: MotionSettings | None = None


class MotionLayer(nn.Module):
    """Stands in a UNet block; runs one motion module. Called through forward_timestep_embed_patch."""

    def __init__(self, module: nn.Module, app: MotionApplication, kind: str | None = None):
        """`kind`: the module's UNet block group ('input', 'middle', 'output'), for the per-block scale."""
        super().__init__()
        self.module = module
        self.app = app
        self.kind = kind

    def run(self, x: torch.Tensor, transformer_options: dict) -> torch.Tensor:
        if not in_range(self.app.settings, transformer_options):
            return x
        current = self.app.current  # the keyframe in force applied, when there are keyframes
        s = current if current is not None else self.app.settings
        frames = frames_in_call(x.shape[0], transformer_options)
        scale = frame_scale(s, frames, transformer_options)
        factor = block_scale(s.block_scales, self.kind)
        if factor != 1.0:
            scale = scale * factor
        if not isinstance(scale, torch.Tensor) and scale == 0.0:
            return x  # no motion on any frame: skip the module
        if s.mask is not None:
            scale = masked_scale(scale, s.mask, window_frames(transformer_options, frames) or list(range(frames)), x)
        feature = transformer_options.get(IMAGE_FEATURES, {}).get(self.module)
        key_scale = attention_key_scale(s, frames, transformer_options, x)
        inputs = transformer_options.get(ATTENTION_INPUTS, {}).get(self.module)
        windows = call_windows(transformer_options, frames)  # motion-only windows (None: all frames at once)
        return self.module(x, frames, self.app.info.module_norm, scale, feature, self.app.dtype, key_scale, inputs,
                           windows)

    def forward(self, x):  # only reached if ComfyUI ever calls the layer without our patch
        raise RuntimeError("MotionKit motion layer called without transformer_options; this ComfyUI version "
                           "does not support forward_timestep_embed_patch.")


def step_keyframe(app: MotionApplication, transformer_options: dict) -> None:
    """Choose the keyframe in force for this UNet call from its sigma (once per sampling step, as ADE) and make the
    call's settings from it."""
    sigmas = transformer_options.get("sigmas")
    if app.selection is None or sigmas is None:
        return
    if app.selection.step(sigmas.reshape(-1)[0], transformer_options.get("sample_sigmas")) or app.current is None:
        app.current = keyframed_settings(app.settings, app.selection)


def motion_layer_handler(layer, x, emb, context, transformer_options, *args, **kwargs):
    return layer.run(x, transformer_options)


class FramePooledGroupNorm(nn.Module):
    """Runs the UNet's own GroupNorm with statistics pooled over the frames of each batch item (§7),
    while a motion model that needs it acts (several such models applied to one MODEL share it)."""

    def __init__(self, norm: nn.Module, context: FrameContext):
        super().__init__()
        self.norm = norm
        self.contexts = [context]

    def forward(self, x):
        context = next((c for c in self.contexts if c.active), None)
        if context is None:  # outside every pooling motion model's start/end percent: plain SD
            return self.norm(x)
        pooled = self.norm(rearrange(x, "(b f) c h w -> b c f h w", f=context.frames))
        return rearrange(pooled, "b c f h w -> (b f) c h w")


# ---------------------------------------------------------------------------------------------
# Layers and attention under ComfyUI

def comfy_layers():
    """(operations, attention) for building motion models under ComfyUI (motion.model, Load Motion Model).

    * operations: `comfy.ops.disable_weight_init`, what the UNet itself runs on when its weights are stored in the
      dtype it computes in (`comfy.ops.pick_operations`; the motion weights are, see motion.precision). Its layers
      carry `comfy_cast_weights`, so ComfyUI's model management can load the motion model partially in low-VRAM
      mode (layers that do not fit stay on the offload device and are cast per call, MotionLoRA patches applied
      on the fly) and cast weights stored in another dtype (ModelPatcher.force_cast_weights).
    * attention: see `comfy_attention`."""
    import comfy.ops

    return comfy.ops.disable_weight_init, comfy_attention()


def comfy_attention():
    """ComfyUI's selected attention (`comfy.ldm.modules.attention.optimized_attention`: PyTorch SDPA, xformers, sage,
    flash, or split / sub-quadratic when the user asks for them), same layout as motion.model.sdpa_attention.

    One exception: when no flag asked for it and ComfyUI fell back to a memory-bounding implementation (sub-quadratic,
    split or basic; the CPU default), the motion modules use core's PyTorch SDPA attention instead. Those fallbacks
    bound the memory of a long token sequence's score matrix; a motion module attends over at most 64 frames, whose
    scores are smaller than q itself, and there they are 1.3-3x slower than SDPA on the CPU (bench/README.md)."""
    from comfy.cli_args import args
    from comfy.ldm.modules import attention as comfy_attention_module

    chosen = comfy_attention_module.optimized_attention
    fallbacks = {comfy_attention_module.attention_sub_quad, comfy_attention_module.attention_split,
                 comfy_attention_module.attention_basic}
    asked = getattr(args, "use_split_cross_attention", False) or getattr(args, "use_quad_cross_attention", False)
    if chosen in fallbacks and not asked:
        return comfy_attention_module.attention_pytorch
    return chosen


# ---------------------------------------------------------------------------------------------
# Where modules go

def unet_description(unet) -> str:
    levels = len(getattr(unet, "channel_mult", ()))
    return {4: "SD1.5", 3: "SDXL"}.get(levels, f"a {levels}-level UNet")


def plan(unet, motion_model: MotionModel, info: MotionModelInfo, name: str):
    """[(block, position, motion module)]: position 'end', or the name of the layer to go before."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, Upsample
    from comfy.ldm.modules.attention import SpatialTransformer

    unet_kind = unet_description(unet)
    if unet_kind != info.base or getattr(unet, "model_channels", None) != motion_model.arch.block_channels[0]:
        fix = ("load an SDXL checkpoint, or choose an SD1.5 motion model (e.g. mm_sd_v15_v2.ckpt)" if info.base == "SDXL"
               else "load an SD1.5 checkpoint, or choose an SDXL motion model (e.g. mm_sdxl_v10_beta.ckpt)")
        raise IncompatibleModelError(
            f"'{name}' is an {info.base} motion model ({info.family}) but the MODEL is {unet_kind}: {fix}.")

    modules = {(kind, i): m for kind, i, m in motion_model.ordered_modules()}
    down = [b for b in unet.input_blocks if isinstance(b[0], ResBlock)]
    placements = []
    for i, block in enumerate(down):
        placements.append((block, None, modules[("input", i)]))
    if ("middle", 0) in modules:
        mid = unet.middle_block
        names = list(mid._modules)
        spatial = (SpatialTransformer, FrameBatchedTransformer)  # the latter: Motion-Only Windows' spatial batches
        after = next(j for j, n in enumerate(names) if isinstance(mid._modules[n], spatial))
        # after the motion layers of motion models applied before this one, as in the other blocks
        before = next(n for n in names[after + 1:] if not isinstance(mid._modules[n], MotionLayer))
        placements.append((mid, before, modules[("middle", 0)]))
    for i, block in enumerate(unet.output_blocks):
        up = next((n for n, layer in block._modules.items() if isinstance(layer, Upsample)), None)
        placements.append((block, up, modules[("output", i)]))
    for block, _, module in placements:
        res = block[0]
        if res.out_channels != module.temporal_transformer.channels:
            raise IncompatibleModelError(
                f"'{name}': motion module of {module.temporal_transformer.channels} channels does not fit a UNet "
                f"block of {res.out_channels}; this UNet is not a standard {info.base} UNet.")
    expected = len(list(motion_model.ordered_modules()))
    if len(placements) != expected:
        raise IncompatibleModelError(f"'{name}' has {expected} motion modules but the UNet has {len(placements)} places for them.")
    return placements


def _insert(block: nn.Module, layer: nn.Module, before: str | None, key: str) -> None:
    """Insert `layer` under `key` before the layer named `before` (or at the end), keeping every
    other layer's name, so key paths like `output_blocks.2.1.conv` still resolve."""
    items = list(block._modules.items())
    at = [n for n, _ in items].index(before) if before is not None else len(items)
    block._modules.clear()
    block._modules.update(items[:at] + [(key, layer)] + items[at:])


def make_injection(app: MotionApplication):
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
    from comfy.patcher_extension import PatcherInjection

    backups: list = []

    def pool(container: nn.Module) -> None:
        norm = container._modules["0"]
        if isinstance(norm, FramePooledGroupNorm):  # another pooling motion model got here first: share it
            norm.contexts.append(app.context)
            backups.append((norm, app.context, None))
        else:
            container._modules["0"] = FramePooledGroupNorm(norm, app.context)
            backups.append((container, "0", norm))

    def inject(patcher):
        unet = patcher.model.diffusion_model
        if app.info.unet_norm == POOLED:
            for res in [m for m in unet.modules() if isinstance(m, ResBlock)]:
                pool(res.in_layers)
                pool(res.out_layers)
            pool(unet.out)
        kinds = {id(m): kind for kind, _, m in app.motion_model.ordered_modules()}
        for block, before, module in plan(unet, app.motion_model, app.info, app.name):
            key = f"{LAYER_NAME}_{app.key}"
            _insert(block, MotionLayer(module, app, kinds.get(id(module))), before, key)
            backups.append((block, key, None))

    def eject(patcher):
        while backups:
            container, name, original = backups.pop()
            if isinstance(container, FramePooledGroupNorm):
                # a norm shared with another pooling motion model: `name` is this model's FrameContext
                container.contexts[:] = [c for c in container.contexts if c is not name]
            elif original is None:
                del container._modules[name]
            else:
                container._modules[name] = original

    return PatcherInjection(inject=inject, eject=eject)


# ---------------------------------------------------------------------------------------------
# Applying a motion model to a MODEL

def applications(model_patcher) -> list[MotionApplication]:
    """The motion models applied to a MODEL (clones share them), in the order they were applied."""
    return [a for a in model_patcher.attachments.values() if isinstance(a, MotionApplication)]


def compute_dtype(model_patcher) -> torch.dtype:
    """The dtype the UNet's activations run in (its manual-cast dtype when weights are stored smaller)."""
    base = model_patcher.model
    return getattr(base, "manual_cast_dtype", None) or base.get_dtype()


def check_window_length(app: MotionApplication, motion_windows: MotionWindows) -> None:
    """Motion-only windows longer than the motion model's positional encoding covers."""
    limit = app.info.max_frames
    if motion_windows.context_length > limit:
        raise TooManyFramesError(
            f"'{app.name}' ({app.info.family}) animates at most {limit} frames in one pass, but 'Motion-Only Windows' "
            f"gives it windows of {motion_windows.context_length} frames. Set its context_length to {limit} or less "
            f"({min(limit, 16)} is typical).")


def check_frames(app: MotionApplication, frames: int, windowed: bool = False,
                 motion_windows: MotionWindows | None = None) -> None:
    """`frames`: per UNet call; `windowed`: they are a context window's; `motion_windows`: the motion modules see
    them in windows of their own (motion.windows) when there are more than one window holds."""
    limit = app.info.max_frames
    if motion_windows is not None and motion_windows.active(frames):
        check_window_length(app, motion_windows)
        return
    if frames <= limit:
        return
    if windowed:
        raise TooManyFramesError(
            f"'{app.name}' ({app.info.family}) animates at most {limit} frames in one pass, but the context windows "
            f"give it {frames} frames at once. Set context_length on 'Context Windows (Motion)' to {limit} or less "
            f"({min(limit, 16)} is typical).")
    raise TooManyFramesError(
        f"'{app.name}' ({app.info.family}) animates at most {limit} frames in one pass, but sampling got a latent "
        f"batch of {frames} frames. Use {limit} frames or fewer (the batch size of the empty latent), or add "
        f"context windows with a context length of {min(limit, 16)} (at most {limit}) to render longer animations.")


def apply_motion_model(model_patcher, motion_model: MotionModel, info: MotionModelInfo, name: str,
                       settings: MotionSettings, model_sampling=None, loras=(), precision: str = "auto"):
    """A clone of `model_patcher` that animates; `model_patcher` itself is left as it was.

    `loras`: MotionLoRAs (motion.lora.MotionLoRA, strength each), added as weight patches to the motion model.
    `precision`: the dtype the motion modules compute in (motion.precision; auto = the UNet's)."""
    from .lora import add_motion_loras, motion_patcher
    from .precision import cpu_bf16_instructions, precision_dtype, weights_in

    plan(model_patcher.get_model_object("diffusion_model"), motion_model, info, name)  # fail now, not mid-sampling

    run_dtype = precision_dtype(precision)
    on_cpu = torch.device(model_patcher.load_device).type == "cpu"
    if run_dtype == torch.float16 and on_cpu:
        logging.warning(f"MotionKit: '{name}' runs its motion modules in fp16 on the CPU, which is slower than fp32 "
                        f"there; choose precision bf16 (fast on CPUs with bf16 support) or auto.")
    if run_dtype == torch.bfloat16 and on_cpu and cpu_bf16_instructions() is False:
        logging.warning(f"MotionKit: '{name}' runs its motion modules in bf16, but this CPU has no bf16 instructions "
                        f"(avx512_bf16 or AMX), so bf16 is several times slower than fp32 here (4-8x for the "
                        f"motion modules); choose precision auto.")
    # the loaded model is cached and shared: other dtypes come as one shared copy per dtype
    motion_model = weights_in(motion_model, run_dtype or compute_dtype(model_patcher))
    app = MotionApplication(motion_model, info, name, settings, dtype=run_dtype)
    motion = motion_patcher(motion_model, model_patcher)  # a clone: weight patches stay with this graph
    add_motion_loras(motion, loras, name)

    if settings.keyframes is not None:
        app.selection = KeyframeSelection(settings.keyframes)

    def check(noise, executor):  # before anything is loaded for sampling
        log_mask_notes(settings.mask, name, noise)
        log_mask_notes(settings.attention_mask, name, noise)
        for keyframe in getattr(settings.keyframes, "keyframes", ()):
            for value in (keyframe.effect, keyframe.scale):
                log_mask_notes(getattr(value, "mask", None), name, noise)
        model_options = executor.class_obj.model_options
        motion_windows = model_options.get("transformer_options", {}).get(WINDOWS_KEY)
        length = getattr(model_options.get("context_handler"), "context_length", None)
        if length is not None:  # windows of `length` frames, or all frames in one pass when they fit in one
            check_frames(app, min(length, noise.shape[0]), windowed=True, motion_windows=motion_windows)
        else:
            check_frames(app, noise.shape[0], motion_windows=motion_windows)

    def diffusion_model(executor, *args, **kwargs):
        x = args[0]
        transformer_options = transformer_options_of(args, kwargs)
        app.context.frames = frames_in_call(x.shape[0], transformer_options)
        app.context.active = in_range(settings, transformer_options)
        check_frames(app, app.context.frames, motion_windows=transformer_options.get(WINDOWS_KEY))
        step_keyframe(app, transformer_options)
        return executor(*args, **kwargs)

    def keyframes_pre_run(model_sampling):  # start sigmas on this model's schedule; a new run starts from the first
        app.selection.set_start_sigmas(model_sampling)
        app.current = None

    # attached, so later nodes find it (see `applications`)
    m = patched_clone(model_patcher, app.key, additional_models=[motion], attachment=app, percent_range=settings,
                      pre_run=keyframes_pre_run if app.selection is not None else None, before=check,
                      diffusion_model=diffusion_model)
    m.set_injections(app.key, [make_injection(app)])
    patches = m.model_options["transformer_options"].get("patches", {}).get("forward_timestep_embed_patch", [])
    if not any(cls is MotionLayer for cls, _ in patches):
        m.set_model_forward_timestep_embed_patch((MotionLayer, motion_layer_handler))
    if model_sampling is not None:
        m.add_object_patch("model_sampling", model_sampling)
    return m


def apply_motion_windows(model_patcher, motion_windows: MotionWindows):
    """A clone of `model_patcher` whose motion modules see the frames of each UNet call in windows (motion.windows)
    and whose spatial transformers run at most `spatial_batch_limit` frames at a time (motion.spatial_batch); the
    input is left as it was. Applied again, the later settings replace the earlier."""
    for app in applications(model_patcher):  # fail now, not mid-sampling (motion models applied later: before sampling)
        check_window_length(app, motion_windows)
    m = patched_clone(model_patcher, WINDOWS_KEY, replace=True)
    m.model_options.setdefault("transformer_options", {})[WINDOWS_KEY] = motion_windows
    set_spatial_batch_limit(m, motion_windows.spatial_batch_limit)
    return m
