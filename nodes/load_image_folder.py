"""Load Image Folder: the images of a folder (natural name order) as an IMAGE batch."""
import os

import folder_paths

from ..motion.errors import MotionKitError
from ..motion.media import IMAGE_EXTENSIONS, read_image_folder
from .load_video import progress_bar, selection, selection_inputs


def resolve_folder(folder: str) -> str:
    folder = folder.strip().strip('"')
    if not folder:
        raise MotionKitError("Load Image Folder: 'folder' is empty. Give a folder of frames (absolute, or relative "
                             "to ComfyUI's input folder).")
    folder = os.path.expanduser(folder)
    return folder if os.path.isabs(folder) else os.path.join(folder_paths.get_input_directory(), folder)


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
                                  "tooltip": "Folder of images: an absolute path, or relative to ComfyUI's input "
                                             f"folder. Reads {', '.join(IMAGE_EXTENSIONS)} files directly in it."}),
            **selection_inputs(),
        }}

    def load(self, folder, **options):
        images, _ = read_image_folder(resolve_folder(folder), selection(**options), progress=progress_bar())
        return (images, images.shape[0])

    @classmethod
    def IS_CHANGED(cls, folder, **options):
        # re-run when files are added, removed or rewritten
        try:
            path = resolve_folder(folder)
            entries = sorted(os.scandir(path), key=lambda e: e.name)
            return repr([(e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries
                         if e.name.lower().endswith(IMAGE_EXTENSIONS)])
        except (OSError, MotionKitError):
            return ""
