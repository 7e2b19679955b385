"""Save Animation: an IMAGE batch as MP4 (H.264), WebM (VP9), GIF or animated WebP in ComfyUI's output folder."""
import os

import folder_paths

from ..media.animation import FORMATS, AnimationSettings, write_animation


class SaveAnimation:
    DESCRIPTION = ("Saves the frames of an IMAGE batch as one animation file (MP4, WebM, GIF or animated WebP) in "
                   "ComfyUI's output folder, with the workflow stored in the file where the format allows, and "
                   "shows it on the node.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The frames, in order (e.g. the output of VAE Decode)."}),
            "filename_prefix": ("STRING", {"default": "MotionKit/anim",
                                           "tooltip": "File name start; may include subfolders (MotionKit/anim) and "
                                                      "%date:yyyy-MM-dd% or %Node.widget% values. A counter and the "
                                                      "extension are added."}),
            "format": (list(FORMATS), {"default": "mp4",
                                       "tooltip": "mp4: H.264, plays everywhere. webm: VP9. gif: 256 colours at most, "
                                                  "big files. webp: animated WebP (lossless at quality 100)."}),
            "fps": ("FLOAT", {"default": 8.0, "min": 0.1, "max": 120.0, "step": 0.1,
                              "tooltip": "Frames per second (AnimateDiff models are trained at about 8). GIF stores "
                                         "durations in 1/100 s, and browsers slow GIFs above 50 fps."}),
            "loop_count": ("INT", {"default": 0, "min": 0, "max": 100,
                                   "tooltip": "0 = loop forever; N = play N times. GIF and WebP store this in the "
                                              "file; MP4/WebM players loop by their own setting, so there N writes "
                                              "the clip N times."}),
            "pingpong": ("BOOLEAN", {"default": False,
                                     "tooltip": "Play forwards, then backwards (the end frames are not repeated): "
                                                "n frames become 2n-2."}),
            "crf": ("INT", {"default": 19, "min": 0, "max": 63,
                            "tooltip": "MP4/WebM quality: lower = better and bigger (H.264 uses 0-51, about 17-23 "
                                       "is typical; VP9 0-63, about 24-35). Not used for GIF/WebP."}),
            "quality": ("INT", {"default": 90, "min": 1, "max": 100,
                                "tooltip": "WebP: 1-99 lossy quality, 100 = lossless. GIF: palette size "
                                           "(100 = 256 colours). Not used for MP4/WebM."}),
        }, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save(self, images, filename_prefix, format, fps, loop_count, pingpong, crf, quality,
             prompt=None, extra_pnginfo=None):
        import comfy.utils
        from comfy.cli_args import args

        output_dir = folder_paths.get_output_directory()
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, output_dir, images.shape[2], images.shape[1])
        file = f"{filename}_{counter:05}_.{format}"
        metadata = {}
        if not args.disable_metadata:
            if prompt is not None:
                metadata["prompt"] = prompt
            metadata.update(extra_pnginfo or {})
        settings = AnimationSettings(format=format, fps=fps, loop_count=loop_count, pingpong=pingpong,
                                     crf=crf, quality=quality)
        bar = comfy.utils.ProgressBar(images.shape[0])
        write_animation(images, os.path.join(folder, file), settings, metadata,
                        progress=lambda done, total: bar.update_absolute(done, total))
        # The UI format of core's SaveAnimatedWEBP / SaveVideo. The frontend plays .mp4/.webm in a <video> and
        # .webp as an animated image; a .gif it would also send to a <video>, which cannot play it: MotionKit's
        # own preview (web/) plays all four.
        return {"ui": {"images": [{"filename": file, "subfolder": subfolder, "type": "output"}],
                       "animated": (True,)}}
