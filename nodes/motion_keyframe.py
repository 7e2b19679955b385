"""Motion Keyframe: motion_scale / attention_scale (and masks) that take over from a given point of sampling."""
from ..motion.keyframes_sampling import MotionKeyframe, MotionKeyframes, Multival
from ..motion.regional import MotionMask

NOT_SET = -1.0


def _value(number, mask, label):
    """The keyframe's value: None when neither the number (negative = not set) nor a mask is given."""
    if number < 0 and mask is None:
        return None
    return Multival(1.0 if number < 0 else number, MotionMask(mask, label) if mask is not None else None)


class MotionKeyframeNode:
    DESCRIPTION = ("Changes how the motion model acts partway through sampling, for 'Apply Motion Model' "
                   "(motion_keyframes): from start_percent on, this keyframe's motion_scale and attention_scale "
                   "(and their masks) multiply Apply Motion Model's own. Chain several keyframes through "
                   "prev_keyframes; the one in force is chosen at each sampling step as AnimateDiff-Evolved's "
                   "'AnimateDiff Keyframe' chooses it. Early steps shape the layout and the large motion, late "
                   "steps the detail.")
    CATEGORY = "MotionKit"
    SEARCH_ALIASES = ["animatediff keyframe", "ad keyframe", "motion keyframe", "effect keyframe",
                      "scale keyframe", "motion scale over steps"]
    RETURN_TYPES = ("MOTION_KEYFRAMES",)
    RETURN_NAMES = ("motion_keyframes",)
    OUTPUT_TOOLTIPS = ("This keyframe and the ones before it; connect to 'Apply Motion Model' (motion_keyframes) or "
                       "to the next 'Motion Keyframe'.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "start_percent": ("FLOAT", {
                "default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                "tooltip": "Sampling progress from which this keyframe acts (0 = the first step, 0.5 = halfway). "
                           "It holds until the next keyframe's start_percent; early steps set the animation's "
                           "large motion, late steps only its detail."}),
            "motion_scale": ("FLOAT", {
                "default": NOT_SET, "min": NOT_SET, "max": 2.0, "step": 0.01,
                "tooltip": "How much motion from start_percent on, times Apply Motion Model's motion_scale: 0 = "
                           "no motion in these steps (frames sampled as plain images), 1 = unchanged, above 1 "
                           "exaggerates (AnimateDiff-Evolved's effect). -1 = not set: the previous keyframe's value "
                           "holds (inherit_missing on) or Apply Motion Model's alone (off)."}),
            "attention_scale": ("FLOAT", {
                "default": NOT_SET, "min": NOT_SET, "max": 2.0, "step": 0.01,
                "tooltip": "How sharply each frame follows the others from start_percent on, times Apply "
                           "Motion Model's (Regional Motion's) attention_scale: below 1 smoother, vaguer motion, 0 = "
                           "every frame an even blend of all (AnimateDiff-Evolved's scale). -1 = not set: the "
                           "previous keyframe's value holds (inherit_missing on) or the base value alone (off)."}),
            "inherit_missing": ("BOOLEAN", {
                "default": True,
                "tooltip": "On: values this keyframe does not set (-1, no mask) keep those of the keyframe before "
                           "it, so the animation goes on as it was. Off: they go back to Apply Motion Model's own."}),
            "guarantee_steps": ("INT", {
                "default": 1, "min": 0, "max": 10000,
                "tooltip": "Sampling steps this keyframe acts at least, even when the next keyframe's "
                           "start_percent is already reached (few steps); 0 = only if no later keyframe has started "
                           "by then."}),
        }, "optional": {
            "prev_keyframes": ("MOTION_KEYFRAMES", {
                "tooltip": "Earlier keyframes (another 'Motion Keyframe'); this one is added to them."}),
            "motion_scale_mask": ("MASK", {
                "tooltip": "Where the picture moves from start_percent on: white = motion_scale, black = still, "
                           "grey blends; one mask or one per frame. Multiplies Apply Motion Model's (Regional "
                           "Motion's) mask (AnimateDiff-Evolved's effect mask)."}),
            "attention_scale_mask": ("MASK", {
                "tooltip": "attention_scale per region and frame from start_percent on: white = attention_scale, "
                           "black = 0 (that region blends all frames evenly); one mask or one per frame "
                           "(AnimateDiff-Evolved's scale mask)."}),
        }}

    def make(self, start_percent, motion_scale, attention_scale, inherit_missing, guarantee_steps,
             prev_keyframes=None, motion_scale_mask=None, attention_scale_mask=None):
        keyframe = MotionKeyframe(
            start_percent=start_percent,
            effect=_value(motion_scale, motion_scale_mask, "motion_scale_mask"),
            scale=_value(attention_scale, attention_scale_mask, "attention_scale_mask"),
            inherit_missing=inherit_missing, guarantee_steps=guarantee_steps)
        return ((prev_keyframes or MotionKeyframes()).add(keyframe),)
