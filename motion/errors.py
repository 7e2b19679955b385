"""The motion-model family's errors (the base classes are common/errors.py): each names the file or setting and
what to do instead."""
from ..common.errors import PUBLIC_MODULE, MotionKitError, WrongFileTypeError  # noqa: F401  (re-exported)


class IncompatibleModelError(MotionKitError):
    """A motion model that does not fit the loaded UNet (SD1.5 vs SDXL)."""


class TooManyFramesError(MotionKitError):
    """More frames in one pass than the motion model's positional encoding covers."""


class MotionScaleScheduleError(MotionKitError):
    """A motion scale schedule whose text cannot be read (not a number, a frame given twice, ...)."""


class MotionMaskError(MotionKitError):
    """A motion-scale mask that is not a usable MASK (wrong shape, negative or non-finite values)."""


class MotionWindowsError(MotionKitError):
    """Motion-only window settings that cannot work (an unknown schedule, an overlap as long as the window, ...)."""
