#!/usr/bin/env python
"""MotionKit against AnimateDiff-Evolved (ADE) at commit 90fb133: seconds per step of the same animation, in one
ComfyUI process, with the outputs compared.

ADE is not part of this repository and is never copied into it. Get it once, anywhere outside the repo:

    git clone https://github.com/Kosinkadink/ComfyUI-AnimateDiff-Evolved /tmp/ade
    git -C /tmp/ade checkout 90fb133

and pass that folder as --ade. The bench builds a scratch ComfyUI layout in a temporary folder outside the repo
(bench/harness.py: the ComfyUI code of --comfyui or $COMFYUI_PATH or /opt/ComfyUI, temporary output/input/temp
folders, a temporary custom_nodes folder holding symlinks to this pack and to --ade) and loads both packs there
with ComfyUI's own loader, in this one process.

Workflows (one prompt, so the checkpoint and the motion models stay loaded; SD1.5 and the v2 motion model are the
random test files bench/harness.py makes, the same for both):

* plain (--plain):  CheckpointLoaderSimple -> KSampler (no motion model; the GPU check's baseline)
* mk:        MotionKitLoadMotionModel -> MotionKitApplyMotionModel (defaults) [-> MotionKitContextWindows]
* ade:       ADE_LoadAnimateDiffModel -> ADE_ApplyAnimateDiffModelSimple -> ADE_UseEvolvedSampling (autoselect)
             [with ADE_StandardUniformContextOptions]
* windows rows (/w): length 16, overlap 4, stride 1, pyramid fuse, uniform schedule on both sides
  (MotionKitContextWindows schedule "uniform" = core's standard_uniform; ADE's Standard Uniform).
* motion-only windows rows (/mw), run only when the pack has MotionKitMotionWindows: mk_mw (Apply Motion Model ->
  MotionKitMotionWindows 16/4) against ade_views (ADE_ViewsOnlyContextOptions over ADE_StandardUniformViewOptions
  16/1/4 pyramid: the spatial UNet sees every frame, only the motion modules run in windows) and ade (ADE's
  whole-UNet windows 16/4).

Per row: one KSampler run of every variant per round, the order alternating between rounds; the first row is
preceded by one unmeasured warm-up run of each variant. Reported: the median over rounds of the seconds per step
(mean interval between the sampler's step callbacks: model loading, patching and text encoding are left out),
the ratio to ADE, the seconds per step spent inside the motion modules (each pack's module forward wrapped from
outside; CPU only, where no synchronisation is needed), and max|mk - ade| of the output latents of each round
(same seed, same noise) next to max|ade| for scale.

    flock /tmp/mk-heavy.lock python bench/bench_ade.py --ade /work/scratch/ade-bench/ade --threads 2 --steps 2
    python bench/bench_ade.py --ade PATH --device cpu --size 64 --rows 16@64:1 --plain          # smoke check
    python bench/bench_ade.py --ade PATH --gpu                                                     # a GPU machine

--gpu: --device cuda, fp16 (ComfyUI's --force-fp16), rows 16@512:3, 20 steps, plain included.
Row syntax: FRAMES@SIZE[/w|/mw][:ROUNDS].
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

ADE_FOLDER = "ComfyUI-AnimateDiff-Evolved"
ADE_COMMIT = "90fb133"
LENGTH, OVERLAP, FUSE = 16, 4, "pyramid"
DEFAULT_ROWS = "16@64:3 16@256:1 32@64/w:3 128@64/w:1 32@64/mw:3"
MOTION_WINDOWS = "MotionKitMotionWindows"


def parse_row(spec: str) -> dict:
    rounds = None
    if ":" in spec:
        spec, r = spec.split(":")
        rounds = int(r)
    mode = ""
    if "/" in spec:
        spec, mode = spec.split("/")
    frames, size = (int(v) for v in spec.split("@"))
    if mode not in ("", "w", "mw"):
        raise SystemExit(f"row {spec}/{mode}: the mode is /w (windows) or /mw (motion-only windows)")
    return {"frames": frames, "size": size, "mode": mode, "rounds": rounds, "name": f"{frames}@{size}{'/' + mode if mode else ''}"}


def variants_of(row: dict, plain: bool) -> list[str]:
    if row["mode"] == "mw":
        return ["mk_mw", "ade_views", "ade"]
    return (["plain"] if plain else []) + ["mk", "ade"]


def workflow(comfy, row: dict, args, ckpt: str, motion: str, seed: int) -> tuple[dict, dict]:
    """The prompt with every variant of the row, and {variant: output node id}."""
    sampler = {"seed": seed, "steps": args.steps, "cfg": args.cfg, "sampler_name": "euler", "scheduler": "normal",
               "denoise": 1.0, "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}
    mapping = comfy.nodes.NODE_CLASS_MAPPINGS
    windows = row["mode"] in ("w", "mw")
    g = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat walking in the snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": row["size"], "height": row["size"],
                                                            "batch_size": row["frames"]}},
        # plain
        "3": {"class_type": "KSampler", "inputs": {**sampler, "model": ["4", 0]}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "bench/plain"}},
        # MotionKit
        "10": {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": motion}},
        "11": {"class_type": "MotionKitApplyMotionModel", "inputs": {
            **bm.widget_defaults(mapping["MotionKitApplyMotionModel"]), "model": ["4", 0], "motion_model": ["10", 0]}},
        "12": {"class_type": "MotionKitContextWindows", "inputs": {
            **bm.widget_defaults(mapping["MotionKitContextWindows"]), "model": ["11", 0], "context_length": LENGTH,
            "context_overlap": OVERLAP, "schedule": "uniform", "context_stride": 1, "fuse_method": FUSE,
            "closed_loop": False}},
        "13": {"class_type": "KSampler", "inputs": {**sampler, "model": ["12", 0] if windows and row["mode"] == "w"
                                                     else ["11", 0]}},
        "19": {"class_type": "SaveLatent", "inputs": {"samples": ["13", 0], "filename_prefix": "bench/mk"}},
        # ADE (Gen2)
        "20": {"class_type": "ADE_LoadAnimateDiffModel", "inputs": {"model_name": motion}},
        "21": {"class_type": "ADE_ApplyAnimateDiffModelSimple", "inputs": {"motion_model": ["20", 0]}},
        "22": {"class_type": "ADE_StandardUniformContextOptions", "inputs": {
            "context_length": LENGTH, "context_stride": 1, "context_overlap": OVERLAP, "fuse_method": FUSE,
            "use_on_equal_length": False, "start_percent": 0.0, "guarantee_steps": 1}},
        "23": {"class_type": "ADE_UseEvolvedSampling", "inputs": {
            "model": ["4", 0], "m_models": ["21", 0], "beta_schedule": "autoselect",
            **({"context_options": ["22", 0]} if windows else {})}},
        "24": {"class_type": "KSampler", "inputs": {**sampler, "model": ["23", 0]}},
        "29": {"class_type": "SaveLatent", "inputs": {"samples": ["24", 0], "filename_prefix": "bench/ade"}},
    }
    outputs = {"plain": "9", "mk": "19", "ade": "29"}
    if row["mode"] == "mw":
        # ADE: motion-only windows = Views Only context options over Standard Uniform view options
        g["30"] = {"class_type": "ADE_StandardUniformViewOptions", "inputs": {
            "view_length": LENGTH, "view_stride": 1, "view_overlap": OVERLAP, "fuse_method": FUSE}}
        g["31"] = {"class_type": "ADE_ViewsOnlyContextOptions", "inputs": {
            "view_opts_req": ["30", 0], "start_percent": 0.0, "guarantee_steps": 1}}
        g["32"] = {"class_type": "ADE_UseEvolvedSampling", "inputs": {
            "model": ["4", 0], "m_models": ["21", 0], "beta_schedule": "autoselect", "context_options": ["31", 0]}}
        g["33"] = {"class_type": "KSampler", "inputs": {**sampler, "model": ["32", 0]}}
        g["39"] = {"class_type": "SaveLatent", "inputs": {"samples": ["33", 0], "filename_prefix": "bench/ade_views"}}
        # MotionKit's motion-only windows (feat/motion-windows): its widgets at their defaults, length/overlap 16/4
        mw = bm.widget_defaults(mapping[MOTION_WINDOWS])
        for name in mw:
            if "length" in name:
                mw[name] = LENGTH
            elif "overlap" in name:
                mw[name] = OVERLAP
        g["40"] = {"class_type": MOTION_WINDOWS, "inputs": {**mw, "model": ["11", 0]}}
        g["41"] = {"class_type": "KSampler", "inputs": {**sampler, "model": ["40", 0]}}
        g["49"] = {"class_type": "SaveLatent", "inputs": {"samples": ["41", 0], "filename_prefix": "bench/mk_mw"}}
        outputs.update({"ade_views": "39", "mk_mw": "49"})
    return g, outputs


import torch  # noqa: E402


class ModuleTimer:
    """Seconds spent inside each pack's motion modules: MotionKit's MotionLayer.run and ADE's
    VanillaTemporalModule.forward, wrapped on their classes (CPU: no synchronisation needed)."""

    def __init__(self, comfy, ade_pkg: str):
        self.total = 0.0
        self.calls = 0
        self.targets = [(comfy.pack_attr("motion.injection", "MotionLayer"), "run"),
                        (sys.modules[f"{ade_pkg}.animatediff.motion_module_ad"].VanillaTemporalModule, "forward")]
        for cls, name in self.targets:
            setattr(cls, name, self._wrap(getattr(cls, name)))

    def _wrap(self, fn):
        timer = self

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                with torch.profiler.record_function("motion module"):  # a label in --profile's tables
                    return fn(*a, **k)
            finally:
                timer.total += time.perf_counter() - t0
                timer.calls += 1
        return timed

    def take(self) -> tuple[float, int]:
        out = (self.total, self.calls)
        self.total, self.calls = 0.0, 0
        return out


def latest_latent(comfy, prefix: str):
    """The newest latent SaveLatent wrote under this prefix (output/bench/<prefix>_NNNNN_.latent)."""
    import folder_paths
    from safetensors.torch import load_file
    folder = Path(folder_paths.get_output_directory()) / "bench"
    files = sorted(f for f in folder.glob(f"{prefix}_*_.latent") if f.name[len(prefix) + 1:-8].isdigit())
    return load_file(str(files[-1]))["latent_tensor"]


def profile(comfy, row: dict, args, ckpt: str, motion: str, seed: int) -> None:
    """torch.profiler over one sampling run of mk and of ade (same seed): top ops by self CPU time, and the CPU
    time of the 'motion module' label (each pack's module forward, see ModuleTimer)."""
    from torch.profiler import ProfilerActivity
    g, outputs = workflow(comfy, row, args, ckpt, motion, seed)
    for v in ("mk_mw" if row["mode"] == "mw" else "mk", "ade"):
        with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as prof:
            comfy.run(g, outputs[v])
        events = prof.key_averages()
        label = next((e for e in events if e.key == "motion module"), None)
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n--- profile {v} at {row['name']}, {args.steps} steps: self CPU total {total / 1e6:.2f}s, inside "
              f"motion modules {0 if label is None else label.cpu_time_total / 1e6:.2f}s ---")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.profile, max_name_column_width=40))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ade", type=Path, required=True, help=f"a checkout of ADE at {ADE_COMMIT} (see the docstring)")
    ap.add_argument("--comfyui", type=Path, default=None, help="ComfyUI code to use (default: $COMFYUI_PATH or /opt/ComfyUI)")
    ap.add_argument("--rows", nargs="+", default=DEFAULT_ROWS.split(), help=f"FRAMES@SIZE[/w|/mw][:ROUNDS] ({DEFAULT_ROWS})")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of a row that gives none (3)")
    ap.add_argument("--steps", type=int, default=2, help="steps per run (2: one measured step interval)")
    ap.add_argument("--cfg", type=float, default=1.0, help="1 = one cond per UNet call, on both sides (cfg1 optimisation)")
    ap.add_argument("--plain", action="store_true", help="also run plain SD (no motion model)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--size", type=int, default=None, help="override every row's size (e.g. --size 64 for a smoke check)")
    ap.add_argument("--gpu", action="store_true", help="GPU preset: cuda, fp16, rows 16@512:3, 20 steps, --plain")
    ap.add_argument("--threads", default="2", help="torch threads: a number or auto (2)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after the rows, one torch.profiler run of mk and ade at the first row: the N ops with the "
                         "most self CPU time, and the time inside the motion modules (0: off)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.gpu:
        args.device, args.plain = "cuda", True
        if args.rows == DEFAULT_ROWS.split():
            args.rows = ["16@512:3"]
        if args.steps == 2:
            args.steps = 20
    if args.steps < 2:
        ap.error("--steps must be at least 2 (per-step time is measured between step callbacks)")
    ade = args.ade.resolve()
    if not (ade / "animatediff" / "nodes_gen2.py").exists():
        raise SystemExit(f"--ade {ade}: not an AnimateDiff-Evolved checkout (no animatediff/nodes_gen2.py); "
                         f"clone it and check out {ADE_COMMIT}, see `python bench/bench_ade.py --help`")
    rows = [parse_row(r) for r in args.rows]
    if args.size:
        for r in rows:
            r["size"] = args.size
            r["name"] = f"{r['frames']}@{r['size']}{'/' + r['mode'] if r['mode'] else ''}"

    torch, root, device, threads, threads_note, checkpoint = bm.comfy_setup(args.comfyui, args.device, args.gpu,
                                                                            args.threads)
    motion_file = bm.default_motion_file().resolve()
    comfy = bm.Comfy(root, device, checkpoint, motion_file, extra_packs=((ADE_FOLDER, ade),))
    ade_pkg = comfy.nodes.NODE_CLASS_MAPPINGS["ADE_LoadAnimateDiffModel"].__module__.split(".animatediff.")[0]
    timer = ModuleTimer(comfy, ade_pkg) if device == "cpu" else None
    has_mw = MOTION_WINDOWS in comfy.nodes.NODE_CLASS_MAPPINGS
    skipped = [r["name"] for r in rows if r["mode"] == "mw" and not has_mw]
    rows = [r for r in rows if r["mode"] != "mw" or has_mw]
    import subprocess
    ade_head = subprocess.run(["git", "-C", str(ade), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or "(not a git checkout)"
    mk_head = subprocess.run(["git", "-C", str(bm.REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    print(f"[bench] torch {torch.__version__}, device {device}, {threads} threads ({threads_note}); ComfyUI {root}; "
          f"ADE {ade} at {ade_head}; MotionKit {mk_head}; {args.steps} steps, cfg {args.cfg}, euler/normal; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    if skipped:
        print(f"[bench] skipped {skipped}: this MotionKit has no {MOTION_WINDOWS} node", flush=True)

    seed = 1000
    results = []
    for i, row in enumerate(rows):
        variants = variants_of(row, args.plain)
        g, outputs = workflow(comfy, row, args, checkpoint.name, motion_file.name, seed)
        comfy.validate(g, [outputs[v] for v in variants])
        runs = {v: [] for v in variants}
        if i == 0:
            t0 = time.perf_counter()
            seed += 1
            for v in variants:  # loads the checkpoint and both motion models outside the measured runs
                comfy.run(workflow(comfy, row, args, checkpoint.name, motion_file.name, seed)[0], outputs[v])
            if timer:
                timer.take()
            print(f"[bench] warm-up {time.perf_counter() - t0:.1f}s", flush=True)
        diffs = []
        for rnd in range(row["rounds"] or args.rounds):
            seed += 1
            g = workflow(comfy, row, args, checkpoint.name, motion_file.name, seed)[0]
            latents = {}
            for v in (variants if rnd % 2 == 0 else variants[::-1]):
                r = comfy.run(g, outputs[v])
                mod_s, calls = timer.take() if timer else (None, 0)
                r["motion_s_per_step"] = None if mod_s is None else mod_s / args.steps
                r["motion_calls"] = calls
                runs[v].append(r)
                latents[v] = latest_latent(comfy, v)
                print(f"[bench] {row['name']:10s} round {rnd + 1} {v:9s}: {bm.fmt(r['s_per_step'])} s/step, wall "
                      f"{r['wall_s']:.1f}s, motion modules {bm.fmt(r['motion_s_per_step'])} s/step ({calls} calls), "
                      f"other processes {bm.fmt(r['other_processes_cores'], '.2f')} cores", flush=True)
            ref = latents["ade"]
            d = {v: float((latents[v] - ref).abs().max()) for v in latents if v != "ade"}
            d["max_abs_ade"] = float(ref.abs().max())
            if "mk_mw" in latents and "ade_views" in latents:  # the like-for-like pair of a /mw row
                d["mk_mw_vs_ade_views"] = float((latents["mk_mw"] - latents["ade_views"]).abs().max())
            diffs.append(d)
            print(f"[bench] {row['name']:10s} round {rnd + 1} max|x - ade|: " + ", ".join(f"{k} {v:.3g}" for k, v in d.items()),
                  flush=True)
        summary = {v: {"s_per_step": bm.median([r["s_per_step"] for r in rs]),
                       "motion_s_per_step": bm.median([r["motion_s_per_step"] for r in rs]),
                       "peak_rss_mib": max(r["peak_rss_mib"] for r in rs)} for v, rs in runs.items()}
        results.append({"row": row, "variants": summary, "diffs": diffs, "runs": runs})

    if args.profile:
        profile(comfy, rows[0], args, checkpoint.name, motion_file.name, seed + 1)

    print(f"\n=== MotionKit {mk_head} vs AnimateDiff-Evolved {ade_head}, {device}, {threads} threads, "
          f"{args.steps} steps, cfg {args.cfg}; median s/step over the rounds ===")
    print(f"{'row':10s} {'rounds':>6s} | " + " | ".join(f"{v:>9s} s/step (motion)" for v in ("mk", "ade")) +
          " | mk/ade | max|mk-ade| (max|ade|) | other")
    for res in results:
        row, s = res["row"], res["variants"]
        mk = "mk_mw" if row["mode"] == "mw" else "mk"
        ratio = s[mk]["s_per_step"] / s["ade"]["s_per_step"]
        diff = max(d[mk] for d in res["diffs"])
        scale = max(d["max_abs_ade"] for d in res["diffs"])
        other = ", ".join(f"{v} {bm.fmt(s[v]['s_per_step'])} ({s[v]['s_per_step'] / s['ade']['s_per_step']:.2f}x ade, "
                          f"max|{v}-ade| {max(d[v] for d in res['diffs']):.3g})" for v in s if v not in (mk, "ade"))
        print(f"{row['name']:10s} {len(res['diffs']):6d} | {bm.fmt(s[mk]['s_per_step']):>9s} ({bm.fmt(s[mk]['motion_s_per_step'])})"
              f" | {bm.fmt(s['ade']['s_per_step']):>9s} ({bm.fmt(s['ade']['motion_s_per_step'])}) | {ratio:6.3f} | "
              f"{diff:.3g} ({scale:.3g}) | {other}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
