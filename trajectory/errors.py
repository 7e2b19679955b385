"""Trajectory errors, in the house style (motion.errors): say what is wrong and what to do."""
from ..motion.errors import MotionKitError


class TrajectoryError(MotionKitError):
    """Paths or point lists that cannot become a trajectory (no points, outside the canvas, bad JSON, ...)."""
