"""PIA's errors (the base classes are common/errors.py): each names the input and what to do instead."""
from ..common.errors import MotionKitError


class PIAError(MotionKitError):
    """A PIA input that cannot work: no PIA motion model on the MODEL, an SDXL MODEL, bad strength values."""
