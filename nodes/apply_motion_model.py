"""Apply Motion Model: a MODEL that animates the frames of its latent batch."""
from ..motion import precision as motion_precision
from ..motion.injection import MotionSettings, apply_motion_model
from ..motion.regional import MotionMask
from ..sampling import schedules


class ApplyMotionModel:
    DESCRIPTION = ("Makes an SD1.5/SDXL model animate: the frames of the latent batch become one clip. "
                   "Use the output MODEL with KSampler, KSamplerAdvanced or SamplerCustomAdvanced. "
                   "The input MODEL is left unchanged.")
    CATEGORY = "MotionKit"
    SEARCH_ALIASES = ["animatediff", "apply animatediff", "motion module", "motion model", "animate", "video"]
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with the motion model inserted (and its noise schedule set).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "Your SD1.5 or SDXL checkpoint's model (must match the motion model)."}),
            "motion_model": ("MOTION_MODEL", {"tooltip": "From 'Load Motion Model'."}),
            "motion_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01,
                                       "tooltip": "How much motion: 1 = as trained, 0 = none (plain images), "
                                                  "in between blends; above 1 exaggerates."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                        "tooltip": "Sampling progress at which motion starts (0 = first step)."}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                      "tooltip": "Sampling progress at which motion stops (1 = last step)."}),
            "noise_schedule": (schedules.CHOICES, {"default": schedules.AUTO,
                                                   "tooltip": "autoselect uses the schedule the motion model was trained "
                                                              "with (e.g. sqrt_linear for SD1.5 AnimateDiff, LCM for "
                                                              "AnimateLCM). 'use model's own' keeps the checkpoint's."}),
        }, "optional": {
            "motion_lora": ("MOTION_LORA", {"tooltip": "Optional MotionLoRAs (camera motions) from 'Load MotionLoRA', "
                                                       "applied to this motion model with their strengths."}),
            "motion_scale_schedule": ("MOTION_SCALE", {"tooltip": "Optional motion strength per frame from 'Motion Scale "
                                                                  "Schedule': multiplies motion_scale frame by frame."}),
            "precision": (motion_precision.CHOICES, {
                "default": motion_precision.AUTO,
                "tooltip": "The dtype the motion modules compute in. auto = the model's own (exact; use this "
                           "unless you want speed). bf16 = faster where the hardware has bf16 instructions, "
                           "slower on CPUs without them, and a little less exact (figures: README, Apply Motion "
                           "Model). fp16 = GPUs only. fp32 = full precision under an fp16/bf16 model."}),
            "motion_scale_mask": ("MASK", {
                "tooltip": "Optional regional motion: where the picture moves. White (1) moves as motion_scale says, "
                           "black (0) stays still (plain images there), grey blends. One mask for all frames, or one "
                           "per frame (a batch; a shorter batch holds its last frame). Multiplies motion_scale and "
                           "the schedule; resized to the latent (AnimateDiff-Evolved's effect mask)."}),
            "down_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01,
                                     "tooltip": "Motion scale of the down (encoder) blocks' motion modules, times "
                                                "motion_scale. These shape the coarse, large-scale movement; 0 turns "
                                                "them off."}),
            "mid_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01,
                                    "tooltip": "Motion scale of the middle block's motion module (v2 and SDXL models "
                                               "have one), times motion_scale: the coarsest, most global motion."}),
            "up_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01,
                                   "tooltip": "Motion scale of the up (decoder) blocks' motion modules, times "
                                              "motion_scale. These carry the motion down to fine detail; lower keeps "
                                              "textures steadier from frame to frame."}),
            "attention_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01,
                                          "tooltip": "How sharply each frame follows the frames it attends to "
                                                     "(AnimateDiff-Evolved's scale): below 1 every frame blends more "
                                                     "evenly with all the others, so motion gets smoother and vaguer; "
                                                     "0 = an even blend of all frames (not a still picture: use "
                                                     "motion_scale 0 for that); above 1 sharper. 1 = as trained."}),
            "attention_scale_mask": ("MASK", {
                "tooltip": "Optional attention_scale per region and frame: white = attention_scale, black = 0 (that "
                           "region blends all frames evenly), grey in between. One mask for all frames or one per "
                           "frame; resized to the latent (AnimateDiff-Evolved's scale mask)."}),
        }}

    def apply(self, model, motion_model, motion_scale, start_percent, end_percent, noise_schedule, motion_lora=None,
              motion_scale_schedule=None, precision=motion_precision.AUTO, motion_scale_mask=None, down_scale=1.0,
              mid_scale=1.0, up_scale=1.0, attention_scale=1.0, attention_scale_mask=None):
        if start_percent > end_percent:
            raise ValueError(f"start_percent ({start_percent}) is after end_percent ({end_percent}); "
                             f"set start_percent lower than end_percent.")
        schedule = schedules.resolve(noise_schedule, motion_model.info.schedule)
        sampling = schedules.make_model_sampling(schedule) if schedule is not None else None
        settings = MotionSettings(scale=motion_scale, start_percent=start_percent, end_percent=end_percent,
                                  schedule=motion_scale_schedule,
                                  mask=MotionMask(motion_scale_mask) if motion_scale_mask is not None else None,
                                  block_scales={"down": down_scale, "mid": mid_scale, "up": up_scale},
                                  attention_scale=attention_scale,
                                  attention_mask=(MotionMask(attention_scale_mask, "attention_scale_mask")
                                                  if attention_scale_mask is not None else None))
        return (apply_motion_model(model, motion_model.model, motion_model.info, motion_model.name, settings, sampling,
                                   loras=motion_lora or (), precision=precision),)
