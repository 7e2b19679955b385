"""The base errors an artist can act on: each names the file (or setting) and what to do instead."""

# ComfyUI names an exception `type(e).__module__ + "." + qualname` in the error dialog and the error report.
# Custom nodes are imported by file path, so the real module name is a path on the server
# ("/home/me/ComfyUI/custom_nodes/MotionKit.common.errors"): every MotionKit error reports this one instead.
PUBLIC_MODULE = "motionkit"


class MotionKitError(ValueError):
    """Raised for bad input; ComfyUI shows the message in the failed node's error box."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__module__ = PUBLIC_MODULE


MotionKitError.__module__ = PUBLIC_MODULE


class WrongFileTypeError(MotionKitError):
    """A file of another kind (LoRA, SD checkpoint, SparseCtrl, ...) was given to a loader."""
