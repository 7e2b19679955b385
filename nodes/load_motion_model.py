"""Load Motion Model: a motion-module file from models/animatediff_models."""
from dataclasses import dataclass

import comfy.utils
import folder_paths

from ..motion.formats import LOAD_STAGES, MotionModelInfo, load_motion_model
from ..motion.injection import comfy_layers
from ..motion.model import MotionModel
from .model_folders import MOTION_FOLDER


@dataclass(frozen=True)
class LoadedMotionModel:
    """What flows along a MOTION_MODEL wire."""
    model: MotionModel
    info: MotionModelInfo
    name: str


class LoadMotionModel:
    DESCRIPTION = ("Loads an AnimateDiff-family motion model (v1, v2, v3, SDXL beta, Hotshot-XL, AnimateLCM, "
                   "AnimateDiff-Lightning, PIA) from models/animatediff_models. The format is detected from the file.")
    CATEGORY = "MotionKit"
    # node search: ComfyUI versions whose /object_info carries `search_aliases` (core's SEARCH_ALIASES) search
    # these too; 0.3.64's frontend (1.27) searches only the class and display names, hence "(AnimateDiff)" there
    SEARCH_ALIASES = ["animatediff", "animatediff loader", "load animatediff", "motion module", "motion model",
                      "animatelcm", "hotshot", "text to video"]
    RETURN_TYPES = ("MOTION_MODEL",)
    RETURN_NAMES = ("motion_model",)
    OUTPUT_TOOLTIPS = ("The motion model; connect it to 'Apply Motion Model'.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (folder_paths.get_filename_list(MOTION_FOLDER), {
            "tooltip": "A motion-module file (e.g. mm_sd_v15_v2.ckpt, v3_sd15_mm.ckpt, mm_sdxl_v10_beta.ckpt) "
                       "in models/animatediff_models or models/motion_models."})}}

    def load(self, model_name):
        path = folder_paths.get_full_path_or_raise(MOTION_FOLDER, model_name)
        bar = comfy.utils.ProgressBar(LOAD_STAGES)
        operations, attention = comfy_layers()  # comfy.ops layers and ComfyUI's attention (low-VRAM loading, flags)
        model, info = load_motion_model(path, model_name, progress=lambda: bar.update(1), operations=operations,
                                        attention=attention)
        return (LoadedMotionModel(model, info, model_name),)
