"""Errors an artist can act on: each names the file (or setting) and what to do instead."""

# ComfyUI names an exception `type(e).__module__ + "." + qualname` in the error dialog and the error report.
# Custom nodes are imported by file path, so the real module name is a path on the server
# ("/home/me/ComfyUI/custom_nodes/MotionKit.motion.errors"): every MotionKit error reports this one instead.
PUBLIC_MODULE = "motionkit"


class MotionKitError(ValueError):
    """Raised for bad input; ComfyUI shows the message in the failed node's error box."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__module__ = PUBLIC_MODULE


MotionKitError.__module__ = PUBLIC_MODULE


class WrongFileTypeError(MotionKitError):
    """A file of another kind (LoRA, SD checkpoint, SparseCtrl, ...) was given to a loader."""


class IncompatibleModelError(MotionKitError):
    """A motion model that does not fit the loaded UNet (SD1.5 vs SDXL)."""


class TooManyFramesError(MotionKitError):
    """More frames in one pass than the motion model's positional encoding covers."""


class ContextWindowError(MotionKitError):
    """Context-window settings that cannot work (overlap not below the length, windows too long)."""


class NoiseOptionError(MotionKitError):
    """FreeNoise / FreeInit settings that cannot work (a stride longer than the window, an unknown filter)."""


class MotionScaleScheduleError(MotionKitError):
    """A motion scale schedule whose text cannot be read (not a number, a frame given twice, ...)."""


class PromptScheduleError(MotionKitError):
    """A prompt schedule whose text cannot be read (a line that is not 'frame: prompt', a frame given twice, ...)."""
