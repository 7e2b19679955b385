"""Context windows: MotionKit's own parts (pure), and core's handler with MotionKit's per-window conditioning.

The `comfyui` tests run ComfyUI's comfy.context_windows in-process (its schedules and fuse methods are what
the node uses), with a stand-in for calc_cond_batch that records what each window got.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import comfy_env
from motionkit.sampling.context import (FIXED_UNIFORM, SCHEDULES, WRAPPING, check_settings, fill_gaps, gaussian_weights,
                              step_index, usable_stride)
from motionkit.common.errors import MotionKitError
from motionkit.sampling.errors import ContextWindowError

# ---------------------------------------------------------------------------------------------
# Pure parts


def test_gaussian_weights_are_a_positive_symmetric_bell():
    for length in (1, 2, 7, 16, 32):
        w = torch.tensor(gaussian_weights(length))
        assert w.shape == (length,) and torch.all(w > 0)
        assert torch.allclose(w, w.flip(0))
        assert int(w.argmax()) in ((length - 1) // 2, length // 2)
    w = gaussian_weights(16)
    assert w[0] < w[3] < w[7] and 0.1 < w[0] / w[7] < 0.2


def test_step_index_finds_the_step_and_keeps_it_on_substeps():
    sigmas = torch.tensor([14.6, 7.0, 3.0, 0.0])
    per_frame = torch.full((40,), 7.0)  # the frames ride in the batch: one sigma per frame
    assert step_index(sigmas, per_frame, previous=0) == 1
    assert step_index(sigmas, torch.tensor([3.0]), previous=1) == 2
    assert step_index(sigmas, torch.full((40,), 5.1), previous=1) == 1  # heun/dpm_2 sub-step between 7 and 3
    assert step_index(None, per_frame, previous=3) == 3


def test_strides_are_limited_to_windows_that_fit():
    assert usable_stride(40, 16, 1) == 1
    assert usable_stride(40, 16, 3) == 2  # a step of 4 would span 64 frames
    assert usable_stride(64, 16, 3) == 3 and usable_stride(64, 16, 8) == 3
    assert usable_stride(17, 16, 4) == 1


def test_fill_gaps_adds_windows_for_frames_no_window_holds():
    assert fill_gaps([list(range(0, 8)), list(range(8, 16))], 16, 8) == [list(range(0, 8)), list(range(8, 16))]
    filled = fill_gaps([list(range(10, 26)), [7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37]], 38, 16)
    assert set().union(*map(set, filled)) == set(range(38))
    assert filled[2:] == [list(range(0, 16)), list(range(22, 38))]


def test_settings_that_cannot_work_are_refused_with_the_fix():
    check_settings(16, 4, "uniform", "pyramid")
    check_settings(16, 0, "batched", "overlap-linear")
    with pytest.raises(ContextWindowError, match=r"context_overlap \(16\).*smaller than context_length \(16\).*at most 15"):
        check_settings(16, 16, "static", "flat")
    with pytest.raises(ContextWindowError, match="at most 7"):
        check_settings(8, 9, "uniform", "flat")
    with pytest.raises(ContextWindowError, match="pyramid, flat or gaussian"):
        check_settings(16, 4, "uniform looped", "relative")
    with pytest.raises(ContextWindowError, match=r"wrap.*'uniform fixed \(Animate Anyone\)'"):
        check_settings(24, 4, FIXED_UNIFORM, "relative")
    with pytest.raises(ContextWindowError, match="uniform looped"):
        check_settings(16, 4, "loopy", "flat")
    with pytest.raises(ContextWindowError, match="gaussian"):
        check_settings(16, 4, "static", "median")
    assert issubclass(ContextWindowError, MotionKitError)


# ---------------------------------------------------------------------------------------------
# Through core's handler (in-process ComfyUI)

@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.conds
    import comfy.context_windows
    import comfy.controlnet
    import comfy.model_patcher
    from motionkit.sampling import context_handler
    return SimpleNamespace(cw=comfy.context_windows, conds=comfy.conds, controlnet=comfy.controlnet,
                           model_patcher=comfy.model_patcher, handler=context_handler)


def handler(comfy, length=16, overlap=4, schedule="uniform", fuse="pyramid", stride=1, closed_loop=False):
    return comfy.handler.make_handler(length, overlap, schedule, stride, fuse, closed_loop)


def windows(h, frames, step):
    h._step = step
    return [w.index_list for w in h.get_context_windows(None, torch.zeros(frames, 1), {})]


SIGMAS = torch.tensor([14.6, 9.0, 5.0, 2.0, 0.5, 0.0])


def execute(h, frames, calc, conds=None, step=0, x=None):
    x = torch.randn(frames, 4, 2, 2, generator=torch.Generator().manual_seed(frames)) if x is None else x
    options = {"transformer_options": {"sample_sigmas": SIGMAS}}
    conds = [[{}]] if conds is None else conds
    return h.execute(calc, None, conds, x, torch.full((frames,), float(SIGMAS[step])), options), x


comfyui = pytest.mark.comfyui  # in-process ComfyUI

SETTINGS = [(16, 4, 1), (16, 0, 1), (8, 7, 1), (24, 6, 1), (16, 4, 2), (16, 4, 3)]


@comfyui
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_windows_cover_every_frame_and_are_deterministic(comfy, schedule):
    for length, overlap, stride in SETTINGS:
        for closed_loop in ((False, True) if schedule == "uniform looped" else (False,)):
            h = handler(comfy, length, overlap, schedule, stride=stride, closed_loop=closed_loop)
            again = handler(comfy, length, overlap, schedule, stride=stride, closed_loop=closed_loop)
            for frames in (length + 1, 38, 40, 58, 64, 100, 128):  # 38, 58: core's strided uniform misses frames
                for step in range(6):
                    ws = windows(h, frames, step)
                    assert ws == windows(again, frames, step), "same settings and step, different windows"
                    assert set().union(*map(set, ws)) == set(range(frames)), (length, overlap, stride, frames, step)
                    for w in ws:
                        assert all(0 <= i < frames for i in w) and len(set(w)) == len(w)
                        if schedule != "batched":
                            assert len(w) == length  # what the motion model sees: never more than the length
                        else:
                            assert len(w) <= length


@comfyui
def test_uniform_windows_move_between_steps_and_static_ones_do_not(comfy):
    uniform, static = handler(comfy, schedule="uniform"), handler(comfy, schedule="static")
    assert windows(uniform, 64, 0) != windows(uniform, 64, 1)
    assert windows(static, 64, 0) == windows(static, 64, 3) == [list(range(s, s + 16)) for s in (0, 12, 24, 36, 48)]


@comfyui
def test_looped_windows_wrap_from_the_last_frame_to_the_first(comfy):
    def joins(ws, frames):
        return [w for w in ws if frames - 1 in w and 0 in w]

    closed = handler(comfy, schedule="uniform looped", closed_loop=True)
    open_ = handler(comfy, schedule="uniform looped", closed_loop=False)
    for frames in (40, 64):
        for step in range(6):
            ws = windows(closed, frames, step)
            assert joins(ws, frames) or any(w[0] > w[-1] for w in ws), f"step {step}: nothing crosses the loop"
        assert joins(windows(closed, frames, 0), frames) and not joins(windows(open_, frames, 0), frames)
        wrapped = [w for w in windows(closed, frames, 0) if w[0] > w[-1]]
        assert wrapped and all(w == [i % frames for i in range(w[0], w[0] + 16)] for w in wrapped)


FUSES = ["pyramid", "flat", "gaussian", "relative", "overlap-linear"]


def frame_calc(record=None):
    """calc_cond_batch stand-in: each frame's 'denoised' is the frame itself (frames independent)."""
    def calc(model, conds, x, timestep, model_options):
        if record is not None:
            record.append((list(model_options["transformer_options"]["context_window"].index_list), conds))
        return [x.clone() for _ in conds]
    return calc


@comfyui
@pytest.mark.parametrize("fuse", FUSES)
def test_fused_windows_return_each_frame_to_its_place(comfy, fuse):
    """Weights sum to one per frame: windows that return their frames unchanged fuse back to the input."""
    for schedule in SCHEDULES:
        if fuse == "relative" and schedule in WRAPPING:
            continue
        for overlap in (0, 4):
            h = handler(comfy, 16, overlap, schedule, fuse)
            for step in (0, 3):
                seen = []
                (out,), x = execute(h, 40, frame_calc(seen), step=step)
                assert len(seen) > 1, "40 frames in windows of 16 must take several windows"
                # sum(w*x)/sum(w): float rounding only; flat over 1, 2 or 4 windows ((x+x)/2, ...) is exact
                torch.testing.assert_close(out, x, rtol=1e-6, atol=1e-6)
                if fuse == "flat":
                    counts = torch.bincount(torch.tensor([i for w, _ in seen for i in w]), minlength=40)
                    exact = (counts == 1) | (counts == 2) | (counts == 4)
                    assert exact.sum() > 20 and torch.equal(out[exact], x[exact])
                (ones,), _ = execute(h, 40, lambda m, c, x, t, o: [torch.ones_like(x) for _ in c], step=step)
                torch.testing.assert_close(ones, torch.ones_like(ones), rtol=1e-6, atol=0)


@comfyui
def test_gaussian_fuse_weighs_each_window_by_the_bell(comfy):
    h = handler(comfy, 16, 4, "static", "gaussian")
    ws = windows(h, 40, 0)

    def window_id(model, conds, x, timestep, model_options):
        w = model_options["transformer_options"]["context_window"].index_list
        return [torch.full_like(x, float(ws.index(list(w)))) for _ in conds]

    (out,), _ = execute(h, 40, window_id)
    bell = gaussian_weights(16)
    for frame in range(40):
        holding = [(i, w.index(frame)) for i, w in enumerate(ws) if frame in w]
        expected = sum(i * bell[p] for i, p in holding) / sum(bell[p] for _, p in holding)
        assert abs(float(out[frame, 0, 0, 0]) - expected) < 1e-5, frame


@comfyui
def test_substeps_of_multistep_samplers_keep_their_step(comfy):
    h = handler(comfy, schedule="uniform")
    x = torch.randn(40, 4, 2, 2)
    options = {"transformer_options": {"sample_sigmas": SIGMAS}}
    h.execute(frame_calc(), None, [[{}]], x, torch.full((40,), float(SIGMAS[2])), options)
    assert h._step == 2
    h.execute(frame_calc(), None, [[{}]], x, torch.full((40,), 3.7), options)  # dpm_2's midpoint: no listed sigma
    assert h._step == 2


@comfyui
def test_per_frame_model_conds_are_cut_to_each_window(comfy):
    """A prompt per frame (c_crossattn with 40 rows) and SDXL's y: each window must get its own rows.
    Core 0.3.64 passes them whole, and process_cond then keeps rows 0..15 for every window."""
    per_frame = torch.arange(40.0).reshape(40, 1, 1).expand(40, 77, 8).clone()
    one_prompt = torch.randn(1, 77, 8)
    y = torch.arange(40.0).reshape(40, 1).expand(40, 12).clone()
    cond = {"model_conds": {"c_crossattn": comfy.conds.CONDCrossAttn(per_frame), "y": comfy.conds.CONDRegular(y)}}
    uncond = {"model_conds": {"c_crossattn": comfy.conds.CONDCrossAttn(one_prompt)}}
    seen = []
    execute(handler(comfy, schedule="uniform"), 40, frame_calc(seen), conds=[[cond], [uncond]], step=1)
    assert len(seen) >= 3
    for index_list, (sub_cond, sub_uncond) in seen:
        got = sub_cond[0]["model_conds"]["c_crossattn"].cond
        assert torch.equal(got[:, 0, 0], torch.tensor(index_list, dtype=torch.float32))
        assert torch.equal(sub_cond[0]["model_conds"]["y"].cond[:, 0], torch.tensor(index_list, dtype=torch.float32))
        assert sub_uncond[0]["model_conds"]["c_crossattn"].cond is one_prompt  # one prompt: left to broadcast
    assert cond["model_conds"]["c_crossattn"].cond is per_frame  # the sampler's own conds are untouched


def controlnet(comfy, images, previous=None):
    c = comfy.controlnet.ControlNet().set_cond_hint(images)
    c.set_previous_controlnet(previous)
    c.cond_hint = images  # as if core had scaled the images already
    return c


@comfyui
def test_controlnet_images_follow_each_window_and_come_back(comfy):
    """Each window's controls (the whole chain) hold that window's images while it runs; a single image is
    left to core's broadcast; afterwards (also after an error) the artist's images are back."""
    per_frame = torch.arange(40.0).reshape(40, 1, 1, 1).expand(40, 3, 8, 8).clone()
    single = torch.full((1, 3, 8, 8), 7.0)
    first = controlnet(comfy, single)
    last = controlnet(comfy, per_frame, previous=first)
    conds = [[{"control": last}], [{"control": last}]]  # ControlNetApplyAdvanced: one object for both conds
    seen = []

    def calc(model, conds_, x, timestep, model_options):
        index_list = model_options["transformer_options"]["context_window"].index_list
        seen.append(index_list)
        assert conds_[0][0]["control"] is last
        assert torch.equal(last.cond_hint_original[:, 0, 0, 0], torch.tensor(index_list, dtype=torch.float32))
        assert last.cond_hint is None, "core must scale the window's images again"
        assert first.cond_hint_original is single
        return [x.clone() for _ in conds_]

    h = handler(comfy, schedule="uniform looped", closed_loop=True)
    for step in range(3):
        execute(h, 40, calc, conds=conds, step=step)
        assert last.cond_hint_original is per_frame and first.cond_hint_original is single
    assert any(w[0] > w[-1] for w in seen), "a wrapped window must get its wrapped images too"

    def cancelled(*args):  # e.g. the artist presses Cancel during a window
        calc(*args)
        raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        execute(h, 40, cancelled, conds=conds)
    assert last.cond_hint_original is per_frame


@comfyui
def test_node_output_is_a_clone_with_core_handler(comfy):
    base = comfy.model_patcher.ModelPatcher(torch.nn.Linear(1, 1), torch.device("cpu"), torch.device("cpu"))
    m = comfy.handler.apply_context_windows(base, 16, 4, "uniform looped", 1, "gaussian", True)
    assert "context_handler" not in base.model_options
    h = m.model_options["context_handler"]
    assert isinstance(h, comfy.cw.IndexListContextHandler)
    assert (h.context_length, h.context_overlap, h.closed_loop, h.dim) == (16, 4, True, 0)
    assert h.context_schedule.name == comfy.cw.ContextSchedules.UNIFORM_LOOPED and h.fuse_method.name == "gaussian"
    again = comfy.handler.apply_context_windows(m.clone(), 8, 2, "static", 1, "overlap-linear", False)
    assert again.model_options["context_handler"].context_length == 8
    assert len(again.get_wrappers("outer_sample", comfy.handler.KEY)) == 1
    with pytest.raises(ContextWindowError):
        comfy.handler.apply_context_windows(base, 16, 20, "uniform", 1, "flat", False)


# ---------------------------------------------------------------------------------------------
# Moore-AnimateAnyone's windows (the "uniform fixed (Animate Anyone)" schedule)
#
# REFERENCE ORACLE, ported from MooreThreads/Moore-AnimateAnyone, src/pipelines/context.py (Apache-2.0):
# `ordered_halving` and `uniform`, logic unchanged. Its pipeline_pose2vid_long.py calls, at every timestep,
#     context_scheduler(0, num_inference_steps, latents.shape[2], context_frames, context_stride, context_overlap)
# (step 0, closed_loop left at its default True; context_frames 24, context_stride 1, context_overlap 4), then
# adds each window's prediction into noise_pred and 1 into counter per frame, and divides: an even average.

def _moore_ordered_halving(val):
    return int(f"{val:064b}"[::-1], 2) / (1 << 64)


def _moore_uniform(step, num_steps, num_frames, context_size, context_stride=3, context_overlap=4, closed_loop=True):
    if num_frames <= context_size:
        yield list(range(num_frames))
        return
    context_stride = min(context_stride, int(np.ceil(np.log2(num_frames / context_size))) + 1)
    for context_step in 1 << np.arange(context_stride):
        pad = int(round(num_frames * _moore_ordered_halving(step)))
        for j in range(int(_moore_ordered_halving(step) * context_step) + pad,
                       num_frames + pad + (0 if closed_loop else -context_overlap),
                       (context_size * context_step - context_overlap)):
            yield [e % num_frames for e in range(j, j + context_size * context_step, context_step)]


def _moore_step(frames, steps, predict, length=24, stride=1, overlap=4):
    """One denoising step of pipeline_pose2vid_long.py: the windows it runs, and the even average of their outputs."""
    windows = list(_moore_uniform(0, steps, frames, length, stride, overlap))
    noise_pred, counter = None, torch.zeros(frames, 1, 1, 1)
    for c in windows:
        pred = predict(c)
        noise_pred = torch.zeros(frames, *pred.shape[1:]) if noise_pred is None else noise_pred
        noise_pred[c] = noise_pred[c] + pred
        counter[c] = counter[c] + 1
    return windows, noise_pred / counter


STEPS_30 = torch.linspace(14.6, 0.03, 30).tolist() + [0.0]  # 30 steps, as the original samples


@comfyui
@pytest.mark.parametrize("frames", [30, 48, 72])
def test_fixed_uniform_windows_and_average_are_animate_anyones(comfy, frames):
    """Every one of 30 steps: the same windows as the original's pipeline, in its order, and the flat fuse equal
    to its even average (each window gives different values, so any other weighting shows)."""
    h = handler(comfy, 24, 4, FIXED_UNIFORM, "flat")
    sigmas = torch.tensor(STEPS_30)
    x = torch.randn(frames, 4, 2, 2, generator=torch.Generator().manual_seed(frames))
    for step in range(30):
        seen = []

        def calc(model, conds, sub_x, timestep, model_options):
            window = list(model_options["transformer_options"]["context_window"].index_list)
            seen.append(window)
            return [sub_x * (len(seen) + i) + 0.1 * len(seen) for i, _ in enumerate(conds)]

        options = {"transformer_options": {"sample_sigmas": sigmas}}
        cond, uncond = h.execute(calc, None, [[{}], [{}]], x, torch.full((frames,), float(sigmas[step])), options)
        assert h._step == step

        def predict(offset):
            count = iter(range(1, 100))
            return lambda c: (lambda k: x[c] * (k + offset) + 0.1 * k)(next(count))

        windows, expected_cond = _moore_step(frames, 30, predict(0))
        assert seen == windows, f"step {step}: {seen} != the original's {windows}"
        _, expected_uncond = _moore_step(frames, 30, predict(1))
        torch.testing.assert_close(cond, expected_cond, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(uncond, expected_uncond, rtol=1e-6, atol=1e-6)
    if frames == 48:  # the example, spelled out
        assert seen == [list(range(0, 24)), list(range(20, 44)), list(range(40, 48)) + list(range(0, 16))]


@comfyui
def test_fixed_uniform_windows_with_strides_match_the_original_where_it_has_no_repeats(comfy):
    """context_stride above 1 (the original's pipeline uses 1): the original's strided windows where they fit in
    the frames; where they would take a frame twice, MotionKit's stride limit (usable_stride) applies instead."""
    for frames, length, overlap, stride in ((64, 16, 4, 3), (100, 24, 4, 2), (40, 8, 2, 3)):
        h = handler(comfy, length, overlap, FIXED_UNIFORM, "flat", stride=stride)
        expected = list(_moore_uniform(0, 30, frames, length, stride, overlap))
        assert all(len(set(w)) == len(w) for w in expected)
        for step in (0, 7):
            assert windows(h, frames, step) == expected


@comfyui
def test_animate_anyone_example_samples_in_the_originals_windows(comfy):
    """The example workflow's Context Windows (Motion) settings give the original pipeline's windows at every
    step, fused flat (its even average, checked above)."""
    import json

    import example_layout as el
    api = json.loads((el.EXAMPLES / "api" / "animate_anyone_api.json").read_text())
    (node,) = [v["inputs"] for v in api.values() if v["class_type"] == "MotionKitContextWindows"]
    h = comfy.handler.make_handler(node["context_length"], node["context_overlap"], node["schedule"],
                                   node["context_stride"], node["fuse_method"], node["closed_loop"])
    assert h.fuse_method.name == "flat"
    for frames in (30, 48, 72):
        for step in (0, 1, 15, 29):
            assert windows(h, frames, step) == list(_moore_uniform(0, 30, frames, 24, 1, 4)), (frames, step)
