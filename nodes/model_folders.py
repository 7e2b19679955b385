"""Where motion models live: models/animatediff_models (the name ADE users already have) and models/motion_models."""
import os

import folder_paths

MOTION_FOLDER = "animatediff_models"
MOTION_LORA_FOLDER = "animatediff_motion_lora"  # models/animatediff_motion_lora, as in AnimateDiff-Evolved


def register() -> None:
    paths = [os.path.join(folder_paths.models_dir, d) for d in ("animatediff_models", "motion_models")]
    if MOTION_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[MOTION_FOLDER] = (paths, set(folder_paths.supported_pt_extensions))
    else:  # another pack (e.g. ADE) registered it first: add our paths to its list
        for path in paths:
            folder_paths.add_model_folder_path(MOTION_FOLDER, path)


def register_motion_lora() -> None:
    path = os.path.join(folder_paths.models_dir, MOTION_LORA_FOLDER)
    if MOTION_LORA_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[MOTION_LORA_FOLDER] = ([path], set(folder_paths.supported_pt_extensions))
    else:  # registered by another pack (e.g. ADE)
        folder_paths.add_model_folder_path(MOTION_LORA_FOLDER, path)
