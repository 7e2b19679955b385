"""MotionKit's model folders (ComfyUI/models/<name>), all registered here when the pack loads.

The names are AnimateDiff-Evolved's where ADE has the same kind of file, so an existing collection works as it is
and both packs share one list when both are installed (common/folders.py)."""
from ..animate_anyone.files import FOLDER as ANIMATE_ANYONE_FOLDER
from ..cogvideox.comfy_files import FOLDER as COGVIDEOX_FOLDER
from ..common.folders import register_model_folder

MOTION_FOLDER = "animatediff_models"  # also models/motion_models
MOTION_LORA_FOLDER = "animatediff_motion_lora"
OMCM_FOLDER = "motionctrl"

FOLDERS = (  # name, further subfolders of models/ it holds, file extensions besides ComfyUI's usual ones
    (MOTION_FOLDER, ("motion_models",), ()),
    (MOTION_LORA_FOLDER, (), ()),
    (OMCM_FOLDER, (), ()),
    (ANIMATE_ANYONE_FOLDER, (), (".pth",)),
    (COGVIDEOX_FOLDER, (), ()),
)


def register() -> None:
    for name, subfolders, extensions in FOLDERS:
        register_model_folder(name, subfolders, extensions)


register()
