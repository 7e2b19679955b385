"""Training-free path control for any motion model: cross-attention boxes that follow the trajectory.

In the spirit of Direct-a-Video's attention amplification and TrailBlazer's spatial cross-attention edits:
per frame, a box of the chosen size is centred on each path's position; in the UNet's cross-attention
(attn2) the chosen prompt words' logits get `+strength` for the image positions inside a box and
`-strength` outside (a log-space bias: `strength` 2 makes a word ~7x more likely to be attended inside
than without it). The subject named by those words is drawn where the box is, and the box moves.
A frame on which no path is active (outside every path's frame range) gets no bias: there is no box to
draw the subject into, and `-strength` everywhere would push it out of the picture.
Only the conditional rows (the prompt with the words) are biased; the negative prompt is untouched.
When the negative prompt is longer than the positive one (over 75 tokens, a second 77-token chunk),
ComfyUI repeats the positive context to the common length (comfy.conds.CONDCrossAttn.concat: "padding
with repeat doesn't change result"); every copy of a word gets the bias, so the attention is exactly
that of the unrepeated context (biasing the first copy only would leave the others at weight 1 and
weaken both the boost and the suppression).
Acts during the first part of sampling (layout is decided early), as both papers do.

Applied as attn2 *replace* patches (ComfyUI's `patches_replace["attn2"]`, one per transformer block): the
patch gets q, k, v after the block's projections and returns the attention, computed here with the bias.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange

from ..common.errors import MotionKitError
from ..common.patch import new_key, patched_clone
from ..common.unet_call import in_sigma_range, window_frames
from ..trajectory.encoding import Trajectory, fit


class BoxAttentionError(MotionKitError):
    """Words not in the prompt, a trajectory without paths, settings that cannot work."""


def active_frames(traj: Trajectory, frames: list[int]) -> torch.Tensor:
    """[len(frames)] bool: frames on which at least one path is active (has a position)."""
    out = torch.zeros(len(frames), dtype=torch.bool)
    for pos in traj.positions:
        out |= ~torch.isnan(pos[frames]).any(dim=1)
    return out


def box_masks(traj: Trajectory, frames: list[int], h: int, w: int, box_width: float, box_height: float) -> torch.Tensor:
    """[len(frames), h*w] bool: latent positions (of a h x w feature map) inside any path's box in each frame.

    Box size is a fraction of the image's width/height; a position is inside when its cell centre is."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) * traj.height / h  # cell centres in image pixels
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) * traj.width / w
    half_w, half_h = box_width * traj.width / 2, box_height * traj.height / 2
    out = torch.zeros(len(frames), h, w, dtype=torch.bool)
    for pos in traj.positions:
        p = pos[frames]  # [n, 2]
        valid = ~torch.isnan(p).any(dim=1)
        inside_x = (xs[None, :] - p[:, 0:1]).abs() <= half_w  # [n, w]
        inside_y = (ys[None, :] - p[:, 1:2]).abs() <= half_h  # [n, h]
        out |= (inside_y[:, :, None] & inside_x[:, None, :]) & valid[:, None, None]
    return rearrange(out, "n h w -> n (h w)")


@dataclass
class BoxAttention:
    trajectory: Trajectory
    tokens: list[int]  # positions of the chosen words in the prompt's token sequence (the cond context)
    strength: float = 2.0
    box_width: float = 0.3
    box_height: float = 0.3
    start_percent: float = 0.0
    end_percent: float = 0.4
    start_sigma: float = float("inf")
    end_sigma: float = 0.0
    prompt_tokens: int = 77  # the prompt's own context length (77 per chunk): the period of ComfyUI's repeat
    fitted: Trajectory | None = None
    cache: dict = field(default_factory=dict)  # the same bias serves every step and every layer of a resolution

    def active(self, extra_options: dict) -> bool:
        return in_sigma_range(self, extra_options)

    def bias(self, q_rows: int, tokens_len: int, extra_options: dict) -> torch.Tensor | None:
        """[rows, 1, N, T] additive logits, or None when nothing is biased in this call."""
        shape = extra_options.get("activations_shape")
        chunks = extra_options.get("cond_or_uncond") or [0]
        if shape is None or 0 not in chunks:
            return None
        h, w = int(shape[-2]), int(shape[-1])
        traj = self.fitted or self.trajectory
        per_chunk = q_rows // len(chunks)
        frames = window_frames(extra_options, per_chunk) or list(range(per_chunk))
        if max(frames) >= traj.frames:
            frames = [min(f, traj.frames - 1) for f in frames]
        inside = box_masks(traj, frames, h, w, self.box_width, self.box_height)  # [frames, N]
        period = self.prompt_tokens
        copies = tokens_len // period if period > 0 and tokens_len % period == 0 else 1
        tokens = [t + c * period for c in range(copies) for t in self.tokens if t + c * period < tokens_len]
        if not tokens:
            return None
        # +1 inside, -1 outside; 0 on frames where no path is active (no box: nothing to move the subject to)
        sign = (inside.float() * 2 - 1) * active_frames(traj, frames).float()[:, None]
        per_frame = torch.zeros(per_chunk, h * w, tokens_len)
        per_frame[:, :, tokens] = (self.strength * sign)[:, :, None]
        rows = [per_frame if c == 0 else torch.zeros_like(per_frame) for c in chunks]
        return torch.cat(rows)[:, None]

    def cached_bias(self, q, k, extra_options) -> torch.Tensor | None:
        window = getattr(extra_options.get("context_window"), "index_list", None)
        key = (q.shape[0], k.shape[1], tuple(extra_options.get("activations_shape") or ()),
               tuple(extra_options.get("cond_or_uncond") or ()), tuple(window or ()), q.device, q.dtype)
        if key not in self.cache:
            bias = self.bias(q.shape[0], k.shape[1], extra_options)
            self.cache[key] = None if bias is None else bias.to(q.device, q.dtype)
        return self.cache[key]

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        bias = self.cached_bias(q, k, extra_options) if self.active(extra_options) else None
        if bias is None:
            from comfy.ldm.modules.attention import optimized_attention
            return optimized_attention(q, k, v, heads, attn_precision=extra_options.get("attn_precision"))
        return attention_with_bias(q, k, v, heads, bias)


def attention_with_bias(q, k, v, heads: int, bias: torch.Tensor) -> torch.Tensor:
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return rearrange(out, "b h n d -> b n (h d)")


# ---------------------------------------------------------------------------------------------
# Which tokens

def _token_ids(clip, text: str) -> list[list[int]]:
    """The prompt's token ids, chunk by chunk (CLIP-L's, 77 per chunk), as the checkpoint's tokenizer makes them."""
    tokens = clip.tokenize(text)
    seq = tokens.get("l") or next(iter(tokens.values()))
    return [[tok[0] if isinstance(tok, tuple) else tok for tok in chunk] for chunk in seq]


def prompt_length(clip, text: str) -> int:
    """The prompt's context length (77 per chunk): ComfyUI repeats the cond context in steps of it."""
    return sum(len(chunk) for chunk in _token_ids(clip, text))


def word_tokens(clip, text: str, words: str) -> list[int]:
    """Positions in the encoded prompt (CLIP-L tokens, 77 per chunk, start token at 0) of each comma-separated
    word or phrase in `words`: found by tokenizing both with the checkpoint's own tokenizer."""
    prompt = [tok for chunk in _token_ids(clip, text) for tok in chunk]  # chunks concatenated, as the cond is
    empty = _token_ids(clip, "")[0]
    start, end = empty[0], empty[1]
    found, missing = [], []
    for word in [w.strip() for w in words.split(",") if w.strip()]:
        target = [t for t in _token_ids(clip, word)[0] if t not in (start, end)]
        hits = [i for i in range(len(prompt) - len(target) + 1) if target and prompt[i:i + len(target)] == target]
        if not hits:
            missing.append(word)
        for i in hits:
            found.extend(range(i, i + len(target)))
    if missing:
        raise BoxAttentionError(f"Trajectory attention: {', '.join(repr(m) for m in missing)} not found in the prompt "
                                f"'{text[:80]}'. Use words that appear in the prompt, exactly as written there.")
    if not found:
        raise BoxAttentionError("Trajectory attention: no words given. Name the subject that should follow the path, "
                                "as written in the prompt (e.g. 'red balloon'), comma-separated for several.")
    return sorted(set(found))


def attention_blocks(unet) -> list[tuple[str, int, int]]:
    """(block name, block number, transformer index) of every cross-attention transformer block of the UNet."""
    from comfy.ldm.modules.attention import SpatialTransformer

    keys = []
    groups = [("input", list(unet.input_blocks)), ("middle", [unet.middle_block]), ("output", list(unet.output_blocks))]
    for name, blocks in groups:
        for number, block in enumerate(blocks):
            for layer in block:
                if isinstance(layer, SpatialTransformer):
                    keys.extend((name, number, i) for i in range(len(layer.transformer_blocks)))
    return keys


def apply_box_attention(model_patcher, trajectory: Trajectory, tokens: list[int], strength: float, box_width: float,
                        box_height: float, start_percent: float, end_percent: float, prompt_tokens: int = 77):
    if not trajectory.positions:
        raise BoxAttentionError("Trajectory attention needs drawn paths (boxes follow them); this trajectory is a "
                                "video's optical flow. Use 'MotionCtrl OMCM' for video motion, or draw paths.")
    if start_percent > end_percent:
        raise BoxAttentionError(f"Trajectory attention: start_percent ({start_percent}) is after end_percent "
                                f"({end_percent}); it would never act.")
    if strength == 0:
        return model_patcher.clone()
    box = BoxAttention(trajectory, tokens, strength, box_width, box_height, start_percent, end_percent,
                       prompt_tokens=prompt_tokens)

    def fit_to(noise, executor):
        box.fitted = fit(trajectory, noise.shape[0], noise.shape[-1] * 8, noise.shape[-2] * 8, "Trajectory attention")
        box.cache.clear()

    m = patched_clone(model_patcher, new_key("box_attention"), percent_range=box, before=fit_to,
                      after=lambda: box.cache.clear())
    for name, number, index in attention_blocks(m.get_model_object("diffusion_model")):
        m.set_model_attn2_replace(box, name, number, index)
    return m
