"""FreeInit: sample several times, each pass starting from the last result's low frequencies."""
from ..sampling.freeinit import FILTERS, FreeInitSettings, apply_free_init


class FreeInitNode:
    DESCRIPTION = ("FreeInit: samples the animation several times. After each pass the result is noised back to "
                   "the start, its low frequencies (over frames and space) are kept and the high ones replaced by "
                   "fresh noise from the seed, then it is sampled again. Steadier, more coherent motion, at "
                   "iterations times the sampling time. Works with KSampler, KSamplerAdvanced and "
                   "SamplerCustomAdvanced; the input MODEL is unchanged.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model, sampling with FreeInit.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to sample with FreeInit (usually after Apply Motion Model)."}),
            "iterations": ("INT", {"default": 2, "min": 1, "max": 10,
                                   "tooltip": "Sampling passes in all (1 = off). Each pass costs a full sampling; "
                                              "2 refines once (the paper and diffusers use 3 to 5)."}),
            "filter": (FILTERS, {"default": "butterworth",
                                 "tooltip": "Low-pass filter that decides what of the last result is kept. "
                                            "butterworth: smooth cut-off (the paper's choice); gaussian: softer; "
                                            "ideal: sharp sphere; box: sharp box."}),
            "d_s": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "Spatial stop frequency (fraction of the highest): larger keeps more "
                                         "detail of the last pass; 0 keeps nothing."}),
            "d_t": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "Temporal stop frequency (fraction of the highest): larger keeps faster "
                                         "changes over frames of the last pass; 0 keeps nothing."}),
            "order": ("INT", {"default": 4, "min": 1, "max": 16,
                              "tooltip": "Butterworth filter order: higher is a sharper cut-off (other filters "
                                         "ignore it)."}),
        }}

    def apply(self, model, iterations, filter, d_s, d_t, order):
        return (apply_free_init(model, FreeInitSettings(iterations, filter, d_s, d_t, order)),)
