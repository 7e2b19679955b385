"""Reference attention: the denoising UNet's self-attention also attends to the ReferenceNet's tokens.

What the original does (src/models/mutual_self_attention.py, ReferenceAttentionControl with
fusion_blocks="full", driven by src/pipelines/pipeline_pose2vid_long.py):
* write (ReferenceNet, once, before the first step, at timestep 0): every BasicTransformerBlock keeps
  `norm1(x)`, the input of its self-attention, in a bank.
* read (denoising UNet, every step): every transformer block's self-attention uses
      q = to_q(n),  k = to_k([n ; ref]),  v = to_v([n ; ref])     n = norm1(x), [;] = concat over tokens
  with `ref` the bank of the same block (blocks are paired in the same order in both UNets: the 16
  transformer blocks of SD1.5, down, mid and up), repeated for every frame of the call.
* classifier-free guidance: the rows of the unconditional half are then recomputed with plain
  self-attention (`hidden_states_c[_uc_mask] = attn1(n[uc], n[uc])`): only the conditional rows see
  the reference.

Here, through ComfyUI's transformer patches (nothing else is touched):
* `ReferenceBank.capture` is an `attn1_patch` on the ReferenceNet's own call: it keeps `n` per block.
* `ReferenceAttention.attn1_patch` appends the block's reference tokens to the self-attention's
  keys/values input, for every row; `ReferenceAttention.attn1_replace` (an `attn1` replace patch) then
  runs the attention with the projected q/k/v and gives the unconditional rows (cond_or_uncond == 1)
  only their own keys/values, so those rows equal plain self-attention exactly, as in the original.
A block is keyed by ComfyUI's (block, block_index), e.g. (("output", 3), 0); ComfyUI's UNet runs the
same blocks in the same order for both models, so the key pairs them as the original's order does.
Pure torch: the attention function is passed in (ComfyUI's optimized_attention inside ComfyUI).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

UNCOND = 1  # ComfyUI's cond_or_uncond value for the negative prompt's rows


def block_key(extra_options: dict) -> tuple:
    return tuple(extra_options.get("block") or ()), extra_options.get("block_index", 0)


def sdpa_attention(q, k, v, heads, **_):
    """Multi-head attention on (b, tokens, heads·d) tensors, as ComfyUI's attention functions take them."""
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    return rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")


class ReferenceBank:
    """The ReferenceNet's self-attention inputs, one (1, tokens, channels) tensor per transformer block."""

    def __init__(self):
        self.features: dict[tuple, torch.Tensor] = {}
        self.capturing = False
        self._cast: dict[tuple, torch.Tensor] = {}

    def capture(self, n, context_attn1, value_attn1, extra_options):
        if self.capturing:
            self.features[block_key(extra_options)] = n.detach()
        return n, context_attn1, value_attn1

    def get(self, key: tuple, like: torch.Tensor) -> torch.Tensor | None:
        """The block's reference tokens on `like`'s device and dtype (converted once per sampling run)."""
        ref = self.features.get(key)
        if ref is None:
            return None
        cast_key = (key, like.device, like.dtype)
        if cast_key not in self._cast:
            self._cast[cast_key] = ref.to(device=like.device, dtype=like.dtype)
        return self._cast[cast_key]

    def __len__(self):
        return len(self.features)

    def clear(self):
        self.features.clear()
        self._cast.clear()
        self.capturing = False


def with_reference(tokens: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """[tokens ; ref] over the token axis, ref (1 or rows, L_ref, C) repeated for every row (frame)."""
    return torch.cat([tokens, ref.expand(tokens.shape[0], -1, -1)], dim=1)


def uncond_rows(rows: int, cond_or_uncond) -> torch.Tensor | None:
    """Boolean mask of the rows that belong to an unconditional chunk (chunks are equal, in order)."""
    chunks = list(cond_or_uncond or [])
    if UNCOND not in chunks or rows % len(chunks):
        return None
    per_chunk = rows // len(chunks)
    return torch.tensor([c == UNCOND for c in chunks]).repeat_interleave(per_chunk)


class ReferenceAttention:
    """The denoising UNet's side: attn1 patch (append the reference tokens) and attn1 replace (attention
    with the unconditional rows restricted to their own tokens)."""

    def __init__(self, bank: ReferenceBank, attention=sdpa_attention):
        self.bank = bank
        self.attention = attention

    def attn1_patch(self, n, context_attn1, value_attn1, extra_options):
        ref = self.bank.get(block_key(extra_options), n)
        if ref is None:
            return n, context_attn1, value_attn1
        return n, with_reference(context_attn1, ref), with_reference(value_attn1, ref)

    def attn1_replace(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        kwargs = {"attn_precision": extra_options.get("attn_precision")}
        ref = self.bank.features.get(block_key(extra_options))
        uncond = uncond_rows(q.shape[0], extra_options.get("cond_or_uncond")) if ref is not None else None
        if uncond is None or not uncond.any():
            return self.attention(q, k, v, heads, **kwargs)
        own = k.shape[1] - ref.shape[1]  # the tokens before the appended reference ones
        uncond = uncond.to(q.device)
        out = torch.empty_like(q)
        out[~uncond] = self.attention(q[~uncond], k[~uncond], v[~uncond], heads, **kwargs)
        out[uncond] = self.attention(q[uncond], k[uncond, :own], v[uncond, :own], heads, **kwargs)
        return out
