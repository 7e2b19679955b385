"""Motion-Only Windows: the motion model sees long animations in overlapping windows while the picture is drawn for
all frames at once (AnimateDiff-Evolved's view options)."""
from ..motion.injection import apply_motion_windows
from ..motion.windows import FUSE_METHODS, SCHEDULES, MotionWindows


class MotionWindowsNode:
    DESCRIPTION = ("Lets the motion model animate more frames than it was trained on: its temporal attention runs in "
                   "overlapping windows of the frames, blended where they overlap, while the rest of the UNet draws "
                   "all frames of a pass at once (AnimateDiff-Evolved's view options). Put it after 'Apply Motion "
                   "Model'. With 'Context Windows (Motion)' as well, the motion windows are taken inside each context "
                   "window. Frames that fit in one window are sampled exactly as without this node.")
    CATEGORY = "MotionKit"
    SEARCH_ALIASES = ["view options", "views", "motion windows", "long animation", "animatediff views"]
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model, its motion modules working in windows of frames (the input MODEL is unchanged).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model with a motion model applied ('Apply Motion Model')."}),
            "context_length": ("INT", {"default": 16, "min": 1, "max": 128, "tooltip":
                                       "Frames the motion model sees at once. At most the motion model's frame "
                                       "limit (24 for v1, 32 for v2/v3); 16 is what AnimateDiff was trained on. "
                                       "Animations (or context windows) this long or shorter are unchanged."}),
            "context_overlap": ("INT", {"default": 4, "min": 0, "max": 127, "tooltip":
                                        "Frames shared by neighbouring motion windows; their motion is blended "
                                        "there, so movement carries over from window to window. More = smoother "
                                        "and slower. Ignored by batched."}),
            "schedule": (list(SCHEDULES), {"default": "uniform", "tooltip":
                                           "How the motion windows are laid out. uniform: they shift a little every "
                                           "step (hides seams). uniform looped: they wrap from the last frame to "
                                           "the first, for loops. static: the same windows every step, the last "
                                           "flush with the end. batched: back-to-back windows, no overlap (motion "
                                           "jumps at their edges)."}),
            "fuse_method": (FUSE_METHODS, {"default": "pyramid", "tooltip":
                                           "How overlapping windows' motion is blended per frame. pyramid: a "
                                           "window counts more towards its middle. flat: plain average. "
                                           "overlap-linear: cross-fade over the overlap only. delayed reverse "
                                           "sawtooth: a window's second half counts, its first hardly. "
                                           "pyramid-sigma / gauss-sigma: the blend sharpens towards each window's "
                                           "middle as noise falls (inverse: the other way round)."}),
            "spatial_batch_limit": ("INT", {"default": 0, "min": 0, "max": 1024, "tooltip":
                                            "Memory: the UNet's spatial transformers (attention and feed-forward) draw at most this many "
                                            "frames at a time (of cond and uncond each); 0 = all frames at once. "
                                            "Same picture, less memory for long animations, a little slower. "
                                            "Per-frame attention patches (e.g. Trajectory Attention) see only "
                                            "the frames of a batch."}),
        }, "optional": {
            "context_stride": ("INT", {"default": 1, "min": 1, "max": 8, "tooltip":
                                       "uniform schedules only: above 1 also adds windows that take every 2nd, "
                                       "4th, ... frame, so distant frames move together (more windows, slower)."}),
            "closed_loop": ("BOOLEAN", {"default": False, "tooltip":
                                        "uniform looped only: every step also has windows across the join from the "
                                        "last frames to the first, so the motion loops seamlessly."}),
        }}

    def apply(self, model, context_length, context_overlap, schedule, fuse_method, spatial_batch_limit,
              context_stride=1, closed_loop=False):
        return (apply_motion_windows(model, MotionWindows(context_length, context_overlap, schedule, fuse_method,
                                                          context_stride, closed_loop, spatial_batch_limit)),)
