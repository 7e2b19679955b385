"""Thin ComfyUI node classes, one file per feature (classic node API: see README)."""
from . import model_folders  # noqa: F401  (registers MotionKit's model folders first)
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
from .sparsectrl import LoadSparseCtrl, SparseCtrlKeyframes
from .train_motion_lora import TrainMotionLoRA
from .trailing_scheduler import TrailingScheduler
from .training_clips import MakeCameraMoveClips, VideoFolderClips
from .trajectory import ApplyOMCM, LoadOMCM, Trajectory, TrajectoryAttention, TrajectoryFromVideo

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
    "MotionKitLoadSparseCtrl": LoadSparseCtrl,
    "MotionKitSparseCtrlKeyframes": SparseCtrlKeyframes,
    "MotionKitTrainMotionLoRA": TrainMotionLoRA,
    "MotionKitMakeCameraMoveClips": MakeCameraMoveClips,
    "MotionKitVideoFolderClips": VideoFolderClips,
    "MotionKitTrajectory": Trajectory,
    "MotionKitTrajectoryFromVideo": TrajectoryFromVideo,
    "MotionKitLoadOMCM": LoadOMCM,
    "MotionKitApplyOMCM": ApplyOMCM,
    "MotionKitTrajectoryAttention": TrajectoryAttention,
    "MotionKitLoadAnimateAnyone": LoadAnimateAnyone,
    "MotionKitApplyAnimateAnyone": ApplyAnimateAnyone,
    "MotionKitTrailingScheduler": TrailingScheduler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitLoadMotionModel": "Load Motion Model (AnimateDiff) 🎞️",
    "MotionKitApplyMotionModel": "Apply Motion Model (AnimateDiff) 🎞️",
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
    "MotionKitLoadSparseCtrl": "Load SparseCtrl 🎞️",
    "MotionKitSparseCtrlKeyframes": "SparseCtrl Keyframes 🎞️",
    "MotionKitTrainMotionLoRA": "Train MotionLoRA 🎞️",
    "MotionKitMakeCameraMoveClips": "Make Camera-Move Clips 🎞️",
    "MotionKitVideoFolderClips": "Video Folder to Clips 🎞️",
    "MotionKitTrajectory": "Trajectory 🎞️",
    "MotionKitTrajectoryFromVideo": "Trajectory from Video Flow 🎞️",
    "MotionKitLoadOMCM": "Load MotionCtrl OMCM 🎞️",
    "MotionKitApplyOMCM": "Apply MotionCtrl OMCM 🎞️",
    "MotionKitTrajectoryAttention": "Trajectory Attention (training-free) 🎞️",
    "MotionKitLoadAnimateAnyone": "Load Animate Anyone 🎞️",
    "MotionKitApplyAnimateAnyone": "Apply Animate Anyone 🎞️",
    "MotionKitTrailingScheduler": "Trailing Scheduler (Animate Anyone) 🎞️",
}
