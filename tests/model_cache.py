"""Random-weight test files, cached, and their placement in the test ComfyUI server (no tests here).

Files are built on first use from fixed seeds into $MOTIONKIT_TEST_CACHE (default
~/.cache/motionkit/test_models) and reused by every later run. A module's server set-up is declarative::

    server = module_server({"animatediff_models": {"mm_v2_random.safetensors": cached("mm_v2_random.safetensors")}},
                           inputs={"a.png": lambda: png(64, 64)})

Sources are built when the fixture runs (not at import/collection): a Path, or a callable returning a Path
(model files) or bytes/Path (inputs).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Union

import pytest
import torch

import motion_files as mf

Source = Union[Path, Callable[[], Union[Path, bytes]]]


def cache_dir() -> Path:
    d = Path(os.environ.get("MOTIONKIT_TEST_CACHE", Path.home() / ".cache" / "motionkit" / "test_models"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def cached_file(name: str, build) -> Path:
    """cache_dir()/name, written atomically from the state dict `build()` returns when it is not there yet."""
    path = cache_dir() / name
    if not path.exists():
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")  # two test processes may build it at once
        sd = build()
        if name.endswith(".safetensors"):
            from safetensors.torch import save_file
            save_file(sd, str(tmp))
        else:
            torch.save(sd, str(tmp))
        os.replace(tmp, path)
    return path


# The shared random motion-model files: name -> builder (deterministic seeds; other modules place them by name)
MOTION_FILES = {
    "mm_v2_random.safetensors": lambda: mf.v2(seed=1, dtype=torch.float16),
    "mm_v2_zero_out.safetensors": lambda: mf.v2(seed=1, dtype=torch.float16, zero_proj_out=True),
    "mm_sdxl_random.safetensors": lambda: mf.sdxl_beta(seed=2, dtype=torch.float16),
    "v2_lora_ZoomIn.ckpt": lambda: mf.motion_lora(rank=8),
    "v3_sd15_adapter.ckpt": lambda: mf.domain_adapter(device="cpu"),
    "v3_sd15_sparsectrl_rgb.ckpt": lambda: {"controlnet": mf.sparsectrl_rgb(device="cpu")},
}


def cached(name: str, build=None) -> Callable[[], Path]:
    """A lazy source: the cached file `name`, built by `build` (default: MOTION_FILES[name]) on first use."""
    return lambda: cached_file(name, build or MOTION_FILES[name])


def truncated_motion_file() -> Path:
    """The first third of mm_v2_random.safetensors: a broken download."""
    path = cache_dir() / "mm_truncated.safetensors"
    if not path.exists():
        data = cached_file("mm_v2_random.safetensors", MOTION_FILES["mm_v2_random.safetensors"]).read_bytes()
        path.write_bytes(data[: len(data) // 3])
    return path


def unknown_model_file() -> Path:
    """A safetensors file of no known layout."""
    path = cache_dir() / "mystery.safetensors"
    if not path.exists():
        from safetensors.torch import save_file
        save_file({"encoder.layers.0.weight": torch.zeros(4, 4), "encoder.layers.1.weight": torch.zeros(4, 4)}, str(path))
    return path


def _resolve(source: Source):
    return source() if callable(source) else source


def place(server, models: Mapping[str, Mapping[str, Source]], inputs: Optional[Mapping[str, Source]] = None):
    """models: {models/ subfolder: {file name: source}} (symlinked); inputs: {input/ name: source} (copied)."""
    for folder, files in models.items():
        for name, source in files.items():
            server.add_model(folder, name, _resolve(source))
    for name, source in (inputs or {}).items():
        value = _resolve(source)
        server.add_input(name, value if isinstance(value, (bytes, bytearray)) else Path(value))
    return server


def module_server(models: Mapping[str, Mapping[str, Source]], inputs: Optional[Mapping[str, Source]] = None):
    """A module-scoped `server` fixture: the session's ComfyUI server with these files placed."""
    @pytest.fixture(scope="module", name="server")
    def server(comfy_server):
        return place(comfy_server, models, inputs)
    return server


def motion_models(*names: str) -> Dict[str, Callable[[], Path]]:
    """{name: cached(name)} for files of MOTION_FILES (the usual animatediff_models entry)."""
    return {name: cached(name) for name in names}
