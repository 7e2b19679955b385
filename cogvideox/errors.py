"""Errors an artist can act on (house style of common/errors.py: name the file and the fix)."""
from ..common.errors import MotionKitError, WrongFileTypeError


class CogVideoXFileError(MotionKitError):
    """A CogVideoX transformer file or folder that cannot be read: missing shards, corrupt or incomplete files."""


class WrongCogVideoXModelError(WrongFileTypeError):
    """A file of another model (SD1.5/SDXL, CogVideoX-2B, CogVideoX1.5, an image-to-video variant) given where the
    CogVideoX-5B text-to-video transformer is expected."""
