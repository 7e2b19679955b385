"""CogVideoX's prompt embeddings from core's T5-XXL (a ComfyUI CLIP object loaded by CLIPLoader).

The pipeline (diffusers' _get_t5_prompt_embeds, Tora's the same) tokenizes with padding="max_length",
max_length=226, truncation=True, add_special_tokens=True (the prompt's ids, then </s>, then <pad> = 0 up to 226) and
takes the T5 encoder's last hidden state at all 226 positions, computed WITHOUT an attention mask: the padding is
attended to and its outputs are kept.

In core, CLIPLoader's types "sd3" and "pixart" (and "chroma") build the T5-XXL encoder without an attention mask;
"mochi", "ltxv" and "hidream"'s T5 use one, and "cosmos" is another T5. Both unmasked types tokenize with comfy's
T5TokenizerFast (the same vocabulary as CogVideoX's T5Tokenizer) and pad with 0; this module asks them for at least
226 tokens through the official per-call tokenizer option (`t5xxl_min_length`), cuts longer prompts to 225 ids + </s>
as the pipeline's truncation does, and turns ComfyUI's prompt-weight syntax off (the pipeline has none)."""
from __future__ import annotations

import torch

from .errors import CogVideoXTextEncoderError

MAX_SEQUENCE_LENGTH = 226
EOS, PAD = 1, 0
KEY = "t5xxl"


def _check(clip) -> None:
    t5 = getattr(getattr(clip, "cond_stage_model", None), KEY, None)
    if t5 is None:
        raise CogVideoXTextEncoderError(
            "CogVideoX needs the T5-XXL text encoder: load t5xxl (e.g. t5xxl_fp16.safetensors) with CLIPLoader, "
            "type \"sd3\" (or \"pixart\").")
    if getattr(t5, "enable_attention_masks", False):
        raise CogVideoXTextEncoderError(
            "This T5-XXL was loaded with a CLIPLoader type that masks the padding (mochi, ltxv, hidream); CogVideoX's "
            "pipeline encodes without a mask. Load the same file with CLIPLoader type \"sd3\" (or \"pixart\").")


def cogvideox_tokens(clip, text: str, max_sequence_length: int = MAX_SEQUENCE_LENGTH) -> dict:
    """The CLIP's tokens for `text`, its T5 part exactly the pipeline's input_ids (max_sequence_length long)."""
    tokens = clip.tokenize(text, tokenizer_options={f"{KEY}_min_length": max_sequence_length}, disable_weights=True)
    if KEY not in tokens:
        raise CogVideoXTextEncoderError(
            "This CLIP has no T5-XXL tokenizer: load t5xxl with CLIPLoader, type \"sd3\" (or \"pixart\").")
    (t5,) = tokens[KEY]  # core's T5 tokenizers do not split prompts into chunks
    if len(t5) > max_sequence_length:  # the pipeline's truncation: the first ids, then </s>
        t5 = t5[:max_sequence_length - 1] + [(EOS, 1.0)]
    return {**tokens, KEY: [t5]}


def cogvideox_prompt_embeds(clip, text: str, max_sequence_length: int = MAX_SEQUENCE_LENGTH) -> torch.Tensor:
    """[1, max_sequence_length, 4096]: CogVideoX's prompt_embeds for `text` (float32)."""
    _check(clip)
    return clip.encode_from_tokens(cogvideox_tokens(clip, text, max_sequence_length))


def cogvideox_conditioning(clip, text: str, max_sequence_length: int = MAX_SEQUENCE_LENGTH) -> list:
    """A ComfyUI CONDITIONING holding those embeds (as CLIPTextEncode makes it, hooks included)."""
    _check(clip)
    return clip.encode_from_tokens_scheduled(cogvideox_tokens(clip, text, max_sequence_length))
