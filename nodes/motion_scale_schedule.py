"""Motion Scale Schedule: motion strength per frame, typed as a list or as keyframes."""
from ..motion.keyframes import parse_motion_scale


class MotionScaleSchedule:
    DESCRIPTION = ("Motion strength per frame, for 'Apply Motion Model' (motion_scale_schedule), where it multiplies "
                   "motion_scale. Either one value per frame, '0, 0.25, 0.5, 1' (the last value holds for later "
                   "frames), or keyframes frame:value, '0:0.0, 8:1.0, 15:1.0' (linear in between, held before the "
                   "first and after the last). Frames count from 0; with context windows they are the frames of "
                   "the whole animation.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MOTION_SCALE",)
    RETURN_NAMES = ("motion_scale_schedule",)
    OUTPUT_TOOLTIPS = ("Per-frame motion strength; connect it to 'Apply Motion Model'.",)
    FUNCTION = "parse"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "schedule": ("STRING", {"multiline": True, "default": "0:0.0, 8:1.0",
                                    "tooltip": "Values separated by commas or line breaks. A list gives frame 0, 1, "
                                               "2, ... one value each; frame:value pairs are keyframes, linear in "
                                               "between. 0 = no motion (that frame as a plain image), 1 = as "
                                               "trained. Empty = 1 on every frame."}),
        }}

    def parse(self, schedule):
        return (parse_motion_scale(schedule),)
