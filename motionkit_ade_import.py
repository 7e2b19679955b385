#!/usr/bin/env python3
"""Convert AnimateDiff-Evolved workflows to MotionKit (the converter is the ``ade_import`` package next to this
file; pure Python, no ComfyUI needed):

    python motionkit_ade_import.py my_ade_workflow.json            # writes my_ade_workflow_motionkit.json
    python motionkit_ade_import.py render.png other.webp -o converted/
    python -m motionkit_ade_import workflow.json                   # the same, from the pack's folder

It prints a report: every node converted, every node kept as it was (and why), every setting not carried over.
Exit status: 0 converted, 2 a file could not be read (not a workflow, API format, no workflow in the image)."""
import importlib.machinery
import importlib.util
import os
import sys

# the converter imports the pack's common/ relatively, so the pack is registered as a package first (without
# running its __init__, which needs ComfyUI), whatever its folder is called
_here = os.path.dirname(os.path.abspath(__file__))
_name = "motionkit_ade_import_pack"
if _name not in sys.modules:
    _spec = importlib.machinery.ModuleSpec(_name, None, is_package=True)
    _spec.submodule_search_locations = [_here]
    sys.modules[_name] = importlib.util.module_from_spec(_spec)

from motionkit_ade_import_pack.ade_import import *  # noqa: E402,F401,F403
from motionkit_ade_import_pack.ade_import.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
