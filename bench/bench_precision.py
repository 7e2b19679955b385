#!/usr/bin/env python
"""Apply Motion Model's `precision`: how far bf16 moves the final latents, as a share of what the motion model adds,
and how long auto and bf16 runs take, in ONE ComfyUI process (the set-up of bench_motion.py).

Each round samples the same seed three ways, with one checkpoint, prompt, latent size, sampler and steps:
plain SD (no motion model), Apply Motion Model with precision `auto` (the UNet's fp32 here) and with `bf16`.
The figures, for the final latents L:

    motion effect   E = L_auto - L_plain                     (what the motion model adds)
    bf16 deviation  D = L_bf16 - L_auto
    rms share       ||D||_2 / ||E||_2        max share   max|D| / max|E|

Timing: seconds per step of every auto and bf16 run (from the sampler's progress callback; loading, patching and
text encoding left out), their median and spread (max / median), the CPU cores other processes used during each
run (/proc/stat minus this process), and the motion modules alone: each UNet level's modules timed in fp32 and in
bf16 at the shapes sampling gives them, including the first bf16 call (oneDNN creates its kernels then).

    /root/.cache/motionkit/venv/bin/python bench/bench_precision.py [--size 64] [--frames 16] [--steps 4]
        [--rounds 3] [--threads auto|N] [--json PATH]
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
from bench_motion import MotionTimer  # noqa: E402  (times every motion-module call)


def graph(comfy, args, ckpt_name, motion_name, seed, steps):
    apply_cls = comfy.nodes.NODE_CLASS_MAPPINGS["MotionKitApplyMotionModel"]
    sampler = {"seed": seed, "steps": steps, "cfg": args.cfg, "sampler_name": args.sampler, "scheduler": args.scheduler,
               "denoise": 1.0, "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}
    g = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat walking in the snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": args.size, "height": args.size,
                                                           "batch_size": args.frames}},
        "10": {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion_name}},
        "3": {"class_type": "KSampler", "inputs": {**sampler, "model": ["4", 0]}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "precision/plain"}},
    }
    for precision, (apply_id, sampler_id, save_id) in (("auto", ("11", "13", "19")), ("bf16", ("21", "23", "29"))):
        g[apply_id] = {"class_type": "MotionKitApplyMotionModel", "inputs": {
            **bm.widget_defaults(apply_cls), "model": ["4", 0], "motion_model": ["10", 0], "precision": precision}}
        g[sampler_id] = {"class_type": "KSampler", "inputs": {**sampler, "model": [apply_id, 0]}}
        g[save_id] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler_id, 0],
                                                            "filename_prefix": f"precision/{precision}"}}
    return g


OUTPUT = {"plain": "9", "auto": "19", "bf16": "29"}


def saved_latent(comfy, node_id):
    import folder_paths
    from safetensors.torch import load_file
    (info,) = comfy.executor.history_result["outputs"][node_id]["latents"]
    path = Path(folder_paths.get_output_directory()) / info["subfolder"] / info["filename"]
    return load_file(str(path))["latent_tensor"].double()


def module_timing(comfy, capture, repeats: int):
    """Each UNet level's motion modules (as captured in a real auto run) in fp32 and bf16: first bf16 call, then
    `repeats` interleaved timings of each."""
    import torch
    from copy import deepcopy
    out = []
    seen = set()
    for module, shape, frames, norm, dtype in capture:
        key = shape[1:]
        if key in seen:
            continue
        seen.add(key)
        low = deepcopy(module).to(torch.bfloat16)
        x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            t0 = time.perf_counter()
            low(x, frames, norm, dtype=torch.bfloat16)
            first = time.perf_counter() - t0
            module(x, frames, norm)
            times = {"fp32": [], "bf16": []}
            for _ in range(repeats):
                for name, m, dt in (("fp32", module, None), ("bf16", low, torch.bfloat16)):
                    t0 = time.perf_counter()
                    m(x, frames, norm, dtype=dt)
                    times[name].append(time.perf_counter() - t0)
        out.append({"level": f"{shape[1]}@{shape[2]}x{shape[3]}", "first_bf16_call_s": first,
                    **{f"{k}_s": v for k, v in times.items()}})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="MotionKit: bf16 vs auto precision, accuracy and speed, one ComfyUI process.")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=64, help="width = height in pixels (64; 256 takes hours on 2 CPU cores)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="seeds: each samples plain, auto and bf16 (3)")
    ap.add_argument("--module-repeats", type=int, default=5, help="timings per level and dtype of the module-only part")
    ap.add_argument("--sampler", default="euler")
    ap.add_argument("--scheduler", default="normal")
    ap.add_argument("--cfg", type=float, default=7.0)
    ap.add_argument("--threads", default="auto", help="a number, or auto: the cores other processes leave free now")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(bm.TESTS))
    import torch
    threads, threads_note = bm.choose_threads(args.threads, torch)
    root = bm.find_comfyui()
    checkpoint, motion_file = bm.default_checkpoint(root).resolve(), bm.default_motion_file().resolve()
    comfy = bm.Comfy(root, "cpu", checkpoint, motion_file)
    bf16_hw = {n: bool(getattr(torch.cpu, f"_is_{n}_supported", lambda: False)()) for n in ("avx512_bf16", "amx_tile")}
    print(f"[precision] torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16 instructions {bf16_hw}; {threads} threads ({threads_note})", flush=True)
    print(f"[precision] {args.frames} frames {args.size}x{args.size}, {args.steps} steps {args.sampler}, cfg {args.cfg}; "
          f"{args.rounds} rounds", flush=True)

    def run(kind, seed, steps=args.steps):
        r = comfy.run(graph(comfy, args, checkpoint.name, motion_file.name, seed, steps), OUTPUT[kind])
        print(f"[precision] seed {seed} {kind:5s}: {bm.fmt(r['s_per_step'])} s/step, run {r['wall_s']:.1f}s, other "
              f"processes {bm.fmt(r['other_processes_cores'], '.1f')} cores", flush=True)
        return r

    capture = []
    timer = MotionTimer(comfy)
    timer.__enter__()
    for kind in ("plain", "auto", "bf16"):  # warm-up: loading, first calls
        timer.enabled = kind == "auto"
        run(kind, 1, steps=2)
    timer.enabled = False
    capture = list(timer.capture)
    timer.__exit__(None, None, None)

    rounds = []
    for i in range(args.rounds):
        seed = 100 + i
        order = ("auto", "bf16") if i % 2 == 0 else ("bf16", "auto")
        rs = {kind: run(kind, seed) for kind in ("plain", *order)}
        lat = {kind: saved_latent(comfy, OUTPUT[kind]) for kind in rs}
        effect, dev = lat["auto"] - lat["plain"], lat["bf16"] - lat["auto"]
        share = {"rms": float(dev.norm() / effect.norm()), "max": float(dev.abs().max() / effect.abs().max())}
        print(f"[precision] seed {seed}: bf16 moves the latents by {100 * share['rms']:.2f}% (rms) / "
              f"{100 * share['max']:.2f}% (max) of the motion effect", flush=True)
        rounds.append({"seed": seed, "share": share,
                       **{k: {"s_per_step": r["s_per_step"], "other_processes_cores": r["other_processes_cores"],
                              "step_intervals_s": r["step_intervals_s"]} for k, r in rs.items()}})

    modules = module_timing(comfy, capture, args.module_repeats)

    print(f"\n=== precision bench: {args.frames} frames @ {args.size}x{args.size}, {args.steps} steps, cfg {args.cfg}, "
          f"CPU {torch.backends.cpu.get_cpu_capability()}, bf16 instructions {bf16_hw}, {threads} threads ({threads_note}) ===")
    rms = [r["share"]["rms"] for r in rounds]
    mx = [r["share"]["max"] for r in rounds]
    print(f"bf16 deviation / motion effect: rms {100 * statistics.median(rms):.2f}% (runs "
          + ", ".join(f"{100 * x:.2f}" for x in rms) + f"), max {100 * statistics.median(mx):.2f}% (runs "
          + ", ".join(f"{100 * x:.2f}" for x in mx) + ")")
    for kind in ("plain", "auto", "bf16"):
        ts = [r[kind]["s_per_step"] for r in rounds]
        med = statistics.median(ts)
        print(f"{kind:5s}: median {med:.3f} s/step, spread max/median {max(ts) / med:.2f} (runs "
              + ", ".join(f"{t:.3f}" for t in ts) + "; other processes' cores: "
              + ", ".join(bm.fmt(r[kind]["other_processes_cores"], ".1f") for r in rounds) + ")")
    print("motion modules alone, s per call (median of repeats; first bf16 call):")
    for m in modules:
        f32, b16 = statistics.median(m["fp32_s"]), statistics.median(m["bf16_s"])
        print(f"  {m['level']:>12s}: fp32 {f32:.4f}, bf16 {b16:.4f} (bf16/fp32 {b16 / f32:.2f}; spread bf16 "
              f"{max(m['bf16_s']) / b16:.2f}), first bf16 call {m['first_bf16_call_s']:.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "threads": threads,
                                         "threads_note": threads_note, "bf16_instructions": bf16_hw,
                                         "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                         "rounds": rounds, "modules": modules}, indent=1, default=str))
        print(f"[precision] wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
