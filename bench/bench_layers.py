#!/usr/bin/env python
"""Motion modules on plain torch layers (motion.model.TorchOps + SDPA: the code before comfy.ops) against ComfyUI's
layers (motion.injection.comfy_layers: comfy.ops + ComfyUI's attention), one process, the same weight tensors.

One "UNet call" = every motion module of a v2 model once, on the input shape sampling gives it at --size (cond and
uncond batched: 2 x --frames rows). The two variants alternate, --repeats times each; medians, spread and the
largest output difference are reported. No SD UNet is loaded (about 2 GB of memory for the fp32 motion model).

    /root/.cache/motionkit/venv/bin/python bench/bench_layers.py [--size 64] [--frames 16] [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(os.path.abspath(__file__)).parent
sys.path.insert(0, str(HERE))
import harness as bm  # noqa: E402  (bench/harness.py: ComfyUI in this process, inputs, threads, memory)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", default="1", help="a number, or auto (the cores other processes leave free now)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(bm.REPO))
    sys.path.insert(0, str(bm.TESTS))
    import pack_package  # noqa: F401  (the pack as the package `motionkit`)
    import torch
    threads, note = bm.choose_threads(args.threads, torch)
    root = bm.find_comfyui()
    sys.path.insert(0, str(root))
    import comfy.options
    comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    from motionkit.motion.formats import load_motion_model
    from motionkit.motion.injection import comfy_layers
    from motionkit.motion.model import MotionModel

    before, info = load_motion_model(str(bm.default_motion_file()))
    before = before.float()
    operations, attention = comfy_layers()
    with torch.device("meta"):
        after = MotionModel(info.arch, operations, attention)
    after.load_state_dict(before.state_dict(), strict=True, assign=True)  # the same tensors, no copy
    after.eval()

    latent = args.size // 8
    inputs = []
    for (kind, i, a), (_, _, b) in zip(before.ordered_modules(), after.ordered_modules()):
        level = i // (2 if kind == "input" else 3) if kind != "middle" else 3
        if kind == "output":
            level = 3 - level
        hw = max(1, latent >> level)
        shape = (2 * args.frames, a.temporal_transformer.channels, hw, hw)
        inputs.append((a, b, torch.randn(shape, generator=torch.Generator().manual_seed(len(inputs)))))

    def call(which):
        with torch.no_grad():
            return [(a if which == "before" else b)(x, args.frames, info.module_norm) for a, b, x in inputs]

    diff = max(float((p - q).abs().max()) for p, q in zip(call("before"), call("after")))
    times = {"before": [], "after": []}
    load = {"before": [], "after": []}
    for r in range(args.repeats):
        for which in (("before", "after") if r % 2 == 0 else ("after", "before")):
            others = bm.OtherLoad()
            t0 = time.perf_counter()
            call(which)
            times[which].append(time.perf_counter() - t0)
            load[which].append(others.cores())
    print(f"=== motion modules of one UNet call (v2, {len(inputs)} modules, {args.frames} frames @ {args.size}x{args.size}), "
          f"{threads} threads ({note}); attention after: {attention.__module__}.{attention.__name__} ===")
    for which in ("before", "after"):
        ts = times[which]
        med = statistics.median(ts)
        print(f"{which:6s}: median {med:.3f} s, min {min(ts):.3f}, max/median {max(ts) / med:.2f} (runs "
              + ", ".join(f"{t:.3f}" for t in ts) + "; other processes' cores "
              + ", ".join(bm.fmt(c, ".1f") for c in load[which]) + ")")
    print(f"after/before (medians): {statistics.median(times['after']) / statistics.median(times['before']):.3f}; "
          f"largest output difference {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
