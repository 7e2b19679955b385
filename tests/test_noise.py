"""FreeNoise (sampling/noise.py) and FreeInit (sampling/freeinit.py) without ComfyUI: the noise layout, the
filters against their formulas (and diffusers' implementation as an oracle), the frequency mix, and the
FreeInit sampling loop driven by a stand-in executor."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from motionkit.sampling.errors import NoiseOptionError
from motionkit.sampling import freeinit as fi
from motionkit.sampling.noise import RANDOM, REPEAT, SHUFFLE, FreeNoise, derived_generator, free_noise


def labelled(frames, extra=(2, 3, 3)):
    """Noise whose frame i is filled with the value i: the output shows which frame each came from."""
    return torch.arange(frames, dtype=torch.float32).reshape(frames, *([1] * len(extra))).expand(frames, *extra).clone()


def sources(out):
    return [int(v) for v in out.reshape(out.shape[0], -1)[:, 0]]


# ---------------------------------------------------------------------------------------------
# FreeNoise

@pytest.mark.parametrize("frames,length,stride", [(32, 16, 4), (30, 16, 4), (21, 8, 3), (40, 16, 12)])
def test_shuffle_context_reuses_earlier_blocks_shuffled(frames, length, stride):
    base = labelled(frames)
    out = free_noise(base, length, stride, SHUFFLE, torch.Generator().manual_seed(0))
    assert out.shape == base.shape
    assert torch.equal(base, labelled(frames)), "the input must not be modified"
    src = sources(out)
    assert torch.equal(out, base[src]), "every frame is a whole copy of one base frame"
    assert src[:length] == list(range(length)), "the first window keeps its own noise"
    for start in range(length, frames, stride):
        block = src[start:start + stride]
        earlier = src[start - length:start - length + stride]
        assert set(block) <= set(earlier) and len(set(block)) == len(block), (start, block, earlier)
        if len(block) == stride:
            assert sorted(block) == sorted(earlier)
    assert src[length:] != [src[i - length] for i in range(length, frames)], "blocks must be shuffled, not copied"
    if length % stride == 0:  # FreeNoise's point: every window on the stride grid holds the first window's noises
        for start in range(0, frames - length + 1, stride):
            assert sorted(src[start:start + length]) == list(range(length)), start


def test_shuffle_matches_diffusers_free_noise():
    """diffusers' AnimateDiffFreeNoiseMixin draws the noise and then the shuffles from one generator;
    given the same generator state, ours must lay out the same frames."""
    AnimateDiffFreeNoiseMixin = pytest.importorskip(
        "diffusers.pipelines.free_noise_utils", reason="diffusers (the oracle) is not installed").AnimateDiffFreeNoiseMixin

    frames, length, stride = 27, 8, 3
    pipe = SimpleNamespace(_free_noise_context_length=length, _free_noise_context_stride=stride,
                           _free_noise_noise_type="shuffle_context", vae_scale_factor=8)
    theirs = AnimateDiffFreeNoiseMixin._prepare_latents_free_noise(
        pipe, 1, 4, frames, 32, 40, torch.float32, torch.device("cpu"), generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    base = torch.randn((1, 4, frames, 4, 5), generator=g)
    ours = free_noise(base, length, stride, SHUFFLE, g, dim=2)
    assert torch.equal(ours, theirs)


def test_repeat_and_random_modes():
    base = torch.randn(19, 4, 5, 5, generator=torch.Generator().manual_seed(1))
    rep = free_noise(base, 8, 4, REPEAT)
    assert torch.equal(rep, base[torch.arange(19) % 8])
    assert torch.equal(free_noise(base, 8, 4, RANDOM), base)


@pytest.mark.parametrize("mode", [SHUFFLE, REPEAT, RANDOM])
def test_no_longer_than_one_window_is_the_base_noise(mode):
    base = torch.randn(16, 4, 3, 3)
    assert torch.equal(free_noise(base, 16, 4, mode, torch.Generator().manual_seed(3)), base)


def test_video_latents_use_frame_axis_2():
    base = torch.arange(20, dtype=torch.float32).reshape(1, 1, 20, 1, 1).expand(2, 4, 20, 3, 3).clone()
    out = free_noise(base, 8, 4, SHUFFLE, torch.Generator().manual_seed(0), dim=2)
    src = [int(v) for v in out[0, 0, :, 0, 0]]
    assert src[:8] == list(range(8)) and sorted(src[8:12]) == [0, 1, 2, 3]
    assert torch.equal(out, base[:, :, src])


def test_deterministic_per_seed_and_seeds_differ():
    base = labelled(48)
    a = free_noise(base, 16, 4, SHUFFLE, derived_generator(7, FreeNoise.SALT))
    b = free_noise(base, 16, 4, SHUFFLE, derived_generator(7, FreeNoise.SALT))
    c = free_noise(base, 16, 4, SHUFFLE, derived_generator(8, FreeNoise.SALT))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_derived_generator_is_not_comfyuis_noise_stream():
    assert not torch.equal(torch.randn(8, generator=derived_generator(3, 1)),
                           torch.randn(8, generator=torch.Generator().manual_seed(3)))
    assert torch.randn(1, generator=derived_generator(2**64 - 1, 5)).isfinite().all()  # ComfyUI's largest seed


@pytest.mark.parametrize("length,stride,mode,phrase", [
    (16, 17, SHUFFLE, "context_stride (17)"), (16, 0, SHUFFLE, "between 1 and"), (0, 1, SHUFFLE, "context_length"),
    (16, 4, "loop", "mode 'loop'")])
def test_bad_settings_are_refused(length, stride, mode, phrase):
    with pytest.raises(NoiseOptionError) as e:
        FreeNoise(1, length, stride, mode)
    assert phrase in str(e.value)


# ---------------------------------------------------------------------------------------------
# FreeInit filters

def test_filters_at_dc_and_cut_off():
    # 8 points: index 1 is 0.25 of Nyquist (= d_s), index 2 is 0.5; 4 frames: index 1 is 0.5 (= d_t)
    d_s, d_t = 0.25, 0.5
    lp = {k: fi.low_pass_filter(k, 4, 8, 8, d_s=d_s, d_t=d_t, order=3) for k in fi.FILTERS}
    for kind, f in lp.items():
        assert f.shape == (4, 8, 8)
        assert f[0, 0, 0] == 1.0, kind
    for at in [(0, 1, 0), (0, 0, 1), (0, 7, 0), (1, 0, 0), (3, 0, 0)]:  # on the cut-off (spatial, temporal, negative)
        assert lp["gaussian"][at].item() == pytest.approx(math.exp(-0.5), abs=1e-6), at
        assert lp["butterworth"][at].item() == pytest.approx(0.5, abs=1e-6), at
        assert lp["ideal"][at] == 1.0 and lp["box"][at] == 1.0, at
    for at in [(0, 2, 0), (2, 0, 0), (0, 4, 4)]:  # beyond it
        assert lp["ideal"][at] == 0.0 and lp["box"][at] == 0.0, at
    # a diagonal point: inside the box, outside the sphere
    assert lp["box"][1, 1, 1] == 1.0 and lp["ideal"][1, 1, 1] == 0.0
    d2 = 3 * d_s ** 2  # (1, 1, 1): each axis on its cut-off
    assert lp["gaussian"][1, 1, 1].item() == pytest.approx(math.exp(-d2 / (2 * d_s ** 2)), abs=1e-6)
    assert lp["butterworth"][1, 1, 1].item() == pytest.approx(1 / (1 + (d2 / d_s ** 2) ** 3), abs=1e-6)


@pytest.mark.parametrize("kind", ["gaussian", "butterworth"])
def test_filters_match_diffusers(kind):
    """diffusers builds the same filters in fftshift-ed layout (even sizes: the same frequency grid)."""
    FreeInitMixin = pytest.importorskip(
        "diffusers.pipelines.free_init_utils", reason="diffusers (the oracle) is not installed").FreeInitMixin

    shape, d_s, d_t, order = (6, 8, 10), 0.3, 0.2, 2
    theirs = FreeInitMixin._get_free_init_freq_filter(None, (1, 4, *shape), "cpu", kind, order, d_s, d_t)[0, 0]
    ours = fi.low_pass_filter(kind, *shape, d_s=d_s, d_t=d_t, order=order)
    torch.testing.assert_close(ours, torch.fft.ifftshift(theirs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", fi.FILTERS)
def test_filters_are_even_so_mixing_stays_real(kind):
    f = fi.low_pass_filter(kind, 5, 8, 6, d_s=0.4, d_t=0.3, order=2)
    negated = f.flip(0, 1, 2).roll((1, 1, 1), dims=(0, 1, 2))  # index k -> -k mod n
    assert torch.equal(f, negated)
    assert ((f >= 0) & (f <= 1)).all()


def test_zero_stop_frequency_keeps_nothing():
    for d_s, d_t in [(0.0, 0.25), (0.25, 0.0)]:
        assert not fi.low_pass_filter("butterworth", 4, 8, 8, d_s=d_s, d_t=d_t).any()


def spectrum(x):
    return torch.fft.fftn(x.double(), dim=fi.frame_axes(x))


@pytest.mark.parametrize("kind", fi.FILTERS)
def test_mix_keeps_low_band_of_first_and_high_band_of_second(kind):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 4, 16, 16, generator=g), torch.randn(8, 4, 16, 16, generator=g)
    settings = fi.FreeInitSettings(filter=kind, d_s=0.3, d_t=0.4, order=2)
    lp = fi.filter_for(a, settings)
    assert lp.shape == (8, 1, 16, 16)
    mixed = fi.mix_frequencies(a, b, lp)
    assert mixed.shape == a.shape and mixed.dtype == torch.float32
    lp64 = lp.double()
    torch.testing.assert_close(spectrum(mixed), spectrum(a) * lp64 + spectrum(b) * (1 - lp64), rtol=0, atol=1e-3)
    if kind in ("ideal", "box"):  # sharp filters: each bin comes from exactly one input
        keep = lp.expand_as(a) == 1
        assert 0 < keep.sum() < keep.numel()
        torch.testing.assert_close(spectrum(mixed)[keep], spectrum(a)[keep], rtol=0, atol=1e-3)
        torch.testing.assert_close(spectrum(mixed)[~keep], spectrum(b)[~keep], rtol=0, atol=1e-3)
    # low-pass + high-pass = 1: mixing a tensor with itself gives it back
    torch.testing.assert_close(fi.mix_frequencies(a, a, lp), a, rtol=0, atol=1e-5)


def test_mix_on_video_latents():
    a, b = torch.randn(1, 4, 6, 8, 8), torch.randn(1, 4, 6, 8, 8)
    lp = fi.filter_for(a, fi.FreeInitSettings(filter="box"))
    assert lp.shape == (1, 1, 6, 8, 8)
    mixed = fi.mix_frequencies(a, b, lp)
    assert spectrum(mixed).shape == a.shape
    torch.testing.assert_close(spectrum(mixed)[0, :, 0, 0, 0], spectrum(a)[0, :, 0, 0, 0], rtol=0, atol=1e-4)


def test_restart_is_the_mix_of_diffused_result_and_fresh_start():
    """The linearity the wrapper relies on: noise_scaling(sigma, mix(noise0, fresh), mix(x0, start)) is
    FreeInit's restart LP(noise_scaling(sigma, noise0, x0)) + HP(noise_scaling(sigma, fresh, start)),
    for ComfyUI's EPS (plain and max_denoise) and flow (CONST) scalings."""
    g = torch.Generator().manual_seed(2)
    noise0, fresh, x0, start = (torch.randn(8, 4, 8, 8, generator=g) for _ in range(4))
    lp = fi.filter_for(x0, fi.FreeInitSettings())
    scalings = {"eps": lambda s, n, x: n * s + x, "eps max": lambda s, n, x: n * math.sqrt(1 + s * s) + x,
                "const": lambda s, n, x: s * n + (1 - s) * x}
    for name, scale in scalings.items():
        sigma = 0.9 if name == "const" else 14.6
        restart = fi.mix_frequencies(scale(sigma, noise0, x0), scale(sigma, fresh, start), lp)
        ours = scale(sigma, fi.mix_frequencies(noise0, fresh, lp), fi.mix_frequencies(x0, start, lp))
        torch.testing.assert_close(ours, restart, rtol=0, atol=1e-4, msg=name)


@pytest.mark.parametrize("settings,phrase", [
    (fi.FreeInitSettings(filter="sinc"), "filter 'sinc'"), (fi.FreeInitSettings(iterations=0), "iterations"),
    (fi.FreeInitSettings(d_s=1.5), "d_s is 1.5"), (fi.FreeInitSettings(order=0), "order")])
def test_bad_freeinit_settings_are_refused(settings, phrase):
    with pytest.raises(NoiseOptionError) as e:
        fi.check_settings(settings)
    assert phrase in str(e.value)


# ---------------------------------------------------------------------------------------------
# FreeInit's sampling loop (the OUTER_SAMPLE wrapper) with a stand-in for ComfyUI's guider

SCALE = 0.5  # the stand-in latent format: model space = 0.5 * output space


class FakeGuider:
    def __init__(self):
        self.model_patcher = SimpleNamespace(model=SimpleNamespace(process_latent_in=lambda x: x * SCALE,
                                                                   process_latent_out=lambda x: x / SCALE))
        self.conds = {"positive": [{"c": 1}], "negative": [{"c": 0}]}


class FakeExecutor:
    """outer_sample: records its inputs, reports `steps` steps, processes the conds like ComfyUI
    (replacing them in the guider's dict), returns a made-up result in output space."""

    def __init__(self, steps=3):
        self.class_obj = FakeGuider()
        self.calls = []
        self.steps = steps

    def __call__(self, noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed):
        self.calls.append(SimpleNamespace(noise=noise.clone(), latent=latent_image.clone(), seed=seed,
                                          conds={k: [dict(c) for c in v] for k, v in self.class_obj.conds.items()}))
        self.class_obj.conds["positive"] = [{"c": "processed"}]
        for i in range(self.steps):
            if callback is not None:
                callback(i, None, None, self.steps)
        return (torch.tanh(noise) + 0.1 * len(self.calls)) / SCALE


def run_wrapper(settings, seed=11, steps=3, frames=8):
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(frames, 4, 8, 8, generator=g)
    latent = torch.zeros(frames, 4, 8, 8)
    executor, progress = FakeExecutor(steps), []
    out = fi.make_outer_sample(settings)(executor, noise, latent, "sampler", torch.linspace(14, 0, steps + 1),
                                         None, lambda i, x0, x, total: progress.append((i, total)), False, seed)
    return noise, latent, executor, out, progress


def test_wrapper_samples_iterations_times_from_freeinit_restarts():
    settings = fi.FreeInitSettings(iterations=3, filter="butterworth")
    noise, latent, executor, out, progress = run_wrapper(settings)
    calls = executor.calls
    assert len(calls) == 3
    assert torch.equal(calls[0].noise, noise) and torch.equal(calls[0].latent, latent)
    lp = fi.filter_for(noise, settings)
    for i in (1, 2):
        previous = (torch.tanh(calls[i - 1].noise) + 0.1 * i) / SCALE
        # always the first pass's noise (the paper's z_T diffuses with the initial noise), fresh highs per pass
        torch.testing.assert_close(calls[i].noise, fi.mix_frequencies(noise, fi.fresh_noise(noise.shape, 11, i), lp))
        torch.testing.assert_close(calls[i].latent * SCALE, fi.mix_frequencies(previous * SCALE, latent, lp),
                                   rtol=0, atol=1e-5)
        assert not torch.allclose(calls[i].noise, calls[1 if i == 2 else 2].noise)
    torch.testing.assert_close(out, (torch.tanh(calls[2].noise) + 0.3) / SCALE)
    for call in calls:  # every pass gets the conds as prepared, not the previous pass's processed ones
        assert call.conds == {"positive": [{"c": 1}], "negative": [{"c": 0}]} and call.seed == 11
    assert progress == [(i, 9) for i in range(9)], "one progress bar over all passes"


def test_wrapper_is_deterministic_per_seed():
    a = run_wrapper(fi.FreeInitSettings(), seed=5)[2].calls[1].noise
    b = run_wrapper(fi.FreeInitSettings(), seed=5)[2].calls[1].noise
    c = run_wrapper(fi.FreeInitSettings(), seed=6)[2].calls[1].noise
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_one_iteration_or_no_noise_samples_once_unchanged():
    noise, latent, executor, out, progress = run_wrapper(fi.FreeInitSettings(iterations=1))
    assert len(executor.calls) == 1 and torch.equal(executor.calls[0].noise, noise)
    assert progress == [(i, 3) for i in range(3)]
    executor = FakeExecutor()
    fi.make_outer_sample(fi.FreeInitSettings(iterations=3))(executor, torch.zeros(4, 4, 8, 8), torch.randn(4, 4, 8, 8),
                                                             "sampler", torch.ones(4), None, None, False, 0)
    assert len(executor.calls) == 1
