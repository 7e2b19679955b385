"""Load / Apply Animate Anyone: a character from one reference image, moved by a pose sequence."""
import os

import comfy.utils
import folder_paths

from ..animate_anyone.apply import apply_animate_anyone, clip_embedding, conditioning, load_animate_anyone, KEY
from ..animate_anyone.errors import AnimateAnyoneError
from ..animate_anyone.files import FILES, FOLDER, WHERE, read_weights


ROLE_TIPS = {
    "denoising_unet": "denoising_unet.pth: the UNet that makes the frames (Moore-AnimateAnyone's pretrained_weights).",
    "reference_unet": "reference_unet.pth: the ReferenceNet that reads the reference image once per run.",
    "pose_guider": "pose_guider.pth: turns each pose image into features for the UNet.",
    "motion_module": "motion_module.pth: Animate Anyone's motion module (AnimateDiff v2 layout).",
}


def _choices(role):
    files = folder_paths.get_filename_list(FOLDER)
    default = FILES[role]
    # the published name first, so a folder with the four files is ready without picking
    ordered = sorted(files, key=lambda f: (os.path.basename(f) != default, f))
    return ordered or [default]


class LoadAnimateAnyone:
    DESCRIPTION = (f"Loads Moore-AnimateAnyone's four files from {WHERE}: the denoising UNet (with its motion "
                   f"module, as an animation MODEL with Animate Anyone's noise schedule: v-prediction, zero terminal "
                   f"SNR) and the ReferenceNet + pose guider. Connect both outputs to 'Apply Animate Anyone'.")
    CATEGORY = "MotionKit/Animate Anyone"
    RETURN_TYPES = ("MODEL", "ANIMATE_ANYONE")
    RETURN_NAMES = ("model", "animate_anyone")
    OUTPUT_TOOLTIPS = ("The denoising UNet with the motion module: connect to 'Apply Animate Anyone' (model).",
                       "The ReferenceNet and the pose guider: connect to 'Apply Animate Anyone' (animate_anyone).")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {role: (_choices(role), {"tooltip": f"{tip} Folder: {WHERE}."})
                             for role, tip in ROLE_TIPS.items()}}

    def load(self, denoising_unet, reference_unet, pose_guider, motion_module):
        names = {"denoising_unet": denoising_unet, "reference_unet": reference_unet,
                 "pose_guider": pose_guider, "motion_module": motion_module}
        bar = comfy.utils.ProgressBar(len(names) + 1)
        weights = {}
        for role, name in names.items():
            path = folder_paths.get_full_path(FOLDER, name)
            if path is None:
                raise AnimateAnyoneError(f"Animate Anyone's {role} file '{name}' is not in {WHERE}. Download "
                                         f"{FILES[role]} from Moore-AnimateAnyone's pretrained_weights into that folder.")
            weights[role] = read_weights(path, role)
            bar.update(1)
        model, models = load_animate_anyone(weights["denoising_unet"], weights["reference_unet"],
                                            weights["pose_guider"], weights["motion_module"], names)
        bar.update(1)
        return model, models


class ApplyAnimateAnyone:
    DESCRIPTION = ("Animates the character in the reference image with the pose images (one skeleton render per "
                   "frame, e.g. from a DWPose/OpenPose preprocessor). Gives the MODEL, the conditioning (the reference "
                   "image's CLIP embedding; there is no text prompt) and an empty LATENT with one frame per pose. "
                   "Sample as the original with SamplerCustom: cfg 3.5, KSamplerSelect 'ddim' and 'Trailing Scheduler "
                   "(Animate Anyone)' at 30 steps; add 'Context Windows (Motion)' (24/4, schedule 'uniform fixed (Animate "
                   "Anyone)', fuse flat: the original's windows) for more than 24 frames.")
    CATEGORY = "MotionKit/Animate Anyone"
    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("model", "positive", "negative", "latent")
    OUTPUT_TOOLTIPS = ("The model that animates the reference with the poses: connect to the sampler.",
                       "Positive: the reference image's CLIP embedding.",
                       "Negative: zeros (the original's unconditional input).",
                       "An empty latent: one frame per pose image, width × height.")
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The MODEL output of 'Load Animate Anyone'."}),
            "animate_anyone": ("ANIMATE_ANYONE", {"tooltip": "The animate_anyone output of 'Load Animate Anyone'."}),
            "reference_image": ("IMAGE", {"tooltip": "The character to animate (the first image of a batch); it is "
                                                     "resized (stretched) to width × height, so crop it to that shape."}),
            "pose_images": ("IMAGE", {"tooltip": "One pose skeleton image per frame (black background, as DWPose "
                                                 "renders it). Resized to width × height; a count other than the "
                                                 "latent's frames is resampled in time, with a note in the log."}),
            "vae": ("VAE", {"tooltip": "An SD1.5 VAE (the original uses sd-vae-ft-mse); encodes the reference image."}),
            "width": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8,
                              "tooltip": "Width of the animation in pixels (the original: 512)."}),
            "height": ("INT", {"default": 768, "min": 64, "max": 2048, "step": 8,
                               "tooltip": "Height of the animation in pixels (the original: 784 / 768)."}),
        }, "optional": {
            "clip_vision": ("CLIP_VISION", {"tooltip": "sd-image-variations' image encoder (CLIP ViT-L/14) from "
                                                       "'Load CLIP Vision' (models/clip_vision). Required."}),
        }}

    def apply(self, model, animate_anyone, reference_image, pose_images, vae, width, height, clip_vision=None):
        import torch

        if model.get_attachment(KEY) is not None:
            raise AnimateAnyoneError("Apply Animate Anyone was applied to this MODEL already. Connect the MODEL of "
                                     "'Load Animate Anyone' directly (one reference image and pose sequence per MODEL).")
        embeds = clip_embedding(clip_vision, reference_image)
        patched, _ = apply_animate_anyone(model, animate_anyone, reference_image, pose_images, vae, embeds)
        positive, negative = conditioning(embeds)
        latent = torch.zeros(pose_images.shape[0], 4, height // 8, width // 8)
        return patched, positive, negative, {"samples": latent}
