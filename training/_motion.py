"""The one place `training` imports the motion package from (so a move of it changes one file)."""
from ..motion import lora as motion_lora
from ..motion.model import MotionArchitecture, MotionModel
from ..motion.pickle_check import code_in_pickle, reason, refused_by_weights_only

__all__ = ["motion_lora", "MotionArchitecture", "MotionModel", "code_in_pickle", "reason", "refused_by_weights_only"]
