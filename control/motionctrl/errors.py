"""MotionCtrl OMCM's errors (house style of common/errors.py: name the file and the fix)."""
from ...common.errors import MotionKitError


class OMCMError(MotionKitError):
    """An OMCM file that cannot be used, or OMCM settings/inputs that cannot work."""
