#!/usr/bin/env python
"""CameraCtrl and PIA against plain AnimateDiff and against AnimateDiff-Evolved: seconds per step, memory, outputs.

Seconds per step and peak memory of MotionKit's CameraCtrl and PIA, against plain AnimateDiff on the same UNet and
against AnimateDiff-Evolved (ADE, commit 90fb133) running the same thing, in one ComfyUI process; outputs compared.

ADE is not part of this repository; get it as bench_ade.py's docstring says and pass the folder as --ade.

Variants (one prompt; the same random SD1.5 checkpoint, seed, prompt and empty latent for all; euler/normal, cfg 1):

* mk_plain:  MotionKitLoadMotionModel (random v3 file) -> MotionKitApplyMotionModel (defaults) -> KSampler
* ade_plain: ADE_LoadAnimateDiffModel (the same v3 file) -> ADE_ApplyAnimateDiffModelSimple -> ADE_UseEvolvedSampling
* mk_cam:    mk_plain's MODEL -> MotionKitApplyCameraCtrl (MotionKitLoadCameraCtrl: the random CameraCtrl file in
             ADE's pruned layout; MotionKitCameraPosesPreset "Pan Left", speed 1, one pose per frame; strength 1)
* ade_cam:   ADE_LoadAnimateDiffModelWithCameraCtrl (the v3 file + the same CameraCtrl file: ADE reads only the pruned
             layout, top-level `encoder*` and `*qkv_merge*` keys) -> ADE_ApplyAnimateDiffModelWithCameraCtrl
             (ADE_CameraPoseBasic "Pan Left", speed 1, frame_length = frames) -> ADE_UseEvolvedSampling
* mk_pia:    MotionKitLoadMotionModel (the random PIA file, ADE's pruned layout: temporal keys + conv_in) ->
             MotionKitApplyMotionModel -> MotionKitApplyPIAImage (LoadImage of a SIZE x SIZE png, the checkpoint's
             VAE, "animation, moderate motion", image_frame 0)
* ade_pia:   ADE_LoadAnimateDiffModel (the same PIA file) -> ADE_ApplyAnimateDiffModelWithPIA (the same image and VAE,
             ADE_InputPIA_PaperPresets "Animation (Medium Motion)", batch_index 0) -> ADE_UseEvolvedSampling

The random files are the tests' own (tests/cameractrl_files.py, tests/pia_files.py, tests/model_cache.py:
built from fixed seeds, cached in ~/.cache/motionkit/test_models; the CameraCtrl file with the sinusoid in its
position-encoding buffers, as the published files); the image is tests/comfy_graphs.png at the
latent's pixel size, so neither pack resizes it (MotionKit would use Lanczos, ADE bilinear).

Timing as bench_ade.py: one unmeasured warm-up run of every variant (loads every model), then rounds in alternating
order; the median over rounds of the mean interval between the sampler's step callbacks; motion-module seconds per
step on CPU (each pack's module forward wrapped from outside: MotionKit's MotionLayer.run, ADE's
VanillaTemporalModule.forward; both run the camera encoder outside them, once per sampling run, and cache it).

Memory (one process, so every number is of this process's memory):
* CPU: per run, the peak RSS (VmHWM, reset through /proc/self/clear_refs just before the run) minus the RSS just
  before it: what the sampling run adds on top of the models already resident (activations, per-run copies).
  Before each run the heap freed by earlier runs is given back (gc, glibc malloc_trim), else a run's rise depends
  on how much freed memory the run before left behind. Also the RSS each variant's warm-up run added: the models
  that variant loads for the first time (order-dependent: ADE and MotionKit each load their own copy of a motion
  file; the first variant also loads the checkpoint).
* CUDA: per run, torch.cuda.max_memory_allocated (reset just before the run) and the allocated memory before it.

Outputs: max|mk - ade| of the final latents of each pair per round, next to max|ade|, and how far CameraCtrl and
PIA move MotionKit's output from plain AnimateDiff (so an agreement is not two no-ops agreeing).
--ade-pool-resnet-norms-only is a diagnostic for the PIA pair (limit_ade_groupnorm_pooling says what it changes).

    flock /tmp/mk-heavy.lock python bench/bench_camera_pia.py --ade /work/scratch/ade-bench/ade --threads 2
    flock /tmp/mk-heavy.lock python bench/bench_camera_pia.py --ade PATH --size 256 --warmup-size 64 --steps 2 --rounds 1
    python bench/bench_camera_pia.py --ade PATH --gpu       # a GPU machine: fp16, 512x512, 16 frames, 20 steps
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(os.path.abspath(__file__)).parent
sys.path.insert(0, str(HERE))
import harness as bm  # noqa: E402  (bench/harness.py: ComfyUI in this process, inputs, threads, memory)

ADE_FOLDER = "ComfyUI-AnimateDiff-Evolved"
ADE_COMMIT = "90fb133"
VARIANTS = ("mk_plain", "ade_plain", "mk_cam", "ade_cam", "mk_pia", "ade_pia")
PAIRS = {"plain": ("mk_plain", "ade_plain"), "cam": ("mk_cam", "ade_cam"), "pia": ("mk_pia", "ade_pia")}
CAMERA_MOTION = "Pan Left"
PIA_MK, PIA_ADE = "animation, moderate motion", "Animation (Medium Motion)"  # the same RANGE_LIST row
IMAGE = "bench_pia_image.png"


V3 = "mm_v3_random.safetensors"  # as tests/test_comfy_cameractrl.py and tests/test_ade_equal.py build it


def model_files() -> dict:
    """{role: Path} of the tests' random files (tests/cameractrl_files.py, tests/pia_files.py, tests/motion_files.py),
    built from their seeds when not cached yet. The CameraCtrl file holds the sinusoid in its `pos_encoder.pe`
    buffers, as real files do: ADE reads that table, MotionKit makes the sinusoid itself (camera/encoder.py)."""
    import torch

    if str(bm.TESTS) not in sys.path:
        sys.path.insert(0, str(bm.TESTS))
    import motion_files as mf
    from cameractrl_files import PRUNED as CAMERACTRL, pruned_file
    from model_cache import cached_file
    from pia_files import PRUNED as PIA, pruned as pia_pruned
    return {"v3": cached_file(V3, lambda: mf.v3(seed=4, dtype=torch.float16)),
            "cameractrl": cached_file(CAMERACTRL, pruned_file), "pia": cached_file(PIA, pia_pruned)}


def release_free_heap() -> bool:
    """Give the heap memory freed by earlier runs back to the system (gc, then glibc's malloc_trim), so that a run's
    RSS rise over the RSS before it is what this run needs, not what the previous run's freed blocks happen to cover.
    False where there is no glibc."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def limit_ade_groupnorm_pooling(comfy, ade_pkg: str) -> None:
    """Diagnostic (--ade-pool-resnet-norms-only): during a PIA run ADE's "groupnorm hack" replaces the forward of
    every GroupNorm while the UNet runs, so the spatial transformers' norms and ADE's own motion-module norms pool
    their statistics over the frames as well as the UNet's resnet and output norms. PIA's original UNet (open-mmlab/
    PIA animatediff/models: ResnetBlock3D's GroupNorm on (b, c, f, h, w), but Transformer3DModel and the motion
    module rearrange to (b f) first) and MotionKit pool the resnet and output norms only. This wraps ADE's factory
    from outside so that only those pool and every other GroupNorm runs per frame; nothing in ADE is edited."""
    import torch.nn.functional as F
    import comfy.model_management as mm
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
    sampling = sys.modules[f"{ade_pkg}.animatediff.sampling"]
    factory = sampling.groupnorm_mm_factory
    pooled_ids: set = set()

    def resnet_and_output_norms():
        for loaded in mm.current_loaded_models:
            unet = getattr(getattr(loaded.model, "model", None), "diffusion_model", None)
            if unet is not None:
                for m in unet.modules():
                    if isinstance(m, ResBlock):
                        pooled_ids.update((id(m.in_layers[0]), id(m.out_layers[0])))
                pooled_ids.add(id(unet.out[0]))

    def limited(params, manual_cast=False):
        pooled = factory(params, manual_cast)

        def forward(self, x):
            if not pooled_ids:
                resnet_and_output_norms()
            if id(self) in pooled_ids:
                return pooled(self, x)
            weight, bias = comfy.ops.cast_bias_weight(self, x) if manual_cast else (self.weight, self.bias)
            return F.group_norm(x, self.num_groups, weight, bias, self.eps)
        return forward
    sampling.groupnorm_mm_factory = limited


def workflow(comfy, args, files: dict, seed: int) -> tuple[dict, dict]:
    mapping = comfy.nodes.NODE_CLASS_MAPPINGS
    sampler = {"seed": seed, "steps": args.steps, "cfg": args.cfg, "sampler_name": "euler", "scheduler": "normal",
               "denoise": 1.0, "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}
    v3, cam, pia = files["v3"].name, files["cameractrl"].name, files["pia"].name
    apply = bm.widget_defaults(mapping["MotionKitApplyMotionModel"])

    def ksampler(model, prefix):
        return ({"class_type": "KSampler", "inputs": {**sampler, "model": model}},
                {"class_type": "SaveLatent", "inputs": {"samples": None, "filename_prefix": f"bench/{prefix}"}})

    g = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": args.ckpt_name}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a house by a lake, mountains", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": args.size, "height": args.size,
                                                            "batch_size": args.frames}},
        "8": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        # MotionKit: plain AnimateDiff v3, + CameraCtrl
        "10": {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": v3}},
        "11": {"class_type": "MotionKitApplyMotionModel", "inputs": {**apply, "model": ["4", 0], "motion_model": ["10", 0]}},
        "30": {"class_type": "MotionKitLoadCameraCtrl", "inputs": {"cameractrl_name": cam}},
        "31": {"class_type": "MotionKitCameraPosesPreset", "inputs": {"motion": CAMERA_MOTION, "speed": 1.0,
                                                                      "frames": args.frames}},
        "33": {"class_type": "MotionKitApplyCameraCtrl", "inputs": {
            **bm.widget_defaults(mapping["MotionKitApplyCameraCtrl"]), "model": ["11", 0], "cameractrl": ["30", 0],
            "poses": ["31", 0], "strength": 1.0}},
        # MotionKit PIA
        "40": {"class_type": "MotionKitLoadMotionModel", "inputs": {"model_name": pia}},
        "41": {"class_type": "MotionKitApplyMotionModel", "inputs": {**apply, "model": ["4", 0], "motion_model": ["40", 0]}},
        "43": {"class_type": "MotionKitApplyPIAImage", "inputs": {
            "model": ["41", 0], "image": ["8", 0], "vae": ["4", 2], "motion": PIA_MK, "image_frame": 0, "values": ""}},
        # ADE (Gen2): plain v3
        "20": {"class_type": "ADE_LoadAnimateDiffModel", "inputs": {"model_name": v3}},
        "21": {"class_type": "ADE_ApplyAnimateDiffModelSimple", "inputs": {"motion_model": ["20", 0]}},
        "23": {"class_type": "ADE_UseEvolvedSampling", "inputs": {
            "model": ["4", 0], "m_models": ["21", 0], "beta_schedule": "autoselect"}},
        # ADE CameraCtrl
        "50": {"class_type": "ADE_LoadAnimateDiffModelWithCameraCtrl", "inputs": {"model_name": v3, "camera_ctrl": cam}},
        "51": {"class_type": "ADE_CameraPoseBasic", "inputs": {"motion_type": CAMERA_MOTION, "speed": 1.0,
                                                               "frame_length": args.frames}},
        "52": {"class_type": "ADE_ApplyAnimateDiffModelWithCameraCtrl", "inputs": {
            "motion_model": ["50", 0], "cameractrl_poses": ["51", 0], "start_percent": 0.0, "end_percent": 1.0}},
        "53": {"class_type": "ADE_UseEvolvedSampling", "inputs": {
            "model": ["4", 0], "m_models": ["52", 0], "beta_schedule": "autoselect"}},
        # ADE PIA
        "60": {"class_type": "ADE_LoadAnimateDiffModel", "inputs": {"model_name": pia}},
        "61": {"class_type": "ADE_InputPIA_PaperPresets", "inputs": {"preset": PIA_ADE, "batch_index": 0}},
        "62": {"class_type": "ADE_ApplyAnimateDiffModelWithPIA", "inputs": {
            "motion_model": ["60", 0], "image": ["8", 0], "vae": ["4", 2], "start_percent": 0.0, "end_percent": 1.0,
            "pia_input": ["61", 0]}},
        "63": {"class_type": "ADE_UseEvolvedSampling", "inputs": {
            "model": ["4", 0], "m_models": ["62", 0], "beta_schedule": "autoselect"}},
    }
    models = {"mk_plain": ["11", 0], "mk_cam": ["33", 0], "mk_pia": ["43", 0],
              "ade_plain": ["23", 0], "ade_cam": ["53", 0], "ade_pia": ["63", 0]}
    outputs = {}
    for i, (v, model) in enumerate(models.items()):
        ks, save = ksampler(model, v)
        k_id, s_id = str(100 + 2 * i), str(101 + 2 * i)
        save["inputs"]["samples"] = [k_id, 0]
        g[k_id], g[s_id] = ks, save
        outputs[v] = s_id
    return g, outputs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ade", type=Path, required=True, help=f"a checkout of ADE at {ADE_COMMIT} (see bench_ade.py)")
    ap.add_argument("--comfyui", type=Path, default=None, help="ComfyUI code (default: $COMFYUI_PATH or /opt/ComfyUI)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=64, help="width = height in pixels (64)")
    ap.add_argument("--steps", type=int, default=3, help="steps per run (3: two measured step intervals)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cfg", type=float, default=1.0, help="1 = one cond per UNet call, on both sides")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--gpu", action="store_true", help="GPU preset: cuda, fp16 (--force-fp16), 512x512, 20 steps")
    ap.add_argument("--threads", default="2", help="torch threads: a number or auto (2)")
    ap.add_argument("--warmup-size", type=int, default=None,
                    help="size of the unmeasured warm-up runs (default: --size; smaller loads the models sooner)")
    ap.add_argument("--ade-pool-resnet-norms-only", action="store_true",
                    help="diagnostic: ADE's PIA/v1 GroupNorm pooling over frames limited to the UNet's resnet and "
                         "output norms, as in PIA's original UNet and MotionKit (see limit_ade_groupnorm_pooling)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.gpu:
        args.device = "cuda"
        if args.size == 64:
            args.size = 512
        if args.steps == 3:
            args.steps = 20
    if args.steps < 2:
        ap.error("--steps must be at least 2 (per-step time is measured between step callbacks)")
    ade = args.ade.resolve()
    if not (ade / "animatediff" / "nodes_cameractrl.py").exists():
        raise SystemExit(f"--ade {ade}: not an AnimateDiff-Evolved checkout (no animatediff/nodes_cameractrl.py); "
                         f"clone it and check out {ADE_COMMIT}, see `python bench/bench_ade.py --help`")

    torch, root, device, threads, threads_note, checkpoint = bm.comfy_setup(args.comfyui, args.device, args.gpu,
                                                                            args.threads)
    args.ckpt_name = checkpoint.name
    files = {k: p.resolve() for k, p in model_files().items()}
    if len({p.parent for p in files.values()}) != 1:
        raise SystemExit(f"the random model files are in different folders: {files}")
    comfy = bm.Comfy(root, device, checkpoint, files["v3"], extra_packs=((ADE_FOLDER, ade),))
    import folder_paths
    from comfy_graphs import png
    (Path(folder_paths.get_input_directory()) / IMAGE).write_bytes(png(args.size, args.size))

    import bench_ade  # its motion-module timer and latent reader
    ade_pkg = comfy.nodes.NODE_CLASS_MAPPINGS["ADE_LoadAnimateDiffModel"].__module__.split(".animatediff.")[0]
    timer = bench_ade.ModuleTimer(comfy, ade_pkg) if device == "cpu" else None
    if args.ade_pool_resnet_norms_only:
        limit_ade_groupnorm_pooling(comfy, ade_pkg)
        print("[bench] diagnostic: ADE's GroupNorm pooling limited to the UNet's resnet and output norms", flush=True)
    head = lambda d: subprocess.run(["git", "-C", str(d), "rev-parse", "--short", "HEAD"], capture_output=True,  # noqa: E731
                                    text=True).stdout.strip() or "(not a git checkout)"
    ade_head, mk_head = head(ade), head(bm.REPO)
    print(f"[bench] torch {torch.__version__}, device {device}, {threads} threads ({threads_note}); ComfyUI {root}; "
          f"ADE {ade} at {ade_head}; MotionKit {mk_head}; {args.frames} frames {args.size}x{args.size}, "
          f"{args.steps} steps, cfg {args.cfg}, euler/normal; files {', '.join(p.name for p in files.values())}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    variants = list(args.variants)
    seed = 1000
    g, outputs = workflow(comfy, args, files, seed)
    comfy.validate(g, [outputs[v] for v in variants])

    def run(v, g):
        release_free_heap()
        before_alloc = torch.cuda.memory_allocated() / 2**20 if device == "cuda" else None
        r = comfy.run(g, outputs[v])
        r["run_added_mib"] = r["peak_rss_mib"] - r["rss_before_mib"]
        r["rss_after_mib"] = bm.rss_mib()
        r["cuda_allocated_before_mib"] = before_alloc
        mod_s, calls = timer.take() if timer else (None, 0)
        r["motion_s_per_step"] = None if mod_s is None else mod_s / args.steps
        r["motion_calls"] = calls
        return r

    # warm-up: every variant once (loads its models); what each adds to the resident memory
    warm = {}
    t0 = time.perf_counter()
    seed += 1
    size, args.size = args.size, args.warmup_size or args.size
    g = workflow(comfy, args, files, seed)[0]
    args.size = size
    for v in variants:
        r = run(v, g)
        warm[v] = r["rss_after_mib"] - r["rss_before_mib"]
        print(f"[bench] warm-up {v:9s}: wall {r['wall_s']:.1f}s, resident +{warm[v]:.0f} MiB "
              f"(RSS {r['rss_after_mib']:.0f} MiB)", flush=True)
    print(f"[bench] warm-up {time.perf_counter() - t0:.1f}s", flush=True)

    runs = {v: [] for v in variants}
    diffs = []
    for rnd in range(args.rounds):
        seed += 1
        g = workflow(comfy, args, files, seed)[0]
        latents = {}
        for v in (variants if rnd % 2 == 0 else variants[::-1]):
            r = run(v, g)
            runs[v].append(r)
            latents[v] = bench_ade.latest_latent(comfy, v)
            mem = (f"peak alloc {r['cuda_peak_allocated_mib']:.0f} MiB (before {r['cuda_allocated_before_mib']:.0f})"
                   if device == "cuda" else
                   f"run peak +{r['run_added_mib']:.0f} MiB over RSS {r['rss_before_mib']:.0f} MiB")
            print(f"[bench] round {rnd + 1} {v:9s}: {bm.fmt(r['s_per_step'])} s/step, wall {r['wall_s']:.1f}s, "
                  f"motion modules {bm.fmt(r['motion_s_per_step'])} s/step ({r['motion_calls']} calls), {mem}, "
                  f"other processes {bm.fmt(r['other_processes_cores'], '.2f')} cores", flush=True)
        d = {}
        for name, (mk, ad) in PAIRS.items():
            if mk in latents and ad in latents:
                d[name] = float((latents[mk] - latents[ad]).abs().max())
                d[f"{name}_max_abs_ade"] = float(latents[ad].abs().max())
        for name in ("cam", "pia"):  # how far each is from plain AnimateDiff (the camera/image must act)
            mk, ad = PAIRS[name]
            if mk in latents and "mk_plain" in latents:
                d[f"{name}_vs_plain"] = float((latents[mk] - latents["mk_plain"]).abs().max())
        diffs.append(d)
        print(f"[bench] round {rnd + 1} max|mk - ade|: " + ", ".join(f"{k} {v:.3g}" for k, v in d.items()), flush=True)

    summary = {}
    for v, rs in runs.items():
        summary[v] = {"s_per_step": bm.median([r["s_per_step"] for r in rs]),
                      "motion_s_per_step": bm.median([r["motion_s_per_step"] for r in rs]),
                      "run_added_mib": max(r["run_added_mib"] for r in rs),
                      "warmup_resident_added_mib": warm[v],
                      "peak_rss_mib": max(r["peak_rss_mib"] for r in rs)}
        if device == "cuda":
            summary[v]["cuda_peak_allocated_mib"] = max(r["cuda_peak_allocated_mib"] for r in rs)
            summary[v]["cuda_allocated_before_mib"] = max(r["cuda_allocated_before_mib"] for r in rs)

    base = summary.get("mk_plain", {}).get("s_per_step")
    print(f"\n=== MotionKit {mk_head} vs AnimateDiff-Evolved {ade_head}, {device}, {threads} threads, {args.frames} "
          f"frames {args.size}x{args.size}, {args.steps} steps, cfg {args.cfg}; median s/step over {args.rounds} rounds ===")
    mem_head = "peak alloc MiB" if device == "cuda" else "run peak +MiB | warm-up +MiB"
    print(f"{'variant':9s} | s/step (motion) | / mk_plain | / ADE same | {mem_head} | max|mk-ade| (max|ade|)")
    for v, s in summary.items():
        kind = v.split("_", 1)[1]
        mk, ad = PAIRS[kind]
        ratio_plain = bm.fmt(s["s_per_step"] / base if base and s["s_per_step"] else None)
        ratio_ade = (bm.fmt(s["s_per_step"] / summary[ad]["s_per_step"]) if v == mk and ad in summary
                     and summary[ad]["s_per_step"] else "")
        mem = (f"{s['cuda_peak_allocated_mib']:.0f} (before {s['cuda_allocated_before_mib']:.0f})" if device == "cuda"
               else f"{s['run_added_mib']:.0f} | {s['warmup_resident_added_mib']:.0f}")
        agree = ""
        if v == mk and diffs and kind in diffs[0]:
            agree = f"{max(d[kind] for d in diffs):.3g} ({max(d[kind + '_max_abs_ade'] for d in diffs):.3g})"
        print(f"{v:9s} | {bm.fmt(s['s_per_step'])} ({bm.fmt(s['motion_s_per_step'])}) | {ratio_plain} | {ratio_ade} | "
              f"{mem} | {agree}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary,
                                         "diffs": diffs, "warmup_resident_added_mib": warm, "runs": runs},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
