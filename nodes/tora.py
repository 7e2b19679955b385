"""Apply Tora Trajectory: a drawn path guides a CogVideoX video (Tora's trajectory extractor and fusers)."""
from ..tora.apply import apply_tora
from .trajectory import _percent


class ApplyToraTrajectory:
    DESCRIPTION = ("Makes a Tora MODEL follow a trajectory: the paths become Tora's flow video, the VAE encodes it, "
                   "and Tora's modules steer every transformer block, as Tora's pipeline does. Draw the paths with "
                   "'Trajectory' at the video's size (720x480, 49 frames for Tora); another size or frame count is "
                   "encoded again with a warning. Sample with 'CogVideoX Sampling' (draw order Tora; I2V after "
                   "'CogVideoX Image to Video') for the original's numbers, or with any core sampler.")
    CATEGORY = "MotionKit/Trajectory"
    SEARCH_ALIASES = ["tora", "trajectory", "motion path", "cogvideox trajectory"]
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The MODEL following the trajectory (a clone; the input is unchanged).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "Tora's transformer from 'Load CogVideoX / Tora'."}),
            "trajectory": ("TRAJECTORY", {"tooltip": "From 'Trajectory' (paths over the whole clip) or "
                                                     "'Trajectory from Video Flow'."}),
            "vae": ("COGVIDEOX_VAE", {"tooltip": "From 'Load CogVideoX VAE': it encodes the flow video."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01, "tooltip": (
                "1 = Tora as trained, 0 = off; above 1 the fusers' change of each block is scaled up.")}),
            "start_percent": _percent(0.0, "Where in sampling the trajectory starts to act (0 = the first step)."),
            "end_percent": _percent(1.0, "Where it stops (1 = to the end, as Tora)."),
        }}

    def apply(self, model, trajectory, vae, strength, start_percent, end_percent):
        return (apply_tora(model, trajectory, vae, strength, start_percent, end_percent),)
