"""Sampling settings that cannot work, in the house style (common/errors.py): say what is wrong and what to do."""
from ..common.errors import MotionKitError


class ContextWindowError(MotionKitError):
    """Context-window settings that cannot work (overlap not below the length, windows too long)."""


class NoiseOptionError(MotionKitError):
    """FreeNoise / FreeInit settings that cannot work (a stride longer than the window, an unknown filter)."""


class PromptScheduleError(MotionKitError):
    """A prompt schedule whose text cannot be read (a line that is not 'frame: prompt', a frame given twice, ...)."""
