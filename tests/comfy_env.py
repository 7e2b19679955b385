"""Locate a real ComfyUI checkout for the integration tests.

Search order (a folder counts only if it contains ``main.py`` and ``comfy/``):

1. ``$COMFYUI_PATH`` if set,
2. ``/opt/ComfyUI``,
3. two folders above the repo root, for a pack installed as
   ``ComfyUI/custom_nodes/<pack>`` (checked both for the path as given and
   for its symlink-resolved form).

Tests that need a real ComfyUI use the ``requires_comfyui`` marker or the
``comfyui_root`` fixture (see ``tests/conftest.py``); when none is found they
are skipped and ``SKIP_REASON`` says why.  The pytest report header also prints
which ComfyUI is used (or why none).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

DEFAULT_COMFYUI_PATH = "/opt/ComfyUI"
ENV_VAR = "COMFYUI_PATH"

TESTS_DIR = Path(os.path.abspath(__file__)).parent
# The repo root (the pack itself), as given and symlink-resolved.
REPO_ROOT = TESTS_DIR.parent
REPO_ROOT_RESOLVED = Path(os.path.realpath(REPO_ROOT))


def is_comfyui_root(path: os.PathLike | str | None) -> bool:
    """True when *path* is a folder holding ``main.py`` and ``comfy/``."""
    if not path:
        return False
    p = Path(path)
    return p.is_dir() and (p / "main.py").is_file() and (p / "comfy").is_dir()


def candidate_paths() -> List[Tuple[str, Path]]:
    """The places searched, in order, as ``(label, path)`` pairs."""
    cands: List[Tuple[str, Path]] = []
    env = os.environ.get(ENV_VAR)
    if env:
        cands.append((f"${ENV_VAR}", Path(env).expanduser()))
    cands.append(("default", Path(DEFAULT_COMFYUI_PATH)))
    for root in (REPO_ROOT, REPO_ROOT_RESOLVED):
        # <ComfyUI>/custom_nodes/<pack>: the pack's parent must be custom_nodes
        if root.parent.name == "custom_nodes":
            cands.append(("custom_nodes parent", root.parent.parent))
    seen = set()
    out = []
    for label, p in cands:
        key = os.path.abspath(p)
        if key in seen:
            continue
        seen.add(key)
        out.append((label, Path(key)))
    return out


def _search() -> Tuple[Optional[Path], List[str]]:
    notes = []
    for label, p in candidate_paths():
        if is_comfyui_root(p):
            return p, notes
        if not p.exists():
            why = "does not exist"
        elif not (p / "main.py").is_file():
            why = "has no main.py"
        else:
            why = "has no comfy/ folder"
        notes.append(f"{label} {p} {why}")
    return None, notes


def find_comfyui() -> Optional[Path]:
    """Return the ComfyUI root to test against, or None when none is found."""
    return _search()[0]


def _skip_reason() -> Optional[str]:
    root, notes = _search()
    if root is not None:
        return None
    return ("no ComfyUI found (set $COMFYUI_PATH to a ComfyUI checkout): "
            + "; ".join(notes))


def search_notes() -> List[str]:
    """Human-readable notes about candidates that were rejected."""
    return _search()[1]


COMFYUI_ROOT: Optional[Path] = find_comfyui()
#: Why real-ComfyUI tests are skipped, or None when a ComfyUI was found.
SKIP_REASON: Optional[str] = _skip_reason()

#: Marker for tests that need a real ComfyUI checkout.
requires_comfyui = pytest.mark.skipif(COMFYUI_ROOT is None,
                                      reason=SKIP_REASON or "")


def require_comfyui() -> Path:
    """Return the ComfyUI root or skip the calling test with the reason."""
    if COMFYUI_ROOT is None:
        print(f"\n[motionkit tests] SKIP: {SKIP_REASON}", file=sys.stderr)
        pytest.skip(SKIP_REASON)
    return COMFYUI_ROOT


def report_header() -> str:
    """One line for ``pytest_report_header``."""
    if COMFYUI_ROOT is None:
        return f"motionkit: real-ComfyUI tests SKIPPED: {SKIP_REASON}"
    line = f"motionkit: real ComfyUI at {COMFYUI_ROOT}"
    notes = search_notes()
    if notes:
        line += " (rejected: " + "; ".join(notes) + ")"
    if os.environ.get("MOTIONKIT_FRONTEND_ROOT"):
        line += f"; frontend from MOTIONKIT_FRONTEND_ROOT={os.environ['MOTIONKIT_FRONTEND_ROOT']}"
    return line


def comfyui_on_syspath(root: os.PathLike | str | None = None) -> Path:
    """Put the ComfyUI root first on ``sys.path`` (for in-process imports of
    ``comfy.*``) and return it.  Prefer subprocesses where possible: ComfyUI's
    top-level modules (``nodes``, ``utils``, ``server`` ...) have generic names.
    """
    root = Path(root) if root is not None else COMFYUI_ROOT
    if root is None or not is_comfyui_root(root):
        raise RuntimeError(SKIP_REASON or f"not a ComfyUI root: {root}")
    s = str(root)
    if s in sys.path:
        sys.path.remove(s)
    sys.path.insert(0, s)
    return root


def comfy_on_cpu() -> Path:
    """ComfyUI importable in this process, its device probing set to the CPU (before comfy.model_management loads)."""
    root = comfyui_on_syspath()
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    return root
