#!/usr/bin/env python
"""Seconds per sampling step: a 16-frame animation vs a plain SD batch of 16 images, in ONE ComfyUI process.

ComfyUI is imported in this process (its root on sys.path, CPU mode when there is no CUDA), the pack is
loaded with ComfyUI's own `nodes.load_custom_node` from a temporary custom_nodes/MotionKit symlink, and
API-format workflows run through ComfyUI's own `execution.PromptExecutor`. Both workflows share one
CheckpointLoaderSimple / CLIPTextEncode / EmptyLatentImage; the animation adds MotionKitLoadMotionModel ->
MotionKitApplyMotionModel in front of its KSampler. Same checkpoint, resolution, frames, steps, sampler, cfg.

Per-step time comes from the sampler's progress callback (comfy.utils.ProgressBar hook): the intervals
between consecutive step callbacks, so model loading, patching and text encoding are excluded. One
warm-up run of each, then `--repeats` runs of each in alternating order (plain/anim, anim/plain, ...);
the median is reported. Peak memory per run: VmHWM of this process (reset before each run via
/proc/self/clear_refs) and torch.cuda.max_memory_allocated on a GPU.

After the headline measurement (unless --no-motion-timing) extra animation runs time every motion
module call (MotionLayer.run wrapped from outside; motion/ is not edited), broken down by UNet level.
--profile adds an op-level torch.profiler breakdown of the motion modules and micro-benchmarks of
alternatives (see bench/README.md).

    /root/.cache/motionkit/venv/bin/python bench/bench_motion.py [--frames 16] [--size 64] [--steps 5]
        [--repeats 3] [--motion-file PATH] [--checkpoint PATH] [--device auto|cpu|cuda] [--json PATH] [--profile]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

from harness import (TESTS, BENCH_MOTION_FILE, Comfy, choose_threads, default_checkpoint,  # noqa: E402  (bench/harness.py, shared)
                     default_motion_file, find_comfyui, fmt, median, peak_rss_mib, rss_mib, widget_defaults)


def workflow(comfy: Comfy, args, ckpt_name: str, motion_name: str, seed: int, steps: int) -> dict:
    apply_cls = comfy.nodes.NODE_CLASS_MAPPINGS["MotionKitApplyMotionModel"]
    sampler = {"seed": seed, "steps": steps, "cfg": args.cfg, "sampler_name": args.sampler,
               "scheduler": args.scheduler, "denoise": 1.0,
               "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat walking in the snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": args.size, "height": args.size, "batch_size": args.frames}},
        # plain: 16 independent images
        "3": {"class_type": "KSampler", "inputs": {**sampler, "model": ["4", 0]}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "bench/plain"}},
        # animation: the same, through the motion model
        "10": {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion_name}},
        "11": {"class_type": "MotionKitApplyMotionModel", "inputs": {
            **widget_defaults(apply_cls), "model": ["4", 0], "motion_model": ["10", 0],
            **({"precision": args.precision} if args.precision else {})}},
        "13": {"class_type": "KSampler", "inputs": {**sampler, "model": ["11", 0]}},
        "19": {"class_type": "SaveLatent", "inputs": {"samples": ["13", 0], "filename_prefix": "bench/anim"}},
    }


OUTPUT = {"plain": "9", "anim": "19"}


# ---------------------------------------------------------------------------------------------
# Motion-module timing (MotionLayer.run wrapped from outside)

class MotionTimer:
    """Accumulates the time of every MotionLayer.run call by (channels, H, W) = UNet level."""

    def __init__(self, comfy: Comfy):
        self.comfy = comfy
        self.layer_cls = comfy.pack_attr("motion.injection", "MotionLayer")
        self.orig = self.layer_cls.run
        self.by_level: dict = defaultdict(lambda: [0, 0.0])  # key -> [calls, seconds]
        self.unet_calls = 0
        self.enabled = False
        self.capture: list = []  # (module, x shape, frames, norm mode, dtype) of the first UNet call
        self.capturing = True

    def __enter__(self):
        timer, sync, perf = self, self.comfy.sync, time.perf_counter

        def run(layer, x, transformer_options):
            if not timer.enabled:
                return timer.orig(layer, x, transformer_options)
            sync()
            t0 = perf()
            out = timer.orig(layer, x, transformer_options)
            sync()
            dt = perf() - t0
            entry = timer.by_level[(x.shape[1], x.shape[-2], x.shape[-1])]
            entry[0] += 1
            entry[1] += dt
            if timer.capturing:  # the motion modules of the first UNet call, in order
                if any(m is layer.module for m, *_ in timer.capture):
                    timer.capturing = False
                else:
                    frames_in_call = timer.comfy.pack_attr("common.unet_call", "frames_in_call")
                    timer.capture.append((layer.module, tuple(x.shape), frames_in_call(x.shape[0], transformer_options),
                                          layer.app.info.module_norm, x.dtype))
            return out

        self.layer_cls.run = run
        return self

    def __exit__(self, *exc):
        self.layer_cls.run = self.orig

    def reset(self):
        self.by_level.clear()


# ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="MotionKit: seconds per step, 16-frame animation vs plain SD batch, one ComfyUI process.")
    ap.add_argument("--frames", type=int, default=16, help="frames of the animation = batch size of the plain run (16)")
    ap.add_argument("--size", type=int, default=64, help="width = height in pixels (64)")
    ap.add_argument("--steps", type=int, default=4, help="sampling steps per run (4; per-step time uses the steps-1 intervals "
                                                         "between step callbacks)")
    ap.add_argument("--repeats", type=int, default=3, help="measured runs of each workflow (3); the median is reported")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured 2-step runs of each workflow first (1)")
    ap.add_argument("--sampler", default="euler")
    ap.add_argument("--scheduler", default="normal")
    ap.add_argument("--cfg", type=float, default=7.0)
    ap.add_argument("--motion-file", type=Path, default=None,
                    help=f"motion model file (default: a random v2 fp16 file built once as <cache>/{BENCH_MOTION_FILE})")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="SD1.5 checkpoint (default: the cached random SD1.5, tests/sd15_checkpoint.py)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--precision", default=None,
                    help="Apply Motion Model's precision input (auto, fp32, bf16, fp16); default: left out (the node's default)")
    ap.add_argument("--threads", default="auto",
                    help="torch.set_num_threads: a number, or auto = the cores other processes leave free right now "
                         "(sampled for 1 s; at least 1). The report says which and why.")
    ap.add_argument("--no-motion-timing", action="store_true", help="skip the runs that time the motion modules")
    ap.add_argument("--profile", action="store_true",
                    help="also: op-level torch.profiler breakdown of the motion modules and micro-benchmarks of alternatives")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be at least 2 (per-step time is measured between step callbacks)")

    sys.path.insert(0, str(TESTS))
    import torch
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    _, threads_note = choose_threads(args.threads, torch)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")

    root = find_comfyui()
    checkpoint = (args.checkpoint or default_checkpoint(root)).resolve()
    motion_file = (args.motion_file or default_motion_file()).resolve()
    t_setup = time.perf_counter()
    comfy = Comfy(root, device, checkpoint, motion_file)

    def comfy_lifetime_peak():  # VmHWM is reset before each run: the max of all the peaks seen
        return max(comfy.lifetime_peak, peak_rss_mib())

    def graph(seed, steps=args.steps):
        return workflow(comfy, args, checkpoint.name, motion_file.name, seed, steps)

    comfy.validate(graph(0), list(OUTPUT.values()))
    dev_name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    print(f"[bench] ComfyUI {root} | torch {torch.__version__} | device {device} ({dev_name}), "
          f"{torch.get_num_threads()} threads ({threads_note}) | unet dtype {comfy.mm.unet_dtype()}", flush=True)
    print(f"[bench] checkpoint {checkpoint}\n[bench] motion     {motion_file}", flush=True)
    print(f"[bench] {args.frames} frames, {args.size}x{args.size}, {args.steps} steps, {args.sampler}/{args.scheduler}, "
          f"cfg {args.cfg}; warmup {args.warmup}, repeats {args.repeats}; motion precision "
          f"{args.precision or 'node default'}", flush=True)

    results: dict = {"plain": [], "anim": []}
    seed = 1000

    # Motion-module timing: MotionLayer.run wrapped from outside. On CPU the wrapper (two perf_counter calls per
    # module call, ~21 per step) runs inside the measured animation runs; on CUDA it needs a synchronize around
    # each call, so it runs in one extra animation run instead and the headline runs carry no wrapper.
    timer = MotionTimer(comfy) if (not args.no_motion_timing or args.profile) else None
    time_in_measured = timer is not None and device == "cpu"

    def one(kind, measured=True, steps=args.steps, quiet=False, timed=False):
        nonlocal seed
        seed += 1  # a new seed each run, so ComfyUI's cache never skips the KSampler
        if timer is not None:
            timer.reset()
            timer.enabled = timed and kind == "anim"
        r = comfy.run(graph(seed, steps), OUTPUT[kind])
        if timer is not None and timer.enabled:
            timer.enabled = False
            r["motion_by_level"] = {f"{k[0]}@{k[1]}x{k[2]}": {"channels": k[0], "h": k[1], "w": k[2], "calls_per_step": c / steps,
                                                              "s_per_step": sec / steps}
                                    for k, (c, sec) in sorted(timer.by_level.items(), key=lambda kv: (-kv[0][1], kv[0][0]))}
            r["motion_s_per_step"] = sum(lv["s_per_step"] for lv in r["motion_by_level"].values())
        if r["step_callbacks"] != steps:
            raise SystemExit(f"expected {steps} step callbacks, got {r['step_callbacks']}")
        if quiet:
            return r
        tag = "" if measured else (" (motion-timed)" if timed else " (warm-up)")
        print(f"[bench] {kind:5s}{tag}: {fmt(r['s_per_step'])} s/step, run {r['wall_s']:.1f}s, "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB (RSS after {rss_mib():.0f} MiB)"
              + (f", CUDA peak {r['cuda_peak_allocated_mib']:.0f} MiB" if device == "cuda" else "")
              + (f", motion modules {r['motion_s_per_step']:.3f} s/step" if "motion_s_per_step" in r else "")
              + f"; other processes used {fmt(r['other_processes_cores'], '.1f')} cores meanwhile", flush=True)
        if measured:
            results[kind].append(r)
        return r

    if timer is not None:
        timer.__enter__()
    rss_start = rss_mib()
    memory = {"rss_after_setup_mib": rss_start}
    for w in range(args.warmup):
        r = one("plain", False, steps=2)
        if w == 0:
            memory["rss_after_first_plain_mib"] = rss_mib()
            memory["first_plain_run_peak_rss_mib"] = r["peak_rss_mib"]
        r = one("anim", False, steps=2)
        if w == 0:
            memory["rss_after_first_anim_mib"] = rss_mib()
            memory["first_anim_run_peak_rss_mib"] = r["peak_rss_mib"]
    print(f"[bench] set-up and warm-up {time.perf_counter() - t_setup:.1f}s", flush=True)
    for i in range(args.repeats):
        for kind in (("plain", "anim") if i % 2 == 0 else ("anim", "plain")):
            one(kind, timed=time_in_measured)
    motion_runs = [r for r in results["anim"] if "motion_by_level" in r]
    if timer is not None and not motion_runs:
        motion_runs = [one("anim", False, timed=True)]

    summary = {}
    for kind in ("plain", "anim"):
        rs = results[kind]
        summary[kind] = {
            "s_per_step_median": median([r["s_per_step"] for r in rs]),
            "s_per_step_runs": [r["s_per_step"] for r in rs],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
            "rss_before_mib": median([r["rss_before_mib"] for r in rs]),
            "peak_rss_increase_mib": max(r["peak_rss_mib"] - r["rss_before_mib"] for r in rs),
        }
        if device == "cuda":
            summary[kind]["cuda_peak_allocated_mib"] = max(r["cuda_peak_allocated_mib"] for r in rs)
    ratio = summary["anim"]["s_per_step_median"] / summary["plain"]["s_per_step_median"]

    motion = None
    if motion_runs:
        keys = list(motion_runs[0]["motion_by_level"])
        motion_step = median([r["motion_s_per_step"] for r in motion_runs])
        anim_step_timed = median([r["s_per_step"] for r in motion_runs])
        shares = [r["motion_s_per_step"] / r["s_per_step"] for r in motion_runs]
        by_level = [{**motion_runs[0]["motion_by_level"][k],
                     "s_per_step": median([r["motion_by_level"][k]["s_per_step"] for r in motion_runs]),
                     "share_of_anim_step": median([r["motion_by_level"][k]["s_per_step"] / r["s_per_step"] for r in motion_runs])}
                    for k in keys]
        motion = {"motion_s_per_step": motion_step, "anim_s_per_step_while_timed": anim_step_timed,
                  "share_of_anim_step": median(shares), "by_level": by_level,
                  "module_calls_per_step": sum(lv["calls_per_step"] for lv in by_level),
                  "timed_in_measured_runs": time_in_measured}
    if timer is not None:
        timer.__exit__(None, None, None)

    # ----- report
    p, a = summary["plain"], summary["anim"]
    print()
    print(f"=== MotionKit bench: {args.frames} frames @ {args.size}x{args.size}, {args.steps} steps {args.sampler}, "
          f"cfg {args.cfg}, device {device} ({dev_name}) ===")
    print(f"plain SD batch of {args.frames}: {fmt(p['s_per_step_median'])} s/step  (runs: "
          + ", ".join(fmt(x) for x in p["s_per_step_runs"]) + ")")
    print(f"animation, {args.frames} frames: {fmt(a['s_per_step_median'])} s/step  (runs: "
          + ", ".join(fmt(x) for x in a["s_per_step_runs"]) + ")")
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"threads {torch.get_num_threads()} ({threads_note}); load average at start {fmt(load_start, '.1f')}, "
          f"at end {fmt(load_end, '.1f')} on {cores} cores (other processes skew CPU timings)")
    print(f"ratio anim/plain: {ratio:.3f}  (target <= 1.25: {'met' if ratio <= 1.25 else 'NOT met'})")
    print(f"peak RSS during runs: plain {p['peak_rss_mib']:.0f} MiB, anim {a['peak_rss_mib']:.0f} MiB "
          f"(+{p['peak_rss_increase_mib']:.0f} / +{a['peak_rss_increase_mib']:.0f} MiB over the RSS before the run); "
          f"process lifetime peak {comfy_lifetime_peak():.0f} MiB")
    if "rss_after_first_anim_mib" in memory:
        print(f"resident models: RSS {memory['rss_after_setup_mib']:.0f} MiB after set-up, "
              f"{memory['rss_after_first_plain_mib']:.0f} MiB after the first plain run (checkpoint loaded), "
              f"{memory['rss_after_first_anim_mib']:.0f} MiB after the first animation run "
              f"(+{memory['rss_after_first_anim_mib'] - memory['rss_after_first_plain_mib']:.0f} MiB for the motion model); "
              f"peak RSS of those first runs (loading included): plain {memory['first_plain_run_peak_rss_mib']:.0f} MiB, "
              f"anim {memory['first_anim_run_peak_rss_mib']:.0f} MiB")
    if device == "cuda":
        print(f"CUDA peak allocated: plain {p['cuda_peak_allocated_mib']:.0f} MiB, anim {a['cuda_peak_allocated_mib']:.0f} MiB")
    if motion:
        extra = a["s_per_step_median"] - p["s_per_step_median"]
        print(f"motion modules: {motion['motion_s_per_step']:.3f} s/step = {100 * motion['share_of_anim_step']:.1f}% of an "
              f"animation step ({'timed inside the measured runs' if motion['timed_in_measured_runs'] else 'one extra timed run'}, "
              f"{motion['anim_s_per_step_while_timed']:.3f} s/step there; "
              f"{motion['module_calls_per_step']:.0f} module calls/step); extra anim-plain {extra:.3f} s/step, "
              f"of which motion modules {100 * motion['motion_s_per_step'] / extra if extra > 0 else float('nan'):.0f}%")
        print("  by UNet level (channels @ latent HxW):  s/step   share of anim step   calls/step")
        for lv in motion["by_level"]:
            print(f"    {lv['channels']:5d} @ {lv['h']}x{lv['w']:<3d}  {lv['s_per_step']:8.3f}   "
                  f"{100 * lv['share_of_anim_step']:6.1f}%   {lv['calls_per_step']:6.0f}")
        by_ch = defaultdict(float)
        for lv in motion["by_level"]:
            by_ch[lv["channels"]] += lv["s_per_step"]
        print("  by width: " + ", ".join(f"{c}: {s:.3f} s/step ({100 * s / motion['motion_s_per_step']:.0f}% of motion)"
                                        for c, s in sorted(by_ch.items())))

    prof = None
    if args.profile:
        import bench_profile  # bench/bench_profile.py
        prof = bench_profile.profile(comfy, timer.capture, device, args,
                                     run_kind=lambda kind, steps: one(kind, False, steps=steps, quiet=True),
                                     plain_s_per_step=p["s_per_step_median"], anim_s_per_step=a["s_per_step_median"])

    if args.json:
        data = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "device": device, "device_name": dev_name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                "threads_note": threads_note, "cores": cores, "load_average_start": load_start,
                "load_average_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                "comfyui": str(root), "checkpoint": str(checkpoint), "motion_file": str(motion_file),
                "plain": summary["plain"], "anim": summary["anim"], "ratio": ratio,
                "process_peak_rss_mib": comfy_lifetime_peak(), "memory": memory, "runs": results, "motion_modules": motion,
                "profile": prof}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, default=str))
        print(f"[bench] wrote {args.json}")
    return 0




if __name__ == "__main__":
    sys.path.insert(0, str(Path(os.path.abspath(__file__)).parent))
    sys.exit(main())
