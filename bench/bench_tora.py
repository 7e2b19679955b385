#!/usr/bin/env python
"""Tora on our CogVideoX-5B transformer against diffusers 0.42.1's CogVideoXTransformer3DModel with Tora's fusers
hooked in the same place: seconds per denoising step and activation memory on the CPU, and the GPU memory estimate
for 49×480×720 at full size (bf16 and fp8 weights).

One process, the SAME random weights (one set of tensors shared by every variant: diffusers' model and our plain
model get ComfyUI's loaded weights by `load_state_dict(assign=True)`), the same inputs; variants alternate (order
reversed every other round), median of --repeats after one warm-up call of each. A "step" is one transformer call on
a batch of 2 (cond + uncond, batched as ComfyUI and diffusers' pipeline batch CFG), timestep 500. Variants:

  diffusers+Tora  CogVideoXTransformer3DModel; Tora's fuser applied by a forward hook on each block's norm1 output
                  (the modulated video tokens, where Tora's own diffusers code calls it); RoPE made once outside the
                  step, as its pipeline does; latents in its own [b, f, c, h, w] layout.
  ours+Tora       CogVideoXTransformer.forward with ToraGuidance in transformer_options["patches"]
                  ["cogvideox_video_tokens"], plain torch layers, torch SDPA attention (as diffusers uses).
  comfy+Tora      as ComfyUI calls it: cogvideox.comfy_model.cogvideox_patcher (comfy.ops layers, ComfyUI's
                  optimized_attention: on a CPU without attention flags that is its sub-quadratic attention),
                  ModelPatcher.set_model_patch(guidance, "cogvideox_video_tokens"), BaseModel.apply_model(x, sigma,
                  c_crossattn=..., transformer_options=patcher.model_options["transformer_options"]).
  ours plain      ours+Tora without the patch: what Tora's fusers cost on our side.

Tora's trajectory extractor runs once per sampling (ToraGuidance caches its features), so the warm-up call runs it
and the timed steps do not; it is timed on its own.

Memory on the CPU: the activation peak of one step counted with cogvideox.vae_memory.LiveBytes (a dispatch mode
summing the live storages made during the call; weights and inputs not counted), in a separate untimed call per
variant; and the process's peak RSS rise during the timed calls (VmHWM reset before each; glibc reuses freed memory,
so this is rough).

The 49×480×720 estimate (`estimate()`): weights from the exact parameter count of CogVideoX-5B + Tora's modules
(6,264,678,248 values incl. Tora's BatchNorm buffers) × 2 B (bf16) or × 1 B (fp8 storage); the activation peak of one
full-size 42-block step counted with LiveBytes on the meta device at the real token count (13×30×45 = 17550 video +
226 text tokens, batch 2), flash attention in place of SDPA (on the meta device SDPA takes the math path and would
count a 2×48×17776² score matrix no GPU kernel makes), Tora's patch and its cached features included; with fp8 weights
the model runs on comfy.ops.manual_cast (bf16 compute), whose per-layer bf16 weight copies are counted too; plus the
VAE decode peak of cogvideox.vae_memory. Not counted: the CUDA context and kernel workspaces (≈ 0.5–1 GiB), the
caching allocator's rounding, and the T5 encoder (ComfyUI unloads it before sampling when memory is short).

    python bench/bench_tora.py [--sizes tiny,medium] [--repeats 3] [--threads 2] [--json PATH]
    python bench/bench_tora.py --estimate-only
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

REPO = Path(os.path.abspath(__file__)).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO), str(REPO / "bench")]
import pack_package  # noqa: E402,F401  (tests/pack_package.py: the pack as the package `motionkit`)

GIB = 1024 ** 3
FULL_PARAMS = 6_264_678_248  # CogVideoX-5B 5,570,283,072 + Tora 694,352,000 parameters + 43,176 BatchNorm buffers
TEXT_TOKENS = 226
T = 500  # timestep of every call

# (config fields, latent frames, latent height, latent width); text is always 226 tokens of 4096
SIZES = {
    "tiny": (dict(num_attention_heads=4, attention_head_dim=64, num_layers=2), 13, 8, 12),
    "medium": (dict(num_attention_heads=48, attention_head_dim=64, num_layers=4), 13, 8, 12),
}


def diffusers_kwargs(cfg) -> dict:
    """CogVideoXTransformer3DModel kwargs of our CogVideoXConfig (5B's fixed fields as its config.json)."""
    return dict(num_attention_heads=cfg.num_attention_heads, attention_head_dim=cfg.attention_head_dim,
                in_channels=cfg.in_channels, out_channels=cfg.out_channels, time_embed_dim=cfg.time_embed_dim,
                text_embed_dim=cfg.text_embed_dim, num_layers=cfg.num_layers, patch_size=cfg.patch_size,
                sample_height=cfg.sample_height, sample_width=cfg.sample_width, sample_frames=49,
                norm_eps=cfg.norm_eps, attention_bias=cfg.attention_bias, freq_shift=cfg.freq_shift,
                max_text_seq_length=TEXT_TOKENS, activation_fn="gelu-approximate", flip_sin_to_cos=True,
                timestep_activation_fn="silu", norm_elementwise_affine=True, use_rotary_positional_embeddings=True,
                spatial_interpolation_scale=1.875, temporal_interpolation_scale=1.0, temporal_compression_ratio=4)


def randomise_(params, seed: int = 0, generator_device=None):
    """Random weights that keep activations in range: matrices randn/√fan_in, norm weights 1 + 0.2·randn, the rest
    0.2·randn (as tests/test_cogvideox_transformer.py). In place, in the tensors' dtype, on their device; the numbers
    come from a generator on `generator_device` (default the CPU), in slices of 16 M values (a GPU-sized model never
    needs a CPU copy of itself)."""
    import torch
    gdev = torch.device(generator_device or "cpu")
    g = torch.Generator(device=gdev).manual_seed(seed)
    with torch.no_grad():
        for name, p in params:
            if not p.is_floating_point():
                continue
            flat = p.view(-1)  # parameters are contiguous
            for start in range(0, p.numel(), 1 << 24):
                n = min(1 << 24, p.numel() - start)
                r = torch.randn(n, generator=g, device=gdev)
                if p.ndim > 1:
                    r /= math.sqrt(p[0].numel())
                elif "norm" in name and name.endswith("weight"):
                    r = 1 + 0.2 * r
                else:
                    r *= 0.2
                flat[start:start + n].copy_(r.to(p.device, p.dtype))


def diffusers_rope(oracle, frames, height, width, device):
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline
    pipe = SimpleNamespace(vae_scale_factor_spatial=8, transformer=oracle)
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(pipe, height * 8, width * 8, frames, device)


def hook_tora_into_diffusers(oracle, guidance, grid) -> list:
    """Tora's fuser on the output of every block's norm1 (the modulated video tokens), where Tora's diffusers code
    calls it: the same place as our patch point (tests/test_cogvideox_transformer.py checks that place)."""
    def hook(module, args, out, i):
        return (guidance(out[0], {"block_index": i, "grid": grid, "transformer_options": {}}),) + tuple(out[1:])
    return [b.norm1.register_forward_hook(lambda m, a, o, i=i: hook(m, a, o, i))
            for i, b in enumerate(oracle.transformer_blocks)]


def tora_modules(cfg, device=None, dtype=None, operations=None, seed=1, generator_device=None):
    import torch
    from motionkit.tora.model import ToraConfig, ToraModules
    with torch.device(device or "cpu"):
        m = ToraModules(ToraConfig(layers=cfg.num_layers, width=cfg.width), operations=operations)
    if dtype is not None:
        m.to(dtype)
    if str(device) != "meta":
        randomise_(m.named_parameters(), seed, generator_device)
    return m.eval()


def activation_peak(fn, outside) -> int:
    import torch
    from motionkit.cogvideox.vae_memory import LiveBytes
    with torch.no_grad(), LiveBytes(tuple(outside)) as live:
        out = fn()
        del out
    return live.peak


# ---- the CPU bench ---------------------------------------------------------------------------------------------------

def build_cpu(size: str, seed: int = 0):
    import torch
    import comfy_env
    comfy_env.comfy_on_cpu()
    from diffusers import CogVideoXTransformer3DModel
    from motionkit.cogvideox import comfy_model
    from motionkit.cogvideox.model import CogVideoXConfig, CogVideoXTransformer
    from motionkit.tora.model import PATCH_POINT, ToraGuidance

    fields, frames, h, w = SIZES[size]
    cfg = CogVideoXConfig(**fields)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in CogVideoXTransformer(cfg).state_dict().items()}
    sd = {k: torch.empty(s) for k, s in shapes.items()}
    randomise_(sorted(sd.items()), seed)
    # ComfyUI's model, loaded the way ComfyUI loads it; its weights are then the ones every variant uses
    patcher = comfy_model.cogvideox_patcher(cfg, sd, dtype=torch.float32)
    weights = patcher.model.diffusion_model.state_dict()
    with torch.device("meta"):
        ours = CogVideoXTransformer(cfg)
        oracle = CogVideoXTransformer3DModel(**diffusers_kwargs(cfg))
    ours.load_state_dict(weights, strict=True, assign=True)
    oracle.load_state_dict(weights, strict=True, assign=True)
    for m in (ours, oracle):
        assert not any(t.is_meta for t in list(m.parameters()) + list(m.buffers())), "a weight was not shared"
        m.eval()

    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(2, 16, frames, h, w, generator=g)
    context = torch.randn(2, TEXT_TOKENS, cfg.text_embed_dim, generator=g)
    flow = torch.randn(1, 16, frames, h, w, generator=g)  # the flow video's latents (one trajectory for the CFG pair)
    tora = tora_modules(cfg, seed=seed + 2)
    grid = (frames, h // 2, w // 2)
    t = torch.tensor([float(T)] * 2)

    g_ours, g_diff, g_comfy = (ToraGuidance(tora, flow) for _ in range(3))
    options = {"patches": {PATCH_POINT: [g_ours]}}
    patcher.set_model_patch(g_comfy, PATCH_POINT)
    comfy_options = patcher.model_options["transformer_options"]
    sigma = patcher.model.model_sampling.sigma(t)
    x_comfy = x * (sigma.view(-1, 1, 1, 1, 1) ** 2 + 1).sqrt()  # apply_model divides by √(σ²+1) again

    x_diff = x.permute(0, 2, 1, 3, 4).contiguous()
    rope = diffusers_rope(oracle, frames, h, w, "cpu")
    hooks = []

    def diffusers_tora():
        if not hooks:
            hooks.extend(hook_tora_into_diffusers(oracle, g_diff, grid))
        return oracle(x_diff, context, t, image_rotary_emb=rope, return_dict=False)[0]

    variants = {
        "diffusers+Tora": diffusers_tora,
        "ours+Tora": lambda: ours(x, t, context, transformer_options=options),
        "comfy+Tora": lambda: patcher.model.apply_model(x_comfy, sigma, c_crossattn=context,
                                                         transformer_options=comfy_options),
        "ours plain": lambda: ours(x, t, context),
    }
    # the variants compute the same thing: check it once (diffusers' [b, f, c, h, w] back to ours)
    with torch.no_grad():
        d = oracle(x_diff, context, t, image_rotary_emb=rope, return_dict=False)[0]  # before the hooks
        a = diffusers_tora()
        b = variants["ours+Tora"]()
        c = (x_comfy / (sigma.view(-1, 1, 1, 1, 1) ** 2 + 1) - variants["comfy+Tora"]()) \
            * (sigma.view(-1, 1, 1, 1, 1) ** 2 + 1).sqrt() / sigma.view(-1, 1, 1, 1, 1)  # v back from the denoised
        p = variants["ours plain"]()
    rel = lambda u, v: ((u - v).abs().max() / v.abs().max()).item()  # noqa: E731
    agree = {"ours+Tora vs diffusers+Tora": rel(b, a.permute(0, 2, 1, 3, 4)),
             "Tora's effect in diffusers (hooked vs not)": rel(a, d),
             "comfy+Tora vs ours+Tora": rel(c, b),
             "Tora's effect in ours (ours+Tora vs ours plain)": rel(b, p)}
    outside = list(weights.values()) + list(tora.parameters()) + list(tora.buffers()) + [x, x_diff, x_comfy, context,
                                                                                          flow, *rope]
    params = sum(v.numel() for v in weights.values())
    tora_params = sum(p.numel() for p in tora.parameters())
    return SimpleNamespace(cfg=cfg, variants=variants, agree=agree, outside=outside, params=params,
                           tora_params=tora_params, tokens=(math.prod(grid), TEXT_TOKENS), tora=tora, flow=flow,
                           hooks=hooks)


def bench_cpu(size: str, repeats: int) -> dict:
    import torch
    import harness as bm
    t0 = time.perf_counter()
    s = build_cpu(size)
    build_s = time.perf_counter() - t0

    with torch.no_grad():
        t0 = time.perf_counter()
        s.tora.traj_extractor(s.flow)  # once per sampling (ToraGuidance caches it)
        extractor_s = time.perf_counter() - t0

        def call(fn):
            rss0 = bm.rss_mib()
            bm.reset_peak_rss()
            load = bm.OtherLoad()
            t = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t
            del out
            return dt, bm.peak_rss_mib() - rss0, load.cores()

        names = list(s.variants)
        for n in names:  # warm-up
            call(s.variants[n])
        runs = {n: [] for n in names}
        for r in range(repeats):
            for n in (names if r % 2 == 0 else names[::-1]):
                runs[n].append(call(s.variants[n]))
        live = {n: activation_peak(s.variants[n], s.outside) for n in names}

    med = {n: statistics.median(dt for dt, _, _ in runs[n]) for n in names}
    return {
        "size": size, "config": asdict(s.cfg), "transformer_params": s.params, "tora_params": s.tora_params,
        "tokens_video_text": s.tokens, "batch": 2, "build_s": build_s, "extractor_s_once": extractor_s,
        "outputs_relative_max_difference": s.agree,
        "s_per_step_median": med,
        "s_per_step_runs": {n: [dt for dt, _, _ in runs[n]] for n in names},
        "other_processes_cores": {n: [c for _, _, c in runs[n]] for n in names},
        "ratio_ours_over_diffusers": med["ours+Tora"] / med["diffusers+Tora"],
        "ratio_comfy_over_diffusers": med["comfy+Tora"] / med["diffusers+Tora"],
        "tora_overhead_ours": med["ours+Tora"] / med["ours plain"],
        "activation_peak_MiB_livebytes": {n: v / 2 ** 20 for n, v in live.items()},
        "peak_rss_rise_MiB_max": {n: max(m for _, m, _ in runs[n]) for n in names},
    }


# ---- the 49×480×720 estimate -----------------------------------------------------------------------------------------

def flash_attention(q, k, v, heads, skip_reshape=True, **_):
    """What PyTorch SDPA's flash kernel makes on a GPU (output + log-sum-exp), with a meta kernel: for counting."""
    import torch
    from einops import rearrange
    out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[0]
    return rearrange(out, "b h n d -> b n (h d)")


def full_step_activation_peak(weight_dtype, batch: int = 2, frames: int = 13, height: int = 60, width: int = 90,
                              tora: bool = True, layers: int = 42) -> int:
    """Activation peak bytes of one full-width transformer call (with Tora's patch), counted on the meta device.
    bf16 weights: plain layers; fp8 weights: comfy.ops.manual_cast layers computing in bf16 (ComfyUI's way)."""
    import torch
    from motionkit.cogvideox.model import CogVideoXConfig, CogVideoXTransformer
    from motionkit.tora.model import PATCH_POINT, ToraGuidance
    cfg = CogVideoXConfig(num_layers=layers)
    ops = None
    if weight_dtype != torch.bfloat16:
        import comfy_env
        comfy_env.comfy_on_cpu()
        import comfy.ops
        ops = comfy.ops.manual_cast
    with torch.device("meta"):
        model = CogVideoXTransformer(cfg, operations=ops, attention=flash_attention, dtype=weight_dtype)
        x = torch.zeros(batch, 16, frames, height, width, dtype=torch.bfloat16)
        context = torch.zeros(batch, TEXT_TOKENS, cfg.text_embed_dim, dtype=torch.bfloat16)
        t = torch.full((batch,), float(T))
        flow = torch.zeros(1, 16, frames, height, width, dtype=torch.bfloat16)
    options = {}
    outside = list(model.parameters()) + [x, context, t, flow]
    if tora:
        modules = tora_modules(cfg, device="meta", dtype=weight_dtype, operations=ops)
        options = {"patches": {PATCH_POINT: [ToraGuidance(modules, flow)]}}
        outside += list(modules.parameters()) + list(modules.buffers())
    return activation_peak(lambda: model(x, t, context, transformer_options=options), outside)


def estimate() -> dict:
    import torch
    from motionkit.cogvideox import vae_memory
    from motionkit.cogvideox.model import CogVideoXConfig, CogVideoXTransformer
    from motionkit.cogvideox.vae import Tiling
    with torch.device("meta"):
        cogvideox = sum(p.numel() for p in CogVideoXTransformer(CogVideoXConfig()).parameters())
        m = tora_modules(CogVideoXConfig(), device="meta")
        tora_p = sum(p.numel() for p in m.parameters())
        tora_b = sum(b.numel() for b in m.buffers())
    assert cogvideox + tora_p + tora_b == FULL_PARAMS, (cogvideox, tora_p, tora_b)
    t0 = time.perf_counter()
    act = {"bf16": full_step_activation_peak(torch.bfloat16),
           "fp8 (manual_cast, bf16 compute)": full_step_activation_peak(torch.float8_e4m3fn),
           "bf16, batch 1 (no CFG)": full_step_activation_peak(torch.bfloat16, batch=1),
           "bf16, without Tora": full_step_activation_peak(torch.bfloat16, tora=False)}
    vae_w = vae_memory.weight_bytes()
    decode = vae_memory.decode_peak_bytes()
    decode_tiled = vae_memory.decode_peak_bytes(tiling=Tiling())
    count_s = time.perf_counter() - t0
    w = {"bf16": FULL_PARAMS * 2, "fp8 (manual_cast, bf16 compute)": FULL_PARAMS}
    sampling = {k: (w[k] + act[k]) / GIB for k in w}
    out = {
        "video": "49×480×720 = 13×60×90 latents: 17550 video + 226 text tokens, batch 2 (CFG), 42 blocks",
        "params": {"cogvideox_5b": cogvideox, "tora": tora_p, "tora_buffers": tora_b, "total": FULL_PARAMS},
        "weights_GiB": {k: v / GIB for k, v in w.items()},
        "step_activation_peak_GiB": {k: v / GIB for k, v in act.items()},
        "sampling_peak_GiB (weights + activations)": sampling,
        "vae_bf16_GiB": {"weights": vae_w / GIB, "decode_peak": decode / GIB, "decode_peak_tiled": decode_tiled / GIB},
        "decode_peak_GiB (transformer unloaded: VAE weights + decode)": {
            "untiled": (vae_w + decode) / GIB, "tiled": (vae_w + decode_tiled) / GIB},
        "decode_peak_GiB (transformer kept loaded)": {
            k: {"untiled": (w[k] + vae_w + decode) / GIB, "tiled": (w[k] + vae_w + decode_tiled) / GIB} for k in w},
        "counting_s": count_s,
        "not_counted": "CUDA context and kernel workspaces (≈0.5–1 GiB), allocator rounding/fragmentation, T5",
    }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="tiny,medium")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--estimate-only", action="store_true")
    ap.add_argument("--no-estimate", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()

    import torch
    torch.set_num_threads(a.threads)
    out = {"torch": torch.__version__, "threads": a.threads, "device": "cpu, float32"}
    import diffusers
    out["diffusers"] = diffusers.__version__
    if not a.estimate_only:
        for size in a.sizes.split(","):
            out[size] = bench_cpu(size, a.repeats)
            print(json.dumps(out[size], indent=1), flush=True)
    if not a.no_estimate:
        out["gpu_estimate_49x480x720"] = estimate()
        print(json.dumps(out["gpu_estimate_49x480x720"], indent=1, ensure_ascii=False), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
