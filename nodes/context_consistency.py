"""Context Reference / Context Naive Reuse: keep long, windowed animations consistent from window to window."""
from ..sampling.consistency import NAIVE_KEY, REF_KEY, attn1_output_patch, attn1_patch
from ..sampling.context_ref import MODES, ContextRef
from ..sampling.errors import ContextWindowError
from ..sampling.naive_reuse import NaiveReuse


def _percent(default, tip):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.001, "tooltip": tip})


def _fraction(tip):
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": tip})


def parse_frames(text: str) -> tuple[int, ...]:
    """'0, 16, 40' -> (0, 16, 40); frame 0 is always in (ADE's always_include_0, on by default)."""
    frames = {0}
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        if not part.isdigit():
            raise ContextWindowError(f"Context Reference: '{part}' in reference_frames is not a frame number. Give "
                                     f"frame numbers separated by commas, e.g. '0, 24, 48'.")
        frames.add(int(part))
    return tuple(sorted(frames))


def _with_options(model, key, settings, patches=()):
    m = model.clone()
    m.model_options["transformer_options"][key] = settings
    patch_lists = m.model_options["transformer_options"].get("patches", {})
    for patch, name in patches:
        if patch not in patch_lists.get(name, []):  # applied again: the settings change, the patch is there once
            m.set_model_patch(patch, name)
    return m


class ContextReference:
    DESCRIPTION = ("Keeps faces and colours from drifting across a long animation sampled in context windows: "
                   "in the early steps every later window also attends to what the first window drew (its "
                   "self-attention keys and values), so the look the first window settled on carries through "
                   "(AnimateDiff-Evolved's ContextRef). Use with 'Context Windows (Motion)'; it does nothing when "
                   "the frames fit in one window. Costs some memory and speed while it runs.")
    CATEGORY = "MotionKit"
    SEARCH_ALIASES = ["contextref", "context ref", "context extras", "reference attention", "consistency",
                      "color drift", "colour drift"]
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with ContextRef on (the input MODEL is unchanged); sample it with context "
                       "windows.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to keep consistent across windows (with or without 'Context "
                                           "Windows (Motion)' applied yet: either order works)."}),
            "strength": _fraction("How strongly later windows look at the reference: 1 = fully, 0 = not at all "
                                  "(AnimateDiff-Evolved's strength times attn_strength)."),
            "style_fidelity": _fraction("How much the negative prompt's pass ignores the reference: 1 = only the "
                                        "positive prompt is pulled towards the first window (the reference's "
                                        "look is followed most closely), 0 = both are."),
            "ref_weight": _fraction("Which attention layers use the reference, widest first: 1 = all; lower "
                                    "keeps it to the coarse, high-resolution layers only, so fine detail "
                                    "is freer to change."),
            "mode": (list(MODES), {"default": "first", "tooltip":
                                   "Which window is the reference. first: the first window, for every other "
                                   "window. sliding: the reference moves along every sliding_width - 1 windows "
                                   "(for animations that should change over time). indexes: windows holding one "
                                   "of reference_frames become the new reference."}),
            "start_percent": _percent(0.0, "When in sampling the reference starts, as a fraction of the steps (0 = from the first step)."),
            "end_percent": _percent(0.25, "When it stops: 0.25 = after the first quarter of the steps, where layout "
                                          "and colours are decided; later steps refine each window freely."),
        }, "optional": {
            "sliding_width": ("INT", {"default": 2, "min": 2, "max": 10000, "tooltip":
                                      "mode sliding: 2 = every window references the one before it; larger keeps "
                                      "one reference for more windows."}),
            "reference_frames": ("STRING", {"default": "0", "tooltip":
                                            "mode indexes: frame numbers, separated by commas (e.g. '0, 48'); a "
                                            "window holding one of them becomes the reference for the windows "
                                            "after it. Frame 0 is always one."}),
        }}

    def apply(self, model, strength, style_fidelity, ref_weight, mode, start_percent, end_percent,
              sliding_width=2, reference_frames="0"):
        if mode not in MODES:
            raise ContextWindowError(f"Context Reference: unknown mode '{mode}'. Choose one of: {', '.join(MODES)}.")
        ref = ContextRef(strength=float(strength), style_fidelity=float(style_fidelity), ref_weight=float(ref_weight),
                         mode=mode, sliding_width=int(sliding_width), indexes=parse_frames(reference_frames),
                         start_percent=float(start_percent), end_percent=float(end_percent))
        return (_with_options(model, REF_KEY, ref, [(attn1_patch, "attn1_patch"),
                                                     (attn1_output_patch, "attn1_output_patch")]),)


class ContextNaiveReuse:
    DESCRIPTION = ("Keeps colours and layout from drifting across a long animation sampled in context windows: "
                   "in the early steps every window's result is blended towards the first window's, repeated "
                   "along the animation (AnimateDiff-Evolved's NaiveReuse). Cheap; strong settings make the "
                   "animation repeat the first window. Use with 'Context Windows (Motion)'; it does nothing when "
                   "the frames fit in one window.")
    CATEGORY = "MotionKit"
    SEARCH_ALIASES = ["naivereuse", "naive reuse", "context extras", "consistency", "color drift", "colour drift"]
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with NaiveReuse on (the input MODEL is unchanged); sample it with context "
                       "windows.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to keep consistent across windows (with or without 'Context "
                                           "Windows (Motion)' applied yet: either order works)."}),
            "weighted_mean": ("FLOAT", {"default": 0.95, "min": 0.0, "max": 1.0, "step": 0.001, "tooltip":
                                        "How much of each frame's result comes from the first window while it "
                                        "runs: 0.95 = almost all (the early layout repeats the first window's), "
                                        "0 = off."}),
            "start_percent": _percent(0.0, "When in sampling the reuse starts, as a fraction of the steps (0 = from the first step)."),
            "end_percent": _percent(0.15, "When it stops: 0.15 = after the first 15 % of the steps; later steps "
                                          "let each window develop its own motion and detail."),
        }}

    def apply(self, model, weighted_mean, start_percent, end_percent):
        naive = NaiveReuse(weighted_mean=float(weighted_mean), start_percent=float(start_percent),
                           end_percent=float(end_percent))
        return (_with_options(model, NAIVE_KEY, naive),)
