#!/usr/bin/env python
"""SparseCtrl's cost: seconds per step and peak memory of a 16-frame animation with and without SparseCtrl.

One ComfyUI process, the helpers of bench/harness.py (ComfyUI imported in-process, the pack loaded with
ComfyUI's own loader, API workflows through `execution.PromptExecutor`, per-step time from the progress-bar
callbacks, peak RSS = VmHWM reset before each run). Both workflows: SD1.5 + a v2 motion model, same size,
frames, steps, sampler, cfg; the SparseCtrl one adds Load SparseCtrl (RGB) -> SparseCtrl Keyframes (0, -1)
-> core Apply ControlNet (two keyframe images, the checkpoint's VAE). One warm-up of each (loads the models),
then `--repeats` alternating runs; medians. Files: the random full-size SparseCtrl of the tests
(tests/sparsectrl_files.py) and harness.py's random v2 motion model.

Expectation: the encoder is a ControlNet-sized copy of the UNet's encoder half plus 8 motion modules, so a
step should cost no more than one extra UNet encoder pass (ratio well under 1.5 at cfg > 1).

    /root/.cache/motionkit/venv/bin/python bench/bench_sparsectrl.py [--frames 16] [--size 64] [--steps 3]
        [--repeats 2] [--cfg 7] [--threads auto] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(os.path.abspath(__file__)).parent
sys.path.insert(0, str(HERE))
import harness as bm  # noqa: E402  (bench/harness.py: ComfyUI in this process, inputs, threads, memory)

OUTPUT = {"animation": "19", "sparsectrl": "29"}


def workflow(args, ckpt: str, motion: str, sparsectrl: str, seed: int) -> dict:
    sampler = {"seed": seed, "steps": args.steps, "cfg": args.cfg, "sampler_name": "euler", "scheduler": "normal",
               "denoise": 1.0, "latent_image": ["5", 0], "model": ["11", 0]}
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat walking in the snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": args.size, "height": args.size, "batch_size": args.frames}},
        "10": {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion}},
        "11": {"class_type": "MotionKitApplyMotionModel", "inputs": {
            "model": ["4", 0], "motion_model": ["10", 0], "motion_scale": 1.0, "start_percent": 0.0, "end_percent": 1.0,
            "noise_schedule": "autoselect"}},
        "13": {"class_type": "KSampler", "inputs": {**sampler, "positive": ["6", 0], "negative": ["7", 0]}},
        "19": {"class_type": "SaveLatent", "inputs": {"samples": ["13", 0], "filename_prefix": "bench/anim"}},
        "20": {"class_type": "EmptyImage", "inputs": {"width": args.size, "height": args.size, "batch_size": 1, "color": 0xFF3020}},
        "21": {"class_type": "EmptyImage", "inputs": {"width": args.size, "height": args.size, "batch_size": 1, "color": 0x2030FF}},
        "22": {"class_type": "ImageBatch", "inputs": {"image1": ["20", 0], "image2": ["21", 0]}},
        "23": {"class_type": "MotionKitLoadSparseCtrl", "inputs": {"sparsectrl_name": sparsectrl}},
        "24": {"class_type": "MotionKitSparseCtrlKeyframes", "inputs": {
            "control_net": ["23", 0], "placement": "indices", "indices": "0, -1", "hint_multiplier": 1.0,
            "nonhint_multiplier": 1.0, "motion_strength": 1.0, "window_without_hint": "no control"}},
        "25": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["6", 0], "negative": ["7", 0], "control_net": ["24", 0], "image": ["22", 0], "vae": ["4", 2],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "26": {"class_type": "KSampler", "inputs": {**sampler, "positive": ["25", 0], "negative": ["25", 1]}},
        "29": {"class_type": "SaveLatent", "inputs": {"samples": ["26", 0], "filename_prefix": "bench/sparsectrl"}},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cfg", type=float, default=7.0)
    ap.add_argument("--threads", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(bm.TESTS))
    import torch
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    if args.threads != "auto":
        torch.set_num_threads(int(args.threads))
    elif cores > 1 and load_start >= cores - 0.5:
        torch.set_num_threads(1)
    from sparsectrl_files import cached_file
    sparsectrl = cached_file("rgb").resolve()
    root = bm.find_comfyui()
    checkpoint = bm.default_checkpoint(root).resolve()
    motion_file = bm.default_motion_file().resolve()
    comfy = bm.Comfy(root, "cpu" if not torch.cuda.is_available() else "cuda", checkpoint, motion_file)
    import folder_paths
    folder_paths.add_model_folder_path("controlnet", str(sparsectrl.parent), is_default=True)
    names = (checkpoint.name, motion_file.name, sparsectrl.name)
    comfy.validate(workflow(args, *names, 0), list(OUTPUT.values()))
    print(f"[bench] torch {torch.__version__}, device {comfy.device}, {torch.get_num_threads()} threads, load average "
          f"{load_start:.1f} on {cores} cores; {args.frames} frames {args.size}x{args.size}, {args.steps} steps, "
          f"cfg {args.cfg}", flush=True)

    seed, results, resident = 100, {k: [] for k in OUTPUT}, {}
    t0 = time.perf_counter()
    for kind in OUTPUT:  # warm-up: loads the models outside the measured runs
        seed += 1
        comfy.run(workflow(args, *names, seed), OUTPUT[kind])
        resident[kind] = bm.rss_mib()
    print(f"[bench] warm-up {time.perf_counter() - t0:.1f}s", flush=True)
    order = list(OUTPUT)
    for i in range(args.repeats):
        for kind in (order if i % 2 == 0 else order[::-1]):
            seed += 1
            r = comfy.run(workflow(args, *names, seed), OUTPUT[kind])
            results[kind].append(r)
            print(f"[bench] {kind:10s}: {r['s_per_step']:.3f} s/step, peak RSS {r['peak_rss_mib']:.0f} MiB"
                  + (f", CUDA peak {r['cuda_peak_allocated_mib']:.0f} MiB" if "cuda_peak_allocated_mib" in r else ""),
                  flush=True)

    summary = {}
    for kind, runs in results.items():
        summary[kind] = {"s_per_step": statistics.median(r["s_per_step"] for r in runs),
                         "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                         "peak_rise_mib": max(r["peak_rss_mib"] - r["rss_before_mib"] for r in runs)}
        if "cuda_peak_allocated_mib" in runs[0]:
            summary[kind]["cuda_peak_allocated_mib"] = max(r["cuda_peak_allocated_mib"] for r in runs)
    a, s = summary["animation"], summary["sparsectrl"]
    print(f"\n=== {args.frames} frames {args.size}x{args.size}, cfg {args.cfg}, {comfy.device}, "
          f"{torch.get_num_threads()} threads ===")
    print(f"animation           {a['s_per_step']:.3f} s/step  peak RSS {a['peak_rss_mib']:.0f} MiB (run +{a['peak_rise_mib']:.0f})")
    print(f"+ SparseCtrl (RGB)  {s['s_per_step']:.3f} s/step  peak RSS {s['peak_rss_mib']:.0f} MiB (run +{s['peak_rise_mib']:.0f})")
    print(f"ratio {s['s_per_step'] / a['s_per_step']:.3f}; SparseCtrl resident +{resident['sparsectrl'] - resident['animation']:.0f} MiB"
          + (f"; CUDA peak {a['cuda_peak_allocated_mib']:.0f} -> {s['cuda_peak_allocated_mib']:.0f} MiB"
             if "cuda_peak_allocated_mib" in a else ""))
    print(f"load average at end {os.getloadavg()[0]:.1f} on {cores} cores (other processes skew CPU timings)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary,
                                         "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
