"""Regional Motion: where and how much the motion model acts (a mask, per-block scales, the attention scale)."""
from ..motion.regional import MotionMask, RegionalMotion


def _scale(tip):
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01, "tooltip": tip})


class RegionalMotionNode:
    DESCRIPTION = ("Where and how much the motion model acts, for 'Apply Motion Model' (regional_motion): a mask "
                   "that lets part of the picture move and keeps the rest still, the motion scale of the down, mid "
                   "and up blocks, and the temporal attention's scale. Masks are resized to the latent and follow "
                   "the animation's frames, also in context windows (AnimateDiff-Evolved's effect and scale masks).")
    CATEGORY = "MotionKit"
    SEARCH_ALIASES = ["regional motion", "motion mask", "effect mask", "scale mask", "per block motion scale"]
    RETURN_TYPES = ("MOTION_REGION",)
    RETURN_NAMES = ("regional_motion",)
    OUTPUT_TOOLTIPS = ("Connect to 'Apply Motion Model' (regional_motion).",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "down_scale": _scale("Motion scale of the down (encoder) blocks' motion modules, times motion_scale. "
                                 "These shape the coarse, large-scale movement; 0 turns them off."),
            "mid_scale": _scale("Motion scale of the middle block's motion module (v2 and SDXL models have one), "
                                "times motion_scale: the coarsest, most global motion."),
            "up_scale": _scale("Motion scale of the up (decoder) blocks' motion modules, times motion_scale. These "
                               "carry the motion down to fine detail; lower keeps textures steadier from frame to "
                               "frame."),
            "attention_scale": _scale("How sharply each frame follows the frames it attends to (AnimateDiff-"
                                      "Evolved's scale): below 1 every frame blends more evenly with all the others, "
                                      "so motion gets smoother and vaguer; 0 = an even blend of all frames (not a "
                                      "still picture: use motion_scale 0 for that); above 1 sharper. 1 = as trained."),
        }, "optional": {
            "motion_scale_mask": ("MASK", {
                "tooltip": "Where the picture moves. White (1) moves as motion_scale says, black (0) stays still "
                           "(plain images there), grey blends. One mask for all frames, or one per frame (a batch; a "
                           "shorter batch holds its last frame). Multiplies motion_scale and the schedule; resized to "
                           "the latent (AnimateDiff-Evolved's effect mask)."}),
            "attention_scale_mask": ("MASK", {
                "tooltip": "attention_scale per region and frame: white = attention_scale, black = 0 (that region "
                           "blends all frames evenly), grey in between. One mask for all frames or one per frame; "
                           "resized to the latent (AnimateDiff-Evolved's scale mask)."}),
        }}

    def make(self, down_scale, mid_scale, up_scale, attention_scale, motion_scale_mask=None,
             attention_scale_mask=None):
        return (RegionalMotion(
            mask=MotionMask(motion_scale_mask) if motion_scale_mask is not None else None,
            block_scales={"down": down_scale, "mid": mid_scale, "up": up_scale}, attention_scale=attention_scale,
            attention_mask=(MotionMask(attention_scale_mask, "attention_scale_mask")
                            if attention_scale_mask is not None else None)),)
