"""ContextRef and NaiveReuse (AnimateDiff-Evolved's context extras) against their original definitions.

Oracles written out here from the originals, not from MotionKit's code:
* NaiveReuse: ADE 90fb133 animatediff/context_extras.py NaiveReuseHandler (cache_first_context_results,
  apply_cached) over the sums and weights of sampling.py's windows, here core's weights;
* ContextRef's windows: ADE ContextRefHandler.prepare_referencecn (first / sliding / indexes);
* ContextRef's attention: Advanced-ControlNet adv_control/control_reference.py _forward_inject_BasicTransformerBlock
  (READ: keys/values with the bank, strength, style fidelity on the uncond rows; WRITE: norm1(x) per cond uuid).
The attention runs through a real ComfyUI BasicTransformerBlock (tiny, random weights) and core's context handler.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import comfy_env
from motionkit.sampling.context_ref import FIRST, INDEXES, SLIDING, ContextRef, WindowStates, block_weights
from motionkit.sampling.naive_reuse import NaiveReuse

comfyui = pytest.mark.comfyui
SIGMAS = torch.tensor([14.6, 9.0, 5.0, 2.0, 0.5, 0.0])

# ---------------------------------------------------------------------------------------------
# ADE's window states, written out (ContextRefHandler.prepare_referencecn + finalize_step)


def ade_states(mode, windows, sliding_width=2, indexes=(0,)):
    first, idxs, out = True, set(indexes), []
    for window_idx, ctx_idxs in enumerate(windows):
        state = "write" if first else "read"
        if not first and mode == "sliding" and window_idx % (sliding_width - 1) == 0:
            state = "read_write"
        if mode == "indexes":
            contains = False
            for i in ctx_idxs:
                if i in idxs:
                    contains = True
                    idxs.remove(i)
            state = ("write" if first else "read_write") if contains else "read"
        out.append(state)
        first = False
    return out


@pytest.mark.parametrize("mode,width,indexes", [(FIRST, 2, (0,)), (SLIDING, 2, (0,)), (SLIDING, 3, (0,)),
                                                (SLIDING, 4, (0,)), (INDEXES, 2, (0, 20, 30)), (INDEXES, 2, (13,))])
def test_window_states_are_ades(mode, width, indexes):
    windows = [list(range(s, s + 16)) for s in (0, 12, 24, 36, 48)]
    states = WindowStates(ContextRef(mode=mode, sliding_width=width, indexes=indexes))
    ours = []
    for i, w in enumerate(windows):
        ours.append(states.state(i, w))
        states.window_done()
    assert ours == ade_states(mode, windows, width, indexes)


def test_block_weights_rank_the_widest_first_stably():
    blocks = [("in1", 320), ("in4", 640), ("in7", 1280), ("mid", 1280), ("out3", 1280), ("out9", 320)]
    w = block_weights(blocks)
    assert [k for k, _ in sorted(w.items(), key=lambda kv: kv[1])] == ["in7", "mid", "out3", "in4", "in1", "out9"]
    assert w["in7"] == 0.0 and w["out9"] == 5 / 6


# ---------------------------------------------------------------------------------------------
# through core's handler, with a tiny BasicTransformerBlock as the UNet


@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.context_windows
    import comfy.ldm.modules.attention as attention
    import comfy.model_patcher
    from motionkit.nodes import context_consistency
    from motionkit.sampling import consistency, context_handler
    return SimpleNamespace(cw=comfy.context_windows, attention=attention, model_patcher=comfy.model_patcher,
                           handler=context_handler, consistency=consistency, nodes=context_consistency)


DIM, TOKENS = 16, 6


class TinyUNet(torch.nn.Module):
    """One ComfyUI transformer block where the SD UNet's input block 1 has one (the key ComfyUI gives it)."""

    def __init__(self, attention):
        super().__init__()
        torch.manual_seed(0)
        block = attention.BasicTransformerBlock(DIM, n_heads=2, d_head=8, context_dim=DIM)
        for p in block.parameters():
            torch.nn.init.normal_(p, std=0.3)
        holder = torch.nn.Module()
        holder.transformer_blocks = torch.nn.ModuleList([block])
        self.input_blocks = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Sequential(holder)])
        self.block = block


class Sampling:
    def percent_to_sigma(self, percent):  # core's ModelSamplingDiscrete ends; linear in between is enough here
        return 999999999.9 if percent <= 0.0 else 0.0 if percent >= 1.0 else float(14.6 * (1.0 - percent))


def make_model(comfy):
    return SimpleNamespace(diffusion_model=TinyUNet(comfy.attention), model_sampling=Sampling())


def latent(frames):
    return torch.randn(frames, TOKENS, DIM, generator=torch.Generator().manual_seed(frames))


def block_calc(model, patches, log=None):
    """calc_cond_batch's stand-in: every cond in one batch (uncond first, as core batches them), through the block
    with the run's transformer_options and the node's patches; each cond's text is a different context."""
    def calc(m, conds, x, t, model_options):
        options = dict(model_options["transformer_options"])
        kinds = [1, 0][-len(conds):]
        options.update(patches=patches, block=("input", 1), block_index=0, cond_or_uncond=kinds,
                       uuids=[f"uuid{k}" for k in kinds])
        ctx = torch.cat([torch.full((x.size(0), 3, DIM), 0.1 * (k + 1)) for k in kinds])
        out = model.diffusion_model.block(torch.cat([x] * len(kinds)), context=ctx, transformer_options=options)
        if log is not None:
            log.append((list(model_options["transformer_options"]["context_window"].index_list), x.clone()))
        return list(out.chunk(len(kinds)))[::-1]  # conds in the order they were given: cond, uncond
    return calc


def run(comfy, model, frames, ref=None, naive=None, step=0, conds=2, log=None, length=16, overlap=4,
        schedule="uniform", fuse="pyramid"):
    h = comfy.handler.make_handler(length, overlap, schedule, 1, fuse, False)
    options = {"transformer_options": {"sample_sigmas": SIGMAS}}
    patches = {}
    if ref is not None:
        options["transformer_options"][comfy.consistency.REF_KEY] = ref
        patches = {"attn1_patch": [comfy.consistency.attn1_patch],
                   "attn1_output_patch": [comfy.consistency.attn1_output_patch]}
    if naive is not None:
        options["transformer_options"][comfy.consistency.NAIVE_KEY] = naive
    x = latent(frames)
    out = h.execute(block_calc(model, patches, log), model, [[{}]] * conds, x, torch.full((frames,), float(SIGMAS[step])),
                    options)
    assert comfy.consistency.STEP_KEY not in options["transformer_options"]  # the step's bank is gone
    return out, h


# ---- ContextRef: Advanced-ControlNet's reference attention, written out -----------------------

def acn_attn1(block, x, bank, kinds, strength, fidelity):
    """_forward_inject_BasicTransformerBlock's attn1 part (no attn1 patches of others): READ with `bank`
    (rows per cond, None = WRITE/OFF: plain attention)."""
    n = block.norm1(x)
    if bank is None:
        return block.attn1(n)
    real_bank = bank
    if not math.isclose(strength, 1.0):
        real_bank = bank * strength + n * (1 - strength)
    n_uc = block.attn1(n, context=torch.cat([n, real_bank], dim=1), value=torch.cat([n, real_bank], dim=1))
    n_c = n_uc.clone()
    per = x.size(0) // len(kinds)
    uc = [c * per + r for c, k in enumerate(kinds) if k == 1 for r in range(per)]
    if uc and not math.isclose(fidelity, 0.0):
        n_c[uc] = block.attn1(n[uc], context=n[uc], value=n[uc])
    return fidelity * n_c + (1.0 - fidelity) * n_uc


def acn_block(block, x, ctx, bank, kinds, strength, fidelity):
    """The rest of ComfyUI's BasicTransformerBlock.forward after attn1, as ACN's injected forward keeps it."""
    x = acn_attn1(block, x, bank, kinds, strength, fidelity) + x
    x = block.attn2(block.norm2(x), context=ctx) + x
    return block.ff(block.norm3(x)) + x


@comfyui
@pytest.mark.parametrize("strength,fidelity,conds", [(1.0, 1.0, 2), (0.6, 0.3, 2), (1.0, 0.0, 2), (0.7, 1.0, 1)])
def test_contextref_attention_is_advanced_controlnets(comfy, strength, fidelity, conds):
    model = make_model(comfy)
    block = model.diffusion_model.block
    frames, log = 40, []
    ref = ContextRef(strength=strength, style_fidelity=fidelity)
    with torch.no_grad():
        (cond, *rest), _ = run(comfy, model, frames, ref=ref, conds=conds, log=log, schedule="static", fuse="flat")
        kinds = [1, 0][-conds:]
        ctx = torch.cat([torch.full((16, 3, DIM), 0.1 * (k + 1)) for k in kinds])
        bank = None
        sums, counts = torch.zeros(conds, frames, TOKENS, DIM), torch.zeros(frames, 1, 1)
        for i, (window, x) in enumerate(log):
            batch = torch.cat([x] * len(kinds))
            expected = acn_block(block, batch, ctx, bank, kinds, strength, fidelity)
            if i == 0:
                bank = block.norm1(batch)  # WRITE: norm1(x) of the first window, per cond (the batch's rows)
            sums[:, window] += torch.stack(list(expected.chunk(len(kinds)))[::-1])  # cond, uncond
            counts[window] += 1
        expected = sums / counts
        plain, _ = run(comfy, model, frames, conds=conds, schedule="static", fuse="flat")
    for ours, exp, base in zip([cond, *rest], expected, plain):  # cond, and uncond with its own bank
        effect = (exp - base).abs().max().item()
        worst = (ours - exp).abs().max().item()
        if conds == 1 or fidelity < 1.0 or ours is cond:
            assert effect > 1e-2, effect  # the reference changes later windows
        assert worst <= 1e-4 * max(effect, 1e-2), (worst, effect)
    plain = plain[0]
    assert torch.allclose(cond[:12], plain[:12], atol=1e-6)  # frames only the first window (the writer) holds


@comfyui
def test_contextref_off_at_strength_0_outside_its_steps_and_without_windows(comfy):
    model = make_model(comfy)
    with torch.no_grad():
        plain, _ = run(comfy, model, 40)
        for ref, step in [(ContextRef(strength=0.0), 0), (ContextRef(ref_weight=0.0), 0),
                          (ContextRef(end_percent=0.25), 3)]:  # step 3's sigma 2.0 is past 25 % (10.95)
            out, _ = run(comfy, model, 40, ref=ref, step=step)
            if step:
                plain_step, _ = run(comfy, model, 40, step=step)
                assert all(torch.equal(a, b) for a, b in zip(out, plain_step))
            else:
                assert all(torch.equal(a, b) for a, b in zip(out, plain))
        h = comfy.handler.make_handler(16, 4, "uniform", 1, "pyramid", False)
        assert not h.should_use_context(None, [[{}]], latent(16), None, {})  # fits one window: core never windows
        n = torch.randn(2, 3, 4)
        assert comfy.consistency.attn1_patch(n, n, n, {"block": ("input", 1)}) == (n, n, n)  # inert without a step
        assert comfy.consistency.attn1_output_patch(n, {}) is n


@comfyui
def test_contextref_bank_is_new_every_step_and_run(comfy):
    model = make_model(comfy)
    with torch.no_grad():
        first, _ = run(comfy, model, 40, ref=ContextRef())
        again, _ = run(comfy, model, 40, ref=ContextRef())
    assert all(torch.equal(a, b) for a, b in zip(first, again))


# ---- NaiveReuse: ADE's NaiveReuseHandler, written out ----------------------------------------

def ade_naive_reuse(comfy, handler, log, outputs, frames, weighted_mean, timestep):
    """sampling.py's window loop (sums and weights, here core's get_context_weights) with
    NaiveReuseHandler.cache_first_context_results / apply_cached, then the division by the weights."""
    conds_final = [torch.zeros(frames, TOKENS, DIM) for _ in outputs[0]]
    counts_final = [torch.zeros(frames, 1, 1) for _ in outputs[0]]
    cached = [torch.zeros(frames, TOKENS, DIM) for _ in outputs[0]]
    cached_idxs = None
    for window_idx, ((ctx_idxs, _), outs) in enumerate(zip(log, outputs)):
        weights = comfy.cw.get_context_weights(len(ctx_idxs), frames, ctx_idxs, handler, sigma=timestep)
        w = torch.tensor(weights).reshape(-1, 1, 1)
        for i in range(len(outs)):
            conds_final[i][ctx_idxs] += outs[i] * w
            counts_final[i][ctx_idxs] += w
        if window_idx == 0:
            cached_idxs = ctx_idxs
            for i in range(len(outs)):
                cached[i][ctx_idxs] = conds_final[i][ctx_idxs] / counts_final[i][ctx_idxs]
    start_idx = cached_idxs[0]
    for z in range(0, frames, len(cached_idxs)):
        for i in range(len(cached)):
            new_ctx_idxs = [(zz + start_idx) % frames for zz in list(range(z, z + len(cached_idxs))) if zz < frames]
            adjusted = cached_idxs[:len(new_ctx_idxs)]
            conds_final[i][new_ctx_idxs] = (weighted_mean * (cached[i][adjusted] * counts_final[i][new_ctx_idxs])
                                            + (1. - weighted_mean) * conds_final[i][new_ctx_idxs])
    return [c / n for c, n in zip(conds_final, counts_final)]


@comfyui
@pytest.mark.parametrize("frames,step,schedule,weighted_mean", [(40, 0, "uniform", 0.95), (64, 1, "uniform", 0.5),
                                                               (37, 0, "static", 0.95), (50, 2, "uniform looped", 0.8)])
def test_naive_reuse_is_ades(comfy, frames, step, schedule, weighted_mean):
    model = make_model(comfy)
    naive = NaiveReuse(weighted_mean=weighted_mean, end_percent=1.0)
    log, outputs = [], []
    with torch.no_grad():
        calc = block_calc(model, {}, log)

        def recording(*args):
            out = calc(*args)
            outputs.append([o.clone() for o in out])
            return out
        h = comfy.handler.make_handler(16, 4, schedule, 1, "pyramid", False)
        options = {"transformer_options": {"sample_sigmas": SIGMAS, comfy.consistency.NAIVE_KEY: naive}}
        t = torch.full((frames,), float(SIGMAS[step]))
        ours = h.execute(recording, model, [[{}], [{}]], latent(frames), t, options)
        expected = ade_naive_reuse(comfy, h, log, outputs, frames, weighted_mean, t)
        plain, _ = run(comfy, model, frames, step=step, schedule=schedule)
    for o, e, p in zip(ours, expected, plain):
        effect = (e - p).abs().max().item()
        assert effect > 1e-2
        assert (o - e).abs().max().item() <= 1e-4 * effect


@comfyui
def test_naive_reuse_runs_only_in_its_steps(comfy):
    model = make_model(comfy)
    with torch.no_grad():
        for naive, step, changes in [(NaiveReuse(), 0, True), (NaiveReuse(), 1, False),  # 15 %: sigma 12.41
                                     (NaiveReuse(weighted_mean=0.0), 0, False)]:
            out, _ = run(comfy, model, 40, naive=naive, step=step)
            plain, _ = run(comfy, model, 40, step=step)
            assert (not torch.equal(out[0], plain[0])) == changes


# ---- the nodes ---------------------------------------------------------------------------------

@comfyui
def test_nodes_explain_their_inputs_and_set_up_the_model_once(comfy):
    nodes = comfy.nodes
    for node in (nodes.ContextReference, nodes.ContextNaiveReuse):
        types = node.INPUT_TYPES()
        for group in types.values():
            for name, (_, opts) in group.items():
                assert len(opts["tooltip"]) > 60, name
        assert len(node.DESCRIPTION) > 100
    types = nodes.ContextReference.INPUT_TYPES()
    assert {k: v[1]["default"] for k, v in types["required"].items() if k != "model" and k != "mode"} == {
        "strength": 1.0, "style_fidelity": 1.0, "ref_weight": 1.0, "start_percent": 0.0, "end_percent": 0.25}
    assert nodes.ContextNaiveReuse.INPUT_TYPES()["required"]["weighted_mean"][1]["default"] == 0.95
    patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(1, 1), torch.device("cpu"), torch.device("cpu"))
    (m,) = nodes.ContextReference().apply(patcher, 1.0, 1.0, 1.0, "indexes", 0.0, 0.25, reference_frames="48, 16")
    (m,) = nodes.ContextReference().apply(m, 0.5, 1.0, 1.0, "first", 0.0, 0.25)
    (m,) = nodes.ContextNaiveReuse().apply(m, 0.9, 0.0, 0.15)
    to = m.model_options["transformer_options"]
    assert to[comfy.consistency.REF_KEY].strength == 0.5 and to[comfy.consistency.NAIVE_KEY].weighted_mean == 0.9
    assert to["patches"]["attn1_patch"] == [comfy.consistency.attn1_patch]
    assert to["patches"]["attn1_output_patch"] == [comfy.consistency.attn1_output_patch]
    assert comfy.consistency.REF_KEY not in patcher.model_options["transformer_options"]
    assert nodes.parse_frames("48, 16") == (0, 16, 48)
    from motionkit.common.errors import MotionKitError
    with pytest.raises(MotionKitError, match="frame numbers separated by commas"):
        nodes.parse_frames("0, x")
