"""What goes wrong reading a workflow to convert: each message names the file and what to do instead."""
from ..common.errors import MotionKitError


class AdeImportError(MotionKitError):
    """The input is not a UI-format ComfyUI workflow the converter can read."""
