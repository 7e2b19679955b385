"""The one place `training` imports the motion package from (so a move of it changes one file)."""
from ..motion import lora as motion_lora
from ..motion.model import MotionArchitecture, MotionModel

__all__ = ["motion_lora", "MotionArchitecture", "MotionModel"]
