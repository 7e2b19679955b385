"""Context Windows (Motion): animations longer than the motion model's frame limit, in overlapping windows."""
from ..sampling.context import FUSE_METHODS, SCHEDULES
from ..sampling.context_handler import apply_context_windows


class ContextWindows:
    DESCRIPTION = ("Samples long animations in overlapping windows of frames, so the motion model only ever sees "
                   "as many frames as it was trained on and memory stays that of one window. Put it before or "
                   "after 'Apply Motion Model'. ControlNet images (one per frame) and per-frame prompts follow "
                   "their frames into every window. Chain several at later start_percents to change the windows "
                   "during sampling (AnimateDiff-Evolved's scheduled context options). Uses ComfyUI's own "
                   "context-window sampling.")
    CATEGORY = "MotionKit"
    SEARCH_ALIASES = ["context options", "sliding window", "long animation", "animatediff context",
                      "scheduled context options"]
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model, sampling its frames in context windows (the input MODEL is unchanged).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to sample in windows (with or without a motion model applied)."}),
            "context_length": ("INT", {"default": 16, "min": 1, "max": 256, "tooltip":
                                       "Frames per window. At most the motion model's frame limit "
                                       "(24 for v1, 32 for v2/v3, 64 for AnimateLCM); 16 is what AnimateDiff "
                                       "was trained on. Animations this long or shorter run in one pass."}),
            "context_overlap": ("INT", {"default": 4, "min": 0, "max": 255, "tooltip":
                                        "Frames shared by neighbouring windows; their results are blended there. "
                                        "Must be smaller than context_length; more overlap = smoother, slower."}),
            "schedule": (list(SCHEDULES), {"default": "uniform", "tooltip":
                                           "How windows are laid out. uniform: windows shift a little every step "
                                           "(hides seams). uniform looped: windows wrap from the last frame to the "
                                           "first (for loops). static: the same windows every step, the last one "
                                           "flush with the end. batched: back-to-back windows, no overlap. "
                                           "uniform fixed (Animate Anyone): Moore-AnimateAnyone's windows, the "
                                           "same every step, the last ones wrapping to the first frames (with "
                                           "fuse_method flat: the original's even average)."}),
            "context_stride": ("INT", {"default": 1, "min": 1, "max": 8, "tooltip":
                                       "uniform schedules only: above 1 also adds windows that take every 2nd, "
                                       "4th, ... frame, so distant frames see each other (more windows, slower)."}),
            "fuse_method": (FUSE_METHODS, {"default": "pyramid", "tooltip":
                                           "How overlapping windows are blended per frame. pyramid: weight rises to "
                                           "the window's middle. flat: plain average. gaussian: bell-shaped weights. "
                                           "relative: running average by distance to each window's centre "
                                           "(non-looped schedules). overlap-linear: linear cross-fade over the "
                                           "overlap only."}),
            "closed_loop": ("BOOLEAN", {"default": False, "tooltip":
                                        "uniform looped only: every step also samples windows across the join "
                                        "from the last frames to the first (without it only some steps do), so "
                                        "the animation loops seamlessly (e.g. a looping GIF). uniform fixed "
                                        "always wraps, as the original."}),
        }, "optional": {
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001, "tooltip":
                                        "When these windows take over during sampling. 0: from the start (they "
                                        "replace a Context Windows before this node). Above 0: connect this node "
                                        "after another Context Windows; its windows run until this point (0.5 = "
                                        "halfway) and these after, e.g. long windows early for the overall motion, "
                                        "short ones late for detail. Chain them in order of start_percent."}),
            "guarantee_steps": ("INT", {"default": 1, "min": 0, "max": 10000, "tooltip":
                                        "Sampling steps these windows run at least once they take over, even when "
                                        "the next Context Windows' start_percent is reached sooner (few steps); "
                                        "0 = skipped if the next one has started by then."}),
        }}

    def apply(self, model, context_length, context_overlap, schedule, context_stride, fuse_method, closed_loop,
              start_percent=0.0, guarantee_steps=1):
        return (apply_context_windows(model, context_length, context_overlap, schedule, context_stride, fuse_method,
                                      closed_loop, start_percent, guarantee_steps),)
