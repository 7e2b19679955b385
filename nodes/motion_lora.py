"""Load MotionLoRA: a camera-motion LoRA (v2_lora_ZoomIn.ckpt, …) for a motion model, stackable."""
from dataclasses import replace

import folder_paths

from ..motion.lora import read_motion_lora
from .model_folders import MOTION_LORA_FOLDER


class LoadMotionLoRA:
    DESCRIPTION = ("Loads a MotionLoRA (camera motion such as ZoomIn, PanLeft, TiltUp) from "
                   "models/animatediff_motion_lora. Chain several through prev_motion_lora, then connect the "
                   "result to the motion_lora input of 'Apply Motion Model'.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MOTION_LORA",)
    RETURN_NAMES = ("motion_lora",)
    OUTPUT_TOOLTIPS = ("This MotionLoRA added to the incoming stack; connect it to 'Apply Motion Model' "
                       "or to the next 'Load MotionLoRA'.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "lora_name": (folder_paths.get_filename_list(MOTION_LORA_FOLDER), {
                "tooltip": "A MotionLoRA file (e.g. v2_lora_ZoomIn.ckpt) in models/animatediff_motion_lora. "
                           "The published ones are for AnimateDiff v2 (they also work on v3)."}),
            "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                                   "tooltip": "How strongly the camera motion applies: 1 = as trained, 0 = off; "
                                              "in between weakens it, above 1 exaggerates it."}),
        }, "optional": {
            "prev_motion_lora": ("MOTION_LORA", {"tooltip": "MotionLoRAs loaded before this one (optional): "
                                                            "the stack is applied together, order does not matter."}),
        }}

    def load(self, lora_name, strength, prev_motion_lora=None):
        path = folder_paths.get_full_path_or_raise(MOTION_LORA_FOLDER, lora_name)
        lora = replace(read_motion_lora(path, lora_name), strength=strength)
        return (tuple(prev_motion_lora or ()) + (lora,),)  # a new tuple: upstream outputs stay as they were
