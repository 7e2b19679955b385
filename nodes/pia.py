"""Apply PIA Image: animate a still image with PIA (open-mmlab/PIA), at a chosen motion strength."""
from ..pia.apply import apply_pia_image
from ..pia.presets import DEFAULT_PRESET, PRESETS, strength_of


class ApplyPIAImage:
    DESCRIPTION = ("Makes PIA (Personalized Image Animator) animate an image. Put it after 'Apply Motion Model' with "
                   "pia.ckpt (loaded by 'Load Motion Model') on an SD1.5 checkpoint, and before the sampler; the "
                   "latent's batch size is the frame count (16 as trained). The image is resized and center-cropped "
                   "to the latent's size and encoded with the VAE when sampling starts. The input MODEL is left "
                   "unchanged.")
    CATEGORY = "MotionKit"
    SEARCH_ALIASES = ["pia", "personalized image animator", "image to video", "animate image"]
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model, animating the image.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The MODEL from 'Apply Motion Model' with pia.ckpt (an SD1.5 "
                                           "checkpoint; PIA has no SDXL version)."}),
            "image": ("IMAGE", {"tooltip": "The image to animate (the first one if it is a batch). Any size: it is "
                                           "resized and center-cropped to the latent's size."}),
            "vae": ("VAE", {"tooltip": "The VAE of your SD1.5 checkpoint; encodes the image."}),
            "motion": (list(PRESETS), {"default": DEFAULT_PRESET, "tooltip":
                       "PIA's motion strength presets (from the paper's code). Animation: small, moderate or large "
                       "motion away from the image. Loop: the clip returns to the image at frame 15, so a 16-frame "
                       "clip from frame 0 loops. Style transfer: only loosely tied to the image, so the prompt and "
                       "checkpoint restyle it (small motion keeps most of it). Ignored when 'values' is set."}),
            "image_frame": ("INT", {"default": 0, "min": -4096, "max": 4096, "tooltip":
                            "The frame that shows the image; motion grows with the distance from it (negative "
                            "counts from the end, -1 = the last frame). Presets only."}),
            "values": ("STRING", {"default": "", "multiline": True, "tooltip":
                       "Explicit motion strength per frame instead of a preset: one value per frame, frame 0 first, "
                       "e.g. '1.0, 0.8, 0.8, 0.75'; the last one repeats for the frames after it. 1 = the frame is "
                       "the image, lower = freer to move (PIA was trained with 0.2 to 1). Empty = use the preset."}),
        }}

    def apply(self, model, image, vae, motion, image_frame, values):
        return (apply_pia_image(model, image, vae, strength_of(motion, image_frame, values)),)
