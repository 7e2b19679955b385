"""A node input naming a file in ComfyUI's input folder (or 'name [output]'): its confined path, its version for
IS_CHANGED, and the check VALIDATE_INPUTS makes (a node that defines VALIDATE_INPUTS for the input skips ComfyUI's own
"value in the list" check, so the name is confined here)."""
import os

import folder_paths

from ..common.errors import MotionKitError
from ..media.safe_paths import Roots, resolve


def input_path(name: str, what: str, node: str) -> str:
    """The file's real path, confined as media.safe_paths says (errors name the node and the file, never a host path)."""
    path, _ = resolve(name, Roots.from_comfy(folder_paths), what=what, node=node)
    return path


def file_version(path_of, name: str) -> str:
    """IS_CHANGED's value: the file's time and size ('' when it cannot be found: the run then reports why)."""
    try:
        stat = os.stat(path_of(name))
    except (OSError, MotionKitError):
        return ""
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def check_input_file(path_of, name: str, missing: str):
    """VALIDATE_INPUTS' answer: True, or the message (`missing` says which kind of file was not found)."""
    try:
        path = path_of(name)
    except MotionKitError as e:
        return str(e)
    if not os.path.isfile(path):
        return f"{missing} not found in the input folder: {name}"
    return True
