"""AnimateDiff-Evolved (ADE) at commit 90fb133, for the tests that run it beside MotionKit in one ComfyUI server
(marker `ade`, tests/test_ade_equal.py). It is never part of this repository: $MOTIONKIT_ADE_PATH, else
~/.cache/motionkit/ade-90fb133 (.ci/run clones it there when it can):

    git clone https://github.com/Kosinkadink/ComfyUI-AnimateDiff-Evolved ~/.cache/motionkit/ade-90fb133
    git -C ~/.cache/motionkit/ade-90fb133 checkout 90fb133
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ADE_COMMIT = "90fb133"
FOLDER = "ComfyUI-AnimateDiff-Evolved"  # its folder name in custom_nodes/
DEFAULT = Path.home() / ".cache" / "motionkit" / f"ade-{ADE_COMMIT}"


def ade_root() -> Path:
    return Path(os.environ.get("MOTIONKIT_ADE_PATH") or DEFAULT)


def missing() -> str:
    """Why ADE cannot be used ("" when it can): not there, not ADE, or another commit."""
    root = ade_root()
    if not (root / "__init__.py").is_file() or not (root / "animatediff" / "nodes.py").is_file():
        return (f"AnimateDiff-Evolved {ADE_COMMIT} is not at $MOTIONKIT_ADE_PATH or ~/.cache/motionkit/ade-{ADE_COMMIT}"
                f" (see tests/ade_pack.py for the two git commands)")
    if (root / ".git").exists():
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        if not head.startswith(ADE_COMMIT):
            return f"AnimateDiff-Evolved there is at {head[:7] or 'an unknown commit'}: check out {ADE_COMMIT}"
    return ""
