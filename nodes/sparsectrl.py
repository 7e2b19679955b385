"""Load SparseCtrl and SparseCtrl Keyframes: AnimateDiff v3's sparse control net as a core CONTROL_NET."""
import comfy.utils
import folder_paths

from ..control.sparsectrl.apply import control_class, load_control
from ..control.sparsectrl.errors import SparseCtrlError
from ..control.sparsectrl.files import read_file
from ..control.sparsectrl.keyframes import EMPTY_WINDOW, INDICES, NO_CONTROL, PLACEMENTS, KeyframeSettings, parse_indices

FOLDER = "controlnet"  # where users already keep v3_sd15_sparsectrl_*.ckpt (core's ControlNet folder)


class LoadSparseCtrl:
    DESCRIPTION = ("Loads AnimateDiff v3 SparseCtrl (v3_sd15_sparsectrl_rgb.ckpt or _scribble.ckpt) from "
                   "models/controlnet as a CONTROL_NET for core's Apply ControlNet. RGB or scribble is detected from the file.")
    CATEGORY = "MotionKit/SparseCtrl"
    RETURN_TYPES = ("CONTROL_NET",)
    RETURN_NAMES = ("control_net",)
    OUTPUT_TOOLTIPS = ("SparseCtrl; connect it to core 'Apply ControlNet' (with the keyframe images; RGB also needs "
                       "the VAE), optionally through 'SparseCtrl Keyframes' to say where the images go.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sparsectrl_name": (folder_paths.get_filename_list(FOLDER), {
            "tooltip": "v3_sd15_sparsectrl_rgb.ckpt (keyframes as images, encoded with your VAE) or "
                       "v3_sd15_sparsectrl_scribble.ckpt (scribbles/sketches), in models/controlnet."})}}

    def load(self, sparsectrl_name):
        path = folder_paths.get_full_path_or_raise(FOLDER, sparsectrl_name)
        bar = comfy.utils.ProgressBar(2)
        sd = read_file(path)
        bar.update(1)
        control = load_control(sd, sparsectrl_name)  # the encoder on comfy.ops layers (low-VRAM loading, casting)
        del sd
        bar.update(1)
        return (control,)


class SparseCtrlKeyframes:
    DESCRIPTION = ("Says where SparseCtrl's keyframe images (the images given to Apply ControlNet) go in the animation, "
                   "and how strongly hint and other frames are guided. Connect between Load SparseCtrl and Apply ControlNet.")
    CATEGORY = "MotionKit/SparseCtrl"
    RETURN_TYPES = ("CONTROL_NET",)
    RETURN_NAMES = ("control_net",)
    OUTPUT_TOOLTIPS = ("The SparseCtrl with these keyframe settings, for core 'Apply ControlNet'.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "control_net": ("CONTROL_NET", {"tooltip": "From 'Load SparseCtrl'."}),
            "placement": (list(PLACEMENTS), {"default": INDICES, "tooltip":
                "indices: image i goes to the i-th frame of 'indices'. The others spread the images over the "
                "animation in order: uniform (first and last frame included, evenly between), from start (evenly, "
                "starting on frame 0), to end (evenly, ending on the last frame), centred (evenly, centred)."}),
            "indices": ("STRING", {"default": "0, -1", "tooltip":
                "For placement 'indices': one frame per hint image, in the images' order, e.g. '0, -1' (first and last "
                "frame: interpolation) or '0, 8, 15'. Frames count from 0; negative ones from the end (-1 = last)."}),
            "hint_multiplier": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01, "tooltip":
                "Scales SparseCtrl's effect on the frames that have a hint image (on top of Apply ControlNet's strength)."}),
            "nonhint_multiplier": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01, "tooltip":
                "Scales SparseCtrl's effect on the frames without a hint (SparseCtrl also guides them, through its "
                "motion modules). Lower it if frames between keyframes look too constrained."}),
            "motion_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01, "tooltip":
                "Strength of SparseCtrl's own motion modules, which spread the keyframes to the other frames: "
                "1 = as trained, 0 = off (each hint then only guides its own frame)."}),
            "window_without_hint": (list(EMPTY_WINDOW), {"default": NO_CONTROL, "tooltip":
                "With Context Windows: a window with no hint frame inside it gets no SparseCtrl guidance ('no control', "
                "the default: SparseCtrl is not run there; keyframes act only on the frames you chose, neighbouring "
                "windows carry them over), the nearest hint image on its nearest frame ('nearest hint': keeps far "
                "windows anchored, but shows a keyframe where you did not put it), or SparseCtrl run with no hint "
                "('zero condition': its residuals are added, scaled by nonhint_multiplier, as Advanced-ControlNet "
                "does)."}),
        }}

    def apply(self, control_net, placement, indices, hint_multiplier, nonhint_multiplier, motion_strength,
              window_without_hint):
        if not isinstance(control_net, control_class()):
            raise SparseCtrlError(
                f"SparseCtrl Keyframes needs a SparseCtrl from 'Load SparseCtrl', but got {type(control_net).__name__}. "
                f"Other ControlNets take one image per frame in core's Apply ControlNet; they need no keyframe node.")
        parsed = parse_indices(indices) if placement == INDICES else ()
        settings = KeyframeSettings(placement, parsed, hint_multiplier, nonhint_multiplier, motion_strength,
                                    window_without_hint)
        return (control_net.with_settings(settings),)
