#!/usr/bin/env python
"""Drift across context windows: colour histograms of the first and the last window's frames, with and without
Context Reference (ADE's ContextRef) and Context Naive Reuse (ADE's NaiveReuse).

One ComfyUI process (bench/harness.py: ComfyUI in-process, the pack loaded by ComfyUI's loader, the test models).
Workflow: checkpoint -> Apply Motion Model -> Context Windows (Motion) (16 / 4, uniform, pyramid: ADE's default
context options) -> [Context Reference] -> [Context Naive Reuse] -> KSampler (fixed seed) -> VAE Decode, for
`--frames` frames (64). Every variant has the same seed, prompt and settings; only the consistency nodes differ
(their defaults: ContextRef strength 1, style_fidelity 1, ref_weight 1, first window, steps 0-25 %;
NaiveReuse weighted_mean 0.95, steps 0-15 %).

Drift: per RGB channel a 32-bin histogram of all pixels of the first window's frames (0-15) and of the last
window's (the last 16), total-variation distance (half the L1 distance of the normalised histograms, 0 = same
colours, 1 = no colour in common), the mean over the channels. For scale, the same distance between the two halves
of the first window (frames 0-7 and 8-15), which one window samples together; and the mean absolute difference of
the per-channel mean colour between the first and last window.

The test models are RANDOM weights (tests/sd15_checkpoint.py, tests/motion_files.py): the pictures are not
images of anything, so the numbers show what the techniques do to the colour statistics across windows, not how
a real animation looks.

    /root/.cache/motionkit/venv/bin/python bench/bench_context_ref.py [--frames 64] [--size 64] [--steps 8]
        [--cfg 4] [--seed 7] [--threads auto] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(os.path.abspath(__file__)).parent
sys.path.insert(0, str(HERE))
import harness as bm  # noqa: E402

LENGTH, OVERLAP = 16, 4
VARIANTS = {"windows only": (False, False), "ContextRef": (True, False), "NaiveReuse": (False, True),
            "ContextRef + NaiveReuse": (True, True)}


def workflow(args, ckpt: str, motion: str, ref: bool, naive: bool) -> dict:
    g = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red-haired woman walking on a beach", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": args.size, "height": args.size,
                                                           "batch_size": args.frames}},
        "10": {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion}},
        "11": {"class_type": "MotionKitApplyMotionModel", "inputs": {
            "model": ["4", 0], "motion_model": ["10", 0], "motion_scale": 1.0, "start_percent": 0.0,
            "end_percent": 1.0, "noise_schedule": "autoselect"}},
        "12": {"class_type": "MotionKitContextWindows", "inputs": {
            "model": ["11", 0], "context_length": LENGTH, "context_overlap": OVERLAP, "schedule": "uniform",
            "context_stride": 1, "fuse_method": "pyramid", "closed_loop": False}},
    }
    model = ["12", 0]
    if ref:
        g["20"] = {"class_type": "MotionKitContextRef", "inputs": {
            "model": model, "strength": 1.0, "style_fidelity": 1.0, "ref_weight": 1.0, "mode": "first",
            "start_percent": 0.0, "end_percent": 0.25}}
        model = ["20", 0]
    if naive:
        g["21"] = {"class_type": "MotionKitContextNaiveReuse", "inputs": {
            "model": model, "weighted_mean": 0.95, "start_percent": 0.0, "end_percent": 0.15}}
        model = ["21", 0]
    g["3"] = {"class_type": "KSampler", "inputs": {
        "seed": args.seed, "steps": args.steps, "cfg": args.cfg, "sampler_name": "euler", "scheduler": "normal",
        "denoise": 1.0, "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0], "model": model}}
    g["8"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
    g["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    return g


def histograms(images, bins=32):
    """(channels, bins) normalised colour histograms of images (frames, H, W, 3) in 0..1."""
    import torch
    return torch.stack([torch.histc(images[..., c].float().clamp(0, 1), bins=bins, min=0.0, max=1.0)
                        for c in range(images.shape[-1])]).div_(images[..., 0].numel())


def tv_distance(a, b) -> float:
    return float(0.5 * (histograms(a) - histograms(b)).abs().sum(dim=1).mean())


def drift(images) -> dict:
    first, last = images[:LENGTH], images[-LENGTH:]
    half = LENGTH // 2
    return {"first_vs_last_window": tv_distance(first, last),
            "within_first_window": tv_distance(first[:half], first[half:]),
            "mean_colour_shift": float((first.mean(dim=(0, 1, 2)) - last.mean(dim=(0, 1, 2))).abs().mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, default=64, help="width = height in pixels")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--cfg", type=float, default=4.0, help="above 1, so the uncond pass (style_fidelity) runs too")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.frames < 2 * LENGTH:
        ap.error(f"--frames must be at least {2 * LENGTH} (a first and a last window that do not coincide)")

    sys.path.insert(0, str(bm.TESTS))
    import torch
    _, threads_note = bm.choose_threads(args.threads, torch)
    root = bm.find_comfyui()
    checkpoint = bm.default_checkpoint(root).resolve()
    motion_file = bm.default_motion_file().resolve()
    comfy = bm.Comfy(root, "cpu" if not torch.cuda.is_available() else "cuda", checkpoint, motion_file)
    for ref, naive in VARIANTS.values():
        comfy.validate(workflow(args, checkpoint.name, motion_file.name, ref, naive), ["9"])
    print(f"[bench] torch {torch.__version__}, device {comfy.device}, {torch.get_num_threads()} threads "
          f"({threads_note}); {args.frames} frames {args.size}x{args.size}, {args.steps} steps euler, cfg {args.cfg}, "
          f"seed {args.seed}; windows {LENGTH}/{OVERLAP} uniform pyramid; RANDOM test weights", flush=True)

    rows = {}
    for name, (ref, naive) in VARIANTS.items():
        t0 = time.perf_counter()
        r = comfy.run(workflow(args, checkpoint.name, motion_file.name, ref, naive), "9")
        images = comfy.executor.caches.outputs.get("8")[0][0].cpu()
        rows[name] = {**drift(images), "wall_s": time.perf_counter() - t0, "s_per_step": r["s_per_step"]}
        rows[name]["frames"] = images.shape[0]
        print(f"[bench] {name:24s}: first vs last window {rows[name]['first_vs_last_window']:.4f}, within the first "
              f"window {rows[name]['within_first_window']:.4f}, mean colour shift "
              f"{rows[name]['mean_colour_shift']:.4f} ({rows[name]['wall_s']:.0f} s)", flush=True)
        if name == "windows only":
            base = images
        else:
            rows[name]["max_abs_diff_vs_windows_only"] = float((images - base).abs().max())

    print(f"\n=== colour drift, {args.frames} frames, windows {LENGTH}/{OVERLAP}, seed {args.seed}, "
          f"{args.steps} steps, cfg {args.cfg} (RANDOM weights) ===")
    print("variant                  | TV first vs last window | TV within first window | mean colour shift")
    for name, r in rows.items():
        print(f"{name:24s} | {r['first_vs_last_window']:23.4f} | {r['within_first_window']:21.4f} "
              f"| {r['mean_colour_shift']:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
