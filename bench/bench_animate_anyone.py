#!/usr/bin/env python
"""Animate Anyone vs plain AnimateDiff on the same UNet: seconds per sampling step, peak RSS, and the pieces
of a GPU-memory estimate for 512×768×24 frames. In one process, on random weights in the published layouts
(tests/animate_anyone_files.py; the cached test files are reused).

"Plain AnimateDiff" = the MODEL of Load Animate Anyone (denoising UNet + motion module, same schedule)
sampled with the same conditioning, latent, steps, sampler and cfg; "Animate Anyone" = the same MODEL after
Apply Animate Anyone (pose features + reference attention). Per-step time = mean interval between the
sampler's step callbacks (the ReferenceNet, which runs once before the first step, is timed on its own);
runs alternate, the median over --repeats is reported. Peak RSS = VmHWM, reset before each run.

    /root/.cache/motionkit/venv/bin/python bench/bench_animate_anyone.py [--frames 8] [--size 64] [--steps 4]
        [--repeats 2] [--cfg 3.5] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(os.path.abspath(__file__)).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]
import pack_package  # noqa: E402,F401  (tests/pack_package.py: the pack as the package `motionkit`)


def rss_peak_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def rss(field="VmHWM") -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024 ** 2  # GiB
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cfg", type=float, default=3.5)
    ap.add_argument("--json")
    a = ap.parse_args()

    import comfy_env
    comfy_env.comfyui_on_syspath()
    import torch
    import comfy.cli_args
    if not torch.cuda.is_available():
        comfy.cli_args.args.cpu = True
    torch.set_num_threads(max(1, torch.get_num_threads()))
    import comfy.sample
    import comfy.sd

    import animate_anyone_files as aaf
    from motionkit.animate_anyone.apply import apply_animate_anyone, load_animate_anyone
    from motionkit.animate_anyone.files import read_weights
    from sd15_checkpoint import cached_sd15_checkpoint

    t0 = time.perf_counter()
    files = aaf.published_files(seed=3)
    w = {r: read_weights(str(p), r) for r, p in files.items()}
    params = {r: sum(v.numel() for v in sd.values()) for r, sd in w.items()}
    model, models = load_animate_anyone(w["denoising_unet"], w["reference_unet"], w["pose_guider"],
                                        w["motion_module"], dict(aaf.FILE_NAMES))
    vae = comfy.sd.VAE(sd=aaf.sd15_vae(cached_sd15_checkpoint()))
    load_s = time.perf_counter() - t0
    base_rss = rss("VmRSS")

    g = torch.Generator().manual_seed(0)
    px = a.size
    image = torch.rand(1, px, px, 3, generator=g)
    poses = torch.zeros(a.frames, px, px, 3)
    for f in range(a.frames):
        poses[f, px // 4: 3 * px // 4, f % (px // 2): f % (px // 2) + 4] = 1.0
    embeds = torch.randn(1, 1, 768, generator=g)
    patched, run = apply_animate_anyone(model, models, image, poses, vae, embeds)
    ref_times = []
    original = run.run_reference

    def timed_reference(*args, **kw):
        t = time.perf_counter()
        original(*args, **kw)
        ref_times.append(time.perf_counter() - t)
    run.run_reference = timed_reference

    def one(m, seed):
        latent = torch.zeros(a.frames, 4, px // 8, px // 8)
        noise = comfy.sample.prepare_noise(latent, seed)
        stamps = []
        rss_peak_reset()
        comfy.sample.sample(m, noise, a.steps, a.cfg, "ddim", "simple", [[embeds, {}]], [[torch.zeros_like(embeds), {}]],
                            latent, seed=seed, disable_pbar=True, callback=lambda *_: stamps.append(time.perf_counter()))
        steps = [b - c for c, b in zip(stamps, stamps[1:])]
        return sum(steps) / len(steps), rss()

    runs = {"plain AnimateDiff": model, "Animate Anyone": patched}
    one(model, 0), one(patched, 0)  # warm-up
    results = {k: [] for k in runs}
    for r in range(a.repeats):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            results[name].append(one(runs[name], r + 1))
    med = {k: statistics.median(s for s, _ in v) for k, v in results.items()}
    peak = {k: max(p for _, p in v) for k, v in results.items()}

    # GPU memory pieces at 512×768, 24 frames (one context window), cfg (48 rows), fp16
    h, wd, frames, rows, b = 768 // 8, 512 // 8, 24, 48, 2
    unet = model.model.diffusion_model
    bank_tokens = 0
    for name, number, index in __import__("motionkit.animate_anyone.apply", fromlist=["x"]).transformer_blocks(unet):
        level = {"input": [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3], "middle": [3],
                 "output": [3, 3, 3, 2, 2, 2, 1, 1, 1, 0, 0, 0]}[name][number]
        ch = 320 * (1, 2, 4, 4)[level]
        bank_tokens += (h >> level) * (wd >> level) * ch
    pieces = {
        "weights_fp16_GB": {r: params[r] * b / 1e9 for r in params} | {"clip_vision_vitl": 303.5e6 * b / 1e9,
                                                                       "vae": 83.65e6 * b / 1e9},
        "reference_bank_GB": bank_tokens * b / 1e9,
        "pose_features_GB": frames * 320 * h * wd * b / 1e9,
        # the biggest extra transient: one block's [own ; reference] keys/values input at the top level
        "concat_kv_input_top_level_GB": rows * 2 * h * wd * 320 * b / 1e9,
        # sampling activations, from tensor shapes: the skip connections ComfyUI's UNet keeps (3 per level)
        # plus the largest transient, the top level's GEGLU feed-forward (320 -> 2×1280, then 1280)
        "unet_skips_GB": rows * sum(3 * (h >> l) * (wd >> l) * c for l, c in enumerate((320, 640, 1280, 1280))) * b / 1e9,
        "top_level_feed_forward_GB": rows * h * wd * (2560 + 2 * 1280) * b / 1e9,
    }
    out = {"frames": a.frames, "size": a.size, "steps": a.steps, "cfg": a.cfg, "device": str(model.load_device),
           "threads": torch.get_num_threads(), "load_s": load_s, "rss_after_load_GB": base_rss,
           "s_per_step": med, "ratio": med["Animate Anyone"] / med["plain AnimateDiff"],
           "reference_net_s_per_run": statistics.median(ref_times), "peak_rss_GB": peak, "gpu_512x768x24": pieces}
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
