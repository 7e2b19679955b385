"""CameraCtrl nodes: load CameraCtrl, make camera poses (pose file, preset, several motions mixed, chained), picture
the camera path, apply the poses to a MODEL that has AnimateDiff v3 applied. The work is in camera/.

Types: CAMERACTRL (camera.encoder.CameraCtrl: the camera encoder and merge layers), CAMERA_POSES
(camera.poses.CameraPoses: one pose per frame)."""
import os

import comfy.utils
import folder_paths
import torch

from ..camera.apply import apply_camera
from ..camera.files import load_cameractrl
from ..camera.poses import (LINEAR_MOTIONS, MOTIONS, ORBIT_RADIUS, PAN_LEFT, SOURCE_HEIGHT, SOURCE_WIDTH, STATIC,
                            ZOOM_IN, append, mix, preset, read_pose_file)
from ..camera.preview import camera_path_picture
from ..motion.injection import comfy_attention
from .input_file import check_input_file, file_version, input_path
from .model_folders import MOTION_FOLDER

CATEGORY = "MotionKit/CameraCtrl"


class LoadCameraCtrl:
    DESCRIPTION = ("Loads CameraCtrl (hehao13/CameraCtrl, for AnimateDiff v3): CameraCtrl_pruned.safetensors "
                   "(Kosinkadink/CameraCtrl, what AnimateDiff-Evolved uses) or the original CameraCtrl.ckpt, from "
                   "models/animatediff_models (where AnimateDiff-Evolved keeps it too). The layout is detected from "
                   "the weights; other files are refused with what they are.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CAMERACTRL",)
    RETURN_NAMES = ("cameractrl",)
    OUTPUT_TOOLTIPS = ("CameraCtrl's camera encoder and merge layers; connect it to 'Apply CameraCtrl'.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"cameractrl_name": (folder_paths.get_filename_list(MOTION_FOLDER), {
            "tooltip": "CameraCtrl_pruned.safetensors or CameraCtrl.ckpt in models/animatediff_models (the folder "
                       "is shared with motion models; .ckpt is read weights-only)."})}}

    def load(self, cameractrl_name):
        import comfy.ops
        path = folder_paths.get_full_path_or_raise(MOTION_FOLDER, cameractrl_name)
        bar = comfy.utils.ProgressBar(2)
        bar.update(1)
        camera = load_cameractrl(path, comfy.ops.manual_cast, comfy_attention())  # weights cast to the activations
        bar.update(1)
        return (camera,)


def _poses_input(tip):
    return ("CAMERA_POSES", {"tooltip": tip})


class CameraPosesFromFile:
    DESCRIPTION = ("Camera poses from a RealEstate10K / CameraCtrl pose file (.txt in ComfyUI's input folder): a URL "
                   "line, then one line of 19 numbers per frame. Connect previous poses (a preset or another file) "
                   "to continue from where they end.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CAMERA_POSES",)
    RETURN_NAMES = ("poses",)
    OUTPUT_TOOLTIPS = ("One camera pose per frame.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        input_dir = folder_paths.get_input_directory()
        files = sorted(f for f in os.listdir(input_dir)
                       if f.lower().endswith(".txt") and os.path.isfile(os.path.join(input_dir, f)))
        return {"required": {
            "pose_file": (files, {"tooltip": "A pose .txt file in ComfyUI's input folder (CameraCtrl's "
                                             "assets/pose_files, RealEstate10K's camera files)."}),
            "source_width": ("INT", {"default": SOURCE_WIDTH, "min": 1, "max": 16384,
                                     "tooltip": "Width of the video the poses were measured on (RealEstate10K: 1280)."}),
            "source_height": ("INT", {"default": SOURCE_HEIGHT, "min": 1, "max": 16384,
                                      "tooltip": "Height of that video (RealEstate10K: 720)."}),
        }, "optional": {
            "frames": ("INT", {"default": 0, "min": 0, "max": 4096,
                               "tooltip": "Use the file's first this many poses; 0 = all of them."}),
            "previous": _poses_input("Poses this file's path continues (it starts where they end; frame counts "
                                     "add up)."),
        }}

    def load(self, pose_file, source_width, source_height, frames=0, previous=None):
        poses = read_pose_file(pose_path(pose_file), frames or None).with_source_size(source_width, source_height)
        if frames:
            poses = poses.for_frames(frames)
        return (poses if previous is None else append(previous, poses),)

    @classmethod
    def IS_CHANGED(cls, pose_file, **_):
        return file_version(pose_path, pose_file)

    @classmethod
    def VALIDATE_INPUTS(cls, pose_file):
        return check_input_file(pose_path, pose_file, "Camera pose file")


def pose_path(pose_file: str) -> str:
    """The pose file's real path: a name in the input folder (or 'name [output]'), confined as safe_paths says."""
    return input_path(pose_file, what="pose file", node="Camera Poses from File")


class CameraPosesPreset:
    DESCRIPTION = ("A camera motion: pan, zoom, roll, tilt (AnimateDiff-Evolved's presets, same pace) or orbit. "
                   "Connect previous poses to continue from where they end.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CAMERA_POSES",)
    RETURN_NAMES = ("poses",)
    OUTPUT_TOOLTIPS = ("One camera pose per frame (after the previous poses, if connected).",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion": (list(MOTIONS), {"tooltip": "The camera motion."}),
            "speed": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                                "tooltip": "1 = 60 degrees or 1.5 units per 16 frames; negative reverses."}),
            "frames": ("INT", {"default": 16, "min": 1, "max": 4096, "tooltip": "Poses to make."}),
        }, "optional": {
            "previous": _poses_input("Poses this motion continues (frame counts add up)."),
            "orbit_radius": ("FLOAT", {"default": ORBIT_RADIUS, "min": 0.01, "max": 100.0, "step": 0.01,
                                       "tooltip": "Orbit only: distance of the circled point ahead of the camera."}),
        }}

    def make(self, motion, speed, frames, previous=None, orbit_radius=ORBIT_RADIUS):
        poses = preset(motion, speed, frames, orbit_radius)
        return (poses if previous is None else append(previous, poses),)


MIX_SLOTS = 4  # (motion, strength) pairs on Camera Poses Mix


class CameraPosesMix:
    DESCRIPTION = ("Several camera motions at once, e.g. pan left while zooming in: each motion's turn and move, times "
                   "its strength, add up (AnimateDiff-Evolved's Create CameraCtrl Poses (Combo) / (Adv.), same poses). "
                   "Static slots do nothing. Orbits cannot be mixed: chain them with Camera Poses Preset. Connect "
                   "previous poses to continue from where they end.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CAMERA_POSES",)
    RETURN_NAMES = ("poses",)
    OUTPUT_TOOLTIPS = ("One camera pose per frame (after the previous poses, if connected).",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        pairs = {}
        for i, default in enumerate((PAN_LEFT, ZOOM_IN) + (STATIC,) * (MIX_SLOTS - 2), start=1):
            pairs[f"motion_{i}"] = (list(LINEAR_MOTIONS), {
                "default": default, "tooltip": f"Motion {i} of the mix (Static: this slot does nothing)."})
            pairs[f"strength_{i}"] = ("FLOAT", {
                "default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                "tooltip": f"How much of motion {i}: 1 = as much as the preset at this speed, 0.5 = half as far, "
                           f"0 = none, negative = the opposite way."})
        return {"required": {
            **pairs,
            "speed": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                                "tooltip": "Pace of the whole mix: 1 = 60 degrees or 1.5 units per 16 frames at "
                                           "strength 1; negative reverses."}),
            "frames": ("INT", {"default": 16, "min": 1, "max": 4096, "tooltip": "Poses to make."}),
        }, "optional": {
            "previous": _poses_input("Poses this mix continues (frame counts add up)."),
        }}

    def make(self, speed, frames, previous=None, **pairs):
        poses = mix([(pairs[f"motion_{i}"], pairs[f"strength_{i}"]) for i in range(1, MIX_SLOTS + 1)], speed, frames)
        return (poses if previous is None else append(previous, poses),)


class CameraPathPicture:
    DESCRIPTION = ("A small picture of the camera path (top, side and back views, relative to the first pose; blue "
                   "= first frame, red = last) to check the poses before sampling: connect it to Preview Image.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("picture",)
    OUTPUT_TOOLTIPS = ("One 576x192 image: arrows show where the camera looks (top, side) and its up direction "
                       "(back view, so a roll shows).",)
    FUNCTION = "draw"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"poses": _poses_input("The camera poses to picture.")}}

    def draw(self, poses):
        return (torch.from_numpy(camera_path_picture(poses)).float().div(255.0).unsqueeze(0),)


class ApplyCameraCtrl:
    DESCRIPTION = ("Moves the camera along the given poses with CameraCtrl: its camera features enter the first "
                   "temporal attention of every down and up motion module. Needs a MODEL with an SD1.5 motion model "
                   "applied: v3_sd15_mm.ckpt, which CameraCtrl was trained with (another one runs, with a warning). "
                   "With Context Windows each window gets its own frames' poses (at most 16 frames per window). "
                   "A strength mask limits the camera to part of the picture (AnimateDiff-Evolved's "
                   "cameractrl_multival with a mask).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The MODEL with camera control (a clone; the input is unchanged).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        percent = {"min": 0.0, "max": 1.0, "step": 0.001}
        return {"required": {
            "model": ("MODEL", {"tooltip": "The MODEL from 'Apply Motion Model' (v3_sd15_mm.ckpt)."}),
            "cameractrl": ("CAMERACTRL", {"tooltip": "From 'Load CameraCtrl'."}),
            "poses": _poses_input("One pose per frame."),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                                   "tooltip": "1 = as trained, 0 = off."}),
            "start_percent": ("FLOAT", {"default": 0.0, **percent, "tooltip": "Where in sampling it starts."}),
            "end_percent": ("FLOAT", {"default": 1.0, **percent, "tooltip": "Where in sampling it ends."}),
            "repeat_last_pose": ("BOOLEAN", {"default": False, "tooltip": "With fewer poses than frames, hold the "
                                             "last pose (else that is an error)."}),
        }, "optional": {
            "strength_mask": ("MASK", {"tooltip": "Where the camera moves the picture: white = this part follows "
                                       "the camera (at the strength above), black = no camera control there (the "
                                       "motion model alone), grey = in between. The camera strength at each pixel "
                                       "and frame is strength × mask. One mask frame per animation frame, or one for "
                                       "all (fewer: the last one holds); resized to each motion layer's size, so "
                                       "give it the image's shape."}),
        }}

    def apply(self, model, cameractrl, poses, strength, start_percent, end_percent, repeat_last_pose,
              strength_mask=None):
        return (apply_camera(model, cameractrl, poses, strength, start_percent, end_percent, repeat_last_pose,
                             strength_mask),)
