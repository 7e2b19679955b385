"""Motion-only windows (AnimateDiff-Evolved's view options) and the spatial batch limit.

The oracle is ADE's definition written out here from its code (Kosinkadink/ComfyUI-AnimateDiff-Evolved at 90fb133):
animatediff/context.py (create_windows_*, ordered_halving, the FUSE_MAPPING weights) and motion_module_ad.py
TemporalTransformerBlock.forward's view branch (attention sublayers per window with the window's positional
encoding, weighted average per frame, then the feed-forward over all frames), in float64 with explicit attention
(tests/reference.py's pieces). ADE's own VanillaTemporalModule with view options, run on the same weights, agrees to
float rounding (checked outside the repo; numbers in the branch's report).
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import motion_files as mf
from motionkit.motion import windows as mw
from motionkit.motion.errors import MotionWindowsError, TooManyFramesError
from motionkit.motion.injection import MotionApplication, MotionLayer, MotionSettings, check_frames
from motionkit.motion.model import PER_FRAME
from reference import _group_norm_5d, _layer_norm, sinusoidal
from unet_helpers import comfy, frames_input, make_module, meta_sd15_patcher, module_weights  # noqa: F401

CHANNELS, SIZE = 64, 3
SAMPLE_SIGMAS = torch.tensor([14.6, 8.0, 4.1, 2.0, 0.9, 0.3, 0.0])


# ---- ADE's definition (oracle) --------------------------------------------------------------------------------------

def ade_halving(val):
    return int(f"{val:064b}"[::-1], 2) / (1 << 64)


def ade_uniform_raw(n, length, overlap, stride, step, closed):
    windows = []
    stride = min(stride, int(np.ceil(np.log2(n / length))) + 1)
    for context_step in 1 << np.arange(stride):
        pad = int(round(n * ade_halving(step)))
        for j in range(int(ade_halving(step) * context_step) + pad, n + pad + (0 if closed else -overlap),
                       (length * context_step - overlap)):
            windows.append([e % n for e in range(j, j + length * context_step, context_step)])
    return windows


def ade_windows(n, schedule, length, overlap, stride=1, closed=False, step=0):
    if schedule == "uniform looped":
        return [list(range(n))] if n < length else ade_uniform_raw(n, length, overlap, stride, step, closed)
    if n <= length:
        return [list(range(n))]
    if schedule == "static":
        windows = []
        for start in range(0, n, length - overlap):
            if start + length >= n:
                start = start - (start + length - n)
                windows.append(list(range(start, start + length)))
                break
            windows.append(list(range(start, start + length)))
        return windows
    if schedule == "batched":
        return [list(range(s, min(s + length, n))) for s in range(0, n, length)]
    windows = ade_uniform_raw(n, length, overlap, stride, step, False)  # standard uniform
    delete, i = [], 0
    while i < len(windows):
        w, prev, roll = windows[i], -1, -1
        for k, v in enumerate(w):
            if v % n < prev:
                roll = k
                break
            prev = v % n
        if roll >= 0:
            roll_val = w[roll]
            start = w[0]
            w[:] = [((v - start) + n) % n for v in w]
            w[:] = [v + (n - w[-1] - 1) for v in w]
            if roll_val not in windows[(i + 1) % len(windows)]:
                windows.insert(i + 1, list(range(roll_val, roll_val + length)))
        if any(windows[i] == windows[p] for p in range(i)):
            delete.append(i)
        i += 1
    for i in reversed(delete):
        windows.pop(i)
    return windows


def ade_weights(fuse, window, n, overlap, sigma):
    length = len(window)
    top = length // 2 if length % 2 == 0 else (length + 1) // 2
    if length % 2 == 0:
        pyramid = list(range(1, top + 1)) + list(range(top, 0, -1))
        centre = np.array([-top] * (top - 1) + [top, top] + [-top] * (top - 1))
    else:
        pyramid = list(range(1, top)) + [top] + list(range(top - 1, 0, -1))
        centre = np.array([-top] * top + [top] + [-top] * (top - 1))
    s = min(4.0, sigma) / 4.0
    if fuse == "flat":
        return torch.ones(length)
    if fuse == "pyramid":
        return torch.Tensor(pyramid)
    if fuse == "overlap-linear":
        w = torch.ones(length)
        if min(window) > 0:
            w[:overlap] = torch.linspace(1e-37, 1, overlap)
        if max(window) < n - 1:
            w[-overlap:] = torch.linspace(1, 1e-37, overlap)
        return w
    if fuse == "delayed reverse sawtooth":
        return torch.Tensor([0.01] * (top - (length % 2 == 0)) + [top] + list(range(top - (length % 2), 0, -1)))
    if fuse.startswith("pyramid-sigma"):
        a, b = (np.array(pyramid), centre) if fuse == "pyramid-sigma" else (centre, np.array(pyramid))
        return torch.Tensor(list((s * a + (1.0 - s) * b).clip(0.001, top)))
    std = 1.0 + 8.0 * (s if fuse == "gauss-sigma" else 1.0 - s)
    ax = np.linspace(-(length - 1) / 2., (length - 1) / 2., length)
    w = np.exp(-0.5 * np.square(ax) / np.square(std))
    return torch.Tensor(list(w * top / np.linalg.norm(w)))


def ade_attention(sd, h, a, pe, key_scale):
    p = f"transformer_blocks.0.attention_blocks.{a}."
    n = _layer_norm(h, sd[f"transformer_blocks.0.norms.{a}.weight"], sd[f"transformer_blocks.0.norms.{a}.bias"]) + pe
    q, k, v = (n @ sd[p + f"to_{x}.weight"].T for x in "qkv")
    if key_scale is not None:
        k = k * key_scale
    d = h.shape[-1] // 8
    outs = []
    for head in range(8):
        sl = slice(head * d, (head + 1) * d)
        scores = q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(d)
        outs.append(torch.softmax(scores, -1) @ v[..., sl])
    return torch.cat(outs, -1) @ sd[p + "to_out.0.weight"].T + sd[p + "to_out.0.bias"]


def ade_views_module(sd, x, frames, windows, weights, key_scale=None, scale=1.0):
    """VanillaTemporalModule with view options: x + scale·(temporal_transformer(x) - x), views inside the block."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    bf, c, hgt, wid = x.shape
    b = bf // frames
    h = _group_norm_5d(x, sd["norm.weight"], sd["norm.bias"])
    h = h.reshape(b, frames, c, hgt, wid).permute(0, 3, 4, 1, 2).reshape(b * hgt * wid, frames, c)
    h = h @ sd["proj_in.weight"].T + sd["proj_in.bias"]
    value, count = torch.zeros_like(h), torch.zeros_like(h)
    for window, w in zip(windows, weights):
        sub = h[:, window]
        pe = sinusoidal(len(window), c).double()
        ks = key_scale[:, window] if isinstance(key_scale, torch.Tensor) else key_scale
        for a in range(2):
            sub = ade_attention(sd, sub, a, pe, ks) + sub
        value[:, window] += sub * w.double()[None, :, None]
        count[:, window] += w.double()[None, :, None]
    h = value / count
    t = "transformer_blocks.0."
    n = _layer_norm(h, sd[f"{t}ff_norm.weight"], sd[f"{t}ff_norm.bias"])
    proj = n @ sd[f"{t}ff.net.0.proj.weight"].T + sd[f"{t}ff.net.0.proj.bias"]
    val, gate = proj[..., : 4 * c], proj[..., 4 * c:]
    h = h + ((val * 0.5 * gate * (1.0 + torch.erf(gate / math.sqrt(2.0)))) @ sd[f"{t}ff.net.2.weight"].T
             + sd[f"{t}ff.net.2.bias"])
    h = h @ sd["proj_out.weight"].T + sd["proj_out.bias"]
    delta = h.reshape(b, hgt, wid, frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, hgt, wid)
    return x + scale * delta


def ade_valid(windows, n):
    return all(0 <= f < n for w in windows for f in w) and len({f for w in windows for f in w}) == n


# ---- ours ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weights():
    return module_weights(channels=CHANNELS, seed=5)


@pytest.fixture(scope="module")
def module(weights):
    return make_module(weights, channels=CHANNELS)


def layer(module, **settings):
    app = MotionApplication(None, SimpleNamespace(module_norm=PER_FRAME, max_frames=32, family="AnimateDiff v2"),
                            "mm.ckpt", MotionSettings(**settings))
    return MotionLayer(module, app, "input")


def options(settings, frames, step=2, **extra):
    sigma = torch.full((2 * frames,), float(SAMPLE_SIGMAS[step]))
    return {"cond_or_uncond": [0, 1], mw.KEY: settings, "sigmas": sigma, "sample_sigmas": SAMPLE_SIGMAS, **extra}


def test_windows_are_ades_and_ades_broken_strides_are_repaired():
    compared = repaired = 0
    for n in range(2, 34):
        for length in (3, 4, 8, 16):
            for overlap in range(0, length, 2 if length > 4 else 1):
                for schedule in mw.SCHEDULES:
                    for stride in ((1, 2, 3) if schedule.startswith("uniform") else (1,)):
                        for closed in ((False, True) if schedule == "uniform looped" else (False,)):
                            s = mw.MotionWindows(length, overlap, schedule, "flat", stride, closed)
                            for step in range(4):
                                ours = mw.windows_of(n, s, step)
                                ade = ade_windows(n, schedule, length, 0 if schedule == "batched" else overlap,
                                                  stride, closed, step)
                                if ade_valid(ade, n):
                                    assert ours == ade, (n, s, step)
                                    compared += 1
                                else:  # ADE: windows past the last frame (IndexError) or frames in none (0/0)
                                    assert schedule == "uniform" and stride > 1 and mw.valid(ours, n), (n, s, step)
                                    repaired += 1
    assert compared > 10000 and 0 < repaired < compared / 5


@pytest.mark.parametrize("fuse", mw.FUSE_METHODS)
def test_fuse_weights_are_ades(fuse):
    for n, window, overlap in [(20, list(range(0, 8)), 2), (20, list(range(6, 14)), 2), (20, list(range(12, 20)), 3),
                               (13, [9, 10, 11, 12, 0, 1], 1), (9, list(range(2, 8)), 4)]:
        if fuse.startswith("pyramid-sigma") and len(window) % 2:
            continue  # ADE multiplies a list by a number there and fails
        for sigma in (0.05, 1.3, 3.99, 12.0):
            s = mw.MotionWindows(8, overlap, "static", fuse)
            torch.testing.assert_close(mw.fuse_weights(window, n, s, sigma), ade_weights(fuse, window, n, overlap, sigma),
                                       rtol=1e-6, atol=0)


def test_where_ades_weights_fail_ours_still_weigh():
    """ADE fails on overlap-linear without overlap (an empty ramp), pyramid-sigma over an odd window (a list times a
    number) and delayed reverse sawtooth over an odd window (one weight too many)."""
    assert torch.equal(mw.fuse_weights([4, 5, 6], 9, mw.MotionWindows(3, 0, "static", "overlap-linear"), 1.0),
                       torch.ones(3))
    w = mw.fuse_weights(list(range(5)), 9, mw.MotionWindows(5, 1, "static", "pyramid-sigma"), 4.0)
    assert torch.allclose(w, torch.tensor([1., 2., 3., 2., 1.]))
    w = mw.fuse_weights(list(range(5)), 9, mw.MotionWindows(5, 1, "static", "delayed reverse sawtooth"), 1.0)
    assert torch.allclose(w, torch.tensor([0.01, 0.01, 3., 2., 1.]))


CASES = [("uniform", "pyramid", 20, 8, 2, 1, False, 1), ("uniform", "overlap-linear", 13, 6, 3, 2, False, 3),
         ("uniform looped", "flat", 20, 8, 2, 2, True, 2), ("uniform looped", "gauss-sigma", 13, 6, 2, 1, False, 0),
         ("static", "pyramid-sigma inverse", 20, 8, 2, 1, False, 4), ("static", "delayed reverse sawtooth", 13, 6, 1,
                                                                      1, False, 0),
         ("batched", "pyramid", 20, 8, 0, 1, False, 1)]


@pytest.mark.parametrize("schedule, fuse, frames, length, overlap, stride, closed, step", CASES)
def test_motion_layer_in_windows_is_ades_views(module, weights, schedule, fuse, frames, length, overlap, stride,
                                               closed, step):
    s = mw.MotionWindows(length, overlap, schedule, fuse, stride, closed)
    x = frames_input(batch=2, frames=frames, channels=CHANNELS, size=SIZE, seed=frames + step)
    sigma = float(SAMPLE_SIGMAS[step])
    windows = ade_windows(frames, schedule, length, overlap, stride, closed, step)
    w = [ade_weights(fuse, win, frames, overlap, sigma) for win in windows]
    with torch.no_grad():
        ours = layer(module, scale=0.7).run(x, options(s, frames, step))
        plain = layer(module, scale=0.7).run(x, {"cond_or_uncond": [0, 1]})
    oracle = ade_views_module(weights, x, frames, windows, w, scale=0.7)
    effect = (oracle - x).abs().max().item()
    assert (ours.double() - oracle).abs().max().item() <= 1e-4 * effect
    assert (ours - plain).abs().max().item() > 0.05 * effect  # the windows do change the motion


def test_windows_inside_a_context_window_count_the_windows_frames(module, weights):
    """Under context windows a call holds the window's frames; the motion windows are laid over those (0..n-1),
    the attention scale applies to them, and the sampling step shifts them as ADE's."""
    s = mw.MotionWindows(6, 2, "uniform", "pyramid")
    window = list(range(5, 17))  # 12 frames of a longer animation
    x = frames_input(batch=2, frames=12, channels=CHANNELS, size=SIZE, seed=9)
    opts = options(s, 12, step=3, context_window=SimpleNamespace(index_list=window))
    with torch.no_grad():
        ours = layer(module, scale=0.8, attention_scale=0.6).run(x, opts)
    views = ade_windows(12, "uniform", 6, 2, step=3)
    oracle = ade_views_module(weights, x, 12, views, [ade_weights("pyramid", v, 12, 2, 2.0) for v in views],
                              key_scale=0.6, scale=0.8)
    assert (ours.double() - oracle).abs().max().item() <= 1e-4 * (oracle - x).abs().max().item()


def test_spatial_batch_limit_slices_the_feed_forward_with_the_same_result(module):
    x = frames_input(batch=2, frames=12, channels=CHANNELS, size=SIZE, seed=4)
    with torch.no_grad():
        whole = layer(module).run(x, options(mw.MotionWindows(4, 1, "static"), 12))
        sliced = layer(module).run(x, options(mw.MotionWindows(4, 1, "static", spatial_batch_limit=5), 12))
    assert mw.call_windows(options(mw.MotionWindows(4, 1, spatial_batch_limit=5), 12), 12).pieces == 3
    torch.testing.assert_close(sliced, whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("frames", [8, 16])
def test_frames_that_fit_in_one_window_are_unchanged_bit_for_bit(module, frames):
    x = frames_input(batch=2, frames=frames, channels=CHANNELS, size=SIZE, seed=2)
    with torch.no_grad():
        windowed = layer(module).run(x, options(mw.MotionWindows(16, 4), frames))
        plain = layer(module).run(x, {"cond_or_uncond": [0, 1]})
    assert torch.equal(windowed, plain)


def test_sampling_step_is_the_sigmas_place_in_the_run():
    def step(sigma):
        return mw.sampling_step({"sigmas": torch.tensor([sigma, sigma]), "sample_sigmas": SAMPLE_SIGMAS})
    assert [step(float(s)) for s in SAMPLE_SIGMAS[:-1]] == [0, 1, 2, 3, 4, 5]
    assert step(3.0) == 2  # a multi-step sampler's sub-step belongs to the step it is in
    assert mw.sampling_step({}) == 0


def test_windows_longer_than_the_motion_models_limit_are_refused_naming_it():
    app = MotionApplication(None, SimpleNamespace(max_frames=24, family="AnimateDiff v1"), "v1.ckpt", MotionSettings())
    with pytest.raises(TooManyFramesError, match=r"at most 24 frames.*'Motion-Only Windows'.*24 or less"):
        check_frames(app, 64, motion_windows=mw.MotionWindows(32, 4))
    check_frames(app, 64, motion_windows=mw.MotionWindows(16, 4))  # 64 frames, motion windows of 16: fine
    check_frames(app, 20, motion_windows=mw.MotionWindows(32, 4))  # fits in one window: the 20 frames at once
    with pytest.raises(TooManyFramesError, match="at most 24 frames"):
        check_frames(app, 64)  # without windows


@pytest.mark.parametrize("settings, phrase", [
    (dict(schedule="spiral"), "Unknown motion-window schedule"),
    (dict(fuse_method="random"), "Unknown motion-window fuse_method"),
    (dict(context_length=8, context_overlap=8), "smaller than context_length"),
    (dict(context_length=0), "context_length is 0"),
    (dict(spatial_batch_limit=-1), "spatial_batch_limit"),
])
def test_bad_settings_are_refused_clearly(settings, phrase):
    with pytest.raises(MotionWindowsError, match=phrase):
        mw.MotionWindows(**settings)


# ---- under ComfyUI ----------------------------------------------------------------------------------------------

@pytest.mark.comfyui
def test_spatial_batches_give_the_same_result_and_keep_core_transformer_index(comfy):
    """A real ComfyUI SpatialTransformer inside a block, through core's forward_timestep_embed: in batches of 3
    frames per cond it gives what it gives on all frames; core's transformer_index still moves on by one."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import TimestepEmbedSequential
    from motionkit.motion.spatial_batch import FrameBatchedTransformer, frame_batched_handler, frame_batches
    torch.manual_seed(0)
    st = comfy.SpatialTransformer(32, 2, 16, context_dim=24, operations=comfy.ops.disable_weight_init).eval()
    for p in st.parameters():
        torch.nn.init.normal_(p, std=0.2)
    frames = 7
    x, context = torch.randn(2 * frames, 32, 4, 4), torch.randn(2 * frames, 5, 24)
    base = {"cond_or_uncond": [1, 0], "transformer_index": 0}
    batched = {**base, "patches": {"forward_timestep_embed_patch": [(FrameBatchedTransformer, frame_batched_handler)]}}
    with torch.no_grad():
        whole = TimestepEmbedSequential(st)(x, None, context, dict(base))
        opts = dict(batched)
        parts = TimestepEmbedSequential(FrameBatchedTransformer(st, 3))(x, None, context, opts)
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)
    assert opts["transformer_index"] == 1
    assert frame_batches(2, 7, 3)[2] == [6, 13]  # frame 6 of the cond and of the uncond, together


@pytest.mark.comfyui
def test_node_stores_the_settings_and_batches_the_spatial_transformers(comfy, module, weights):
    """Motion-Only Windows on a real ModelPatcher after Apply Motion Model: its settings reach the motion layers
    through model_options' transformer_options (frames that fit: unchanged; more: ADE's views), the spatial
    transformers are batched only while the clone is patched in, and windows longer than the motion model's limit
    are refused when the node runs."""
    from motionkit.motion.formats import build_motion_model, classify
    from motionkit.motion.injection import apply_motion_model
    from motionkit.motion.spatial_batch import KEY as BATCH_KEY, FrameBatchedTransformer
    from motionkit.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    from motionkit.nodes.motion_windows import MotionWindowsNode

    assert NODE_CLASS_MAPPINGS["MotionKitMotionWindows"] is MotionWindowsNode
    assert NODE_DISPLAY_NAME_MAPPINGS["MotionKitMotionWindows"] == "Motion-Only Windows 🎞️"
    types = MotionWindowsNode.INPUT_TYPES()
    assert list(types["required"]) == ["model", "context_length", "context_overlap", "schedule", "fuse_method",
                                       "spatial_batch_limit"]
    for group in ("required", "optional"):
        for name, (_, opts) in types[group].items():
            assert len(opts["tooltip"]) > (40 if name == "model" else 80), name

    patcher = meta_sd15_patcher(comfy)
    info, mm = classify(mf.v2(device="meta"), "v2.ckpt")
    animated = apply_motion_model(patcher, build_motion_model(info, mm, "v2.ckpt"), info, "v2.ckpt", MotionSettings())
    (m,) = MotionWindowsNode().apply(animated, 8, 2, "static", "flat", 4)
    assert mw.KEY not in animated.model_options["transformer_options"] and BATCH_KEY not in animated.injections
    settings = m.model_options["transformer_options"][mw.KEY]
    assert settings == mw.MotionWindows(8, 2, "static", "flat", spatial_batch_limit=4)

    for frames in (8, 20):  # a real motion module's layer, with the node's transformer_options
        x = frames_input(batch=2, frames=frames, channels=CHANNELS, size=SIZE, seed=frames)
        opts = {**m.model_options["transformer_options"], "cond_or_uncond": [0, 1],
                "sigmas": torch.full((2 * frames,), 2.0), "sample_sigmas": SAMPLE_SIGMAS}
        with torch.no_grad():
            out = layer(module).run(x, opts)
            plain = layer(module).run(x, {"cond_or_uncond": [0, 1]})
        if frames == 8:
            assert torch.equal(out, plain)
        else:
            views = ade_windows(20, "static", 8, 2)
            oracle = ade_views_module(weights, x, 20, views, [torch.ones(8)] * len(views))
            assert (out.double() - oracle).abs().max().item() <= 1e-4 * (oracle - x).abs().max().item()

    diffusion = m.model.diffusion_model
    m.inject_model()
    try:
        wrapped = [layer for b in [*diffusion.input_blocks, diffusion.middle_block, *diffusion.output_blocks]
                   for layer in b if isinstance(layer, FrameBatchedTransformer)]
        assert len(wrapped) == 16 and all(w.limit == 4 for w in wrapped)
        assert any(type(layer).__name__ == "MotionLayer" for layer in diffusion.middle_block)
    finally:
        m.eject_model()
    assert not any(isinstance(layer, FrameBatchedTransformer) for layer in diffusion.modules())
    (again,) = MotionWindowsNode().apply(m, 8, 2, "static", "flat", 0)  # 0: no batching, the earlier one replaced
    assert BATCH_KEY not in again.injections and again.model_options["transformer_options"][mw.KEY].context_length == 8

    with pytest.raises(TooManyFramesError, match=r"at most 32 frames.*windows of 48 frames"):
        MotionWindowsNode().apply(animated, 48, 4, "uniform", "pyramid", 0)
