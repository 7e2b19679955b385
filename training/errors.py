"""Training errors in the house style (common/errors.py): each says what is wrong and what to do."""
from ..common.errors import MotionKitError


class TrainingError(MotionKitError):
    """Bad training input (clip lengths, captions, resume file) or a run that cannot go on (NaN loss)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the LoRA was not updated with it."""
