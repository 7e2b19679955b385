"""CameraCtrl's errors (house style of common/errors.py: name the file or setting and the fix)."""
from ..common.errors import MotionKitError, WrongFileTypeError  # noqa: F401  (re-exported)


class CameraPoseError(MotionKitError):
    """A camera pose file or pose list that cannot be used (wrong columns, too few poses, bad numbers)."""


class CameraCtrlFileError(MotionKitError):
    """A CameraCtrl file that cannot be read or does not match the published CameraCtrl (AnimateDiff v3)."""
