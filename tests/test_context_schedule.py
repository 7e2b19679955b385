"""Context windows that change during sampling: 'Context Windows (Motion)' chained at later start_percents.

The oracle of which options are in force is AnimateDiff-Evolved's, written out here from its code
(Kosinkadink/ComfyUI-AnimateDiff-Evolved at 90fb133): animatediff/context.py ContextOptions
(get_effective_guarantee_steps, start_t) and ContextOptionsGroup (add: sorted by start_percent; reset: the first
options in force; initialize_timesteps; prepare_current_context). ADE's own class, run on the same sigmas,
agrees (checked outside the repo; numbers in the branch's report). The `comfyui` tests sample in-process with
ComfyUI's samplers and a stand-in diffusion model that records the frames of every call.
"""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

import comfy_env
from motionkit.sampling.errors import ContextWindowError
from motionkit.sampling.scheduled_context import ContextPart, ContextPlan, ScheduledContextWindows, schedule_parts

from sigma_schedule import BIGMAX_TENSOR, Sampling


# ---------------------------------------------------------------------------------------------
# ADE's choice, transcribed (context.py ContextOptions / ContextOptionsGroup)

class ADEOptions:
    def __init__(self, start_percent, guarantee_steps, name):
        self.start_percent, self.start_t, self.guarantee_steps, self.name = float(start_percent), 999999999.9, \
            guarantee_steps, name

    def get_effective_guarantee_steps(self, max_sigma):
        if self.start_t > max_sigma:
            return 0
        return self.guarantee_steps


class ADEGroup:
    def __init__(self, contexts, model_sampling):
        by_percent = {}  # add(): sorted by start_percent, equal ones in the order added
        for c in contexts:
            by_percent.setdefault(c.start_percent, []).append(c)
        self.contexts = [c for p in sorted(by_percent) for c in by_percent[p]]
        # reset()
        self._current_context, self._current_used_steps, self._current_index, self._previous_t = \
            self.contexts[0], 0, 0, -1
        # initialize_timesteps()
        for c in self.contexts:
            c.start_t = model_sampling.percent_to_sigma(c.start_percent)

    def prepare_current_context(self, t, transformer_options):
        curr_t = t[0]
        if curr_t == self._previous_t:
            return
        max_sigma = torch.max(transformer_options.get("sample_sigmas", BIGMAX_TENSOR))
        if self._current_used_steps >= self._current_context.get_effective_guarantee_steps(max_sigma):
            if 0 <= self._current_index + 1 < len(self.contexts):
                for i in range(self._current_index + 1, len(self.contexts)):
                    eval_c = self.contexts[i]
                    if eval_c.start_t >= curr_t:
                        self._current_index = i
                        self._current_context = eval_c
                        self._current_used_steps = 0
                        if self._current_context.get_effective_guarantee_steps(max_sigma) > 0:
                            break
                    else:
                        break
        self._current_used_steps += 1
        self._previous_t = curr_t


# ---------------------------------------------------------------------------------------------
# sigma sequences

def model_calls(sigmas, calls, substeps):
    """The sigmas of the model calls of one run: `calls` per step (cond/uncond apart, other guiders), and with
    `substeps` a second call between two listed sigmas (dpm_2's midpoint: a sigma not in the list)."""
    out = []
    for i in range(len(sigmas) - 1):
        out += [sigmas[i]] * calls
        if substeps and float(sigmas[i + 1]) > 0:
            out += [(sigmas[i] * sigmas[i + 1]).sqrt()] * calls
    return out


def step_sigmas(steps, first=0.0, shape=3.0):
    """A run of `steps` steps (float32), sigma(percent) on Sampling's curve at step/steps (so some land exactly on a
    part's start sigma) or, shape != 3, on another curve; `first`: the run starts there (denoise < 1)."""
    s = Sampling()
    values = []
    for i in range(steps):
        p = first + (1 - first) * i / steps
        values.append(min(s.percent_to_sigma(p), 14.6) if shape == 3.0 else 14.6 * (1.0 - p) ** shape)
    return torch.tensor(values + [0.0], dtype=torch.float32)


def random_case(seed):
    """(parts as (start_percent, guarantee_steps), steps, first percent, curve, calls per step, substeps,
    with sample_sigmas). The first part starts at 0 (the node's rule) in most cases, above 0 in some (ADE's
    rule still holds: the first is in force from the start)."""
    rng = random.Random(seed)
    grid = [0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.9, 0.95, 1.0]
    starts = sorted(rng.sample(grid, rng.randint(1, 5)))
    if rng.random() < 0.8:
        starts = [0.0] + starts
    parts = [(p, rng.choice([0, 0, 1, 1, 1, 2, 3])) for p in starts]
    return (parts, rng.choice([1, 2, 3, 4, 6, 10, 20, 25]), rng.choice([0.0, 0.0, 0.0, 0.3, 0.6]),
            rng.choice([3.0, 3.0, 1.0, 0.5]), rng.randint(1, 3), rng.random() < 0.25, rng.random() < 0.85)


CASES = [random_case(seed) for seed in range(400)] + [
    # named: long windows until halfway then short; a 3-step guarantee that outlives the next part's start;
    # 0-guarantee parts skipped in one step; a run that starts at 60% (KSamplerAdvanced, img2img) past two parts
    ([(0.0, 1), (0.5, 1)], 10, 0.0, 3.0, 2, False, True),
    ([(0.0, 1), (0.1, 3), (0.2, 1), (0.3, 1)], 4, 0.0, 3.0, 2, False, True),
    ([(0.0, 1), (0.1, 0), (0.15, 0), (0.2, 1)], 3, 0.0, 3.0, 1, False, True),
    ([(0.0, 2), (0.2, 2), (0.4, 1), (0.7, 1)], 5, 0.6, 3.0, 1, False, True),
]


class Recorder:
    """A part's handler: says it uses windows, and which part it is."""

    def __init__(self, index, length=16):
        self.index, self.context_length = index, length

    def should_use_context(self, model, conds, x_in, timestep, model_options):
        return True


def scheduled(parts):
    return ScheduledContextWindows([ContextPart(p, g, Recorder(i), f"part {i}") for i, (p, g) in enumerate(parts)])


def run_both(case, ours=None, sampling=None):
    """Per model call: the index of the options in force, by ADE's transcription and by ScheduledContextWindows
    (asked as core asks it: should_use_context with the call's per-frame timestep)."""
    parts, steps, first, shape, calls, substeps, with_sample_sigmas = case
    sampling = sampling or Sampling()
    ade = ADEGroup([ADEOptions(p, g, i) for i, (p, g) in enumerate(parts)], sampling)
    ours = ours or scheduled(parts)
    ours.set_start_sigmas(sampling)
    sigmas = step_sigmas(steps, first, shape)
    options = {"transformer_options": {"sample_sigmas": sigmas} if with_sample_sigmas else {}}
    got, expected = [], []
    for sigma in model_calls(sigmas, calls, substeps):
        t = sigma.expand(8)  # the frames ride in the batch: one sigma per frame
        ade.prepare_current_context(t, options["transformer_options"])
        assert ours.should_use_context(None, [[{}]], torch.zeros(8, 1), t, options)
        expected.append(ade._current_context.name)
        got.append(ours.current.handler.index)
    return got, expected


def test_options_in_force_are_ades_on_every_call():
    switched = calls = 0
    for case in CASES:
        if len(case[0]) < 2:
            continue  # a schedule has two parts or more
        got, expected = run_both(case)
        assert got == expected, case
        calls += len(got)
        switched += len(set(got)) > 1
    assert switched > 200 and calls > 5000, "the cases must switch options during sampling"


def test_first_options_hold_from_the_start_and_the_next_takes_over_at_its_sigma():
    s = scheduled([(0.0, 1), (0.5, 1)])
    s.set_start_sigmas(Sampling())
    sigmas = step_sigmas(10)
    half = Sampling().percent_to_sigma(0.5)
    options = {"transformer_options": {"sample_sigmas": sigmas}}
    chosen = [s.choose(sigma.expand(4), options).handler.index for sigma in sigmas[:-1]]
    assert chosen == [0 if float(sigma) > half else 1 for sigma in sigmas[:-1]] == [0] * 5 + [1] * 5
    s.set_start_sigmas(Sampling())  # the next run starts with the first options again
    assert s.choose(sigmas[0].expand(4), options).handler.index == 0


def test_a_changed_ade_rule_is_seen():
    """The comparison can fail: ADE's 'start_t >= sigma' read as '>' switches a step later where a step's sigma
    lands exactly on a start sigma (as step_sigmas makes them)."""
    class Later(ScheduledContextWindows):
        def choose(self, timestep, model_options, model=None):
            sigma = timestep.reshape(-1)[0]
            return super().choose(torch.nextafter(sigma, torch.tensor(float("inf"))).expand(1), model_options)

    case = ([(0.0, 1), (0.5, 1)], 10, 0.0, 3.0, 1, False, True)
    later = Later([ContextPart(p, g, Recorder(i), "") for i, (p, g) in enumerate(case[0])])
    got, expected = run_both(case, ours=later)
    assert got != expected


def test_longest_window_is_what_memory_and_the_motion_model_see():
    s = ScheduledContextWindows([ContextPart(0.0, 1, Recorder(0, 24), "a"), ContextPart(0.6, 1, Recorder(1, 8), "b")])
    assert s.context_length == 24 and s.dim == 0


# ---------------------------------------------------------------------------------------------
# chains that cannot be read one way

def part(start, length=16, guarantee=1):
    return ContextPart(start, guarantee, Recorder(0, length), f"length {length}, overlap 4, uniform, pyramid")


def plan(*parts):
    return ContextPlan(tuple(parts), parts[0].handler if len(parts) == 1 else object())


def test_chain_in_order_adds_parts_and_zero_replaces_a_single_one():
    a, b, c = part(0.0, 24), part(0.4, 16), part(0.8, 8)
    assert schedule_parts(None, a) == (a,)
    assert schedule_parts(plan(a), b) == (a, b)
    assert schedule_parts(plan(a, b), c) == (a, b, c)
    again = part(0.0, 12)
    assert schedule_parts(plan(a), again) == (again,)  # as two chained Context Windows did before schedules


def test_equal_start_percents_are_refused_naming_both():
    a, b = part(0.0, 24), part(0.5, 16)
    with pytest.raises(ContextWindowError) as e:
        schedule_parts(plan(a, b), part(0.5, 8))
    message = str(e.value)
    assert "length 8" in message and "length 16" in message and "both start at 0.5" in message
    assert "above 0.5" in message


def test_out_of_order_is_refused_naming_both():
    a, b = part(0.0, 24), part(0.6, 16)
    with pytest.raises(ContextWindowError) as e:
        schedule_parts(plan(a, b), part(0.3, 8))
    message = str(e.value)
    assert "length 8, overlap 4, uniform, pyramid, start_percent 0.3" in message
    assert "length 16, overlap 4, uniform, pyramid, start_percent 0.6" in message
    assert "starts later" in message and "swap" in message


def test_zero_after_a_schedule_and_a_late_first_part_are_refused():
    a, b = part(0.0, 24), part(0.6, 16)
    with pytest.raises(ContextWindowError, match=r"replace them all.*above 0.6"):
        schedule_parts(plan(a, b), part(0.0, 8))
    with pytest.raises(ContextWindowError, match=r"no Context Windows before it.*Set start_percent to 0"):
        schedule_parts(None, part(0.5))
    with pytest.raises(ContextWindowError, match="from 0"):
        schedule_parts(plan(a), part(1.5))
    with pytest.raises(ContextWindowError, match="0 or more"):
        schedule_parts(plan(a), part(0.5, guarantee=-1))


# ---------------------------------------------------------------------------------------------
# In-process ComfyUI

comfyui = pytest.mark.comfyui


@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.latent_formats
    import comfy.model_base
    import comfy.model_patcher
    import comfy.model_sampling
    import comfy.sample
    import comfy.samplers
    import comfy.supported_models_base
    from motionkit.sampling import context_handler
    return SimpleNamespace(comfy=comfy, handler=context_handler)


@comfyui
@pytest.mark.parametrize("flow", [False, True])
def test_options_in_force_are_ades_on_comfyui_schedulers(comfy, flow):
    """Core's own sigma schedules and percent_to_sigma: discrete (eps) and flow (whose percent 0 is sigma 1, the
    first sigma of a full run: there the first part's guarantee_steps counts)."""
    c = comfy.comfy
    if flow:
        sampling = c.model_sampling.ModelSamplingDiscreteFlow(SimpleNamespace(sampling_settings={"shift": 3.0}))
    else:
        sampling = c.model_sampling.ModelSamplingDiscrete(SimpleNamespace(sampling_settings={}))
    rng = random.Random(5 + flow)
    switched = 0
    for seed in range(60):
        parts = random_case(100 + seed)[0]
        if len(parts) < 2:
            parts = [(0.0, 2), (0.5, 1)]
        steps = rng.choice([2, 4, 8, 12, 20])
        name = rng.choice(["normal", "karras", "simple", "sgm_uniform", "exponential", "beta"])
        sigmas = c.samplers.calculate_sigmas(sampling, name, steps).float()[rng.choice([0, 0, steps // 2]):]
        ade = ADEGroup([ADEOptions(p, g, i) for i, (p, g) in enumerate(parts)], sampling)
        ours = scheduled(parts)
        ours.set_start_sigmas(sampling)
        options = {"transformer_options": {"sample_sigmas": sigmas}}
        got, expected = [], []
        for sigma in model_calls(sigmas, rng.randint(1, 2), rng.random() < 0.3):
            ade.prepare_current_context(sigma.expand(4), options["transformer_options"])
            expected.append(ade._current_context.name)
            got.append(ours.choose(sigma.expand(4), options).handler.index)
        assert got == expected, (parts, name, steps)
        switched += len(set(got)) > 1
    assert switched > 20


FRAMES = 24


class StandIn(torch.nn.Module):
    """A diffusion model that records the frames (its window) and the sigma of every call."""

    def __init__(self):
        super().__init__()
        self.dtype = torch.float32
        self.mix = torch.nn.Parameter(torch.randn(4, 4, generator=torch.Generator().manual_seed(3)) / 2)
        self.calls = []

    def forward(self, x, timesteps, context=None, transformer_options=None, **kwargs):
        window = (transformer_options or {}).get("context_window")
        frames = list(window.index_list) if window is not None else list(range(x.shape[0]))
        self.calls.append((float(transformer_options["sigmas"][0]), frames))
        mixed = torch.einsum("bchw,dc->bdhw", x, self.mix)
        return torch.tanh(mixed + x.mean(0, keepdim=True)) * 0.1  # the frames of a call see each other


def comfy_model(comfy):
    """A real BaseModel (eps, core's discrete sampling) around the stand-in, in a ModelPatcher."""
    c = comfy.comfy

    class Config(c.supported_models_base.BASE):
        unet_config = {}
        sampling_settings = {}
        latent_format = c.latent_formats.SD15
        memory_usage_factor = 1.0

    base = c.model_base.BaseModel(Config({"disable_unet_model_creation": True}), device=torch.device("cpu"))
    base.diffusion_model = StandIn()
    return c.model_patcher.ModelPatcher(base, torch.device("cpu"), torch.device("cpu"))


def sample(comfy, model, steps=6, seed=1):
    c = comfy.comfy
    latent = torch.zeros(FRAMES, 4, 8, 8)
    noise = c.sample.prepare_noise(latent, seed)
    cond = [[torch.zeros(1, 2, 8), {}]]
    return c.sample.sample(model, noise, steps, 1.0, "euler", "normal", cond, cond, latent, seed=seed)


def windows_node():
    from motionkit.nodes.context_options import ContextWindows
    return ContextWindows()


@comfyui
def test_two_part_schedule_runs_long_windows_before_the_switch_and_short_after(comfy):
    node = windows_node()
    base = comfy_model(comfy)
    (first,) = node.apply(base, 16, 4, "static", 1, "pyramid", False)
    (model,) = node.apply(first, 8, 2, "static", 1, "pyramid", False, start_percent=0.5, guarantee_steps=1)
    standin = base.model.diffusion_model
    half = model.get_model_object("model_sampling").percent_to_sigma(0.5)
    runs = []
    for run in range(2):  # a second run starts with the first options again
        standin.calls.clear()
        out = sample(comfy, model)
        runs.append(out)
        lengths = {}
        for sigma, frames in standin.calls:
            lengths.setdefault(sigma, set()).add(len(frames))
        assert len(lengths) == 6
        for sigma, seen in lengths.items():
            assert seen == ({16} if sigma > half else {8}), (sigma, half, seen)
        assert {16} in lengths.values() and {8} in lengths.values()
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], sample(comfy, first))  # the windows after the switch matter
    # the windows are the handlers' own: static 16/4 then static 8/2 over 24 frames
    early = [f for s, f in standin.calls if s > half][:2]
    late = [f for s, f in standin.calls if s <= half][:4]
    assert early == [list(range(0, 16)), list(range(8, 24))]
    assert late == [list(range(0, 8)), list(range(6, 14)), list(range(12, 20)), list(range(16, 24))]
    assert "context_handler" not in base.model_options and first.model_options["context_handler"].context_length == 16


@comfyui
def test_single_options_are_unchanged(comfy):
    """Defaults (start_percent 0, guarantee_steps 1): the handler goes on the model by itself, as before schedules,
    and samples exactly as make_handler's handler put on the model by hand."""
    node = windows_node()
    base = comfy_model(comfy)
    (model,) = node.apply(base, 16, 4, "uniform", 1, "pyramid", False)
    h = model.model_options["context_handler"]
    assert type(h) is comfy.handler.handler_class(None, None) and not hasattr(h, "parts")  # make_handler's class
    assert (h.context_length, h.context_overlap, h.context_stride, h.closed_loop) == (16, 4, 1, False)
    by_hand = base.clone()
    by_hand.model_options["context_handler"] = comfy.handler.make_handler(16, 4, "uniform", 1, "pyramid", False)
    a, b = sample(comfy, model), sample(comfy, by_hand)
    assert torch.equal(a, b)
    (replaced,) = node.apply(model, 8, 2, "static", 1, "flat", False)  # start_percent 0 again: replaces
    assert replaced.model_options["context_handler"].context_length == 8


@comfyui
def test_node_inputs_are_optional_at_the_end_with_todays_defaults(comfy):
    spec = windows_node().INPUT_TYPES()
    assert list(spec["required"]) == ["model", "context_length", "context_overlap", "schedule", "context_stride",
                                      "fuse_method", "closed_loop"]
    optional = spec["optional"]
    assert list(optional) == ["start_percent", "guarantee_steps"]
    assert optional["start_percent"][1]["default"] == 0.0 and optional["guarantee_steps"][1]["default"] == 1
    assert all(opts.get("tooltip") for _, opts in optional.values())


@comfyui
def test_bad_chains_fail_at_the_node_naming_both(comfy):
    node = windows_node()
    base = comfy_model(comfy)
    (first,) = node.apply(base, 16, 4, "static", 1, "pyramid", False)
    (second,) = node.apply(first, 12, 4, "static", 1, "pyramid", False, start_percent=0.5)
    with pytest.raises(ContextWindowError, match=r"length 8.*start_percent 0.3.*length 12.*start_percent 0.5"):
        node.apply(second, 8, 2, "static", 1, "pyramid", False, start_percent=0.3)
    with pytest.raises(ContextWindowError, match="both start at 0.5"):
        node.apply(second, 8, 2, "static", 1, "pyramid", False, start_percent=0.5)
    with pytest.raises(ContextWindowError, match="no Context Windows before it"):
        node.apply(base, 8, 2, "static", 1, "pyramid", False, start_percent=0.5)
    other = first.clone()
    other.model_options["context_handler"] = comfy.handler.make_handler(8, 2, "static", 1, "flat", False)
    with pytest.raises(ContextWindowError, match="no Context Windows before it"):  # another node's handler since
        node.apply(other, 8, 2, "static", 1, "pyramid", False, start_percent=0.5)
