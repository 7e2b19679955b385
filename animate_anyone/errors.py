"""Errors an artist can act on (house style of common/errors.py: name the file and the fix)."""
from ..common.errors import MotionKitError


class AnimateAnyoneError(MotionKitError):
    """A missing or wrong Animate Anyone component, or inputs that cannot be used."""
