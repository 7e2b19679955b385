"""MotionLoRA files: the published key layout (§4.9) as .safetensors, plus what resuming needs.

* The .safetensors holds exactly the published tensors (`…processor.to_q_lora.down.weight`, fp32) and, as
  safetensors metadata (strings, invisible to loaders), the training record: steps so far, rank, base, family.
* The optimizer's state (AdamW moments) goes to a sidecar `<file>.trainstate` (torch.save, read back
  weights-only). Its extension is not a model extension, so no loader lists it. Without it (e.g. resuming a
  published file) a resumed run starts a fresh optimizer.
* Writes are atomic (a temporary file renamed over the target), so an interrupt or a crash mid-write leaves the
  previous save intact and loadable.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import torch

from ..common.pickle_check import code_in_pickle, reason, refused_by_weights_only
from .errors import TrainingError

META_KEY = "motionkit_training"
SIDECAR = ".trainstate"


@dataclass
class Metadata:
    step: int = 0
    rank: int = 0
    base: str = ""
    family: str = ""
    motion_model: str = ""
    learning_rate: float = 0.0
    seed: int = 0
    clips: int = 0
    frames: int = 0


@dataclass
class Saved:
    weights: dict
    metadata: Metadata
    optimizer_state: dict | None


def _atomic(path: str, write) -> None:
    tmp = f"{path}.partial-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_target(path: str, overwrite: bool, resume_path: str | None = None, shown: str | None = None) -> None:
    """Refuse, before any training, to replace an existing file unless asked. `shown`: how the message names the
    file, relative to its ComfyUI folder (default: the file name); never the host path, which may lie anywhere
    (extra_model_paths.yaml) and would reach whoever queued the prompt."""
    if os.path.exists(path) and not overwrite:
        raise TrainingError(
            f"{shown or repr(os.path.basename(path))} already exists. Choose another filename, or set "
            f"overwrite to true to replace it" + (" (needed when saving a resumed run over the file it resumes)."
                                                   if resume_path and os.path.samefile(path, resume_path) else "."))


def save(path: str, weights: dict, metadata: Metadata, optimizer_state: dict | None = None) -> None:
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in weights.items()}
    _atomic(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: json.dumps(asdict(metadata))}))
    if optimizer_state is not None:
        _atomic(path + SIDECAR, lambda tmp: torch.save(optimizer_state, tmp))


def read_metadata(path: str) -> Metadata:
    from safetensors import safe_open

    if not path.endswith((".safetensors", ".sft")):
        return Metadata()
    with safe_open(path, framework="pt") as f:
        raw = (f.metadata() or {}).get(META_KEY)
    if not raw:
        return Metadata()
    known = Metadata.__dataclass_fields__
    return Metadata(**{k: v for k, v in json.loads(raw).items() if k in known})


def load(path: str) -> Saved:
    """A MotionLoRA to resume from: its tensors (any MotionLoRA file), training record and optimizer state."""
    from ..motion import lora as motion_lora

    lora = motion_lora.read_motion_lora(path)
    state = None
    if os.path.exists(path + SIDECAR):
        try:
            state = torch.load(path + SIDECAR, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged sidecar must not block resuming the weights
            sidecar = f"'{os.path.basename(path)}{SIDECAR}' (the optimizer state saved with the MotionLoRA)"
            code = code_in_pickle(path + SIDECAR) if refused_by_weights_only(e) else []
            if code:  # refused, never run; torch's advice (weights_only=False, add_safe_globals) not passed on
                raise TrainingError(f"{sidecar} holds code ({', '.join(code[:3])}), so MotionKit refused it and ran "
                                    f"none of it. Do not load it any other way: delete it to resume with a fresh "
                                    f"optimizer.") from e
            raise TrainingError(f"{sidecar} cannot be read ({reason(e)}). Delete it to resume with a fresh "
                                f"optimizer.") from e
    return Saved(lora.weights, read_metadata(path), state)
