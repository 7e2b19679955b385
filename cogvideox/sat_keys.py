"""CogVideoX-5B (and Tora) weights in the SAT layout (the original training code's checkpoints, e.g. Tora's
`ckpts/tora/i2v/mp_rank_00_model_states.pt`) renamed to diffusers' CogVideoXTransformer3DModel keys. Pure: tensors in,
tensors out (split and concatenated, never changed).

The rules are diffusers' scripts/convert_cogvideox_to_diffusers.py, after taking off `model.diffusion_model.`:
* patch embedding, time embedding, per-block norms, attention output, MLP, q/k norms and the final layer: renamed;
* `query_key_value` (q, k and v stacked on the output axis): cut in three, to_q / to_k / to_v;
* `adaLN_modulations.{i}.1` (12 chunks, SAT's order: video shift, scale, gate for attention, the same for the MLP,
  then the text's six): norm1.linear gets video-attention + text-attention chunks, norm2.linear the MLP's;
* dropped: the RoPE tables (`freqs_sin`/`freqs_cos`, recomputed), SAT's unused `position_embeddings` and
  `word_embeddings`, and the learned position embedding `pos_embedding` (see `learned_pe_unused`);
* Tora's modules: `mixins.adaln_layer.fuser_list.{i}.` -> `fuser.{i}.` (the names of Tora's diffusers release),
  `traj_extractor.` kept.
`conditioner.*` (T5) and `first_stage_model.*` (the VAE) are not the transformer: left out.
"""
from __future__ import annotations

import re

import torch

PREFIX = "model.diffusion_model."
LEFT_OUT = ("conditioner.", "first_stage_model.", "model_ema.")
DROPPED = ("mixins.pos_embed.freqs_sin", "mixins.pos_embed.freqs_cos", "transformer.position_embeddings.weight",
           "transformer.word_embeddings.weight")
LEARNED_PE = "mixins.pos_embed.pos_embedding"
FUSER_SAT, FUSER = "mixins.adaln_layer.fuser_list.", "fuser."
RENAMES = [  # (pattern on the key without PREFIX, replacement)
    (r"mixins\.patch_embed\.(proj|text_proj)\.", r"patch_embed.\1."),
    (r"time_embed\.0\.", "time_embedding.linear_1."),
    (r"time_embed\.2\.", "time_embedding.linear_2."),
    (r"transformer\.layers\.(\d+)\.input_layernorm\.", r"transformer_blocks.\1.norm1.norm."),
    (r"transformer\.layers\.(\d+)\.post_attention_layernorm\.", r"transformer_blocks.\1.norm2.norm."),
    (r"transformer\.layers\.(\d+)\.attention\.dense\.", r"transformer_blocks.\1.attn1.to_out.0."),
    (r"transformer\.layers\.(\d+)\.mlp\.dense_h_to_4h\.", r"transformer_blocks.\1.ff.net.0.proj."),
    (r"transformer\.layers\.(\d+)\.mlp\.dense_4h_to_h\.", r"transformer_blocks.\1.ff.net.2."),
    (r"mixins\.adaln_layer\.query_layernorm_list\.(\d+)\.", r"transformer_blocks.\1.attn1.norm_q."),
    (r"mixins\.adaln_layer\.key_layernorm_list\.(\d+)\.", r"transformer_blocks.\1.attn1.norm_k."),
    (r"transformer\.final_layernorm\.", "norm_final."),
    (r"mixins\.final_layer\.norm_final\.", "norm_out.norm."),
    (r"mixins\.final_layer\.linear\.", "proj_out."),
    (r"mixins\.final_layer\.adaLN_modulation\.1\.", "norm_out.linear."),
    (r"mixins\.adaln_layer\.fuser_list\.(\d+)\.", r"fuser.\1."),
    (r"traj_extractor\.", "traj_extractor."),
]
RENAMES = [(re.compile(p), r) for p, r in RENAMES]
QKV = re.compile(r"transformer\.layers\.(\d+)\.attention\.query_key_value\.(weight|bias)")
ADALN = re.compile(r"mixins\.adaln_layer\.adaLN_modulations\.(\d+)\.1\.(weight|bias)")
SAT_NORM_EPS = 1e-6  # SAT's LayerNorms (diffusers' configs say 1e-5)


def is_sat(sd: dict) -> bool:
    """Whether a state dict is in the SAT layout (its mixins, or fused q/k/v)."""
    return any(".mixins." in k or k.startswith("mixins.") or "query_key_value" in k for k in sd)


def strip_prefix(sd: dict) -> dict:
    """The transformer's keys without `model.diffusion_model.` (T5 and VAE keys left out)."""
    if any(k.startswith(PREFIX) for k in sd):
        return {k[len(PREFIX):]: v for k, v in sd.items() if k.startswith(PREFIX)}
    return {k: v for k, v in sd.items() if not k.startswith(LEFT_OUT)}


def has_learned_pe(sd: dict) -> bool:
    return LEARNED_PE in strip_prefix(sd)


def has_tora(sd: dict) -> bool:
    return any(k.startswith((FUSER_SAT, "traj_extractor.")) for k in strip_prefix(sd))


def learned_pe_unused(sd: dict) -> bool:
    """Tora's SAT transformer builds the learned position embedding of CogVideoX-5B-I2V but never adds it (its
    Rotary3DPositionEmbeddingMixin.position_embedding_forward returns None), so a Tora checkpoint runs without it;
    CogVideoX's own I2V adds it."""
    return has_tora(sd)


def sat_to_diffusers(sd: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(the state dict in diffusers' names with Tora's keys as `traj_extractor.*` / `fuser.*`, the SAT keys no rule
    knows). The learned position embedding is dropped here: callers decide whether that is allowed (learned_pe_unused)."""
    out, unknown = {}, []
    for k, v in strip_prefix(sd).items():
        if k in DROPPED or k == LEARNED_PE:
            continue
        if m := QKV.fullmatch(k):
            for name, part in zip(("to_q", "to_k", "to_v"), v.chunk(3, dim=0)):
                out[f"transformer_blocks.{m[1]}.attn1.{name}.{m[2]}"] = part
        elif m := ADALN.fullmatch(k):
            c = v.chunk(12, dim=0)
            out[f"transformer_blocks.{m[1]}.norm1.linear.{m[2]}"] = torch.cat(c[0:3] + c[6:9])
            out[f"transformer_blocks.{m[1]}.norm2.linear.{m[2]}"] = torch.cat(c[3:6] + c[9:12])
        else:
            for pattern, replacement in RENAMES:
                if pattern.match(k):
                    out[pattern.sub(replacement, k, count=1)] = v
                    break
            else:
                unknown.append(k)
    return out, unknown


def fuser_sat_to_diffusers(sd: dict) -> dict:
    """Only Tora's keys renamed (`...fuser_list.{i}.` -> `fuser.{i}.`); the others as they are."""
    out = {}
    for k, v in sd.items():
        at = k.find(FUSER_SAT)
        out[k[:at] + FUSER + k[at + len(FUSER_SAT):] if at >= 0 else k] = v
    return out
