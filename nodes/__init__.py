"""Thin ComfyUI node classes, one file per feature (classic node API: see README)."""
from .apply_motion_model import ApplyMotionModel
from .load_motion_model import LoadMotionModel

NODE_CLASS_MAPPINGS = {
    "MotionKitLoadMotionModel": LoadMotionModel,
    "MotionKitApplyMotionModel": ApplyMotionModel,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitLoadMotionModel": "Load Motion Model 🎞️",
    "MotionKitApplyMotionModel": "Apply Motion Model 🎞️",
}
