"""Errors an artist can act on (house style of common/errors.py: name the file and the fix)."""
from ..common.errors import MotionKitError, WrongFileTypeError


class CogVideoXFileError(MotionKitError):
    """A CogVideoX file or folder that cannot be read: missing shards, corrupt or incomplete files, bad settings."""


class WrongCogVideoXModelError(WrongFileTypeError):
    """A file of another model (SD1.5/SDXL, CogVideoX-2B, CogVideoX1.5, an image-to-video variant) given where the
    CogVideoX-5B text-to-video transformer is expected."""


class CogVideoXVAEError(CogVideoXFileError):
    """A CogVideoX VAE file or folder that cannot be read, or inputs it cannot take."""


class NotCogVideoXVAEError(CogVideoXVAEError, WrongFileTypeError):
    """A file of another kind (an image VAE, another video VAE, a whole model) given where the CogVideoX VAE goes."""


class CogVideoXTextEncoderError(MotionKitError):
    """The CLIP given is not core's unmasked T5-XXL."""


class CogVideoXImageError(MotionKitError):
    """An image-to-video mismatch: a start image for a text-to-video transformer, or none for an image-to-video one,
    or a start image of another size than the latent."""
