"""Open an AnimateDiff-Evolved workflow in MotionKit: read a UI workflow (JSON, or PNG/WebP with one embedded),
rewrite ADE's nodes as MotionKit's, report what could not be converted. Pure Python (no torch, no ComfyUI):
the CLI is ``python -m motionkit_ade_import`` / ``motionkit_ade_import.py``, the frontend's is a server route."""
from .convert import Converter, convert_workflow
from .table import FEATURES
from .errors import AdeImportError
from .read import parse_workflow, read_workflow
from .report import Report
from .specs import ade_commit, registry_specs

__all__ = ["AdeImportError", "Converter", "FEATURES", "Report", "ade_commit", "convert_workflow", "parse_workflow",
           "read_workflow", "registry_specs"]
