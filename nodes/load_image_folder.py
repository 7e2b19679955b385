"""Load Image Folder: the images of a folder (natural name order) as an IMAGE batch."""
import os

import folder_paths

from ..media.safe_paths import Roots, check_file, resolve
from ..common.errors import MotionKitError
from ..media.animation import IMAGE_EXTENSIONS, read_image_folder
from .load_video import progress_bar, selection, selection_inputs

NODE = "Load Image Folder"


def resolve_folder(folder: str):
    """(real path, name for messages, roots) of the folder input, confined to the allowed folders (safe_paths)."""
    roots = Roots.from_comfy(folder_paths)
    path, shown = resolve(folder, roots, what="folder", node=NODE)
    return path, shown, roots


class LoadImageFolder:
    DESCRIPTION = ("Loads the images of a folder (png, jpg, webp, ...; sorted by name, frame2 before frame10) as an "
                   "IMAGE batch, e.g. frames exported from a video editor.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("IMAGE", "INT")
    RETURN_NAMES = ("images", "frame_count")
    OUTPUT_TOOLTIPS = ("The selected images, in name order.", "How many images were loaded.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "folder": ("STRING", {"default": "frames",
                                  "tooltip": "Folder of images in ComfyUI's input folder, by its name there (e.g. "
                                             "'frames'); 'name [output]' for the output folder. Other folders only "
                                             "if the server allows them. Reads "
                                             f"{', '.join(IMAGE_EXTENSIONS)} files directly in it."}),
            **selection_inputs(),
        }}

    def load(self, folder, **options):
        path, shown, roots = resolve_folder(folder)
        images, _ = read_image_folder(path, selection(**options), progress=progress_bar(), label=shown,
                                      check_file=lambda f: check_file(f, roots, shown, node=NODE))
        return (images, images.shape[0])

    @classmethod
    def IS_CHANGED(cls, folder, **options):
        # re-run when files are added, removed or rewritten
        try:
            path, _, _ = resolve_folder(folder)
            entries = sorted(os.scandir(path), key=lambda e: e.name)
            return repr([(e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries
                         if e.name.lower().endswith(IMAGE_EXTENSIONS)])
        except (OSError, MotionKitError):
            return ""
