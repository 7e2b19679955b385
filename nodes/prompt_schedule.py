"""Prompt Schedule: a prompt per frame from keyframes, as one CONDITIONING with a row per frame."""
from ..sampling.prompt_schedule import INTERPOLATIONS, prompt_schedule_conditioning


class PromptSchedule:
    DESCRIPTION = ("A prompt per frame: keyframes 'frame: prompt', one a line, encoded like CLIP Text Encode and "
                   "blended (linear) or held (hold) between keyframes. Connect it as the sampler's positive (or "
                   "negative) with a latent batch of exactly 'frames' frames: ComfyUI repeats or cuts the rows "
                   "without a warning for other batch sizes. Works with context windows: each window gets its "
                   "frames' prompts.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("Conditioning with one row per frame (frames rows); use it with a latent batch of the same "
                       "number of frames.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP", {"tooltip": "The CLIP model used to encode the prompts (the checkpoint loader's CLIP)."}),
            "text": ("STRING", {"multiline": True, "default": "0: a cat sitting\n8: a cat jumping",
                                "tooltip": "One keyframe per line, 'frame: prompt' (frames count from 0; blank "
                                           "lines are ignored). The first keyframe's prompt holds before it, the "
                                           "last one's after it."}),
            "frames": ("INT", {"default": 16, "min": 1, "max": 4096,
                               "tooltip": "The animation's frame count: must equal the latent batch size (with "
                                          "another batch size ComfyUI repeats or cuts the prompts silently)."}),
            "interpolation": (list(INTERPOLATIONS), {"default": "linear",
                                                     "tooltip": "linear: frames between two keyframes blend their "
                                                                "embeddings; hold: each prompt holds until the "
                                                                "next keyframe."}),
        }}

    def encode(self, clip, text, frames, interpolation):
        return (prompt_schedule_conditioning(clip, text, frames, interpolation),)
