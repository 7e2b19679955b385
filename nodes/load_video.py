"""Load Video Frames: the frames of a video in ComfyUI's input folder as an IMAGE batch."""
import os

import folder_paths

from ..media.animation import CROP_MODES, RESIZE_METHODS, FrameSelection, read_video
from .input_file import check_input_file, file_version, input_path


def selection_inputs() -> dict:
    """Frame-selection and resize widgets shared by Load Video Frames and Load Image Folder."""
    return {
        "frame_cap": ("INT", {"default": 16, "min": 0, "max": 100000,
                              "tooltip": "Most frames to load (0 = all). 16 fits every SD1.5 motion model in one "
                                         "pass."}),
        "skip_first": ("INT", {"default": 0, "min": 0, "max": 1000000,
                               "tooltip": "Frames to skip at the start."}),
        "every_nth": ("INT", {"default": 1, "min": 1, "max": 1000,
                              "tooltip": "Keep every n-th frame after the skipped ones (1 = all, 2 = every other "
                                         "one)."}),
        "width": ("INT", {"default": 0, "min": 0, "max": 8192, "step": 8,
                          "tooltip": "Resize to this width (0 = keep; with only height set, follows the aspect ratio). "
                                     "SD needs multiples of 8."}),
        "height": ("INT", {"default": 0, "min": 0, "max": 8192, "step": 8,
                           "tooltip": "Resize to this height (0 = keep; with only width set, follows the aspect "
                                      "ratio)."}),
        "resize_method": (list(RESIZE_METHODS), {"default": "lanczos",
                                                 "tooltip": "Resampling filter used when resizing."}),
        "crop": (list(CROP_MODES), {"default": "center",
                                    "tooltip": "With width and height both set: center crops to their aspect ratio "
                                               "before resizing; disabled stretches."}),
    }


def selection(frame_cap, skip_first, every_nth, width, height, resize_method, crop) -> FrameSelection:
    return FrameSelection(frame_cap=frame_cap, skip_first=skip_first, every_nth=every_nth, width=width,
                          height=height, method=resize_method, crop=crop)


def progress_bar():
    import comfy.utils
    bar = comfy.utils.ProgressBar(1)
    return lambda done, total: bar.update_absolute(done, total)


class LoadVideo:
    DESCRIPTION = ("Loads frames of a video (mp4, webm, mov, mkv, ...) from ComfyUI's input folder as an IMAGE batch, "
                   "e.g. for video-to-video with a motion model. Upload a video with the button.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("IMAGE", "INT", "FLOAT")
    RETURN_NAMES = ("images", "frame_count", "fps")
    OUTPUT_TOOLTIPS = ("The selected frames.", "How many frames were loaded.",
                       "Frame rate of the loaded frames (the video's fps divided by every_nth), for Save Animation.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        input_dir = folder_paths.get_input_directory()
        files = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))]
        files = folder_paths.filter_files_content_types(files, ["video"])
        return {"required": {
            "video": (sorted(files), {"video_upload": True,
                                      "tooltip": "A video in ComfyUI's input folder (upload one with the button)."}),
            **selection_inputs(),
        }}

    def load(self, video, **options):
        images, fps = read_video(video_path(video), selection(**options), progress=progress_bar())
        return (images, images.shape[0], fps)

    @classmethod
    def IS_CHANGED(cls, video, **options):
        return file_version(video_path, video)

    @classmethod
    def VALIDATE_INPUTS(cls, video):
        return check_input_file(video_path, video, "Video file")


def video_path(video: str) -> str:
    """The video's real path: a name in the input folder (or 'name [output]'), confined as safe_paths says."""
    return input_path(video, what="video", node="Load Video Frames")
