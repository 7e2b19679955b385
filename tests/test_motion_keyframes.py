"""Motion keyframes over sampling ('Motion Keyframe' -> Apply Motion Model's motion_keyframes).

The oracle of the keyframe choice is AnimateDiff-Evolved's, written out here from its code
(Kosinkadink/ComfyUI-AnimateDiff-Evolved at 90fb133): animatediff/model_injection.py
MotionModelAttachment.prepare_current_keyframe / initialize_timesteps, animatediff/utils_motion.py ADKeyframe
(get_effective_guarantee_steps) / ADKeyframeGroup (add, the default keyframe) / get_combined_multival. ADE's own
classes, run on the same step sequences, agree (checked outside the repo; numbers in the branch's report).
"""
import random
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from motionkit.motion.injection import MotionApplication, MotionLayer, MotionSettings, step_keyframe
from motionkit.motion.keyframes_sampling import (KeyframeSelection, MotionKeyframe, MotionKeyframes, Multival,
                                                 combine_masks)
from motionkit.motion.model import PER_FRAME
from motionkit.motion.regional import MotionMask
from unet_helpers import comfy, frames_input, make_module, module_weights  # noqa: F401

CHANNELS, SIZE = 64, 6
from sigma_schedule import BIGMAX_TENSOR, Sampling


def step_sigmas(steps, first=0.0):
    """The sigmas of a run of `steps` steps (float32, as samplers give them), sigma(percent) at step/steps: some
    land exactly on a keyframe's start sigma. `first`: the run starts at this percent (KSamplerAdvanced)."""
    s = Sampling()
    values = [min(s.percent_to_sigma(first + (1 - first) * i / steps), 14.6) for i in range(steps)]
    return torch.tensor(values + [0.0], dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# ADE's choice, transcribed (model_injection.py MotionModelAttachment, utils_motion.py ADKeyframe(Group))

class ADEKeyframe:
    def __init__(self, start_percent=0.0, scale_multival=None, effect_multival=None, inherit_missing=True,
                 guarantee_steps=1, default=False):
        self.start_percent, self.start_t = start_percent, 999999999.9
        self.scale_multival, self.effect_multival = scale_multival, effect_multival
        self.inherit_missing, self.guarantee_steps, self.default = inherit_missing, guarantee_steps, default

    def get_effective_guarantee_steps(self, max_sigma):
        if self.start_t > max_sigma:
            return 0
        return self.guarantee_steps


def ade_group(keyframes):
    """ADKeyframeGroup after ADKeyframeNode.load_keyframe of each, in chain order."""
    group = [ADEKeyframe(guarantee_steps=1, default=True)]
    for k in keyframes:
        group = [g for g in group if not (g.default and g.start_percent == k.start_percent)] + [k]
        by_percent = {}
        for g in group:
            by_percent.setdefault(g.start_percent, []).append(g)
        group = [g for p in sorted(by_percent) for g in by_percent[p]]
    return group


class ADEChoice:
    def __init__(self, keyframes, model_sampling):
        self.keyframes = keyframes
        for keyframe in keyframes:
            keyframe.start_t = model_sampling.percent_to_sigma(keyframe.start_percent)
        self.current_used_steps, self.current_keyframe, self.current_index, self.previous_t = 0, None, -1, -1
        self.current_scale = self.current_effect = None

    def prepare_current_keyframe(self, t, transformer_options):
        curr_t = t[0]
        if curr_t == self.previous_t:
            return
        max_sigma = torch.max(transformer_options.get("sample_sigmas", BIGMAX_TENSOR))
        if (self.current_keyframe is None
                or self.current_used_steps >= self.current_keyframe.get_effective_guarantee_steps(max_sigma)):
            if 0 <= self.current_index + 1 < len(self.keyframes):
                for i in range(self.current_index + 1, len(self.keyframes)):
                    eval_kf = self.keyframes[i]
                    if eval_kf.start_t >= curr_t:
                        self.current_index = i
                        self.current_keyframe = eval_kf
                        self.current_used_steps = 0
                        if eval_kf.scale_multival is not None:
                            self.current_scale = eval_kf.scale_multival
                        elif not eval_kf.inherit_missing:
                            self.current_scale = None
                        if eval_kf.effect_multival is not None:
                            self.current_effect = eval_kf.effect_multival
                        elif not eval_kf.inherit_missing:
                            self.current_effect = None
                        if self.current_keyframe.get_effective_guarantee_steps(max_sigma) > 0:
                            break
                    else:
                        break
        self.current_used_steps += 1
        self.previous_t = curr_t


# ---------------------------------------------------------------------------------------------
# step sequences

def random_case(seed):
    """(keyframes as plain tuples, steps, first percent, calls per step, with sample_sigmas)."""
    rng = random.Random(seed)
    grid = [0.0, 0.1, 0.2, 0.25, 0.3, 0.5, 0.5, 0.7, 0.75, 0.9, 0.95, 1.0]
    keyframes = []
    for i in range(rng.randint(1, 6)):
        effect = rng.choice([None, None, 0.0, 0.5, 1.3])
        scale = rng.choice([None, None, 0.8, 1.1])
        keyframes.append((rng.choice(grid), effect, scale, rng.random() < 0.6, rng.choice([0, 0, 1, 1, 2, 3])))
    return keyframes, rng.choice([1, 2, 3, 4, 6, 10, 20]), rng.choice([0.0, 0.0, 0.3, 0.6]), rng.randint(1, 3), \
        rng.random() < 0.85


CASES = [random_case(seed) for seed in range(300)] + [
    # named: switch at 50%; a 3-step guarantee that outlives later keyframes; a chain of 0-guarantee keyframes;
    # inherit_missing off clearing; a keyframe before a run that starts at 60% (KSamplerAdvanced)
    ([(0.5, 0.0, None, True, 1)], 10, 0.0, 2, True),
    ([(0.1, 0.5, None, True, 3), (0.2, 1.3, None, True, 1), (0.3, None, 0.8, True, 1)], 4, 0.0, 2, True),
    ([(0.1, 0.5, None, True, 0), (0.1, None, 0.8, True, 0), (0.2, 0.0, None, True, 0)], 3, 0.0, 1, True),
    ([(0.0, 0.5, 0.8, True, 1), (0.5, None, None, False, 1)], 6, 0.0, 1, True),
    ([(0.2, 0.5, None, True, 2), (0.7, 0.0, None, True, 1)], 5, 0.6, 1, True),
]


def run_both(case):
    """Per UNet call: (index, effect, scale) chosen by ADE's transcription and by KeyframeSelection."""
    keyframes, steps, first, calls, with_sample_sigmas = case
    ours = MotionKeyframes()
    for k in keyframes:
        ours = ours.add(MotionKeyframe(k[0], None if k[1] is None else Multival(k[1]),
                                       None if k[2] is None else Multival(k[2]), k[3], k[4]))
    ade = ADEChoice(ade_group([ADEKeyframe(k[0], k[2], k[1], k[3], k[4]) for k in keyframes]), Sampling())
    selection = KeyframeSelection(ours)
    selection.set_start_sigmas(Sampling())
    sigmas = step_sigmas(steps, first)
    options = {"sample_sigmas": sigmas} if with_sample_sigmas else {}
    got, expected = [], []
    for sigma in sigmas[:-1]:
        for _ in range(calls):
            t = sigma.expand(2)
            ade.prepare_current_keyframe(t, options)
            selection.step(t[0], options.get("sample_sigmas"))
            expected.append((ade.current_index, ade.current_effect, ade.current_scale))
            got.append((selection.index,
                        None if selection.effect is None else selection.effect.number,
                        None if selection.scale is None else selection.scale.number))
    return got, expected


def test_keyframe_choice_is_ades_on_every_call():
    switched = 0
    for case in CASES:
        got, expected = run_both(case)
        assert got == expected, case
        switched += len({g[0] for g in got}) > 1
    assert switched > 100, "the cases must switch keyframes during sampling"


def test_chain_keeps_order_and_replaces_the_default_keyframe():
    a, b, c = (MotionKeyframe(p, Multival(v)) for p, v in ((0.5, 0.1), (0.0, 0.2), (0.5, 0.3)))
    group = MotionKeyframes().add(a)
    assert [k.default for k in group.keyframes] == [True, False]
    chained = group.add(b).add(c)
    assert chained.keyframes == (b, a, c) and len(group.keyframes) == 2  # earlier groups unchanged


# ---------------------------------------------------------------------------------------------
# through the motion layer

@pytest.fixture(scope="module")
def module():
    return make_module(module_weights(channels=CHANNELS, seed=21), channels=CHANNELS)


def keyframed_layer(module, keyframes, **settings):
    s = MotionSettings(keyframes=keyframes, **settings)
    app = MotionApplication(None, SimpleNamespace(module_norm=PER_FRAME), "mm.ckpt", s,
                            selection=KeyframeSelection(keyframes))
    app.selection.set_start_sigmas(Sampling())
    return MotionLayer(module, app), app


def plain_layer(module, **settings):
    app = MotionApplication(None, SimpleNamespace(module_norm=PER_FRAME), "mm.ckpt", MotionSettings(**settings))
    return MotionLayer(module, app)


def call(layer, app, x, sigma, sigmas):
    options = {"cond_or_uncond": [0, 1], "sigmas": sigma.expand(2), "sample_sigmas": sigmas}
    step_keyframe(app, options)
    with torch.no_grad():
        return layer.run(x, options)


def test_one_keyframe_at_zero_is_the_plain_settings_bit_for_bit(module):
    x = frames_input(batch=2, frames=4, channels=CHANNELS, size=SIZE, seed=22)
    mask = MotionMask(torch.rand(2, 40, 40, generator=torch.Generator().manual_seed(23)))
    base = dict(scale=0.8, mask=mask, attention_scale=0.9)
    keyframes = MotionKeyframes().add(MotionKeyframe(0.0, Multival(1.0), Multival(1.0)))
    layer, app = keyframed_layer(module, keyframes, **base)
    plain = plain_layer(module, **base)
    sigmas = step_sigmas(4)
    for sigma in sigmas[:-1]:
        out = call(layer, app, x, sigma, sigmas)
        with torch.no_grad():
            assert torch.equal(out, plain.run(x, {"cond_or_uncond": [0, 1]}))


def test_motion_scale_zero_from_half_way_gives_plain_module_output(module):
    x = frames_input(batch=2, frames=4, channels=CHANNELS, size=SIZE, seed=24)
    keyframes = MotionKeyframes().add(MotionKeyframe(0.5, Multival(0.0)))
    layer, app = keyframed_layer(module, keyframes, scale=1.2)
    moving = plain_layer(module, scale=1.2)
    sigmas = step_sigmas(10)
    half = Sampling().percent_to_sigma(0.5)
    still = 0
    for sigma in sigmas[:-1]:
        for _ in range(2):  # cond and uncond in two calls of one step
            out = call(layer, app, x, sigma, sigmas)
            if float(sigma) <= half:
                assert torch.equal(out, x)
                still += 1
            else:
                with torch.no_grad():
                    assert torch.equal(out, moving.run(x, {"cond_or_uncond": [0, 1]}))
                    assert (out - x).abs().max() > 0.1
    assert still == 10  # steps 5..9 (sigma of step 5 is exactly the 50% sigma), two calls each


def ade_combined_masks(a, b):
    """utils_motion.get_combined_multival for two mask tensors (comfy.utils.common_upscale 'bilinear', 'center')."""
    area = lambda m: m.shape[1] * m.shape[2]
    leader, follower = (a, b) if area(a) >= area(b) else (b, a)
    batch = max(a.shape[0], b.shape[0])
    h, w = leader.shape[-2:]
    old_h, old_w = follower.shape[-2:]
    x = y = 0
    if old_w / old_h > w / h:
        x = round((old_w - old_w * ((w / h) / (old_w / old_h))) / 2)
    elif old_w / old_h < w / h:
        y = round((old_h - old_h * ((old_w / old_h) / (w / h))) / 2)
    f = follower[:, None].narrow(-2, y, old_h - y * 2).narrow(-1, x, old_w - x * 2)
    f = F.interpolate(f, size=(h, w), mode="bilinear")[:, 0]
    ext = lambda m: m[:batch] if m.shape[0] >= batch else torch.cat([m] + [m[-1:]] * (batch - m.shape[0]))
    return ext(leader) * ext(f)


@pytest.mark.parametrize("shapes", [((3, 40, 40), (1, 24, 36)), ((1, 16, 48), (5, 32, 32)), ((2, 8, 8), (2, 8, 8))])
def test_keyframe_mask_times_base_mask_as_ade_combines_them(module, shapes):
    g = torch.Generator().manual_seed(25)
    a, b = (torch.rand(*s, generator=g) for s in shapes)
    torch.testing.assert_close(combine_masks(MotionMask(a), MotionMask(b)).mask, ade_combined_masks(a, b),
                               rtol=0, atol=0)
    x = frames_input(batch=2, frames=4, channels=CHANNELS, size=SIZE, seed=26)
    keyframes = MotionKeyframes().add(MotionKeyframe(0.0, Multival(0.5, MotionMask(b))))
    layer, app = keyframed_layer(module, keyframes, scale=0.8, mask=MotionMask(a))
    sigmas = step_sigmas(2)
    out = call(layer, app, x, sigmas[0], sigmas)
    with torch.no_grad():
        expected = plain_layer(module, scale=0.8 * 0.5, mask=MotionMask(ade_combined_masks(a, b))).run(
            x, {"cond_or_uncond": [0, 1]})
    assert torch.equal(out, expected)


def test_a_new_run_starts_from_the_first_keyframe(module):
    keyframes = MotionKeyframes().add(MotionKeyframe(0.5, Multival(0.0)))
    selection = KeyframeSelection(keyframes)
    sigmas = step_sigmas(4)
    for run in range(2):
        selection.set_start_sigmas(Sampling())
        seen = []
        for sigma in sigmas[:-1]:
            selection.step(sigma, sigmas)
            seen.append(selection.index)
        assert seen == [0, 0, 1, 1], run


# ---------------------------------------------------------------------------------------------
# the node

@pytest.mark.comfyui
def test_motion_keyframe_node_explains_each_control_and_chains(comfy):
    from motionkit.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    from motionkit.nodes.motion_keyframe import MotionKeyframeNode
    assert NODE_CLASS_MAPPINGS["MotionKitMotionKeyframe"] is MotionKeyframeNode
    assert NODE_DISPLAY_NAME_MAPPINGS["MotionKitMotionKeyframe"] == "Motion Keyframe 🎞️"
    types = MotionKeyframeNode.INPUT_TYPES()
    assert list(types["required"]) == ["start_percent", "motion_scale", "attention_scale", "inherit_missing",
                                       "guarantee_steps"]
    assert list(types["optional"]) == ["prev_keyframes", "motion_scale_mask", "attention_scale_mask"]
    for group in ("required", "optional"):
        for name, (_, opts) in types[group].items():
            assert len(opts["tooltip"]) > 60, name
    node = MotionKeyframeNode()
    (first,) = node.make(0.0, 1.0, -1.0, True, 1)
    mask = torch.rand(2, 8, 8)
    (second,) = node.make(0.6, -1.0, 0.5, False, 2, prev_keyframes=first, motion_scale_mask=mask)
    k0, k1 = second.keyframes
    assert k0.effect == Multival(1.0) and k0.scale is None and not k0.default
    assert k1.start_percent == 0.6 and k1.effect.number == 1.0 and torch.equal(k1.effect.mask.mask, mask)
    assert k1.scale == Multival(0.5) and not k1.inherit_missing and k1.guarantee_steps == 2
    assert len(first.keyframes) == 1


@pytest.mark.comfyui
def test_apply_motion_model_sets_start_sigmas_before_each_run_and_steps_per_call(comfy):
    """Through ComfyUI's ModelPatcher: ON_PRE_RUN puts the keyframes on the model's schedule (ADE
    initialize_timesteps) and the DIFFUSION_MODEL wrapper chooses the keyframe from each call's sigma."""
    from comfy import samplers
    from comfy.patcher_extension import CallbacksMP, WrappersMP
    import motion_files as mf
    from motionkit.motion.formats import build_motion_model, classify
    from motionkit.motion.injection import applications, apply_motion_model
    from unet_helpers import meta_sd15_patcher

    patcher = meta_sd15_patcher(comfy)
    info, weights = classify(mf.v2(device="meta"), "v2.ckpt")
    keyframes = MotionKeyframes().add(MotionKeyframe(0.5, Multival(0.0)))
    m = apply_motion_model(patcher, build_motion_model(info, weights, "v2.ckpt"), info, "v2.ckpt",
                           MotionSettings(scale=0.7, keyframes=keyframes))
    (app,) = applications(m)
    sampling = m.get_model_object("model_sampling")
    sigmas = samplers.calculate_sigmas(sampling, "normal", 6)
    half = sampling.percent_to_sigma(0.5)
    for run in range(2):
        for callback in m.get_all_callbacks(CallbacksMP.ON_PRE_RUN):
            callback(m)
        assert app.selection.start_t == [999999999.9, half] and app.current is None
        scales = []
        for sigma in sigmas[:-1]:
            options = {"sigmas": sigma.expand(2), "sample_sigmas": sigmas, "cond_or_uncond": [0, 1]}
            for wrapper in m.get_all_wrappers(WrappersMP.DIFFUSION_MODEL):
                wrapper(lambda *args, **kwargs: None, torch.zeros(8, 4, 8, 8), sigma.expand(2), None, None, None,
                        options)
            scales.append(app.current.scale)
        assert scales == [0.7 if float(s) > half else 0.0 for s in sigmas[:-1]] and 0.0 in scales and 0.7 in scales
    assert patcher.attachments == {}  # the input MODEL is left as it was
