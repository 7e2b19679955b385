"""Thin ComfyUI node classes, one file per feature (classic node API: see README)."""
from .animate_anyone import ApplyAnimateAnyone, LoadAnimateAnyone
from .animatelcm_i2v import AnimateLCMI2VImage
from .apply_motion_model import ApplyMotionModel
from .context_options import ContextWindows
from .domain_adapter import ApplyDomainAdapter
from .load_motion_model import LoadMotionModel
from .motion_lora import LoadMotionLoRA
from .motion_scale_schedule import MotionScaleSchedule
from .load_image_folder import LoadImageFolder
from .load_video import LoadVideo
from .noise_freeinit import FreeInitNode
from .noise_freenoise import FreeNoiseNode
from .prompt_schedule import PromptSchedule
from .save_animation import SaveAnimation

NODE_CLASS_MAPPINGS = {
    "MotionKitLoadMotionModel": LoadMotionModel,
    "MotionKitApplyMotionModel": ApplyMotionModel,
    "MotionKitMotionScaleSchedule": MotionScaleSchedule,
    "MotionKitLoadMotionLoRA": LoadMotionLoRA,
    "MotionKitApplyDomainAdapter": ApplyDomainAdapter,
    "MotionKitI2VImage": AnimateLCMI2VImage,
    "MotionKitContextWindows": ContextWindows,
    "MotionKitSaveAnimation": SaveAnimation,
    "MotionKitLoadVideo": LoadVideo,
    "MotionKitLoadImageFolder": LoadImageFolder,
    "MotionKitFreeNoise": FreeNoiseNode,
    "MotionKitFreeInit": FreeInitNode,
    "MotionKitPromptSchedule": PromptSchedule,
    "MotionKitLoadAnimateAnyone": LoadAnimateAnyone,
    "MotionKitApplyAnimateAnyone": ApplyAnimateAnyone,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitLoadMotionModel": "Load Motion Model 🎞️",
    "MotionKitApplyMotionModel": "Apply Motion Model 🎞️",
    "MotionKitMotionScaleSchedule": "Motion Scale Schedule 🎞️",
    "MotionKitLoadMotionLoRA": "Load MotionLoRA 🎞️",
    "MotionKitApplyDomainAdapter": "Apply Domain Adapter 🎞️",
    "MotionKitI2VImage": "Apply AnimateLCM-I2V Image 🎞️",
    "MotionKitContextWindows": "Context Windows (Motion) 🎞️",
    "MotionKitSaveAnimation": "Save Animation 🎞️",
    "MotionKitLoadVideo": "Load Video Frames 🎞️",
    "MotionKitLoadImageFolder": "Load Image Folder 🎞️",
    "MotionKitFreeNoise": "FreeNoise 🎞️",
    "MotionKitFreeInit": "FreeInit 🎞️",
    "MotionKitPromptSchedule": "Prompt Schedule 🎞️",
    "MotionKitLoadAnimateAnyone": "Load Animate Anyone 🎞️",
    "MotionKitApplyAnimateAnyone": "Apply Animate Anyone 🎞️",
}
