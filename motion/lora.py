"""MotionLoRA (MOTION_FORMATS.md §4.9) and the v3 domain adapter (§4.10): reading, checking, applying.

Both files use diffusers' old attention-processor LoRA naming,
`<layer>.processor.to_{q,k,v,out}_lora.{down,up}.weight`, and both mean W' = W + s·(up @ down) on the
layer's `to_q/to_k/to_v` / `to_out.0` weight, with no alpha/rank normalisation. ComfyUI's own LoRA code
does exactly that (`comfy.lora.load_lora` reads this naming; without an alpha tensor the scale is 1), so
the weights are applied as ordinary ComfyUI weight patches:

* a MotionLoRA goes onto the motion model's ModelPatcher (an additional model of the UNet clone);
* the domain adapter goes onto a clone of the MODEL, as core LoraLoaderModelOnly would do it.

Patches are applied while a model is loaded and undone from ComfyUI's backup when another clone of it is
loaded, so the cached motion model and other graphs using it keep their weights.

The reading and checking here is plain torch; the functions that touch ComfyUI import it lazily.
"""
from __future__ import annotations

import copy
import logging
import os
import re
from dataclasses import dataclass

import torch

from .errors import IncompatibleModelError, MotionKitError
from .formats import DOMAIN_ADAPTER, MOTION_LORA, key_patterns, read_state_dict, reject_other_kinds

_PROCESSOR_LORA = re.compile(r"^(?P<layer>.+)\.processor\.(?P<proj>to_q|to_k|to_v|to_out)_lora\.(?P<half>up|down)\.weight$")
# where each kind of file puts its LoRAs: temporal attentions of motion modules / spatial attentions of the UNet
_MOTION_LAYER = re.compile(r"^(?:down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.\d+\.temporal_transformer"
                           r"\.transformer_blocks\.\d+\.attention_blocks\.\d+$")
_SPATIAL_LAYER = re.compile(r"^(?:unet\.)?(?:(?:down|up)_blocks\.\d+\.attentions\.\d+|mid_block\.attentions\.\d+)"
                            r"\.transformer_blocks\.\d+\.attn[12]$")
_MOTION_WEIGHT = re.compile(r"^(?P<layer>.+\.attention_blocks\.\d+)\.(?P<proj>to_q|to_k|to_v|to_out\.0)\.weight$")

MOTION_LORA_EXAMPLE = "a MotionLoRA such as v2_lora_ZoomIn.ckpt (from models/animatediff_motion_lora)"
ADAPTER_EXAMPLE = "the domain adapter v3_sd15_adapter.ckpt (from models/loras)"


def lora_pairs(sd: dict[str, torch.Tensor], name: str, layer_pattern: re.Pattern, what: str) -> dict[str, tuple]:
    """{`<layer>.processor.to_q`: (up [out, r], down [r, in])} of a processor-LoRA file; every tensor must be one."""
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in sd.items():
        m = _PROCESSOR_LORA.match(key)
        if m is None or not layer_pattern.match(m["layer"]):
            raise MotionKitError(
                f"'{name}' looks like {what} but holds the unexpected weight '{key}'; the file is damaged or of another "
                f"kind. Key patterns seen: {key_patterns(sd)}. Download the file again.")
        halves.setdefault(f"{m['layer']}.processor.{m['proj']}", {})[m["half"]] = tensor
    pairs = {}
    for module, h in halves.items():
        if set(h) != {"up", "down"}:
            raise MotionKitError(f"'{name}': {module} has only its '{next(iter(h))}' half; the file is incomplete. "
                                 f"Download it again.")
        up, down = h["up"], h["down"]
        if up.dim() != 2 or down.dim() != 2 or up.shape[1] != down.shape[0]:
            raise MotionKitError(f"'{name}': {module} has up {tuple(up.shape)} and down {tuple(down.shape)}, which do not "
                                 f"form a LoRA (up [out, rank] @ down [rank, in]); the file is damaged. Download it again.")
        pairs[module] = (up, down)
    if not pairs:
        raise MotionKitError(f"'{name}' holds no weights. Download it again.")
    return pairs


# ---------------------------------------------------------------------------------------------
# MotionLoRA

@dataclass(frozen=True)
class MotionLoRA:
    """One MotionLoRA of a stack (what flows along a MOTION_LORA wire is a tuple of these)."""
    name: str
    weights: dict       # the file's tensors, processor-LoRA names (what comfy.lora.load_lora reads)
    base: str           # "SD1.5" or "SDXL": the motion models it was trained on
    has_mid: bool
    rank: int
    strength: float = 1.0


def classify_motion_lora(sd: dict[str, torch.Tensor], name: str = "state dict") -> MotionLoRA:
    """Check that a (cleaned) state dict is a MotionLoRA; strength 1."""
    if reject_other_kinds(sd, name, MOTION_LORA, MOTION_LORA_EXAMPLE) is None:
        raise MotionKitError(f"'{name}' is not a MotionLoRA (no `…motion_modules…processor.to_q_lora…` weights). Key "
                             f"patterns seen: {key_patterns(sd)}. Choose {MOTION_LORA_EXAMPLE}.")
    pairs = lora_pairs(sd, name, _MOTION_LAYER, "a MotionLoRA")
    down = {int(m.group(1)) for k in pairs if (m := re.match(r"down_blocks\.(\d+)\.", k))}
    levels = max(down, default=-1) + 1
    if levels not in (3, 4):
        raise MotionKitError(f"'{name}' has MotionLoRA weights for {levels} down blocks; SD1.5 motion models have 4 and "
                             f"SDXL ones 3. The file is incomplete or of an unknown kind; download it again.")
    return MotionLoRA(name, dict(sd), "SD1.5" if levels == 4 else "SDXL",
                      any(k.startswith("mid_block.") for k in pairs), max(up.shape[1] for up, _ in pairs.values()))


def read_motion_lora(path: str, name: str | None = None) -> MotionLoRA:
    name = name or os.path.basename(path)
    return classify_motion_lora(read_state_dict(path), name)


def motion_lora_key_map(weight_keys) -> dict[str, str]:
    """`…attention_blocks.a.processor.to_q` → `…attention_blocks.a.to_q.weight` (to_out → to_out.0), for a motion
    model's state-dict keys."""
    key_map = {}
    for key in weight_keys:
        m = _MOTION_WEIGHT.match(key)
        if m:
            key_map[f"{m['layer']}.processor.{m['proj'].removesuffix('.0')}"] = key
    return key_map


def plan_motion_lora(lora: MotionLoRA, motion_state: dict[str, torch.Tensor], arch, motion_name: str):
    """What to load of `lora` for a motion model with state dict `motion_state` and architecture `arch`.

    Returns (tensors, key map LoRA layer → weight key, skipped mid-block layers). mid_block layers are skipped
    when the motion model has no mid block (v3, SDXL), as AnimateDiff-Evolved does (§4.9)."""
    if lora.base != arch.base:
        raise IncompatibleModelError(
            f"'{lora.name}' is a MotionLoRA for {lora.base} motion models, but '{motion_name}' is an {arch.base} motion "
            f"model. Use a MotionLoRA made for {arch.base}, or an {lora.base} motion model (e.g. mm_sd_v15_v2.ckpt).")
    key_map = motion_lora_key_map(motion_state)
    pairs = lora_pairs(lora.weights, lora.name, _MOTION_LAYER, "a MotionLoRA")
    skipped = sorted(k for k in pairs if k.startswith("mid_block.") and not arch.has_mid)
    missing, wrong = [], []
    for layer, (up, down) in pairs.items():
        if layer in skipped:
            continue
        target = key_map.get(layer)
        if target is None:
            missing.append(layer)
        elif (up.shape[0], down.shape[1]) != tuple(motion_state[target].shape):
            wrong.append(f"{layer} makes {up.shape[0]}×{down.shape[1]}, {target} is "
                         f"{'×'.join(map(str, motion_state[target].shape))}")
    if missing or wrong:
        detail = (f"{len(missing)} of its layers have no weight in the motion model (e.g. {missing[0]})" if missing
                  else f"{len(wrong)} of its layers have the wrong shape (e.g. {wrong[0]})")
        raise IncompatibleModelError(
            f"'{lora.name}' does not fit the motion model '{motion_name}': {detail}. Use a MotionLoRA trained for this "
            f"motion model (the v2_lora_*.ckpt files fit AnimateDiff v2/v3 SD1.5 motion models).")
    keep = [k for k in pairs if k not in skipped]
    tensors = {f"{layer}_lora.{half}.weight": t for layer in keep for half, t in zip(("up", "down"), pairs[layer])}
    return tensors, {layer: key_map[layer] for layer in keep}, skipped


# ---------------------------------------------------------------------------------------------
# The motion model's ModelPatcher (ComfyUI)

_BASE_PATCHER = "motionkit_base_patcher"


def motion_patcher(motion_model, model_patcher):
    """A ModelPatcher for `motion_model`, to ride along as an additional model of `model_patcher`'s clone.

    Every graph using one loaded motion model gets a clone of one base patcher kept with the model: ComfyUI's
    clones share one weight backup, so when a clone without a graph's LoRA is loaded, ComfyUI first restores
    the weights that the other clone patched (the same way LoRAs on one checkpoint work in core)."""
    import comfy.model_patcher

    base = motion_model.__dict__.get(_BASE_PATCHER)
    if base is None:
        base = comfy.model_patcher.ModelPatcher(motion_model, load_device=model_patcher.load_device,
                                                offload_device=model_patcher.offload_device)
        motion_model.__dict__[_BASE_PATCHER] = base  # a plain attribute: not a submodule, not in the state dict
    patcher = base.clone()
    patcher.load_device, patcher.offload_device = model_patcher.load_device, model_patcher.offload_device
    return patcher


def unpatched_copy(motion_model, dtype: torch.dtype):
    """A copy of `motion_model` in `dtype`, with its weights as loaded: a LoRA another graph patched in is not copied.

    Each tensor is converted as it is copied, so no full copy in the old dtype is made on the way."""
    base = motion_model.__dict__.get(_BASE_PATCHER)
    saved = {key: s.weight for key, s in base.backup.items()} if base is not None else {}
    # per-model state kept as plain attributes (the base patcher, motion.precision's dtype copies) is not copied
    own = [key for key in motion_model.__dict__ if key.startswith("motionkit_")]
    memo = {id(motion_model.__dict__[key]): None for key in own}
    for key, tensor in [*motion_model.named_parameters(), *motion_model.named_buffers()]:
        value = saved.get(key, tensor).detach()
        value = value.to(dtype, copy=True) if value.is_floating_point() else value.clone()
        memo[id(tensor)] = torch.nn.Parameter(value, requires_grad=False) if isinstance(tensor, torch.nn.Parameter) else value
    copied = copy.deepcopy(motion_model, memo)  # deepcopy takes the converted tensors from the memo
    for key in own:
        copied.__dict__.pop(key, None)
    # the copy starts unloaded: none of the load state ComfyUI keeps on the source (partial loading marks layers to
    # cast per call and hangs the loading graph's LoRA on them as weight functions; loaded memory, patch uuid)
    for module in copied.modules():
        for key in _LAYER_LOAD_STATE:
            module.__dict__.pop(key, None)
    for key in _MODEL_LOAD_STATE:
        copied.__dict__.pop(key, None)
    return copied


# what comfy.model_patcher.ModelPatcher sets on a model's layers and on the model while loading it
_LAYER_LOAD_STATE = ("comfy_cast_weights", "prev_comfy_cast_weights", "weight_function", "bias_function",
                     "comfy_patched_weights")
_MODEL_LOAD_STATE = ("model_loaded_weight_memory", "lowvram_patch_counter", "model_lowvram",
                     "current_weight_patches_uuid", "current_patcher", "device")


def add_motion_loras(patcher, loras, motion_name: str) -> None:
    """Add each MotionLoRA of the stack as weight patches (strength each) to the motion model's `patcher`."""
    import comfy.lora

    motion_model = patcher.model
    state = patcher.model_state_dict()
    for lora in loras:
        tensors, key_map, skipped = plan_motion_lora(lora, state, motion_model.arch, motion_name)
        if skipped:
            logging.info(f"MotionKit: '{motion_name}' has no mid block, so the {len(skipped)} mid_block layers of "
                         f"MotionLoRA '{lora.name}' are skipped (as in AnimateDiff-Evolved).")
        if lora.strength == 0:
            continue
        patches = comfy.lora.load_lora(tensors, key_map)
        added = patcher.add_patches(patches, lora.strength)
        if len(added) != len(key_map):  # cannot happen after plan_motion_lora; never apply a LoRA halfway silently
            raise MotionKitError(f"MotionLoRA '{lora.name}': ComfyUI took {len(added)} of its {len(key_map)} layers. "
                                 f"Please report this with the file's name.")


# ---------------------------------------------------------------------------------------------
# Domain adapter

def classify_domain_adapter(sd: dict[str, torch.Tensor], name: str = "state dict") -> dict[str, torch.Tensor]:
    """Check that a (cleaned) state dict is the v3 domain adapter: a processor-LoRA on the UNet's spatial attentions."""
    if reject_other_kinds(sd, name, DOMAIN_ADAPTER, ADAPTER_EXAMPLE) is None:
        raise MotionKitError(f"'{name}' is not the AnimateDiff v3 domain adapter (no `…attentions…processor.to_q_lora…` "
                             f"weights). Key patterns seen: {key_patterns(sd)}. Choose {ADAPTER_EXAMPLE}.")
    lora_pairs(sd, name, _SPATIAL_LAYER, "the domain adapter")
    return sd


def read_domain_adapter(path: str, name: str | None = None) -> dict[str, torch.Tensor]:
    name = name or os.path.basename(path)
    return classify_domain_adapter(read_state_dict(path), name)


def check_adapter_fits(sd: dict[str, torch.Tensor], key_map: dict[str, str], model_state: dict, name: str,
                       model_kind: str) -> None:
    """Every layer of the adapter must land on a MODEL weight of its shape (ComfyUI would skip the rest quietly)."""
    pairs = lora_pairs(sd, name, _SPATIAL_LAYER, "the domain adapter")
    unmatched = []
    for layer, (up, down) in pairs.items():
        target = key_map.get(layer)
        if target is None or target not in model_state or \
                model_state[target].numel() != up.shape[0] * down.shape[1] or model_state[target].shape[0] != up.shape[0]:
            unmatched.append(layer)
    if len(unmatched) == len(pairs):
        raise IncompatibleModelError(
            f"'{name}' matches no weight of this MODEL ({model_kind}). The AnimateDiff v3 domain adapter is made for SD1.5: "
            f"apply it to an SD1.5 checkpoint's MODEL.")
    if unmatched:
        raise IncompatibleModelError(
            f"'{name}' does not fit this MODEL ({model_kind}): {len(unmatched)} of its {len(pairs)} layers have no weight "
            f"of their shape (e.g. {unmatched[0]}). The AnimateDiff v3 domain adapter is made for SD1.5: apply it to an "
            f"SD1.5 checkpoint's MODEL.")


def apply_domain_adapter(model_patcher, sd: dict[str, torch.Tensor], scale: float, name: str):
    """A clone of `model_patcher` with the adapter as weight patches at `scale` (0 = the MODEL as it is), exactly as
    core LoraLoaderModelOnly applies it."""
    import comfy.lora
    import comfy.sd

    key_map = comfy.lora.model_lora_keys_unet(model_patcher.model, {})
    model_kind = type(getattr(model_patcher.model, "model_config", None)).__name__
    check_adapter_fits(sd, key_map, model_patcher.model_state_dict(), name, model_kind)
    if scale == 0:
        return model_patcher
    model, _ = comfy.sd.load_lora_for_models(model_patcher, None, sd, scale, 0)
    return model

