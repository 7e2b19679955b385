"""Apply Motion Model: a MODEL that animates the frames of its latent batch."""
from ..motion import precision as motion_precision
from ..motion.injection import MotionSettings, apply_motion_model
from ..motion.regional import RegionalMotion
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
            "regional_motion": ("MOTION_REGION", {
                "tooltip": "Optional, from 'Regional Motion': a mask for where the picture moves, per-block motion "
                           "scales and the temporal attention's scale."}),
            "motion_keyframes": ("MOTION_KEYFRAMES", {
                "tooltip": "Optional, from 'Motion Keyframe': motion_scale and attention_scale (and masks) that "
                           "change partway through sampling, e.g. less motion in the late, detail steps; they "
                           "multiply the values set here."}),
        }}

    def apply(self, model, motion_model, motion_scale, start_percent, end_percent, noise_schedule, motion_lora=None,
              motion_scale_schedule=None, precision=motion_precision.AUTO, regional_motion=None,
              motion_keyframes=None):
        if start_percent > end_percent:
            raise ValueError(f"start_percent ({start_percent}) is after end_percent ({end_percent}); "
                             f"set start_percent lower than end_percent.")
        schedule = schedules.resolve(noise_schedule, motion_model.info.schedule)
        sampling = schedules.make_model_sampling(schedule) if schedule is not None else None
        region = regional_motion or RegionalMotion()
        settings = MotionSettings(scale=motion_scale, start_percent=start_percent, end_percent=end_percent,
                                  schedule=motion_scale_schedule, mask=region.mask,
                                  block_scales=dict(region.block_scales), attention_scale=region.attention_scale,
                                  attention_mask=region.attention_mask, keyframes=motion_keyframes)
        return (apply_motion_model(model, motion_model.model, motion_model.info, motion_model.name, settings, sampling,
                                   loras=motion_lora or (), precision=precision),)
