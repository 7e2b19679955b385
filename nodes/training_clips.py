"""Reference clips for Train MotionLoRA: camera moves synthesised from a still/video (OpenCV), and a folder of
videos cut into clips of F frames (Load Video Frames' reader)."""

import folder_paths

from ..training.augment import MOVES, make_clips
from ..media.safe_paths import Roots, check_file, resolve
from ..training.video_clips import WINDOW_STARTS, video_folder_clips
from .load_video import progress_bar


class MakeCameraMoveClips:
    DESCRIPTION = ("Makes reference clips of a camera move (zoom, pan, tilt, roll) from a still image or a video, as the "
                   "AnimateDiff paper does, so a camera-move MotionLoRA can be trained with no footage. VAE-encode the "
                   "result and connect it to Train MotionLoRA.")
    CATEGORY = "MotionKit/Training"
    RETURN_TYPES = ("IMAGE", "INT", "INT")
    RETURN_NAMES = ("clips", "frames_per_clip", "clip_count")
    OUTPUT_TOOLTIPS = ("All clips one after another (clip_count × frames_per_clip frames).",
                       "Frames of one clip: connect to Train MotionLoRA's frames_per_clip.",
                       "How many clips were made.")
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "A still image (each frame shows it through the moving camera), or a "
                                            "video's frames (frame i gets camera position i; needs at least 'frames')."}),
            "move": (list(MOVES), {"default": "zoom_in",
                                   "tooltip": "The camera move. pan_left = the camera turns left (the scene slides "
                                              "right); tilt_up = the camera tilts up (the scene slides down)."}),
            "frames": ("INT", {"default": 16, "min": 2, "max": 64,
                               "tooltip": "Frames per clip (16 as AnimateDiff trains; at most the motion model's limit)."}),
            "amount": ("FLOAT", {"default": 0.4, "min": 0.01, "max": 2.0, "step": 0.01,
                                 "tooltip": "How far the camera moves over the clip: zoom to 1 + amount, pan/tilt by "
                                            "amount of the frame, roll by 45° × amount."}),
            "width": ("INT", {"default": 256, "min": 16, "max": 4096, "step": 8,
                              "tooltip": "Clip width (the picture is resized to cover it, centre-cropped)."}),
            "height": ("INT", {"default": 256, "min": 16, "max": 4096, "step": 8, "tooltip": "Clip height."}),
            "variations": ("INT", {"default": 4, "min": 1, "max": 256,
                                   "tooltip": "Clips per image: the first as set, the others with the amount (±25%) and "
                                              "the zoom/roll centre varied."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffff, "tooltip": "Seeds the variations."}),
        }}

    def make(self, images, move, frames, amount, width, height, variations, seed):
        clips = make_clips(images, [move], frames, amount, width, height, variations, seed)
        return (clips, frames, clips.shape[0] // frames)


class VideoFolderClips:
    DESCRIPTION = ("Cuts every video of a folder into reference clips of F frames (with a frame stride), for Train "
                   "MotionLoRA, from a random point of each longer video. Frames are read and resized as Load Video "
                   "Frames does. Videos too short for one clip are skipped (named in the log).")
    CATEGORY = "MotionKit/Training"
    RETURN_TYPES = ("IMAGE", "INT", "INT")
    RETURN_NAMES = ("clips", "frames_per_clip", "clip_count")
    OUTPUT_TOOLTIPS = ("All clips one after another.", "Frames of one clip: connect to Train MotionLoRA.",
                       "How many clips were cut.")
    FUNCTION = "cut"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "folder": ("STRING", {"default": "motion_clips",
                                  "tooltip": "A folder of videos (mp4, webm, mov, mkv, gif) in ComfyUI's input "
                                             "folder ('name [output]' for the output folder; other folders only if "
                                             "the server allows them)."}),
            "frames": ("INT", {"default": 16, "min": 2, "max": 64, "tooltip": "Frames per clip."}),
            "frame_stride": ("INT", {"default": 4, "min": 1, "max": 100,
                                     "tooltip": "Keep every n-th frame of the video (AnimateDiff samples with stride 4)."}),
            "clips_per_video": ("INT", {"default": 1, "min": 1, "max": 1000,
                                        "tooltip": "Most clips cut from one video (back to back from the window start)."}),
            "width": ("INT", {"default": 256, "min": 16, "max": 4096, "step": 8, "tooltip": "Clip width."}),
            "height": ("INT", {"default": 256, "min": 16, "max": 4096, "step": 8, "tooltip": "Clip height."}),
        }, "optional": {
            "window_start": (list(WINDOW_STARTS), {"default": "random",
                                                   "tooltip": "Where in a longer video the clips start: at a random "
                                                              "frame (set by seed, as AnimateDiff picks a random "
                                                              "window), or at its first frame."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffff,
                             "tooltip": "Seeds the random window starts (each video its own)."}),
        }}

    def cut(self, folder, frames, frame_stride, clips_per_video, width, height, window_start="random", seed=0):
        # confined like every path input (media/safe_paths.py): a prompt may not read videos elsewhere on the host
        roots = Roots.from_comfy(folder_paths)
        path, shown = resolve(folder, roots, what="folder", node="Video Folder to Clips")
        clips = video_folder_clips(path, frames, frame_stride, clips_per_video, width, height, progress=progress_bar(),
                                   label=shown, check_file=lambda f: check_file(f, roots, shown,
                                                                                 node="Video Folder to Clips"),
                                   window_start=window_start, seed=seed)
        return (clips, frames, clips.shape[0] // frames)
