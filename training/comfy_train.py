"""Training a MotionLoRA on ComfyUI's own loaded model (the only module of `training` that imports ComfyUI).

How (all on clones; the input MODEL, the loaded motion model and every other graph are left as they were):
* The motion model is applied with motion.injection.apply_motion_model to a clone of the MODEL, exactly as for
  sampling, with the motion model's own noise schedule; so the UNet runs as it will when the LoRA is used.
* It trains on a private copy of the motion model (motion.lora.unpatched_copy, its weights as loaded): ComfyUI
  runs nodes under torch.inference_mode, and inference tensors cannot take part in backward; and the copy keeps
  another graph's MotionLoRA (patched into the shared loaded model) out of training.
* The LoRA is core's own LoRA training machinery: each to_q/to_k/to_v/to_out.0 of every motion-module attention
  block gets a `comfy.weight_adapter.lora.LoraDiff` (alpha = rank: scale exactly 1, so W' = W + up @ down, the
  published MotionLoRA rule; initialised as diffusers', see training.lora), registered with
  `ModelPatcher.add_weight_wrapper` for that layer's weight key, as core's Train LoRA (comfy_extras/nodes_train.py)
  does for UNet layers. The key is the motion model's, on the motion model's ModelPatcher: that patcher is the
  MODEL clone's additional model, and ModelPatcher.load walks only its own model with the injections ejected, so
  the motion layers get their weight functions when (and only when) the motion patcher itself is loaded. Hence
  both are loaded together here, as core's sampling does (model + get_nested_additional_models). The motion layers
  are comfy.ops layers (motion.injection.comfy_layers), which run their `weight_function`s; the frozen weight is
  never written.
* The UNet's frozen weights enter backward through ModelPatcher weight wrappers too (`Unfrozen`): each layer's
  weight is used as a detached normal tensor copy for that layer's forward only.
* Gradient checkpointing: a PatcherInjection wraps each layer of every UNet block (ResBlocks, spatial transformers,
  motion layers) so only block inputs are kept and each layer is recomputed in backward (weight functions, the
  LoRA's included, run again); the wrappers are run by a forward_timestep_embed_patch (core's own dispatch), with
  the call's transformer_options frozen for the recomputation.
* The clips are trained in the model's latent space: the VAE's latents through the model's process_latent_in
  (×0.18215 for SD1.5, ×0.13025 for SDXL), as ComfyUI's samplers hand latents to the model (CFGGuider.inner_sample,
  which core's Train LoRA also runs through) and as AnimateDiff's train.py scales them (latents * 0.18215). Raw VAE
  latents (about 5× larger) would train at a far higher signal-to-noise ratio than the UNet ever sees when sampling.
* The loss is the model's own objective through its model_sampling (training.objective); the loop is training.loop.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

import torch
from torch import nn

from . import checkpoint
from .clips import match_captions, split_clips
from .errors import TrainingError
from .lora import MotionLoRALayers
from .loop import TrainSettings, train
from .objective import draw_sigmas, prediction_loss

from ..motion.injection import MotionSettings, applications, apply_motion_model, compute_dtype
from ..motion.lora import MotionLoRA, read_motion_lora, unpatched_copy
from ..sampling import schedules

CHECKPOINT_KEY = "motionkit_train_checkpointing"
UNFREEZE_KEY = "motionkit_train"


@dataclass
class TrainRequest:
    rank: int
    settings: TrainSettings
    gradient_checkpointing: bool
    save_path: str | None          # where the file goes (None: keep in memory only)
    overwrite: bool = False
    resume_path: str | None = None
    frames_per_clip: int = 0
    save_shown: str | None = None  # how messages name save_path (relative to its ComfyUI folder, never a host path)
    empty_caption: list | None = None  # CONDITIONING of "" (the captions' CLIP): what a dropped caption becomes


# ---------------------------------------------------------------------------------------------
# ComfyUI hooks

class Unfrozen:
    """ModelPatcher weight wrapper of every UNet layer: the layer's weight as a constant of this forward that backward
    can use (a normal-tensor copy of an inference-mode weight) but never differentiates (detached: ComfyUI's loaders
    leave requires_grad on, and a UNet weight must not collect a gradient, which would also cost its size again)."""

    def __call__(self, weight):
        return weight.detach().clone() if weight.is_inference() else weight.detach()


class CheckpointedLayer(nn.Module):
    """Stands in a UNet block for one of its layers while training; run by `checkpointed_handler`."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer


def checkpointed_handler(wrapper, x, emb, context, transformer_options, output_shape=None, time_context=None,
                         num_video_frames=None, image_only_indicator=None):
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import forward_timestep_embed

    snapshot = dict(transformer_options)  # backward recomputes after the UNet moved on to other blocks

    def run(h):
        return forward_timestep_embed([wrapper.layer], h, emb, context, dict(snapshot), output_shape, time_context,
                                      num_video_frames, image_only_indicator)

    out = torch.utils.checkpoint.checkpoint(run, x, use_reentrant=False)
    if isinstance(wrapper.layer, SpatialTransformer) and "transformer_index" in transformer_options:
        transformer_options["transformer_index"] += 1
    return out


def checkpointing_injection():
    from comfy.patcher_extension import PatcherInjection

    wrapped: list = []

    def inject(patcher):
        unet = patcher.model.diffusion_model
        for block in [*unet.input_blocks, unet.middle_block, *unet.output_blocks]:
            for name, layer in list(block._modules.items()):
                if not isinstance(layer, CheckpointedLayer):
                    wrapper = CheckpointedLayer(layer)
                    block._modules[name] = wrapper
                    wrapped.append((block, name, wrapper, layer))

    def eject(patcher):
        while wrapped:
            block, name, wrapper, layer = wrapped.pop()
            if block._modules.get(name) is wrapper:  # the motion injection may have removed its own layer already
                block._modules[name] = layer

    return PatcherInjection(inject=inject, eject=eject)


def lora_diff(up: torch.Tensor, down: torch.Tensor):
    """One layer's trainable LoRA as core's weight adapter: LoraDiff computes w + (alpha / rank)·(up @ down); with
    alpha = rank that factor is exactly 1.0, the published MotionLoRA rule. It copies `up` / `down` in (its own
    create_train init, up random and down zero, is the reverse of diffusers' and is not used)."""
    from comfy.weight_adapter.lora import LoraDiff

    return LoraDiff((up, down, float(up.shape[1]), None, None, None))


def motion_patcher_of(m, motion_copy):
    """The ModelPatcher of `motion_copy` riding on the MODEL clone `m` (motion.injection.apply_motion_model)."""
    app = next(a for a in applications(m) if a.motion_model is motion_copy)
    (patcher,) = m.get_additional_models_with_key(app.key)
    return patcher


def add_lora_wrappers(motion_patcher, lora: MotionLoRALayers) -> None:
    """Each LoRA adapter as a weight wrapper of its layer's weight key on the motion model's ModelPatcher."""
    for name, adapter in zip(lora.names, lora.adapters):
        motion_patcher.add_weight_wrapper(f"{lora.targets[name]}.weight", adapter)


def training_patcher(model, loaded_motion, motion_copy, lora: MotionLoRALayers, dtype: torch.dtype,
                     gradient_checkpointing: bool):
    """A MODEL clone that runs the UNet + motion copy with the LoRA for training (see the module docstring)."""
    schedule = schedules.resolve(schedules.AUTO, loaded_motion.info.schedule)
    sampling = schedules.make_model_sampling(schedule) if schedule is not None else None
    m = apply_motion_model(model, motion_copy, loaded_motion.info, loaded_motion.name, MotionSettings(), sampling)
    m.set_model_compute_dtype(dtype)
    for name, module in m.model.named_modules():
        if hasattr(module, "weight_function") and getattr(module, "weight", None) is not None:
            m.add_weight_wrapper(f"{name}.weight", Unfrozen())
        if hasattr(module, "bias_function") and getattr(module, "bias", None) is not None:
            m.add_weight_wrapper(f"{name}.bias", Unfrozen())
    add_lora_wrappers(motion_patcher_of(m, motion_copy), lora)
    if gradient_checkpointing:
        m.set_injections(CHECKPOINT_KEY, [checkpointing_injection()])
        m.set_model_forward_timestep_embed_patch((CheckpointedLayer, checkpointed_handler))
    return m


def check_lora_attached(motion_copy, lora: MotionLoRALayers) -> None:
    """After loading: every LoRA adapter is a weight function of its motion layer (never train nothing silently)."""
    modules = dict(motion_copy.named_modules())
    missing = [name for name, adapter in zip(lora.names, lora.adapters)
               if not any(f is adapter for f in getattr(modules[lora.targets[name]], "weight_function", ()))]
    if missing:
        raise TrainingError(f"ComfyUI did not attach the LoRA to {len(missing)} of the motion model's {len(lora.names)} "
                            f"attention layers (e.g. {missing[0]}), so training would not change them. Please report "
                            f"this with your ComfyUI version.")


def unload(m) -> None:
    """Take the training clone and its motion patcher out of ComfyUI's loaded models (ejecting its layers), so nothing
    of it stays."""
    import comfy.model_management as mm

    ours = [m, *m.get_nested_additional_models()]
    for i in range(len(mm.current_loaded_models) - 1, -1, -1):
        if any(mm.current_loaded_models[i].model is p for p in ours):
            mm.current_loaded_models.pop(i).model_unload()
    m.detach()


# ---------------------------------------------------------------------------------------------
# Captions

def caption_entries(conditionings: list) -> list:
    """One [cond, options] entry per caption: a CONDITIONING whose cond has N rows gives N captions (one per clip)."""
    entries = []
    for conditioning in conditionings:
        if not conditioning:
            raise TrainingError("An empty CONDITIONING was given as a caption; connect CLIP Text Encode.")
        if len(conditioning) > 1:
            logging.warning(f"MotionKit: a caption CONDITIONING holds {len(conditioning)} entries (combined or area "
                            f"conds); training uses its first.")
        cond, options = conditioning[0]
        if cond.shape[0] == 1:
            entries.append([cond, options])
        else:
            for row in range(cond.shape[0]):
                opts = {k: (v[row:row + 1] if isinstance(v, torch.Tensor) and v.shape[:1] == cond.shape[:1] else v)
                        for k, v in options.items()}
                entries.append([cond[row:row + 1], opts])
    return entries


def model_conds(m, entry, frames: int, latent_shape, device) -> dict:
    """What apply_model takes for one caption over one clip's frames (c_crossattn, and y for SDXL)."""
    import comfy.samplers
    from comfy.sampler_helpers import convert_cond

    noise = torch.zeros((frames, *latent_shape), device=device)
    conds = comfy.samplers.encode_model_conds(m.model.extra_conds, convert_cond([entry]), noise, device, "positive")
    return {name: c.process_cond(batch_size=frames, device=device, area=None) for name, c in conds[0]["model_conds"].items()}


# ---------------------------------------------------------------------------------------------
# The run

def check_resume(saved_path: str, info, name: str):
    saved = checkpoint.load(saved_path)
    lora = read_motion_lora(saved_path)
    file = os.path.basename(saved_path)
    if lora.base != info.base:
        raise TrainingError(f"Cannot resume from '{file}': it is a MotionLoRA for {lora.base} motion models and "
                            f"'{name}' is {info.base}. Resume with the motion model it was trained on, or leave "
                            f"resume_from empty.")
    if saved.metadata.family and saved.metadata.family != info.family:
        raise TrainingError(f"Cannot resume from '{file}': it was trained on {saved.metadata.family} "
                            f"('{saved.metadata.motion_model}') and the motion model is {info.family} ('{name}'). "
                            f"Resume with the motion model it was trained on, or leave resume_from empty.")
    return saved


def model_space(model, clips: torch.Tensor) -> torch.Tensor:
    """Clips [clips, frames, C, H, W] of VAE latents -> the model's latent space (its latent format's process_in, row
    by row as the samplers apply it to an [N, C, H, W] latent)."""
    return model.model.process_latent_in(clips.flatten(0, 1)).reshape(clips.shape)


def run(model, loaded_motion, latents: list, captions: list, request: TrainRequest, progress=None):
    """Train; returns (MotionLoRA at strength 1, losses of this run, steps done in all)."""
    import comfy.model_management as mm

    info, name = loaded_motion.info, loaded_motion.name
    clips = model_space(model, split_clips(latents, request.frames_per_clip, info.max_frames))
    entries = match_captions(caption_entries(captions), clips.shape[0])
    if request.save_path:
        checkpoint.check_target(request.save_path, request.overwrite, request.resume_path, request.save_shown)
    settings = request.settings
    if settings.caption_dropout > 0 and request.empty_caption is None:
        logging.warning(f"MotionKit Train MotionLoRA: caption_dropout {settings.caption_dropout} needs the empty "
                        f"caption: connect the checkpoint's CLIP to the node's clip input. Training without caption "
                        f"dropout.")
        settings = replace(settings, caption_dropout=0.0)
    empty_entry = caption_entries([request.empty_caption])[0] if settings.caption_dropout > 0 else None
    lora_name = os.path.basename(request.save_path) if request.save_path else "trained MotionLoRA"

    with torch.inference_mode(False), torch.enable_grad():
        # (read here: tensors made under ComfyUI's inference mode could not be updated by the optimizer)
        saved = check_resume(request.resume_path, info, name) if request.resume_path else None
        motion_copy = unpatched_copy(loaded_motion.model, compute_dtype(model))
        lora = MotionLoRALayers(motion_copy, request.rank, torch.Generator().manual_seed(settings.seed), lora_diff)
        if saved is not None:
            lora.load_published(saved.weights, os.path.basename(request.resume_path))
        m = training_patcher(model, loaded_motion, motion_copy, lora, settings.dtype, request.gradient_checkpointing)
        try:
            # the motion patcher too (core's sampling loads a model's additional models with it): loading it is what
            # hangs the LoRA adapters on the motion layers, and moves the copy and the adapters to the device
            mm.load_models_gpu([m, *m.get_nested_additional_models()], force_full_load=True)
            check_lora_attached(motion_copy, lora)
            device = m.load_device
            settings.device_type = torch.device(device).type
            lora.to(device)  # (loading moved it already: ComfyUI moves weight functions with their layers)
            sampling = m.get_model_object("model_sampling")
            frames = clips.shape[1]
            per_clip = [model_conds(m, e, frames, clips.shape[2:], device) for e in entries]
            empty = model_conds(m, empty_entry, frames, clips.shape[2:], device) if empty_entry is not None else None
            clips_dev = clips.to(device)
            base_options = m.model_options["transformer_options"]

            def denoise(x_t, sigma, cond):
                # one "cond" chunk per clip: the motion layers take each clip's frames as one sample
                options = {**base_options, "cond_or_uncond": [0] * (x_t.shape[0] // frames), "sigmas": sigma}
                return m.model.apply_model(x_t, sigma, transformer_options=options, **cond)

            def loss_fn(batch):
                chosen = [empty if dropped else per_clip[i] for i, dropped in zip(batch.clips, batch.dropped)]
                cond = {k: chosen[0][k].concat([c[k] for c in chosen[1:]]) if len(chosen) > 1 else chosen[0][k].cond
                        for k in chosen[0]}
                return prediction_loss(sampling, denoise, batch.x0, batch.noise.to(device), batch.sigma, cond)

            metadata = checkpoint.Metadata(rank=request.rank, base=info.base, family=info.family, motion_model=name,
                                           learning_rate=settings.learning_rate, seed=settings.seed,
                                           clips=clips.shape[0], frames=frames)

            def on_save(step, optimizer_state):
                if request.save_path:
                    metadata.step = step
                    checkpoint.save(request.save_path, lora.state_dict_published(), metadata, optimizer_state)

            start = saved.metadata.step if saved is not None else 0
            result = train(lora.trainable(), clips_dev, loss_fn, settings, lambda n, g: draw_sigmas(sampling, n, g),
                           start_step=start, optimizer_state=saved.optimizer_state if saved is not None else None,
                           on_step=progress, on_save=on_save, check_interrupt=mm.throw_exception_if_processing_interrupted)
        finally:
            unload(m)
        weights = lora.state_dict_published()
    trained = MotionLoRA(lora_name, weights, info.base, any(k.startswith("mid_block.") for k in weights), request.rank)
    return trained, result.losses, result.step
