"""SparseCtrl's errors (house style of common/errors.py: name the file and the fix)."""
from ...common.errors import MotionKitError


class SparseCtrlError(MotionKitError):
    """Bad SparseCtrl input: a wrong file, wrong keyframes, a missing VAE, a model it cannot control."""
