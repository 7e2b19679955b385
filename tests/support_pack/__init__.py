"""A test-only ComfyUI custom node pack, linked into the test server's custom_nodes/ beside MotionKit.

TestTinyT5CLIP: a CLIP holding a tiny random T5 (tests/cogvideox_files.py TINY_T5: the real T5-XXL vocabulary and
tokenizer, 16-wide outputs) built the way core builds T5-XXL for CLIPLoader type "sd3" (no attention mask), so the
CogVideoX examples run end to end in a test server without the 9.5 GB T5-XXL file. Never shipped with the pack."""
import json
import os
from functools import partial

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


class TestTinyT5CLIP:
    CATEGORY = "testing"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31})}}

    def load(self, seed):
        import comfy.sd
        import comfy.sd1_clip
        import comfy.text_encoders.pixart_t5
        import comfy.text_encoders.t5

        config = os.path.join(HERE, "tiny_t5.json")

        class TinyT5(comfy.sd1_clip.SDClipModel):  # sd3_clip.T5XXLModel with another config file
            def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
                super().__init__(device=device, textmodel_json_config=config, dtype=dtype,
                                 special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                                 enable_attention_masks=False, return_attention_masks=False,
                                 model_options={**model_options, "model_name": "t5xxl"})

        class Target:
            params = {}
            clip = partial(comfy.sd1_clip.SD1ClipModel, name="t5xxl", clip_model=TinyT5)
            tokenizer = comfy.text_encoders.pixart_t5.PixArtTokenizer

        from transformers import T5Config, T5EncoderModel  # a ComfyUI requirement: T5's own initialisation

        with open(config, encoding="utf-8") as f:
            torch.manual_seed(seed)
            weights = T5EncoderModel(T5Config(**json.load(f))).state_dict()
        clip = comfy.sd.CLIP(Target, model_options={"dtype": torch.float32})
        clip.load_sd(weights)
        return (clip,)


NODE_CLASS_MAPPINGS = {"TestTinyT5CLIP": TestTinyT5CLIP}
