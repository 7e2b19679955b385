"""The pack imported the way ComfyUI imports it: as one package, so that its modules' relative imports work.

ComfyUI loads a custom node folder as a package (its folder name) and runs its ``__init__``, which registers the
nodes and needs ComfyUI. Tests and benches need the modules without that, so this registers the repository root as
the package ``motionkit`` (an empty package module whose ``__path__`` is the root) without running ``__init__``:
``from motionkit.motion.formats import ...`` then works, and the pack's own code uses relative imports only."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAME = "motionkit"


def register() -> types.ModuleType:
    module = sys.modules.get(NAME)
    if module is not None:
        return module
    spec = importlib.machinery.ModuleSpec(NAME, None, is_package=True)
    spec.submodule_search_locations = [str(REPO)]
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    return module


register()
