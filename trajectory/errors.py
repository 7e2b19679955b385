"""Trajectory errors, in the house style (common/errors.py): say what is wrong and what to do."""
from ..common.errors import MotionKitError


class TrajectoryError(MotionKitError):
    """Paths or point lists that cannot become a trajectory (no points, outside the canvas, bad JSON, ...)."""
