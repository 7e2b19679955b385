"""Shared pytest fixtures for MotionKit's tests.

Real-ComfyUI fixtures (skipped, with the reason printed, when no ComfyUI is found):

* ``comfyui_root``       - Path of the ComfyUI checkout (session).
* ``sd15_checkpoint``    - Path of the cached random SD1.5 checkpoint (session).
* ``comfy_server``       - a running ``ComfyServer`` (session; stopped and its
                           temporary base directory removed at the end; set
                           MOTIONKIT_KEEP_COMFY_DIR=1 to keep it and its log).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_HERE = Path(os.path.abspath(__file__)).parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import comfy_env  # noqa: E402
import pack_package  # noqa: E402,F401  (the pack as the package `motionkit`, as ComfyUI imports it)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "comfyui: test runs against a real ComfyUI (skipped when none is found)")
    config.addinivalue_line(
        "markers", "example: a whole example-workflow run whose parts other tests cover; left out of the default "
                   "run (pytest.ini: -m \"not example\"), run with `python -m pytest tests -m example`")
    config.addinivalue_line(
        "markers", "ade: runs AnimateDiff-Evolved beside MotionKit in its own ComfyUI server (tests/ade_pack.py); left "
                   "out of the default run, run with `python -m pytest tests -m ade`")


def pytest_report_header(config):
    return comfy_env.report_header()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``@pytest.mark.comfyui`` are skipped when ComfyUI is missing."""
    if comfy_env.COMFYUI_ROOT is not None:
        return
    skip = pytest.mark.skip(reason=comfy_env.SKIP_REASON)
    for item in items:
        if "comfyui" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def comfyui_root() -> Path:
    return comfy_env.require_comfyui()


@pytest.fixture(scope="session")
def sd15_checkpoint(comfyui_root) -> Path:
    from sd15_checkpoint import cached_sd15_checkpoint
    return cached_sd15_checkpoint(comfyui_root=comfyui_root)


@pytest.fixture(scope="session")
def comfy_server(comfyui_root, sd15_checkpoint):
    from comfy_server import ComfyServer
    server = ComfyServer(comfyui_root, checkpoint=sd15_checkpoint)
    try:
        server.start()
        print(f"\n[motionkit tests] ComfyUI up at {server.url} in "
              f"{server.startup_seconds:.1f}s (base dir {server.base_dir})", file=sys.stderr)
        failures = server.import_failures()
        if failures:
            print("[motionkit tests] custom node import failures:\n  "
                  + "\n  ".join(failures), file=sys.stderr)
        yield server
    finally:
        if os.environ.get("MOTIONKIT_KEEP_COMFY_DIR"):
            server.stop()
            print(f"\n[motionkit tests] kept ComfyUI base dir {server.base_dir} "
                  f"(log: {server.log_path})", file=sys.stderr)
        else:
            server.close()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: more threads only wait on each other (on a busy 2-core test machine, for seconds per test).
    A module asks for it with pytestmark's usefixtures("one_thread")."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
