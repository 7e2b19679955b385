#!/usr/bin/env python
"""Train MotionLoRA: seconds per training step and peak RSS, in one ComfyUI process (bench/harness.py).

Workflow: CheckpointLoaderSimple + Load Motion Model (random v2, fp16 file) → EmptyImage (a gradient-free
still is enough for timing) → Make Camera-Move Clips (zoom_in) → VAE Encode → Train MotionLoRA (filename empty:
nothing saved). Per-step time = mean interval between the training node's progress reports (model loading and
the first step's warm-up are excluded by dropping the first interval). Memory: the process's peak RSS during the
training run (VmHWM, reset before it) minus its RSS before the run = what training adds on top of the loaded
models (motion-model training copy + activations + LoRA + optimizer).

The 24 GB question (16 frames at 256×256 on a GPU) is answered by measuring what training adds at two latent sizes
with and without gradient checkpointing and extrapolating the activation part linearly in frames × latent pixels
(attention over frames is linear in H·W; spatial self-attention on a GPU uses memory-efficient SDPA, linear in
tokens) — see bench/README.md for the numbers and the arithmetic.

    python bench/bench_training.py [--sizes 64,96] [--frames 8] [--steps 3] [--json PATH]

The 24 GB claim measured (one step at the target size, SD1.5 + v2, each config in a fresh process):

    python bench/bench_training.py --sizes 256 --frames 16 --steps 2 --dtypes fp32 --checkpointing on --empty-latents

`--empty-latents` trains on an Empty Latent Image batch (one clip of `frames` frames) instead of encoded camera-move
clips, so the measured run is the training node alone (no VAE, no clip maker; the caption is cached from the
warm-up). The process re-executes itself with MALLOC_MMAP_THRESHOLD_ fixed (glibc), so large freed blocks go back
to the system and the warm-up's freed memory does not hide in "RSS before" (what spoilt "added" for runs after the
first in one process before).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent / "tests")]

import harness as bm  # noqa: E402  (bench/harness.py: ComfyUI in this process, inputs, threads, memory)


def workflow(ckpt: str, motion: str, size: int, frames: int, steps: int, checkpointing: bool, dtype: str, seed: int,
             empty_latents: bool = False):
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "zoom in", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyImage", "inputs": {"width": 96, "height": 96, "batch_size": 1, "color": 8421504}},
        "5": {"class_type": "MotionKitMakeCameraMoveClips", "inputs": {
            "images": ["4", 0], "move": "zoom_in", "frames": frames, "amount": 0.4, "width": size, "height": size,
            "variations": 2, "seed": 0}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "MotionKitTrainMotionLoRA", "inputs": {
            "model": ["1", 0], "motion_model": ["2", 0], "clips": ["6", 0], "captions": ["3", 0],
            "frames_per_clip": ["5", 1], "filename": "", "rank": 64, "learning_rate": 1e-4, "steps": steps,
            "clips_per_step": 1, "seed": seed, "training_dtype": dtype, "gradient_checkpointing": checkpointing,
            "save_every": 0, "overwrite": False}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["7", 1]}},
    }
    if empty_latents:  # one clip of `frames` zero latents: the run is the training node only
        for key in ("4", "5", "6"):
            del g[key]
        g["9"] = {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": frames}}
        g["7"]["inputs"].update(clips=["9", 0], frames_per_clip=frames)
    return g


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--sizes", default="64,96")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--dtypes", default="fp32")
    p.add_argument("--checkpointing", default="on,off", help="on, off or on,off")
    p.add_argument("--empty-latents", action="store_true", help="train on Empty Latent Image clips (no VAE in the run)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier on the shared machine)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # see the module docstring
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    root = bm.find_comfyui()
    comfy = bm.Comfy(root, device, bm.default_checkpoint(root), bm.default_motion_file())
    if device == "cpu":
        torch.set_num_threads(args.threads)  # shared 2-core machine: one thread is steadier (as bench_motion)
    ckpt = bm.default_checkpoint(root).name
    motion = bm.default_motion_file().name
    rows, seed = [], 0
    warm = workflow(ckpt, motion, 64, 2, 2, True, "fp32", 10 ** 6, args.empty_latents)  # loads the models
    comfy.validate(warm, ["8"])
    comfy.run(warm, "8")
    print(json.dumps({"rss_after_warmup_mib": bm.rss_mib(), "peak_rss_so_far_mib": bm.peak_rss_mib()}), flush=True)
    for dtype in args.dtypes.split(","):
        for size in [int(s) for s in args.sizes.split(",")]:
            for checkpointing in [{"on": True, "off": False}[c] for c in args.checkpointing.split(",")]:
                seed += 1
                g = workflow(ckpt, motion, size, args.frames, args.steps, checkpointing, dtype, seed, args.empty_latents)
                comfy.validate(g, ["8"])
                r = comfy.run(g, "8")
                row = {"size": size, "latent": size // 8, "frames": args.frames, "dtype": dtype,
                       "checkpointing": checkpointing,
                       # steps 2…n (the first one's warm-up excluded); one step: nan (wall_s is the whole run)
                       "s_per_step": statistics.mean(r["step_intervals_s"][1:] or r["step_intervals_s"] or [float("nan")]),
                       "peak_rss_mib": r["peak_rss_mib"], "rss_before_mib": r["rss_before_mib"], "wall_s": r["wall_s"],
                       "other_processes_cores": r["other_processes_cores"], "threads": torch.get_num_threads(),
                       "added_mib": r["peak_rss_mib"] - r["rss_before_mib"]}
                if device == "cuda":
                    row["cuda_peak_allocated_mib"] = r["cuda_peak_allocated_mib"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'size':>5} {'frames':>6} {'dtype':>5} {'ckpt':>5} {'s/step':>8} {'peak RSS MiB':>13} {'added MiB':>10}")
    for r in rows:
        print(f"{r['size']:>5} {r['frames']:>6} {r['dtype']:>5} {str(r['checkpointing']):>5} {r['s_per_step']:>8.2f} "
              f"{r['peak_rss_mib']:>13.0f} {r['added_mib']:>10.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
