"""A test-only ComfyUI custom node pack, linked into the test server's custom_nodes/ beside MotionKit.

TestTinyT5CLIP: a CLIP holding a tiny T5 (tiny_t5.json: the real T5-XXL vocabulary and tokenizer, 16-wide outputs)
built the way core builds T5-XXL for CLIPLoader type "sd3" (no attention mask), with transformers' own T5
initialisation, so the CogVideoX examples run end to end in a test server without the 9.5 GB T5-XXL file. Never
shipped with the pack. In-process tests use `tiny_t5` directly (tests/ is on their sys.path)."""
import json
import os
from functools import partial

import torch

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_t5.json")


def tiny_t5(seed: int = 0):
    """(ComfyUI CLIP with core's T5 and PixArt's T5-XXL tokenizer, transformers' T5EncoderModel) on the same weights."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.text_encoders.pixart_t5
    import comfy.text_encoders.t5
    from transformers import T5Config, T5EncoderModel  # a ComfyUI requirement

    with open(CONFIG, encoding="utf-8") as f:
        config = json.load(f)
    torch.manual_seed(seed)
    reference = T5EncoderModel(T5Config(**config)).eval()

    class TinyT5(comfy.sd1_clip.SDClipModel):  # sd3_clip.T5XXLModel with another config file
        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
            super().__init__(device=device, textmodel_json_config=CONFIG, dtype=dtype,
                             special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                             enable_attention_masks=False, return_attention_masks=False,
                             model_options={**model_options, "model_name": "t5xxl"})

    class Target:
        params = {}
        clip = partial(comfy.sd1_clip.SD1ClipModel, name="t5xxl", clip_model=TinyT5)
        tokenizer = comfy.text_encoders.pixart_t5.PixArtTokenizer

    clip = comfy.sd.CLIP(Target, model_options={"dtype": torch.float32})
    missing, unexpected = clip.load_sd(reference.state_dict())
    assert not missing and set(unexpected) <= {"encoder.embed_tokens.weight"}  # transformers' tied copy of shared
    return clip, reference


class TestTinyT5CLIP:
    CATEGORY = "testing"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31})}}

    def load(self, seed):
        return (tiny_t5(seed)[0],)


NODE_CLASS_MAPPINGS = {"TestTinyT5CLIP": TestTinyT5CLIP}
