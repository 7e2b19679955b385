"""Tora errors, in the house style (common/errors.py): say what is wrong and what to do."""
from ..common.errors import MotionKitError, WrongFileTypeError


class ToraError(MotionKitError):
    """Tora's modules or inputs that cannot be used (incomplete weights, sizes that do not match)."""


class NotToraFileError(ToraError, WrongFileTypeError):
    """A file without Tora's modules (a plain CogVideoX transformer, something else) given where Tora's are needed."""
