"""The one weights-file reader: every loader of ours opens model files here, and words a refusal one way.

Pickled checkpoints are read weights-only (torch refuses pickled code and never runs it); a refusal says that the
file holds code, never torch's advice to load it another way (that would run the code, see pickle_check.py).
"""
from __future__ import annotations

import torch

from .pickle_check import code_in_pickle, reason, refused_by_weights_only


def load_weights_file(path: str, mmap: bool = False):
    """The raw content of a .safetensors file or of a pickled checkpoint read weights-only. `mmap`: memory-map
    zip-format pickles (legacy pickles are read whole). Errors propagate; `read_weights` words them."""
    if path.lower().endswith((".safetensors", ".sft")):
        from safetensors.torch import load_file
        return load_file(path, device="cpu")
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # files in the legacy (non-zip) format cannot be memory-mapped
            if "mmap" not in str(e):
                raise
    return torch.load(path, map_location="cpu", weights_only=True)


def read_weights(path: str, name: str, error: type[Exception], source: str, mmap: bool = False,
                 redownload: str = "download it again"):
    """load_weights_file, with its failures as `error`: a pickle with code is refused as code; anything else
    (truncated downloads, HTML pages saved as .ckpt) is a corrupt file. `source`: where to get the file instead,
    e.g. "download the motion model from its official source, as .safetensors if offered"; `redownload`: what to
    do about a corrupt file."""
    try:
        return load_weights_file(path, mmap=mmap)
    except Exception as e:
        code = code_in_pickle(path) if refused_by_weights_only(e) else []
        if code:
            raise error(f"'{name}' holds code ({', '.join(code[:3])}), so MotionKit refused it and ran none of it. "
                        f"Do not load it any other way: {source}.") from e
        raise error(f"Could not read '{name}': {reason(e)}. The file is corrupt or incomplete (often an interrupted "
                    f"download); {redownload}.") from e


def tensors(obj, name: str, error: type[Exception], choose: str,
            wrappers: tuple[str, ...] = ("state_dict", "controlnet", "omcm_state_dict"),
            strip_prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a file's content: the published wrappers (`state_dict`, SparseCtrl's `controlnet`, OMCM's
    `omcm_state_dict`) removed in order, non-tensors (`animatediff_config`) dropped, `strip_prefix` (DataParallel's
    "module.") taken off the keys. `choose`: which file to pick instead, said when the content is no dict."""
    if not isinstance(obj, dict):
        raise error(f"'{name}' holds a {type(obj).__name__}, not a dictionary of weights; it is not a model file. "
                    f"{choose}")
    for wrapper in wrappers:
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if strip_prefix:
        obj = {k[len(strip_prefix):] if k.startswith(strip_prefix) else k: v for k, v in obj.items()}
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
