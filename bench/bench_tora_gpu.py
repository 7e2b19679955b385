#!/usr/bin/env python
"""Tora + CogVideoX-5B on a GPU at 49×480×720: real peak GPU memory and seconds per denoising step, our model as
ComfyUI runs it against diffusers 0.42.1's CogVideoXTransformer3DModel with Tora's fusers hooked in, full size
(42 blocks, width 3072, Tora's 42 fusers and extractor), random weights made directly on the GPU.

Per weight format, in one process, variants alternating (order reversed every other round), median of --repeats after
one warm-up call each; a step = one transformer call on a batch of 2 (cond + uncond, as both pipelines batch CFG),
13×60×90 latents (17550 video + 226 text tokens):

  bf16   comfy+Tora / comfy plain: cogvideox.comfy_model's model config + BaseModel built on the GPU with bf16
         weights (comfy.ops.disable_weight_init, ComfyUI's optimized_attention: PyTorch SDPA on NVIDIA), Tora's
         ToraGuidance set with ModelPatcher.set_model_patch(..., "cogvideox_video_tokens"), BaseModel.apply_model;
         diffusers+Tora: diffusers' model holding the SAME weight tensors (load_state_dict(assign=True)), Tora's
         fuser by a forward hook on every block's norm1 (bench_tora.hook_tora_into_diffusers), RoPE made once.
  fp8    ours: the same model config with float8_e4m3fn weights and bf16 compute, as ComfyUI's fp8 weight dtype
         runs it (comfy.ops.pick_operations: manual_cast, or fp8_ops with --fast fp8 matrix mult), Tora's modules
         in fp8 on comfy.ops.manual_cast; diffusers: its enable_layerwise_casting(storage float8_e4m3fn, compute
         bf16) of a model loaded with the same bf16 weights (it keeps its default skip list, norms and the
         patch/pos embeddings, in bf16). The random values are the bf16 ones, quantized.

Memory: torch.cuda.max_memory_allocated during each call minus memory_allocated before it (the activation peak), the
resident weights (memory_allocated after building), and the process's peak (max_memory_allocated / reserved).

    python bench/bench_tora_gpu.py [--repeats 3] [--formats bf16,fp8] [--json PATH]     # needs CUDA
    python bench/bench_tora_gpu.py --smoke     # on the CPU: a tiny config through every code path, no numbers

Without CUDA (and without --smoke) it stops with a message saying so.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(os.path.abspath(__file__)).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO), str(REPO / "bench")]
import pack_package  # noqa: E402,F401  (tests/pack_package.py: the pack as the package `motionkit`)

import bench_tora as bt  # noqa: E402  (this folder: the shared pieces of the CPU bench)

GIB = 1024 ** 3


class Device:
    """Timing and memory on CUDA; on the CPU (--smoke) the same calls with no memory numbers."""

    def __init__(self, torch, smoke: bool):
        self.torch = torch
        self.cuda = not smoke
        self.device = torch.device("cuda" if self.cuda else "cpu")

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def allocated(self):
        return self.torch.cuda.memory_allocated() if self.cuda else None

    def call(self, fn):
        """(seconds, activation peak bytes) of fn()."""
        torch = self.torch
        self.sync()
        before = self.allocated()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = fn()
        self.sync()
        dt = time.perf_counter() - t
        del out
        return dt, (torch.cuda.max_memory_allocated() - before) if self.cuda else None


def comfy_model_on_device(cfg, weight_dtype, compute_dtype, dev):
    """The BaseModel of cogvideox.comfy_model built directly on `dev` (no CPU copy), as core builds video DiTs."""
    import comfy.model_patcher
    from motionkit.cogvideox import comfy_model
    model_config = comfy_model.CogVideoX5B({"config": cfg})
    model_config.set_inference_dtype(weight_dtype, compute_dtype)
    model = model_config.get_model({}, device=dev)
    model.to(dev)  # the schedule's buffers; the weights are already there
    return comfy.model_patcher.ModelPatcher(model, load_device=dev, offload_device=dev)


def run_format(fmt: str, d: Device, cfg, frames, height, width, repeats, seed=0) -> dict:
    import torch
    import comfy.ops
    from diffusers import CogVideoXTransformer3DModel
    from motionkit.tora.model import PATCH_POINT, ToraGuidance
    dev, bf16 = d.device, torch.bfloat16
    fp8 = fmt == "fp8"
    gen_dev = dev

    t0 = time.perf_counter()
    base = d.allocated()
    if fp8:
        # the bf16 weights first (diffusers' layerwise casting starts from them), then our fp8 copy of the same values
        src = comfy_model_on_device(cfg, bf16, None, dev)
        bt.randomise_(sorted(src.model.diffusion_model.named_parameters()), seed, gen_dev)
        patcher = comfy_model_on_device(cfg, torch.float8_e4m3fn, bf16, dev)
        with torch.no_grad():
            ours_sd = patcher.model.diffusion_model.state_dict()
            for k, v in src.model.diffusion_model.state_dict().items():
                ours_sd[k].copy_(v)
        with torch.device("meta"):
            oracle = CogVideoXTransformer3DModel(**bt.diffusers_kwargs(cfg))
        oracle.load_state_dict(src.model.diffusion_model.state_dict(), strict=True, assign=True)
        del src
        oracle.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=bf16)
        tora = bt.tora_modules(cfg, device=dev, dtype=torch.float8_e4m3fn, operations=comfy.ops.manual_cast,
                               seed=seed + 2, generator_device=gen_dev)
    else:
        patcher = comfy_model_on_device(cfg, bf16, None, dev)
        bt.randomise_(sorted(patcher.model.diffusion_model.named_parameters()), seed, gen_dev)
        with torch.device("meta"):
            oracle = CogVideoXTransformer3DModel(**bt.diffusers_kwargs(cfg))
        oracle.load_state_dict(patcher.model.diffusion_model.state_dict(), strict=True, assign=True)
        tora = bt.tora_modules(cfg, device=dev, dtype=bf16, seed=seed + 2, generator_device=gen_dev)
    oracle.eval()
    d.sync()
    build_s = time.perf_counter() - t0
    weights = None if base is None else d.allocated() - base
    ours_weight_bytes = sum(p.numel() * p.element_size() for p in patcher.model.diffusion_model.parameters())
    diffusers_weight_bytes = sum(p.numel() * p.element_size() for p in oracle.parameters())
    tora_weight_bytes = sum(t.numel() * t.element_size() for t in list(tora.parameters()) + list(tora.buffers()))

    g = torch.Generator(device=gen_dev).manual_seed(seed + 1)
    x = torch.randn(2, 16, frames, height, width, generator=g, device=dev)
    context = torch.randn(2, bt.TEXT_TOKENS, cfg.text_embed_dim, generator=g, device=dev)
    flow = torch.randn(1, 16, frames, height, width, generator=g, device=dev)
    t = torch.full((2,), float(bt.T), device=dev)
    grid = (frames, height // 2, width // 2)
    model = patcher.model
    sigma = model.model_sampling.sigma(t)
    x_comfy = x * (sigma.view(-1, 1, 1, 1, 1) ** 2 + 1).sqrt()
    g_comfy, g_diff = ToraGuidance(tora, flow), ToraGuidance(tora, flow)
    patcher.set_model_patch(g_comfy, PATCH_POINT)
    comfy_options = patcher.model_options["transformer_options"]
    x_diff = x.permute(0, 2, 1, 3, 4).to(bf16).contiguous()
    context_diff = context.to(bf16)
    rope = bt.diffusers_rope(oracle, frames, height, width, dev)
    hooks = bt.hook_tora_into_diffusers(oracle, g_diff, grid)

    variants = {
        "comfy+Tora": lambda: model.apply_model(x_comfy, sigma, c_crossattn=context, transformer_options=comfy_options),
        "diffusers+Tora": lambda: oracle(x_diff, context_diff, t, image_rotary_emb=rope, return_dict=False)[0],
        "comfy plain": lambda: model.apply_model(x_comfy, sigma, c_crossattn=context, transformer_options={}),
    }
    with torch.no_grad():
        t0 = time.perf_counter()
        tora.traj_extractor(flow.to(bf16))
        d.sync()
        extractor_s = time.perf_counter() - t0
        # same result? (v back from ComfyUI's denoised output; bf16/fp8 rounding differs between the two models)
        s = sigma.view(-1, 1, 1, 1, 1)
        ours_v = (x_comfy / (s ** 2 + 1) - variants["comfy+Tora"]()) * (s ** 2 + 1).sqrt() / s
        diff_v = variants["diffusers+Tora"]().permute(0, 2, 1, 3, 4).float()
        agree = ((ours_v - diff_v).abs().max() / diff_v.abs().max()).item()
        finite = bool(torch.isfinite(ours_v).all() and torch.isfinite(diff_v).all())
        del ours_v, diff_v
        names = list(variants)
        for n in names:
            d.call(variants[n])
        runs = {n: [] for n in names}
        for r in range(repeats):
            for n in (names if r % 2 == 0 else names[::-1]):
                runs[n].append(d.call(variants[n]))
    for h in hooks:
        h.remove()
    med = {n: statistics.median(dt for dt, _ in runs[n]) for n in names}
    act = {n: (max(m for _, m in runs[n]) / GIB if d.cuda else None) for n in names}
    out = {
        "format": fmt, "build_s": build_s, "extractor_s_once": extractor_s,
        "allocated_after_build_GiB (both models + Tora; bf16: one shared set)": None if weights is None else weights / GIB,
        "weights_GiB": {"ours": ours_weight_bytes / GIB, "diffusers (own copy where not shared)": diffusers_weight_bytes / GIB,
                        "tora": tora_weight_bytes / GIB},
        "relative_max_difference_v_ours_vs_diffusers": agree, "finite": finite,
        "s_per_step_median": med, "s_per_step_runs": {n: [dt for dt, _ in runs[n]] for n in names},
        "ratio_ours_over_diffusers": med["comfy+Tora"] / med["diffusers+Tora"],
        "tora_overhead_ours": med["comfy+Tora"] / med["comfy plain"],
        "activation_peak_GiB": act,
    }
    if d.cuda:
        out["process_max_allocated_GiB"] = torch.cuda.max_memory_allocated() / GIB
        out["process_max_reserved_GiB"] = torch.cuda.max_memory_reserved() / GIB
    del variants, model, patcher, oracle, tora
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--formats", default="bf16,fp8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny config on the CPU: runs every code path, no numbers")
    ap.add_argument("--json")
    a = ap.parse_args()

    import torch
    if not a.smoke and not torch.cuda.is_available():
        raise SystemExit("bench_tora_gpu.py measures GPU memory and speed and needs a CUDA GPU; none is visible to "
                         f"torch {torch.__version__} here (torch.cuda.is_available() is False). Run it on a GPU "
                         "machine, or `--smoke` to check its code paths on the CPU at a tiny size.")
    import comfy_env
    if a.smoke:
        comfy_env.comfy_on_cpu()
    else:
        comfy_env.comfyui_on_syspath()
    import comfy.model_management  # noqa: F401  (picks the device and ComfyUI's attention before the models)
    import diffusers
    from motionkit.cogvideox.model import CogVideoXConfig

    d = Device(torch, a.smoke)
    if a.smoke:
        cfg, (frames, height, width) = CogVideoXConfig(**bt.SIZES["tiny"][0]), (3, 8, 12)
        repeats = 1
    else:
        cfg, (frames, height, width) = CogVideoXConfig(), (13, 60, 90)
        repeats = a.repeats
    out = {"torch": torch.__version__, "diffusers": diffusers.__version__, "smoke": a.smoke,
           "device": torch.cuda.get_device_name() if d.cuda else "cpu (smoke)",
           "latents": [2, 16, frames, height, width], "text_tokens": bt.TEXT_TOKENS, "layers": cfg.num_layers}
    import comfy.ldm.modules.attention as comfy_attention
    out["comfy_attention"] = comfy_attention.optimized_attention.__name__
    print(json.dumps(out), flush=True)
    for fmt in a.formats.split(","):
        out[fmt] = run_format(fmt, d, cfg, frames, height, width, repeats)
        print(json.dumps(out[fmt], indent=1), flush=True)
        if d.cuda:
            torch.cuda.empty_cache()
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
