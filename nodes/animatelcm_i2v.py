"""Apply AnimateLCM-I2V Image: animate a still image with the AnimateLCM-I2V motion model."""
from ..motion.image_conditioning import apply_image
from ..motion.image_encoder import DEFAULT_MOTION_SCALE


class AnimateLCMI2VImage:
    DESCRIPTION = ("Makes the AnimateLCM-I2V motion model start the animation from an image. Put it after "
                   "'Apply Motion Model' (with AnimateLCM_sd15_i2v.ckpt) and before the sampler; sample with the "
                   "'lcm' sampler and a few steps. The image is resized and center-cropped to the latent's size and "
                   "encoded with the VAE when sampling starts. The input MODEL is left unchanged.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model, animating from the image.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The MODEL from 'Apply Motion Model' with AnimateLCM_sd15_i2v.ckpt "
                                           "(an SD1.5 checkpoint)."}),
            "image": ("IMAGE", {"tooltip": "The image to animate (the first one if it is a batch). Any size: it is "
                                           "resized and center-cropped to the latent's size."}),
            "vae": ("VAE", {"tooltip": "The VAE of your SD1.5 checkpoint; encodes the image."}),
            "motion_scale": ("FLOAT", {"default": DEFAULT_MOTION_SCALE, "min": 0.0, "max": 2.0, "step": 0.05,
                                       "tooltip": "AnimateLCM-I2V's own 'motion scale' (default 0.8, as in the "
                                                  "original app): how strongly each frame's position in the clip is "
                                                  "mixed into the image signal. Smaller keeps the frames closer to "
                                                  "the image (better identity), larger gives more motion; 0 gives "
                                                  "every frame the same image signal. Not Apply Motion Model's "
                                                  "motion_scale, which scales the whole motion model, image "
                                                  "included."}),
        }}

    def apply(self, model, image, vae, motion_scale):
        return (apply_image(model, image, vae, motion_scale),)
