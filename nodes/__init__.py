"""Thin ComfyUI node classes, one file per feature (classic node API: see README)."""
from . import model_folders  # noqa: F401  (registers MotionKit's model folders first)
from . import ade_import_route  # noqa: F401  (the server route of "convert AnimateDiff-Evolved workflow")
from .animate_anyone import ApplyAnimateAnyone, LoadAnimateAnyone
from .animatelcm_i2v import AnimateLCMI2VImage
from .apply_motion_model import ApplyMotionModel
from .cameractrl import (ApplyCameraCtrl, CameraPathPicture, CameraPosesFromFile, CameraPosesMix, CameraPosesPreset,
                         LoadCameraCtrl)
from .cogvideox import (CogVideoXDecode, CogVideoXDynamicCFG, CogVideoXImageToVideo, CogVideoXSampling,
                        CogVideoXTextEncode, EmptyCogVideoXLatent, LoadCogVideoX, LoadCogVideoXVAE)
from .context_consistency import ContextNaiveReuse, ContextReference
from .context_options import ContextWindows
from .domain_adapter import ApplyDomainAdapter
from .load_motion_model import LoadMotionModel
from .motion_keyframe import MotionKeyframeNode
from .motion_lora import LoadMotionLoRA
from .motion_scale_schedule import MotionScaleSchedule
from .motion_windows import MotionWindowsNode
from .load_image_folder import LoadImageFolder
from .load_video import LoadVideo
from .noise_freeinit import FreeInitNode
from .noise_freenoise import FreeNoiseNode
from .noise_layers import NoiseLayerNode, SampleSettingsNode
from .pia import ApplyPIAImage
from .prompt_schedule import PromptSchedule
from .regional_motion import RegionalMotionNode
from .save_animation import SaveAnimation
from .sparsectrl import LoadSparseCtrl, SparseCtrlKeyframes
from .train_motion_lora import TrainMotionLoRA
from .tora import ApplyToraTrajectory
from .trailing_scheduler import TrailingScheduler
from .training_clips import MakeCameraMoveClips, VideoFolderClips
from .trajectory import ApplyOMCM, LoadOMCM, Trajectory, TrajectoryAttention, TrajectoryFromVideo

# The one registry: (class name saved in workflows, node class, display name). A new node is one line here.
NODES = [
    ("MotionKitLoadMotionModel", LoadMotionModel, "Load Motion Model (AnimateDiff) 🎞️"),
    ("MotionKitApplyMotionModel", ApplyMotionModel, "Apply Motion Model (AnimateDiff) 🎞️"),
    ("MotionKitMotionScaleSchedule", MotionScaleSchedule, "Motion Scale Schedule 🎞️"),
    ("MotionKitRegionalMotion", RegionalMotionNode, "Regional Motion 🎞️"),
    ("MotionKitMotionKeyframe", MotionKeyframeNode, "Motion Keyframe 🎞️"),
    ("MotionKitLoadMotionLoRA", LoadMotionLoRA, "Load MotionLoRA 🎞️"),
    ("MotionKitApplyDomainAdapter", ApplyDomainAdapter, "Apply Domain Adapter 🎞️"),
    ("MotionKitI2VImage", AnimateLCMI2VImage, "Apply AnimateLCM-I2V Image 🎞️"),
    ("MotionKitApplyPIAImage", ApplyPIAImage, "Apply PIA Image 🎞️"),
    ("MotionKitContextWindows", ContextWindows, "Context Windows (Motion) 🎞️"),
    ("MotionKitContextRef", ContextReference, "Context Reference 🎞️"),
    ("MotionKitContextNaiveReuse", ContextNaiveReuse, "Context Naive Reuse 🎞️"),
    ("MotionKitMotionWindows", MotionWindowsNode, "Motion-Only Windows 🎞️"),
    ("MotionKitSaveAnimation", SaveAnimation, "Save Animation 🎞️"),
    ("MotionKitLoadVideo", LoadVideo, "Load Video Frames 🎞️"),
    ("MotionKitLoadImageFolder", LoadImageFolder, "Load Image Folder 🎞️"),
    ("MotionKitFreeNoise", FreeNoiseNode, "FreeNoise 🎞️"),
    ("MotionKitFreeInit", FreeInitNode, "FreeInit 🎞️"),
    ("MotionKitSampleSettings", SampleSettingsNode, "Sample Settings (Noise) 🎞️"),
    ("MotionKitNoiseLayer", NoiseLayerNode, "Noise Layer 🎞️"),
    ("MotionKitPromptSchedule", PromptSchedule, "Prompt Schedule 🎞️"),
    ("MotionKitLoadSparseCtrl", LoadSparseCtrl, "Load SparseCtrl 🎞️"),
    ("MotionKitSparseCtrlKeyframes", SparseCtrlKeyframes, "SparseCtrl Keyframes 🎞️"),
    ("MotionKitTrainMotionLoRA", TrainMotionLoRA, "Train MotionLoRA 🎞️"),
    ("MotionKitMakeCameraMoveClips", MakeCameraMoveClips, "Make Camera-Move Clips 🎞️"),
    ("MotionKitVideoFolderClips", VideoFolderClips, "Video Folder to Clips 🎞️"),
    ("MotionKitTrajectory", Trajectory, "Trajectory 🎞️"),
    ("MotionKitTrajectoryFromVideo", TrajectoryFromVideo, "Trajectory from Video Flow 🎞️"),
    ("MotionKitLoadOMCM", LoadOMCM, "Load MotionCtrl OMCM 🎞️"),
    ("MotionKitApplyOMCM", ApplyOMCM, "Apply MotionCtrl OMCM 🎞️"),
    ("MotionKitLoadCameraCtrl", LoadCameraCtrl, "Load CameraCtrl 🎞️"),
    ("MotionKitCameraPosesFromFile", CameraPosesFromFile, "Camera Poses from File 🎞️"),
    ("MotionKitCameraPosesPreset", CameraPosesPreset, "Camera Poses Preset 🎞️"),
    ("MotionKitCameraPosesMix", CameraPosesMix, "Camera Poses Mix 🎞️"),
    ("MotionKitCameraPathPicture", CameraPathPicture, "Camera Path Picture 🎞️"),
    ("MotionKitApplyCameraCtrl", ApplyCameraCtrl, "Apply CameraCtrl 🎞️"),
    ("MotionKitTrajectoryAttention", TrajectoryAttention, "Trajectory Attention (training-free) 🎞️"),
    ("MotionKitLoadAnimateAnyone", LoadAnimateAnyone, "Load Animate Anyone 🎞️"),
    ("MotionKitApplyAnimateAnyone", ApplyAnimateAnyone, "Apply Animate Anyone 🎞️"),
    ("MotionKitTrailingScheduler", TrailingScheduler, "Trailing Scheduler (Animate Anyone) 🎞️"),
    ("MotionKitLoadCogVideoX", LoadCogVideoX, "Load CogVideoX / Tora 🎞️"),
    ("MotionKitLoadCogVideoXVAE", LoadCogVideoXVAE, "Load CogVideoX VAE 🎞️"),
    ("MotionKitCogVideoXTextEncode", CogVideoXTextEncode, "CogVideoX Text Encode 🎞️"),
    ("MotionKitEmptyCogVideoXLatent", EmptyCogVideoXLatent, "Empty CogVideoX Latent 🎞️"),
    ("MotionKitCogVideoXImageToVideo", CogVideoXImageToVideo, "CogVideoX Image to Video 🎞️"),
    ("MotionKitCogVideoXSampling", CogVideoXSampling, "CogVideoX Sampling 🎞️"),
    ("MotionKitCogVideoXDynamicCFG", CogVideoXDynamicCFG, "CogVideoX Dynamic CFG 🎞️"),
    ("MotionKitCogVideoXDecode", CogVideoXDecode, "CogVideoX VAE Decode 🎞️"),
    ("MotionKitApplyToraTrajectory", ApplyToraTrajectory, "Apply Tora Trajectory 🎞️"),
]

NODE_CLASS_MAPPINGS = {key: node for key, node, _ in NODES}
NODE_DISPLAY_NAME_MAPPINGS = {key: name for key, _, name in NODES}
