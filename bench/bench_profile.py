"""`bench_motion.py --profile`: where the animation's extra time goes, and what would shrink it.

Works on the motion modules exactly as the sampler ran them: the (module, input shape, frames, norm mode,
dtype) of every MotionLayer call of one UNet call, captured in-situ by bench_motion.MotionTimer. Inputs
are random tensors of those shapes (timing does not depend on the values). Nothing in motion/ is edited:
alternatives are written here, on the same weights, and checked against the module's own output.

Sections:
  flops     FLOPs per step of the plain UNet and of the motion modules (torch.utils.flop_counter), the floor
            of the ratio when motion GEMMs run as efficiently as the UNet's.
  ops       torch.profiler self time of the motion modules by op category, per UNet level.
  parts     micro-benchmarks at each level's shape: the pieces of motion/model.py (PE table, weight casts,
            rearrange copies, separate q/k/v, SDPA, GEGLU, GroupNorm paths) against alternatives.
  variants  whole-module alternatives (fused fp32 rewrite; bf16 compute with fp32 residual) timed at each
            level and, in-situ, through a full animation sampling run.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from collections import defaultdict

import torch
import torch.nn.functional as F

HEADS = 8
GROUPS = 32


def _timeit(fn, sync, reps=None, budget_s=0.6):
    """Median seconds of fn() (after 2 warm-up calls); reps chosen so the whole thing takes ~budget_s."""
    fn(); fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-6)
    reps = reps or int(min(25, max(3, budget_s / one)))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _levels(capture):
    """{(C, H, W): [(module, shape, frames, norm, dtype), ...]} in UNet order."""
    out = defaultdict(list)
    for item in capture:
        _, shape, *_ = item
        out[(shape[1], shape[2], shape[3])].append(item)
    return dict(sorted(out.items(), key=lambda kv: (-kv[0][1], kv[0][0])))


def _input(shape, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=g).to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Alternatives, on a MotionModule's own weights

class FastDelta:
    """TemporalTransformer.delta rewritten for speed (same math): one q/k/v GEMM, the PE table cached,
    one copy in and one copy out, in-place GEGLU. Weights are prepared once (as a loader would)."""

    def __init__(self, module, frames: int, dtype=None, sinusoidal_table=None):
        tt = module.temporal_transformer
        dt = dtype or tt.proj_in.weight.dtype
        dev = tt.proj_in.weight.device
        p = lambda t: None if t is None else t.detach().to(device=dev, dtype=dt).contiguous()  # noqa: E731
        self.c = tt.channels
        self.norm = (p(tt.norm.weight), p(tt.norm.bias))
        self.proj_in = (p(tt.proj_in.weight), p(tt.proj_in.bias))
        self.proj_out = (p(tt.proj_out.weight), p(tt.proj_out.bias))
        self.blocks = []
        for blk in tt.transformer_blocks:
            attn = []
            for a, n in zip(blk.attention_blocks, blk.norms):
                qkv = torch.cat([a.to_q.weight, a.to_k.weight, a.to_v.weight], 0)
                attn.append((p(n.weight), p(n.bias), n.eps, p(qkv), p(a.to_out[0].weight), p(a.to_out[0].bias)))
            ff = blk.ff
            self.blocks.append((attn, (p(blk.ff_norm.weight), p(blk.ff_norm.bias), blk.ff_norm.eps),
                                (p(ff.net[0].proj.weight), p(ff.net[0].proj.bias)), (p(ff.net[2].weight), p(ff.net[2].bias))))
        pe = sinusoidal_table(frames, self.c, device=dev, dtype=torch.float32)
        self.pe = pe.to(dt)
        self.dtype = dt

    def __call__(self, x, frames, pooled=False):
        bf, c, hh, ww = x.shape
        b = bf // frames
        if pooled:  # statistics over the frames of each item, without a permute: view (b, f, G, c/G·h·w)
            v = x.view(b, frames, GROUPS, -1)
            var, mean = torch.var_mean(v, dim=(1, 3), keepdim=True, correction=0)
            h = ((v - mean) * torch.rsqrt(var + 1e-6)).view(bf, c, hh, ww)
            h = h * self.norm[0].view(1, c, 1, 1) + self.norm[1].view(1, c, 1, 1)
        else:
            h = F.group_norm(x, GROUPS, self.norm[0], self.norm[1], 1e-6)
        s = b * hh * ww
        h = h.view(b, frames, c, hh * ww).permute(0, 3, 1, 2).reshape(s, frames, c)  # the one copy in
        h = F.linear(h, *self.proj_in)
        d = c // HEADS
        for attn, ffn, ff_in, ff_out in self.blocks:
            for nw, nb, eps, wqkv, wo, bo in attn:
                n = F.layer_norm(h, (c,), nw, nb, eps)
                n.add_(self.pe)
                qkv = F.linear(n, wqkv).view(s, frames, 3, HEADS, d).permute(2, 0, 3, 1, 4)
                o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [s, heads, f, d]
                h = torch.addmm(h.view(-1, c), o.transpose(1, 2).reshape(-1, c), wo.t(), beta=1, alpha=1).add_(bo).view(s, frames, c)
            n = F.layer_norm(h, (c,), *ffn)
            value, gate = F.linear(n, *ff_in).chunk(2, dim=-1)
            g = F.gelu(gate)
            g.mul_(value)
            h = h + F.linear(g, *ff_out)
        out = F.linear(h, *self.proj_out)
        return out.view(b, hh * ww, frames, c).permute(0, 2, 3, 1).reshape(bf, c, hh, ww)  # the one copy out


class Bf16Delta:
    """The module's own delta() computed in bf16 (a bf16 copy of its weights); the residual stays in x's dtype."""

    def __init__(self, module, dtype=torch.bfloat16):
        self.tt = copy.deepcopy(module.temporal_transformer).to(dtype)
        self.dtype = dtype

    def __call__(self, x, frames, norm_mode):
        return self.tt.delta(x.to(self.dtype), frames, norm_mode).to(x.dtype)


def cpu_has_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


# ---------------------------------------------------------------------------------------------

OP_CATEGORIES = [
    ("GEMM (linear)", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
                       "mkldnn", "aten::_mm", "gemm")),
    ("attention (SDPA)", ("scaled_dot_product", "flash", "efficient_attention", "cudnn_attention", "aten::_softmax")),
    ("copies (contiguous/cast)", ("aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy", "aten::to",
                                  "Memcpy", "elementwise_kernel<128, 2")),
    ("GroupNorm/LayerNorm", ("group_norm", "layer_norm", "GroupNorm", "LayerNorm", "welford")),
    ("GELU/mul/add/PE (elementwise)", ("aten::gelu", "aten::mul", "aten::add", "aten::sin", "aten::cos", "aten::exp",
                                       "aten::arange", "aten::zeros", "aten::fill_", "aten::div", "aten::sub",
                                       "GeluCUDAKernel", "elementwise", "vectorized")),
]


def _category(name: str) -> str:
    for cat, keys in OP_CATEGORIES:
        if any(k in name for k in keys):
            return cat
    return "other"


def profile(comfy, capture, device, args, run_kind=None, plain_s_per_step=None, anim_s_per_step=None) -> dict:
    """run_kind(kind, steps) runs the 'plain' or 'anim' workflow once and returns bench_motion's result dict."""
    sync = comfy.sync
    dev = comfy.torch_device
    sinusoidal_table = comfy.pack_attr("motion.model", "sinusoidal_table")
    group_norm = comfy.pack_attr("motion.model", "group_norm")
    cast = comfy.pack_attr("motion.model", "cast")
    POOLED = comfy.pack_attr("motion.model", "POOLED")
    levels = _levels(capture)
    out: dict = {"levels": {}}
    print(f"\n=== profile: {len(capture)} motion modules per UNet call, levels (C@HxW: modules): "
          + ", ".join(f"{c}@{h}x{w}: {len(v)}" for (c, h, w), v in levels.items()) + " ===", flush=True)

    # ----- flops
    try:
        from torch.utils.flop_counter import FlopCounterMode
        counted = {}
        for kind in ("plain", "anim"):
            steps = 2
            with FlopCounterMode(display=False) as fc:
                r = run_kind(kind, steps)
            counted[kind] = fc.get_total_flops() / steps
        motion_flops = 0
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            for module, shape, frames, norm, dtype in capture:
                module(_input(shape, dtype, dev), frames, norm)
        motion_flops = fc.get_total_flops()
        if not counted["plain"] or not motion_flops:
            raise RuntimeError("FlopCounterMode counted nothing (sampling ran in another thread?)")
        floor = counted["anim"] / counted["plain"]
        out["flops"] = {"plain_gflop_per_step": counted["plain"] / 1e9, "anim_gflop_per_step": counted["anim"] / 1e9,
                        "motion_gflop_per_unet_call": motion_flops / 1e9, "flop_ratio": floor}
        print(f"[flops] plain UNet {counted['plain'] / 1e9:.1f} GFLOP/step, animation {counted['anim'] / 1e9:.1f} GFLOP/step "
              f"(motion modules {motion_flops / 1e9:.1f} GFLOP per UNet call) -> FLOP ratio {floor:.3f}", flush=True)
        if plain_s_per_step:
            print(f"[flops] achieved: plain {counted['plain'] / plain_s_per_step / 1e9:.0f} GFLOP/s; "
                  f"the animation's extra {(counted['anim'] - counted['plain']) / 1e9:.1f} GFLOP/step at that rate = "
                  f"{(counted['anim'] - counted['plain']) / (counted['plain'] / plain_s_per_step):.3f} s/step", flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"[flops] skipped: {type(e).__name__}: {e}")

    # ----- ops (torch.profiler, per level)
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    print("\n[ops] motion-module self time per UNet call by op category (torch.profiler, 3 iterations averaged):")
    cats = [c for c, _ in OP_CATEGORIES] + ["other"]
    print("  level          ms/call-set  " + "  ".join(f"{c[:14]:>14s}" for c in cats))
    total_by_cat = defaultdict(float)
    for key, items in levels.items():
        xs = [_input(shape, dtype, dev, i) for i, (_, shape, _, _, dtype) in enumerate(items)]

        def call():
            for (module, _, frames, norm, _), x in zip(items, xs):
                module(x, frames, norm)
        with torch.inference_mode():
            call(); call()
            sync()
            with tprofile(activities=acts) as prof:
                for _ in range(3):
                    call()
                sync()
        by_cat = defaultdict(float)
        for ev in prof.key_averages():
            t = ev.self_device_time_total if device == "cuda" else ev.self_cpu_time_total
            by_cat[_category(ev.key)] += t / 3 / 1000  # ms per call set
        tot = sum(by_cat.values())
        for c, v in by_cat.items():
            total_by_cat[c] += v
        out["levels"].setdefault(f"{key[0]}@{key[1]}x{key[2]}", {})["op_ms"] = dict(by_cat)
        print(f"  {key[0]:4d}@{key[1]}x{key[2]:<3d} x{len(items)}  {tot:10.1f}  "
              + "  ".join(f"{100 * by_cat.get(c, 0) / tot:13.1f}%" for c in cats))
    tot = sum(total_by_cat.values())
    print(f"  all            {tot:10.1f}  " + "  ".join(f"{100 * total_by_cat.get(c, 0) / tot:13.1f}%" for c in cats))
    out["op_ms_all_levels"] = dict(total_by_cat)

    # ----- parts: micro-benchmarks at each level (ms per UNet call = per call x modules at the level)
    print("\n[parts] ms per UNet call (all modules of the level), current code vs alternative:")
    parts_total = defaultdict(lambda: [0.0, 0.0])
    with torch.inference_mode():
        for key, items in levels.items():
            module, shape, frames, norm, dtype = items[0]
            n_mod = len(items)
            tt = module.temporal_transformer
            c = tt.channels
            x = _input(shape, dtype, dev)
            bf, _, hh, ww = shape
            b = bf // frames
            s = b * hh * ww
            h3 = _input((s, frames, c), dtype, dev, 1)
            rows = {}
            # PE table: computed on every module call vs cached
            pe_cache = sinusoidal_table(frames, c, device=dev, dtype=dtype)
            rows["PE table (sin/cos per call vs cached)"] = (
                _timeit(lambda: sinusoidal_table(frames, c, device=dev, dtype=dtype), sync), _timeit(lambda: pe_cache + 0, sync))
            # cast(): a .to() per weight per call (15 weights per module call) vs none
            ws = [p for p in tt.parameters()]
            rows[f"cast() of the {len(ws)} weights (no-op .to)"] = (_timeit(lambda: [cast(w, x) for w in ws], sync), 0.0)
            # rearrange in/out (both copies) vs a view+permute+reshape pair
            from einops import rearrange
            rows["rearrange in+out (copies)"] = (
                _timeit(lambda: rearrange(rearrange(x, "(b f) c h w -> (b h w) f c", f=frames).contiguous(),
                                          "(b h w) f c -> (b f) c h w", h=hh, w=ww).contiguous(), sync),
                _timeit(lambda: x.view(b, frames, c, hh * ww).permute(0, 3, 1, 2).reshape(s, frames, c)
                        .view(b, hh * ww, frames, c).permute(0, 2, 3, 1).reshape(bf, c, hh, ww), sync))
            # q, k, v: three GEMMs vs one on concatenated weights (x2 attention blocks)
            a0 = tt.transformer_blocks[0].attention_blocks[0]
            wqkv = torch.cat([a0.to_q.weight, a0.to_k.weight, a0.to_v.weight], 0).contiguous()
            nblocks = len(tt.transformer_blocks[0].attention_blocks)
            rows[f"q,k,v projections x{nblocks} (3 GEMMs vs 1 fused)"] = (
                nblocks * _timeit(lambda: (a0.to_q(h3), a0.to_k(h3), a0.to_v(h3)), sync),
                nblocks * _timeit(lambda: F.linear(h3, wqkv), sync))
            # attention core: SDPA on the strided views the module passes vs explicit softmax(qk^T)v
            q = rearrange(a0.to_q(h3), "s f (h d) -> s h f d", h=HEADS)
            k = rearrange(a0.to_k(h3), "s f (h d) -> s h f d", h=HEADS)
            v = rearrange(a0.to_v(h3), "s f (h d) -> s h f d", h=HEADS)
            scale = 1 / math.sqrt(c // HEADS)
            rows[f"attention core x{nblocks} (SDPA vs explicit)"] = (
                nblocks * _timeit(lambda: F.scaled_dot_product_attention(q, k, v), sync),
                nblocks * _timeit(lambda: torch.softmax((q @ k.transpose(-1, -2)) * scale, -1) @ v, sync))
            # GEGLU: value * gelu(gate) out of place vs in place
            proj = tt.transformer_blocks[0].ff.net[0].proj(h3)

            def geglu_inplace():
                value, gate = proj.chunk(2, -1)
                g = F.gelu(gate)
                return g.mul_(value)
            rows["GEGLU (value*gelu(gate) vs in-place)"] = (
                _timeit(lambda: (lambda vg: vg[0] * F.gelu(vg[1]))(proj.chunk(2, -1)), sync), _timeit(geglu_inplace, sync))
            # GroupNorm: per-frame (v2) vs pooled (v1/SDXL-beta modules): rearrange path vs view path
            gw, gb = tt.norm.weight, tt.norm.bias

            def pooled_view():
                vv = x.view(b, frames, GROUPS, -1)
                var, mean = torch.var_mean(vv, dim=(1, 3), keepdim=True, correction=0)
                y = ((vv - mean) * torch.rsqrt(var + 1e-6)).view(bf, c, hh, ww)
                return y * gw.view(1, c, 1, 1) + gb.view(1, c, 1, 1)
            t_per_frame = _timeit(lambda: group_norm(x, frames, gw, gb, "per_frame"), sync)
            t_pooled = _timeit(lambda: group_norm(x, frames, gw, gb, POOLED), sync)
            rows["GroupNorm pooled: rearrange path vs view path"] = (t_pooled, _timeit(pooled_view, sync))
            rows["  (GroupNorm per-frame, for reference)"] = (t_per_frame, t_per_frame)
            lvl = out["levels"].setdefault(f"{key[0]}@{key[1]}x{key[2]}", {})
            lvl["parts_ms"] = {}
            print(f"  {c}@{hh}x{ww} x{n_mod}  (input {tuple(shape)}, {dtype})")
            for name, (cur, alt) in rows.items():
                cur_ms, alt_ms = 1000 * cur * n_mod, 1000 * alt * n_mod
                lvl["parts_ms"][name] = (cur_ms, alt_ms)
                if not name.startswith("  "):
                    parts_total[name][0] += cur_ms
                    parts_total[name][1] += alt_ms
                print(f"    {name:48s} {cur_ms:9.2f} -> {alt_ms:9.2f} ms")
    print("  all levels, per UNet call:")
    for name, (cur_ms, alt_ms) in parts_total.items():
        print(f"    {name:48s} {cur_ms:9.2f} -> {alt_ms:9.2f} ms  (saves {cur_ms - alt_ms:7.2f})")
    out["parts_ms_all_levels"] = {k: tuple(v) for k, v in parts_total.items()}

    # ----- variants: whole module, per level
    print("\n[variants] whole motion-module time per UNet call (ms, all modules of the level) and max |error| of the output:")
    want_bf16 = device == "cpu" and cpu_has_bf16()
    hdr = "  level          current    fused-fp32" + ("   bf16-compute" if want_bf16 else "")
    print(hdr)
    tot = defaultdict(float)
    with torch.inference_mode():
        for key, items in levels.items():
            module, shape, frames, norm, dtype = items[0]
            n_mod = len(items)
            x = _input(shape, dtype, dev)
            ref = module(x, frames, norm)
            fast = FastDelta(module, frames, sinusoidal_table=sinusoidal_table)
            pooled = norm == POOLED
            err_fast = (x + fast(x, frames, pooled) - ref).abs().max().item()
            t_cur = _timeit(lambda: module(x, frames, norm), sync) * n_mod * 1000
            t_fast = _timeit(lambda: x + fast(x, frames, pooled), sync) * n_mod * 1000
            row = {"current_ms": t_cur, "fused_fp32_ms": t_fast, "fused_fp32_max_err": err_fast,
                   "ref_max_abs": ref.abs().max().item()}
            line = f"  {key[0]:4d}@{key[1]}x{key[2]:<3d} x{n_mod}  {t_cur:9.1f}   {t_fast:9.1f} (err {err_fast:.1e})"
            tot["current"] += t_cur
            tot["fused"] += t_fast
            if want_bf16:
                b16 = Bf16Delta(module)
                delta_ref = ref - x
                err_b = (b16(x, frames, norm) - delta_ref).abs().max().item()
                rel_b = err_b / max(delta_ref.abs().max().item(), 1e-12)
                t_b = _timeit(lambda: x + b16(x, frames, norm), sync) * n_mod * 1000
                row.update(bf16_ms=t_b, bf16_max_err=err_b, bf16_rel_err=rel_b)
                line += f"   {t_b:9.1f} (err {err_b:.1e}, {100 * rel_b:.2f}% of max|delta|)"
                tot["bf16"] += t_b
            out["levels"].setdefault(f"{key[0]}@{key[1]}x{key[2]}", {})["variants"] = row
            print(line)
    print(f"  all           {tot['current']:9.1f}   {tot['fused']:9.1f}" + (f"       {tot['bf16']:9.1f}" if want_bf16 else "")
          + "   ms per UNet call")
    out["variants_ms_per_unet_call"] = dict(tot)

    # ----- variants in-situ: full sampling runs with each alternative patched into MotionLayer.run, interleaved
    # with plain and current-animation runs (rotating order, --repeats rounds, capped at 2), medians compared.
    if run_kind is not None:
        layer_cls = comfy.pack_attr("motion.injection", "MotionLayer")
        frames_in_call = comfy.pack_attr("common.unet_call", "frames_in_call")
        orig = layer_cls.run
        makers = {"fused-fp32": lambda m, fr: (lambda fd: lambda x, frames, norm: x + fd(x, frames, norm == POOLED))(
            FastDelta(m, fr, sinusoidal_table=sinusoidal_table))}
        if want_bf16:
            makers["bf16-compute"] = lambda m, fr: (lambda bd: lambda x, frames, norm: x + bd(x, frames, norm))(Bf16Delta(m))
        impls = {name: {} for name in makers}

        def patched(name):
            make, cache = makers[name], impls[name]

            def run(layer, x, transformer_options):
                # the settings this bench uses only: scale 1, the whole schedule, no image features
                frames = frames_in_call(x.shape[0], transformer_options)
                f = cache.get(id(layer.module))
                if f is None:
                    f = cache[id(layer.module)] = make(layer.module, frames)
                return f(x, frames, layer.app.info.module_norm)
            return run

        def run_one(name):
            layer_cls.run = orig if name in ("plain", "anim (current)") else patched(name)
            try:
                return run_kind("plain" if name == "plain" else "anim", args.steps)["s_per_step"]
            finally:
                layer_cls.run = orig

        names = ["plain", "anim (current)", *makers]
        for name in makers:  # warm-up: builds the prepared weights
            run_one(name)
        times = defaultdict(list)
        rounds = max(1, min(2, args.repeats))
        for i in range(rounds):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                times[name].append(run_one(name))
                print(f"[in-situ] {name:15s} {times[name][-1]:.3f} s/step", flush=True)
        med = {n: statistics.median(v) for n, v in times.items()}
        insitu = {n: {"s_per_step_runs": times[n], "s_per_step": med[n], "ratio_vs_plain": med[n] / med["plain"]} for n in names}
        print(f"[in-situ] medians of {rounds} interleaved round(s): " + ", ".join(
            f"{n} {med[n]:.3f} s/step" + ("" if n == "plain" else f" (ratio {med[n] / med['plain']:.3f})") for n in names))
        out["in_situ"] = insitu
    return out
