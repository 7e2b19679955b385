"""The one place `training` imports the motion package from (so a move of it changes one file)."""
try:  # inside ComfyUI: <pack>.motion
    from ..motion import lora as motion_lora
    from ..motion.model import MotionArchitecture, MotionModel
except ImportError:  # tests: `motion` is top level
    from motion import lora as motion_lora
    from motion.model import MotionArchitecture, MotionModel

__all__ = ["motion_lora", "MotionArchitecture", "MotionModel"]
