"""A random-weight Stable Diffusion 1.5 checkpoint for integration tests.

The file has the single-file layout of the published ``v1-5-pruned-emaonly``
checkpoint (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.transformer.text_model.*``, same names and shapes), so that
ComfyUI's ``CheckpointLoaderSimple`` loads it and detects it as SD1.5.  The
weights are seeded random numbers of a sensible scale, stored as fp16 (~2 GB).

Key names and shapes are not hard-coded: they are read from ComfyUI's own SD1.5
UNet, SD1 CLIP and SD VAE classes instantiated on the meta device, renamed by
ComfyUI's own checkpoint-saving path (``BaseModel.state_dict_for_saving``).

Command line (used by ``cached_sd15_checkpoint`` to keep ComfyUI's modules out
of the test process)::

    python tests/sd15_checkpoint.py --out PATH [--seed N] [--comfyui ROOT]
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Dict, Tuple

_HERE = Path(os.path.abspath(__file__)).parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

CHECKPOINT_VERSION = "sd15_random_v1"
CACHE_FILENAME = f"{CHECKPOINT_VERSION}.safetensors"
CACHE_ENV_VAR = "MOTIONKIT_TEST_CACHE"
DEFAULT_SEED = 0

POSITION_IDS_KEY = "cond_stage_model.transformer.text_model.embeddings.position_ids"
#: Key count of the published v1-5 single file (UNet 686, VAE 248, CLIP 197).
EXPECTED_KEY_COUNT = 1131

# SD1.5 architecture (v1-inference.yaml), in ComfyUI's UNetModel vocabulary.
_SD15_UNET = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320,
    num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
    transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
    transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    context_dim=768, num_heads=8, use_linear_in_transformer=False,
    use_spatial_transformer=True, legacy=False, adm_in_channels=None,
    use_checkpoint=False, use_temporal_attention=False, use_temporal_resblock=False,
)
_SD_VAE = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3,
               ch=128, ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[],
               dropout=0.0)

# init kinds
_LINEAR, _NORM_W, _ZERO, _EMBED = "fan_in", "ones", "zeros", "embedding"


def _import_comfy(comfyui_root=None):
    """Import the ComfyUI modules needed to describe SD1.5 (CPU mode)."""
    from comfy_env import comfyui_on_syspath
    comfyui_on_syspath(comfyui_root)
    import comfy.options  # noqa: F401  (args parsing stays off: parse_args([]))
    if "comfy.model_management" not in sys.modules:
        import comfy.cli_args
        comfy.cli_args.args.cpu = True  # device probing without a GPU
    import comfy.model_management  # noqa: F401
    import comfy.supported_models
    import comfy.model_detection
    import comfy.sd1_clip
    from comfy.ldm.models.autoencoder import AutoencoderKL
    return comfy, AutoencoderKL


def _module_kinds(module, prefix: str) -> Dict[str, str]:
    """Map state-dict keys of *module* (with *prefix*) to an init kind."""
    import torch.nn as nn
    kinds = {}
    for mname, mod in module.named_modules():
        base = prefix + (mname + "." if mname else "")
        for pname, _ in mod.named_parameters(recurse=False):
            key = base + pname
            if isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)):
                kinds[key] = _LINEAR if pname == "weight" else _ZERO
            elif isinstance(mod, (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._NormBase)):
                kinds[key] = _NORM_W if pname == "weight" else _ZERO
            elif isinstance(mod, nn.Embedding):
                kinds[key] = _EMBED
    return kinds


def sd15_layout(comfyui_root=None) -> Tuple[Dict[str, Tuple[Tuple[int, ...], "object"]], Dict[str, str]]:
    """Return ``({key: (shape, torch dtype)}, {key: init kind})`` of the SD1.5
    single-file checkpoint, derived from ComfyUI's classes on the meta device.
    Asserts that ComfyUI's model detection maps these keys to SD15.
    """
    import torch
    comfy, AutoencoderKL = _import_comfy(comfyui_root)

    model_config = comfy.supported_models.SD15(dict(_SD15_UNET))
    model_config.set_inference_dtype(torch.float32, None)
    with torch.device("meta"):
        model = model_config.get_model({}, device="meta")
        clip = comfy.sd1_clip.SD1ClipModel(device="meta")
        vae = AutoencoderKL(ddconfig=dict(_SD_VAE), embed_dim=4)

    # ComfyUI's own save path produces the published key names.
    sd = model.state_dict_for_saving(clip.state_dict(), vae.state_dict())

    # Init kinds, keyed by the saved names (inverse of the save-path prefixes).
    kinds_src = {}
    kinds_src.update(_module_kinds(model.diffusion_model, "model.diffusion_model."))
    kinds_src.update(_module_kinds(vae, "first_stage_model."))
    for k, v in _module_kinds(clip, "").items():  # clip_l.transformer...
        if k.startswith("clip_l."):
            kinds_src["cond_stage_model." + k[len("clip_l."):]] = v

    layout, kinds = {}, {}
    for k, t in sd.items():
        layout[k] = (tuple(t.shape), torch.float16)
        kind = kinds_src.get(k)
        if kind is None:  # fall back on the name
            if k.endswith(".bias"):
                kind = _ZERO
            elif t.ndim == 1:
                kind = _NORM_W
            else:
                kind = _LINEAR
        kinds[k] = kind
    # The published file also stores the CLIP position ids (int64 [1, 77]).
    layout[POSITION_IDS_KEY] = ((1, 77), torch.int64)

    bad = [k for k in layout if not k.startswith((
        "model.diffusion_model.", "first_stage_model.",
        "cond_stage_model.transformer.text_model."))]
    assert not bad, f"unexpected key prefixes: {bad[:5]}"
    assert len(layout) == EXPECTED_KEY_COUNT, len(layout)

    # ComfyUI must detect these names/shapes as SD1.5.
    unet_cfg = comfy.model_detection.detect_unet_config(sd, "model.diffusion_model.")
    detected = comfy.model_detection.model_config_from_unet_config(unet_cfg, sd)
    assert type(detected) is comfy.supported_models.SD15, type(detected)
    return layout, kinds


def _tensor_seed(seed: int, key: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(key.encode())) & 0x7FFF_FFFF_FFFF_FFFF


def random_state_dict(layout, kinds, seed: int = DEFAULT_SEED):
    """Seeded random fp16 tensors for *layout* (deterministic per key).

    Linear/conv weights ~ N(0, 1/fan_in), biases 0, norm weights 1 / biases 0,
    embedding tables ~ N(0, 0.02), position ids = arange(77).
    """
    import torch
    out = {}
    g = torch.Generator()
    for key, (shape, dtype) in layout.items():
        if key == POSITION_IDS_KEY:
            out[key] = torch.arange(shape[-1], dtype=dtype).reshape(shape)
            continue
        kind = kinds[key]
        if kind == _ZERO:
            t = torch.zeros(shape, dtype=dtype)
        elif kind == _NORM_W:
            t = torch.ones(shape, dtype=dtype)
        else:
            if kind == _EMBED:
                std = 0.02
            else:
                fan_in = max(1, math.prod(shape[1:]))
                std = 1.0 / math.sqrt(fan_in)
            g.manual_seed(_tensor_seed(seed, key))
            t = torch.empty(shape, dtype=dtype).normal_(0.0, std, generator=g)
        out[key] = t
    return out


def make_sd15_checkpoint(path, seed: int = DEFAULT_SEED, comfyui_root=None) -> Path:
    """Write a random-weight SD1.5 single-file checkpoint to *path* (atomic:
    tmp file + rename).  Imports ComfyUI's ``comfy`` package in this process
    (in CPU mode if ``comfy.model_management`` is not imported yet); use
    ``cached_sd15_checkpoint`` to do it in a subprocess.
    """
    import torch
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layout, kinds = sd15_layout(comfyui_root)
    sd = random_state_dict(layout, kinds, seed)
    meta = {"format": "pt", "motionkit_test_checkpoint": CHECKPOINT_VERSION,
            "seed": str(seed), "torch": torch.__version__}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(sd, str(tmp), metadata=meta)
        del sd
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_safetensors_header(path) -> dict:
    """The JSON header of a .safetensors file (cheap: no tensor data read)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 100 * 1024 * 1024:
            raise ValueError("implausible safetensors header size")
        return json.loads(f.read(n))


def checkpoint_is_valid(path) -> bool:
    """True when *path* is a complete checkpoint written by this module."""
    try:
        path = Path(path)
        header = read_safetensors_header(path)
        meta = header.pop("__metadata__", {}) or {}
        if meta.get("motionkit_test_checkpoint") != CHECKPOINT_VERSION:
            return False
        if len(header) != EXPECTED_KEY_COUNT:
            return False
        end = max(v["data_offsets"][1] for v in header.values())
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
        return path.stat().st_size == 8 + n + end
    except Exception:
        return False


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "motionkit" / "test_models"


@contextlib.contextmanager
def _file_lock(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as f:
        try:
            import fcntl
            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # non-POSIX: no locking
            pass
        yield


def cached_sd15_checkpoint(seed: int = DEFAULT_SEED, comfyui_root=None,
                           timeout: float = 600.0) -> Path:
    """Path to the cached random SD1.5 checkpoint, building it once (in a
    subprocess, under a file lock) into ``$MOTIONKIT_TEST_CACHE`` or
    ``~/.cache/motionkit/test_models``.  Reused while ``checkpoint_is_valid``.
    """
    d = cache_dir()
    name = CACHE_FILENAME if seed == DEFAULT_SEED else f"{CHECKPOINT_VERSION}_s{seed}.safetensors"
    path = d / name
    if checkpoint_is_valid(path):
        return path
    with _file_lock(d / (name + ".lock")):
        if checkpoint_is_valid(path):
            return path
        from comfy_env import COMFYUI_ROOT, SKIP_REASON
        root = comfyui_root or COMFYUI_ROOT
        if root is None:
            raise RuntimeError(SKIP_REASON)
        cmd = [sys.executable, os.path.abspath(__file__), "--out", str(path),
               "--seed", str(seed), "--comfyui", str(root)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0 or not checkpoint_is_valid(path):
            raise RuntimeError(f"building {path} failed (rc={r.returncode}):\n"
                               f"{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
        print(f"[motionkit tests] built {path} in {time.perf_counter() - t0:.1f}s",
              file=sys.stderr)
    return path


def _main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--comfyui", default=None)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    make_sd15_checkpoint(a.out, seed=a.seed, comfyui_root=a.comfyui)
    print(f"wrote {a.out} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
