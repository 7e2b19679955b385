"""Errors an artist can act on about the CogVideoX VAE (common/errors.py's house style: name the file and the fix)."""
from ..common.errors import MotionKitError, WrongFileTypeError


class CogVideoXVAEError(MotionKitError):
    """A CogVideoX VAE file or folder that cannot be read, or inputs it cannot take."""


class NotCogVideoXVAEError(CogVideoXVAEError, WrongFileTypeError):
    """A file of another kind (an image VAE, another video VAE, a whole model) given where the CogVideoX VAE goes."""
