#!/usr/bin/env python
"""Context windows: seconds per step and peak memory for 16-128 frames, beside plain SD on the same frames.

One ComfyUI process, the helpers of bench/harness.py (ComfyUI imported in-process, the pack loaded with
ComfyUI's own loader, API workflows through `execution.PromptExecutor`, per-step time from the progress-bar
callbacks, peak RSS = VmHWM reset before each run). For each frame count N:

* plain:    SD1.5 on a latent batch of N frames (one pass, no motion model);
* windowed: the same with Apply Motion Model -> Context Windows (Motion) (length 16, overlap 4, static
            schedule, pyramid fuse). N <= 16 fits one window: one pass with the motion model.

Reported per run: s/step, ms per frame the UNet evaluated per step (plain: N; windowed: the sum of the window
lengths, from the node's own schedule), peak RSS and its rise over the RSS before the run (the sampling
working set: latents, activations; the loaded models are in the RSS before). Expected: windowed working set
flat in N apart from the latents (one window's activations at a time), windowed time proportional to the
frames evaluated.

    /root/.cache/motionkit/venv/bin/python bench/bench_context.py [--frames 16 32 64 128] [--size 64]
        [--steps 2] [--cfg 1] [--threads auto] [--json PATH]
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
import harness as bm  # noqa: E402  (bench/harness.py: ComfyUI in this process, inputs, threads, memory)

LENGTH, OVERLAP, SCHEDULE, FUSE = 16, 4, "static", "pyramid"


def workflow(frames: int, args, ckpt: str, motion: str, seed: int) -> dict:
    sampler = {"seed": seed, "steps": args.steps, "cfg": args.cfg, "sampler_name": "euler", "scheduler": "normal",
               "denoise": 1.0, "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat walking in the snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": args.size, "height": args.size, "batch_size": frames}},
        "3": {"class_type": "KSampler", "inputs": {**sampler, "model": ["4", 0]}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "bench/plain"}},
        "10": {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion}},
        "11": {"class_type": "MotionKitApplyMotionModel", "inputs": {
            "model": ["4", 0], "motion_model": ["10", 0], "motion_scale": 1.0, "start_percent": 0.0, "end_percent": 1.0,
            "noise_schedule": "autoselect"}},
        "12": {"class_type": "MotionKitContextWindows", "inputs": {
            "model": ["11", 0], "context_length": LENGTH, "context_overlap": OVERLAP, "schedule": SCHEDULE,
            "context_stride": 1, "fuse_method": FUSE, "closed_loop": False}},
        "13": {"class_type": "KSampler", "inputs": {**sampler, "model": ["12", 0]}},
        "19": {"class_type": "SaveLatent", "inputs": {"samples": ["13", 0], "filename_prefix": "bench/windowed"}},
    }


OUTPUT = {"plain": "9", "windowed": "19"}


def frames_evaluated(comfy, frames: int) -> tuple[int, int]:
    """(windows, frames the UNet sees per step and cond) for the windowed run, from the node's own handler."""
    import torch
    if frames <= LENGTH:
        return 1, frames
    handler = comfy.pack_attr("sampling.context_handler", "make_handler")(LENGTH, OVERLAP, SCHEDULE, 1, FUSE, False)
    windows = handler.get_context_windows(None, torch.zeros(frames, 1), {})
    return len(windows), sum(w.context_length for w in windows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--size", type=int, default=64, help="width = height in pixels (64)")
    ap.add_argument("--steps", type=int, default=2, help="steps per run (2: one measured step interval)")
    ap.add_argument("--cfg", type=float, default=1.0, help="1 = one cond per window (halves the work; 7 doubles it)")
    ap.add_argument("--threads", default="auto",
                    help="torch threads: a number, or auto (the cores other processes leave free now; see bench_motion)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be at least 2 (per-step time is measured between step callbacks)")

    sys.path.insert(0, str(bm.TESTS))
    import torch
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    _, threads_note = bm.choose_threads(args.threads, torch)
    root = bm.find_comfyui()
    checkpoint = bm.default_checkpoint(root).resolve()
    motion_file = bm.default_motion_file().resolve()
    comfy = bm.Comfy(root, "cpu" if not torch.cuda.is_available() else "cuda", checkpoint, motion_file)
    comfy.validate(workflow(args.frames[0], args, checkpoint.name, motion_file.name, 0), list(OUTPUT.values()))
    print(f"[bench] torch {torch.__version__}, device {comfy.device}, {torch.get_num_threads()} threads ({threads_note}), "
          f"load average {load_start:.1f} on {cores} cores; {args.size}x{args.size}, {args.steps} steps, cfg {args.cfg}; "
          f"windows {LENGTH}/{OVERLAP} {SCHEDULE} {FUSE}", flush=True)

    seed = 100
    t0 = time.perf_counter()
    for kind in OUTPUT:  # warm-up: loads the checkpoint and the motion model outside the measured runs
        seed += 1
        comfy.run(workflow(args.frames[0], args, checkpoint.name, motion_file.name, seed), OUTPUT[kind])
    print(f"[bench] warm-up {time.perf_counter() - t0:.1f}s", flush=True)

    rows = []
    for frames in args.frames:
        windows, evaluated = frames_evaluated(comfy, frames)
        row = {"frames": frames, "windows": windows}
        for kind, per_step_frames in (("plain", frames), ("windowed", evaluated)):
            seed += 1
            r = comfy.run(workflow(frames, args, checkpoint.name, motion_file.name, seed), OUTPUT[kind])
            row[kind] = {"s_per_step": r["s_per_step"], "frames_evaluated": per_step_frames,
                         "ms_per_frame": 1000 * r["s_per_step"] / per_step_frames,
                         "peak_rss_mib": r["peak_rss_mib"], "rise_mib": r["peak_rss_mib"] - r["rss_before_mib"]}
            print(f"[bench] {frames:4d} frames {kind:8s}: {r['s_per_step']:.3f} s/step "
                  f"({row[kind]['ms_per_frame']:.1f} ms per evaluated frame), peak RSS {r['peak_rss_mib']:.0f} MiB "
                  f"(+{row[kind]['rise_mib']:.0f} over the {r['rss_before_mib']:.0f} MiB before)", flush=True)
        rows.append(row)

    latent_mib = lambda n: n * 4 * (args.size // 8) ** 2 * 4 / 2**20  # noqa: E731  (fp32 latent batch)
    print(f"\n=== context windows {LENGTH}/{OVERLAP} ({SCHEDULE}, {FUSE}) vs plain SD, {args.size}x{args.size}, "
          f"cfg {args.cfg}, {comfy.device}, {torch.get_num_threads()} threads ===")
    print("frames windows | plain s/step  ms/frame  RSS rise | windowed s/step  frames/step  ms/frame  RSS rise | latent")
    for r in rows:
        p, w = r["plain"], r["windowed"]
        print(f"{r['frames']:6d} {r['windows']:7d} | {p['s_per_step']:12.3f} {p['ms_per_frame']:9.1f} {p['rise_mib']:8.0f} "
              f"| {w['s_per_step']:15.3f} {w['frames_evaluated']:12d} {w['ms_per_frame']:9.1f} {w['rise_mib']:8.0f} "
              f"| {latent_mib(r['frames']):.2f} MiB")
    print(f"load average at end {os.getloadavg()[0]:.1f} on {cores} cores (other processes skew CPU timings)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
