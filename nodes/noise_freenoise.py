"""FreeNoise: seeded noise for SamplerCustomAdvanced whose context windows share their noise."""
from ..sampling.noise import MODES, SHUFFLE, FreeNoise


class FreeNoiseNode:
    DESCRIPTION = ("Noise for long animations (FreeNoise): the first context_length frames get ComfyUI's usual "
                   "noise for the seed; every later block of context_stride frames reuses the noise of the same "
                   "frames one window earlier, shuffled. Windows then share their noise and agree on the content, "
                   "while the order still varies. Connect to SamplerCustomAdvanced's noise input; use it with "
                   "'Context Windows (Motion)' for animations longer than one window.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("NOISE",)
    OUTPUT_TOOLTIPS = ("Noise for SamplerCustomAdvanced. With no more frames than context_length it is exactly "
                       "RandomNoise's for the same seed.",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                                   "tooltip": "The seed: the same as RandomNoise's, which gives the first window."}),
            "context_length": ("INT", {"default": 16, "min": 1, "max": 256,
                                       "tooltip": "Frames per context window: set it to your Context Windows "
                                                  "node's context_length (16 for AnimateDiff)."}),
            "context_stride": ("INT", {"default": 4, "min": 1, "max": 256,
                                       "tooltip": "Frames per reused block (at most context_length). Windows that "
                                                  "start on a multiple of it hold the same noise, so pick a "
                                                  "divisor of context_length - context_overlap (4 suits 16/4). "
                                                  "Not the Context Windows node's context_stride."}),
            "mode": (MODES, {"default": SHUFFLE,
                             "tooltip": "shuffle_context: later blocks reuse earlier noise in random order "
                                        "(FreeNoise). repeat_context: the first window's noise repeats as is "
                                        "(loops the content). random: plain noise, as RandomNoise."}),
        }}

    def get_noise(self, noise_seed, context_length, context_stride, mode):
        return (FreeNoise(noise_seed, context_length, context_stride, mode),)
