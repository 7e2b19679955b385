"""Trajectory nodes: draw paths (web/motionkit_trajectory.js) or take a video's flow -> TRAJECTORY; apply it with
MotionCtrl's OMCM or with training-free cross-attention boxes."""
import os

import comfy.utils
import folder_paths

from ..control.box_attention import apply_box_attention, prompt_length, word_tokens
from ..control.motionctrl.apply import DEFAULT_END_PERCENT, apply_omcm, comfy_operations
from ..control.motionctrl.files import load_omcm
from ..trajectory.encoding import SPACINGS, encode_paths, parse_paths
from ..trajectory.errors import TrajectoryError
from ..trajectory.preview import render
from ..trajectory.video_flow import optical_flow
from .model_folders import OMCM_FOLDER


def _percent(default, tip):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.001, "tooltip": tip})


def _background_ui(background):
    """The first background frame as a temp image, so the canvas editor can draw over it after a run."""
    if background is None:
        return []
    import numpy as np
    from PIL import Image

    out_dir = folder_paths.get_temp_directory()
    os.makedirs(out_dir, exist_ok=True)
    name = f"motionkit_trajectory_{os.getpid()}_{id(background):x}.png"
    Image.fromarray(np.clip(background[0, ..., :3].cpu().numpy() * 255, 0, 255).astype("uint8")).save(
        os.path.join(out_dir, name))
    return [{"filename": name, "subfolder": "", "type": "temp"}]


class Trajectory:
    DESCRIPTION = ("Paths the subject should follow. Draw them on the canvas (click to add points, drag to move, "
                   "right-click a point to delete it) or connect a point list (WanTrackToVideo / spline-editor "
                   "JSON). Each path's frames are spread evenly along it. Outputs the trajectory (flow maps, for "
                   "'Apply MotionCtrl OMCM' or 'Trajectory Attention') and a preview of it.")
    CATEGORY = "MotionKit/Trajectory"
    RETURN_TYPES = ("TRAJECTORY", "IMAGE")
    RETURN_NAMES = ("trajectory", "preview")
    OUTPUT_TOOLTIPS = ("The paths as per-frame flow maps at width x height.",
                       "The flow in colour (direction = hue) with the paths drawn, one image per frame.")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "paths": ("STRING", {"multiline": True, "default": "[]",
                                 "tooltip": "The drawn paths as JSON (the canvas editor writes it; you can edit it): "
                                            "[{\"points\": [[x, y], ...], \"start_frame\": 0, \"end_frame\": -1}], "
                                            "points in pixels of width x height, end_frame -1 = the last frame."}),
            "width": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8,
                              "tooltip": "Canvas width in pixels: the animation's width (the latent's x 8)."}),
            "height": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8,
                               "tooltip": "Canvas height in pixels: the animation's height."}),
            "frames": ("INT", {"default": 16, "min": 2, "max": 4096,
                               "tooltip": "The animation's frame count (the latent batch size)."}),
            "spacing": (list(SPACINGS), {"default": SPACINGS[0],
                                         "tooltip": "'even by arc length': the subject moves at constant speed along "
                                                    "the path. 'per point': the points are spread evenly over the "
                                                    "frames (for point lists sampled once per frame, e.g. spline "
                                                    "editors), straight in between."}),
        }, "optional": {
            "points_json": ("STRING", {"forceInput": True,
                                       "tooltip": "More paths as JSON: the track format of core's WanTrackToVideo "
                                                  "and spline editors ([{\"x\": .., \"y\": ..}, ...] or a list of "
                                                  "those), in pixels of width x height. Added to the drawn paths."}),
            "background": ("IMAGE", {"tooltip": "A reference image (e.g. the first frame): shown under the paths in "
                                                "the preview, and in the canvas editor after a run."}),
        }}

    def encode(self, paths, width, height, frames, spacing, points_json=None, background=None):
        drawn = parse_paths(paths, "drawn paths")
        extra = parse_paths(points_json, "points_json") if points_json else []
        traj = encode_paths(drawn + extra, frames, width, height, spacing)
        return {"ui": {"motionkit_background": _background_ui(background)}, "result": (traj, render(traj, background))}


class TrajectoryFromVideo:
    DESCRIPTION = ("The motion of a video as a trajectory: dense optical flow (OpenCV) between consecutive frames, "
                   "to transfer its motion with 'Apply MotionCtrl OMCM'.")
    CATEGORY = "MotionKit/Trajectory"
    RETURN_TYPES = ("TRAJECTORY", "IMAGE")
    RETURN_NAMES = ("trajectory", "preview")
    OUTPUT_TOOLTIPS = ("The video's flow, one map per frame.", "The flow in colour over the video.")
    FUNCTION = "measure"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The video's frames (e.g. from Load Video Frames): one per animation frame."}),
            "width": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8,
                              "tooltip": "Flow width in pixels (the animation's); 0 = the frames' width."}),
            "height": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8,
                               "tooltip": "Flow height in pixels (the animation's); 0 = the frames' height."}),
        }}

    def measure(self, images, width, height):
        bar = comfy.utils.ProgressBar(max(images.shape[0] - 1, 1))
        traj = optical_flow(images.cpu(), width, height, progress=lambda: bar.update(1))
        return (traj, render(traj, images))


class LoadOMCM:
    DESCRIPTION = ("Loads MotionCtrl's object-motion module for AnimateDiff (motionctrl_animatediff_omcm.ckpt, "
                   "TencentARC/MotionCtrl) from models/motionctrl: it turns a trajectory into features that steer "
                   "where things move.")
    CATEGORY = "MotionKit/Trajectory"
    RETURN_TYPES = ("MOTIONCTRL_OMCM",)
    RETURN_NAMES = ("omcm",)
    OUTPUT_TOOLTIPS = ("The OMCM; connect it to 'Apply MotionCtrl OMCM'.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"omcm_name": (folder_paths.get_filename_list(OMCM_FOLDER), {
            "tooltip": "motionctrl_animatediff_omcm.ckpt in models/motionctrl (read weights-only)."})}}

    def load(self, omcm_name):
        path = folder_paths.get_full_path_or_raise(OMCM_FOLDER, omcm_name)
        bar = comfy.utils.ProgressBar(2)
        bar.update(1)
        omcm = load_omcm(path, comfy_operations())  # comfy.ops layers: low-VRAM loading, casting
        bar.update(1)
        return (omcm,)


class ApplyOMCM:
    DESCRIPTION = ("Steers the animation along a trajectory with MotionCtrl's OMCM: its features are added to the "
                   "UNet's down blocks, as in the original, during the first part of sampling. Trained with "
                   "AnimateDiff v3 (v3_sd15_mm.ckpt) on SD1.5.")
    CATEGORY = "MotionKit/Trajectory"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The MODEL with trajectory control (a clone; the input is unchanged).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The MODEL from 'Apply Motion Model' (v3_sd15_mm.ckpt)."}),
            "omcm": ("MOTIONCTRL_OMCM", {"tooltip": "From 'Load MotionCtrl OMCM'."}),
            "trajectory": ("TRAJECTORY", {"tooltip": "From 'Trajectory' or 'Trajectory from Video Flow'."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                                   "tooltip": "1 = as trained, 0 = off (the MODEL unchanged); above 1 follows the "
                                              "path harder, at the cost of the image."}),
            "start_percent": _percent(0.0, "Where in sampling the control starts (0 = the first step)."),
            "end_percent": _percent(DEFAULT_END_PERCENT,
                                    "Where it stops. 0.3 = the original's setting (timesteps >= 700 of 1000): the "
                                    "path sets the layout early, the rest refines freely."),
        }}

    def apply(self, model, omcm, trajectory, strength, start_percent, end_percent):
        return (apply_omcm(model, omcm, trajectory, strength, start_percent, end_percent),)


class TrajectoryAttention:
    DESCRIPTION = ("Training-free path control for any motion model: boxes follow the trajectory, and the chosen "
                   "prompt words' cross-attention is strengthened inside them and weakened outside, frame by frame. "
                   "Coarser than MotionCtrl OMCM, but needs no extra weights.")
    CATEGORY = "MotionKit/Trajectory"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The MODEL with attention boxes (a clone; the input is unchanged).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The MODEL (with a motion model applied)."}),
            "clip": ("CLIP", {"tooltip": "The checkpoint's CLIP: finds the words' tokens in the prompt."}),
            "trajectory": ("TRAJECTORY", {"tooltip": "From 'Trajectory' (drawn paths)."}),
            "prompt": ("STRING", {"multiline": True, "default": "a red balloon flying over a field",
                                  "tooltip": "The positive prompt, exactly as given to CLIP Text Encode "
                                             "(convert that node's text to an input and share one text node)."}),
            "words": ("STRING", {"default": "red balloon",
                                 "tooltip": "The words (as in the prompt) naming what should follow the path; "
                                            "comma-separated for several."}),
            "strength": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 10.0, "step": 0.05,
                                   "tooltip": "Logit bias: + inside the boxes, - outside (none on frames where no path "
                                              "is active). 0 = off; 1-3 typical."}),
            "box_width": ("FLOAT", {"default": 0.3, "min": 0.02, "max": 1.0, "step": 0.01,
                                    "tooltip": "Box width as a fraction of the image width (about the subject's size)."}),
            "box_height": ("FLOAT", {"default": 0.3, "min": 0.02, "max": 1.0, "step": 0.01,
                                     "tooltip": "Box height as a fraction of the image height."}),
            "start_percent": _percent(0.0, "Where in sampling the boxes start acting."),
            "end_percent": _percent(0.4, "Where they stop (the layout is set early; later steps refine)."),
        }}

    def apply(self, model, clip, trajectory, prompt, words, strength, box_width, box_height, start_percent,
              end_percent):
        if not trajectory.positions:
            raise TrajectoryError("Trajectory Attention needs drawn paths; a video's flow has no boxes to follow. "
                                  "Use 'Apply MotionCtrl OMCM' for video motion.")
        tokens = word_tokens(clip, prompt, words)
        return (apply_box_attention(model, trajectory, tokens, strength, box_width, box_height, start_percent,
                                    end_percent, prompt_length(clip, prompt)),)
