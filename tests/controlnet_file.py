"""A random-weight SD1.5 ControlNet for integration tests, in the published layout.

The layout is that of lllyasviel's ControlNet 1.1 files (``control_v11p_sd15_*.pth``; the fp16
``.safetensors`` conversions keep it): ``control_model.*`` keys, a 3-channel ``input_hint_block``.
Names and shapes are read from ComfyUI's own ``comfy.cldm.cldm.ControlNet`` built on the meta
device with the SD1.5 UNet configuration, and ComfyUI's model detection must find an SD1.5 UNet in
them (what ``ControlNetLoader`` does). Weights: seeded random numbers (``sd15_checkpoint``'s
initialisation: fan-in normal weights, zero biases), saved as fp16 safetensors (~720 MB), built
once in a subprocess and cached next to the random SD1.5 checkpoint.

Command line: ``python tests/controlnet_file.py --out PATH [--seed N] [--comfyui ROOT]``
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

_HERE = Path(os.path.abspath(__file__)).parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import sd15_checkpoint as sd15  # noqa: E402

VERSION = "controlnet_sd15_random_v1"
CACHE_FILENAME = f"{VERSION}.safetensors"
PREFIX = "control_model."
DEFAULT_SEED = 3


def controlnet_layout(comfyui_root=None):
    """``({key: (shape, torch dtype)}, {key: init kind})`` of an SD1.5 ControlNet file."""
    import torch
    sd15._import_comfy(comfyui_root)
    import comfy.cldm.cldm
    import comfy.model_detection
    import comfy.ops

    config = {k: v for k, v in sd15._SD15_UNET.items() if k != "out_channels"}
    with torch.device("meta"):
        net = comfy.cldm.cldm.ControlNet(**config, hint_channels=3, device="meta", dtype=torch.float16,
                                         operations=comfy.ops.disable_weight_init)
    kinds = sd15._module_kinds(net, PREFIX)
    layout = {PREFIX + k: (tuple(t.shape), torch.float16) for k, t in net.state_dict().items()}
    assert set(layout) == set(kinds), sorted(set(layout) ^ set(kinds))[:5]

    # what ComfyUI's ControlNet loader does with such a file: it must see an SD1.5 UNet
    meta_sd = {k: torch.empty(shape, device="meta") for k, (shape, _) in layout.items()}
    detected = comfy.model_detection.model_config_from_unet(meta_sd, PREFIX, True)
    assert type(detected).__name__ == "SD15", type(detected)
    return layout, kinds


def make_controlnet(path, seed: int = DEFAULT_SEED, comfyui_root=None) -> Path:
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layout, kinds = controlnet_layout(comfyui_root)
    sd = sd15.random_state_dict(layout, kinds, seed)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(sd, str(tmp), metadata={"format": "pt", "motionkit_test_controlnet": VERSION, "seed": str(seed)})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def is_valid(path) -> bool:
    try:
        header = sd15.read_safetensors_header(path)
        meta = header.pop("__metadata__", {}) or {}
        end = max(v["data_offsets"][1] for v in header.values())
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        return meta.get("motionkit_test_controlnet") == VERSION and Path(path).stat().st_size == 8 + n + end
    except Exception:
        return False


def cached_controlnet(comfyui_root=None, timeout: float = 600.0) -> Path:
    """The cached random SD1.5 ControlNet, built once (subprocess: ComfyUI's modules stay out of pytest)."""
    d = sd15.cache_dir()
    path = d / CACHE_FILENAME
    if is_valid(path):
        return path
    with sd15._file_lock(d / (CACHE_FILENAME + ".lock")):
        if is_valid(path):
            return path
        from comfy_env import COMFYUI_ROOT, SKIP_REASON
        root = comfyui_root or COMFYUI_ROOT
        if root is None:
            raise RuntimeError(SKIP_REASON)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--out", str(path), "--comfyui", str(root)],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0 or not is_valid(path):
            raise RuntimeError(f"building {path} failed (rc={r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
        print(f"[motionkit tests] built {path} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return path


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--comfyui", default=None)
    a = ap.parse_args()
    make_controlnet(a.out, a.seed, a.comfyui)
    print(f"wrote {a.out}")
