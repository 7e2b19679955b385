"""Context windows: MotionKit's own parts (pure), and core's handler with MotionKit's per-window conditioning.

The `comfyui` tests run ComfyUI's comfy.context_windows in-process (its schedules and fuse methods are what
the node uses), with a stand-in for calc_cond_batch that records what each window got.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import comfy_env
from motionkit.sampling.context import SCHEDULES, check_settings, fill_gaps, gaussian_weights, step_index, usable_stride
from motionkit.motion.errors import ContextWindowError, MotionKitError

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
    with pytest.raises(ContextWindowError, match="pyramid or gaussian"):
        check_settings(16, 4, "uniform looped", "relative")
    with pytest.raises(ContextWindowError, match="uniform looped"):
        check_settings(16, 4, "loopy", "flat")
    with pytest.raises(ContextWindowError, match="gaussian"):
        check_settings(16, 4, "static", "median")
    assert issubclass(ContextWindowError, MotionKitError)


# ---------------------------------------------------------------------------------------------
# Through core's handler (in-process ComfyUI)

@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfyui_on_syspath()
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
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
        if fuse == "relative" and schedule == "uniform looped":
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
