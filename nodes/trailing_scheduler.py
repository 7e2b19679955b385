"""Trailing Scheduler: the sigmas at diffusers' "trailing" timesteps (Animate Anyone's sampling schedule)."""
from ..sampling.schedules import trailing_sigmas


class TrailingScheduler:
    DESCRIPTION = ("The noise levels at exactly the timesteps of diffusers' 'trailing' spacing, which "
                   "Moore-AnimateAnyone samples with (DDIM, zero terminal SNR): the first step starts at the "
                   "very last timestep, the rest follow in equal strides, rounded as diffusers rounds. "
                   "Core's 'simple' scheduler is close but floors, so at 30 steps every third timestep is one "
                   "off. Connect to SamplerCustom's sigmas, with KSamplerSelect 'ddim'.")
    CATEGORY = "MotionKit/Animate Anyone"
    SEARCH_ALIASES = ["trailing", "trailing timesteps", "scheduler", "sigmas", "zero terminal snr", "animate anyone"]
    RETURN_TYPES = ("SIGMAS",)
    OUTPUT_TOOLTIPS = ("steps + 1 noise levels, ending with 0: connect to SamplerCustom (sigmas).",)
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to sample (its noise schedule gives the noise levels), e.g. "
                                           "the MODEL of 'Apply Animate Anyone'."}),
            "steps": ("INT", {"default": 30, "min": 1, "max": 1000, "tooltip":
                              "Sampling steps. Animate Anyone's original uses 30."}),
        }}

    def get_sigmas(self, model, steps):
        return (trailing_sigmas(model.get_model_object("model_sampling"), steps),)
