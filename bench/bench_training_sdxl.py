#!/usr/bin/env python
"""Train MotionLoRA on a full-size SDXL UNet with an SDXL motion model: one training step, in-process.

The test suite trains on ComfyUI's SDXL model class with one transformer block per attention (0.64 B parameters;
tests/test_training_adapters.py); this runs the same code path (training.comfy_train.run, what the node calls) on
the real SDXL UNet configuration (transformer depth 2/10, 2.57 B parameters), stored in bf16 with fp32 compute
(as ComfyUI runs a bf16/fp16 SDXL checkpoint on a CPU) so that it fits a 24 GB machine, random weights; and the
SDXL beta motion model (random, real format, from the test-model cache). Reports seconds per step and peak RSS.

    python bench/bench_training_sdxl.py [--frames 4] [--size 64] [--steps 2] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import pack_package  # noqa: E402,F401  (tests/pack_package.py: the pack as the package `motionkit`)


def vm(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2 ** 20  # GiB
    return float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--size", type=int, default=64, help="image size (latent = size / 8)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # freed blocks go back to the system: RSS tracks live memory
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
        os.execv(sys.executable, [sys.executable, *sys.argv])

    import comfy_env
    comfy_env.comfyui_on_syspath()
    import torch
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import test_injection
    import test_training_adapters as t
    from motionkit.training import comfy_train
    from motionkit.training.loop import TrainSettings

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = t.sdxl_model({**test_injection.SDXL_UNET, "image_size": 32, "use_temporal_attention": False},
                         dtype=torch.bfloat16)
    motion = t.loaded_motion_model("mm_sdxl_random.safetensors")
    params = sum(x.numel() for x in model.model.diffusion_model.parameters())
    built = time.perf_counter() - t0
    rss_before = vm("VmRSS")
    latent = args.size // 8
    clip = torch.randn(args.frames, 4, latent, latent, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    caption = [[torch.randn(1, 77, 2048, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g)}]]
    request = comfy_train.TrainRequest(rank=64, settings=TrainSettings(steps=args.steps, learning_rate=1e-4),
                                       gradient_checkpointing=True, save_path=None, frames_per_clip=args.frames)
    ticks = []
    start = time.perf_counter()
    with torch.inference_mode():
        _, losses, _ = comfy_train.run(model, motion, [clip], [caption], request,
                                       progress=lambda step, loss: ticks.append(time.perf_counter()))
    intervals = [b - a for a, b in zip(ticks, ticks[1:])]
    row = {"unet_parameters": params, "unet_dtype": "bf16 (fp32 compute)", "frames": args.frames, "size": args.size,
           "rank": 64, "gradient_checkpointing": True, "threads": args.threads, "build_s": round(built, 1),
           "first_step_s": round(ticks[0] - start, 1), "s_per_step": round(sum(intervals) / len(intervals), 1)
           if intervals else None, "losses": losses, "rss_before_gib": round(rss_before, 2),
           "peak_rss_gib": round(vm("VmHWM"), 2)}
    print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
