"""Trajectory control costs, without ComfyUI: encoding paths (per Trajectory node run), the OMCM adapter on a
window of frames (once per context window per sampling run: its features are reused for every step), and the
trajectory-attention bias (per cross-attention call). Random weights; CPU threads as torch sets them.

    python bench/bench_trajectory.py [--size 512] [--frames 16]
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import pack_package  # noqa: E402,F401  (tests/pack_package.py: the pack as the package `motionkit`)
from motionkit.control.box_attention import BoxAttention  # noqa: E402
from motionkit.control.motionctrl.apply import adapter_input  # noqa: E402
from motionkit.control.motionctrl.model import OMCMAdapter  # noqa: E402
from motionkit.trajectory.encoding import Path, encode_paths  # noqa: E402


def timed(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=16)
    a = ap.parse_args()
    s, f = a.size, a.frames
    paths = [Path([(s * 0.1, s * 0.8), (s * 0.5, s * 0.3), (s * 0.9, s * 0.6)]), Path([(s * 0.2, s * 0.2), (s * 0.7, s * 0.9)])]
    t_enc, traj = timed(lambda: encode_paths(paths, f, s, s))
    print(f"encode 2 paths, {f} frames at {s}x{s}: {t_enc:.2f} s")
    adapter = OMCMAdapter().eval()
    with torch.no_grad():
        t_ad, _ = timed(lambda: adapter(adapter_input(traj, list(range(f))), 3), repeats=1)
    print(f"OMCM adapter, {f} frames at {s}x{s} (once per window per sampling run): {t_ad:.2f} s")
    box = BoxAttention(traj, [2, 3], 2.0)
    n = (s // 8) ** 2
    opts = {"activations_shape": [2 * f, 320, s // 8, s // 8], "cond_or_uncond": [1, 0]}
    t_box, _ = timed(lambda: box.bias(2 * f, 77, opts))
    print(f"attention-box bias for the largest layer ({n} positions, {2 * f} rows): {t_box * 1000:.1f} ms")


if __name__ == "__main__":
    main()
