"""Seed options and noise layers (sampling/seeds.py, sampling/noise_layers.py, nodes/noise_layers.py).

The oracle is AnimateDiff-Evolved's definition of Sample Settings' noise, written out below from its code
(Kosinkadink/ComfyUI-AnimateDiff-Evolved at 90fb133, animatediff/sample_settings.py: SampleSettings.prepare_noise,
NoiseLayer*.create_layer_noise / apply_layer_noise, prepare_mask_ad, SeedNoiseGeneration). Ours must give the same
tensors bit for bit (torch.equal). ADE's own module, run on the same inputs, agrees bit for bit too (checked outside
the repo; numbers in the branch's report).
"""
from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import pytest
import torch

from motionkit.sampling import seeds
from motionkit.sampling.errors import NoiseOptionError
from motionkit.sampling.noise_layers import (NoiseLayer, NoiseSettings, make_outer_sample, mask_for,
                                             parse_seed_override)

# ---------------------------------------------------------------------------------------------------------------
# ADE 90fb133's definitions, written out (plain torch, ADE's structure and arithmetic)


def ade_randn(shape, like, seed):
    return torch.randn(shape, dtype=like.dtype, layout=like.layout, generator=torch.Generator("cpu").manual_seed(seed),
                       device="cpu")


def ade_derivative(noise, noise_type, seed, ctx):
    if noise_type == "repeated_context":
        if ctx.context_length is None:
            return noise
        length = noise.shape[0]
        noise = noise[:ctx.context_length]
        return torch.cat([noise] * ((length // ctx.context_length) + 1), dim=0)[:length]
    if noise_type == "FreeNoise":
        if ctx.context_length is None:
            return noise
        video_length, delta = noise.shape[0], ctx.context_length - ctx.context_overlap
        gen = torch.Generator("cpu").manual_seed(seed)
        for start_idx in range(0, video_length - ctx.context_length, delta):
            place_idx = start_idx + ctx.context_length
            if place_idx >= video_length:
                break
            if place_idx - 1 + delta >= video_length:
                final_delta = video_length - place_idx
                list_idx = torch.Tensor(list(range(start_idx, start_idx + final_delta))).to(torch.long)
                list_idx = list_idx[torch.randperm(final_delta, generator=gen)]
                noise[place_idx:place_idx + final_delta] = noise[list_idx]
                break
            list_idx = torch.Tensor(list(range(start_idx, start_idx + delta))).to(torch.long)
            list_idx = list_idx[torch.randperm(delta, generator=gen)]
            noise[place_idx:place_idx + delta] = noise[list_idx]
        return noise
    return noise


def ade_create_noise(seed, latents, seed_gen, noise_type, batch_offset, ctx):
    if noise_type == "empty":
        return torch.zeros_like(latents)
    b, c, h, w = latents.shape
    if seed_gen == "comfy":
        if noise_type == "constant":
            single = ade_randn((1 + batch_offset, c, h, w), latents, seed)
            return torch.cat([single[batch_offset:]] * b, dim=0)
        noise = ade_randn((b + batch_offset, c, h, w), latents, seed)[batch_offset:]
    else:  # auto1111
        if noise_type == "constant":
            return torch.cat([ade_randn((1, c, h, w), latents, seed + batch_offset)] * b, dim=0)
        noise = torch.cat([ade_randn((1, c, h, w), latents, seed + i + batch_offset) for i in range(b)], dim=0)
    return ade_derivative(noise, noise_type, seed, ctx)


def ade_individual(seed_list, latents, seed_offset):
    if len(seed_list) < latents.shape[0]:
        raise ValueError("too few seeds")
    shape = (1,) + tuple(latents.shape[1:])
    return torch.cat([ade_randn(shape, latents, s + seed_offset) for s in seed_list[:latents.shape[0]]], dim=0)


def ade_mask(mask, shape):
    m = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
    m = torch.nn.functional.interpolate(m, size=(shape[2], shape[3]), mode="bilinear")
    m = torch.cat([m] * shape[1], dim=1)
    if m.shape[0] > shape[0]:  # comfy.utils.repeat_to_batch_size
        m = m.narrow(0, 0, shape[0])
    elif m.shape[0] < shape[0]:
        m = m.repeat([math.ceil(shape[0] / m.shape[0]), 1, 1, 1]).narrow(0, 0, shape[0])
    return m


def ade_layer_noise(layer, seed, latents, existing_seed_gen, ctx):
    if layer["seed_override"] is not None:
        seed = layer["seed_override"]
    if isinstance(seed, list):
        return ade_individual(seed, latents, layer["seed_offset"])
    seed += layer["seed_offset"]
    gen = existing_seed_gen if layer["seed_gen"] == "use existing" else layer["seed_gen"]
    return ade_create_noise(seed, latents, gen, layer["noise_type"], layer["batch_offset"], ctx)


def ade_apply(layer, new, old):
    m = 1 if layer["mask"] is None else ade_mask(layer["mask"], old.shape)
    kind, w = layer["kind"], layer["weight"]
    if kind == "replace":
        return (1 - m) * old + m * new
    if kind == "add":
        return (1 - m) * old + m * (old + new * w)
    if kind == "add_weighted":
        return (1 - m) * old + m * (old * (1.0 - (w * layer["balance"])) + new * w)
    weight_old, weight_new = 1.0 - w, w
    norm = (weight_old ** 2 + weight_new ** 2) ** 0.5
    weight_old /= norm
    weight_new /= norm
    return (1 - m) * old + m * (weight_old * old + weight_new * new)


def ade_prepare_noise(s, seed, latents, noise, ctx, force_create_noise):
    """SampleSettings.prepare_noise; s: the settings as a dict, its "layers" in the order ADE applies them."""
    if s["seed_override"] is not None:
        seed = s["seed_override"]
    if isinstance(seed, list):
        noise = ade_individual(seed, latents, s["seed_offset"])
        seed = seed[0] + s["seed_offset"]
    else:
        seed += s["seed_offset"]
        if (s["batch_offset"] != 0 or s["seed_offset"] != 0 or s["noise_type"] != "default"
                or s["seed_gen"] != "comfy" or force_create_noise):
            noise = ade_create_noise(seed, latents, s["seed_gen"], s["noise_type"], s["batch_offset"], ctx)
    for layer in s["layers"]:
        noise = ade_apply(layer, ade_layer_noise(layer, seed, latents, s["seed_gen"], ctx), noise)
    return noise


# ---------------------------------------------------------------------------------------------------------------
# the same settings for ADE's definition and for ours

def ade_layer(kind, noise_type="default", batch_offset=0, seed_gen="use existing", seed_offset=0, seed_override=None,
              mask=None, weight=1.0, balance=1.0):
    return dict(kind=kind, noise_type=noise_type, batch_offset=batch_offset, seed_gen=seed_gen, seed_offset=seed_offset,
                seed_override=seed_override, mask=mask, weight=weight, balance=balance)


def ours_layer(d):
    return NoiseLayer(application=d["kind"], noise_type=d["noise_type"], batch_offset=d["batch_offset"],
                      seed_gen_override=d["seed_gen"], seed_offset=d["seed_offset"], seed_override=d["seed_override"],
                      mask=d["mask"], weight=d["weight"], balance_multiplier=d["balance"])


def compare(settings=None, layers_in_chain_order=(), seed=7, frames=10, context=None, force=False, dtype=torch.float32):
    """ADE's noise and ours for the settings; layers given in the order the nodes are chained (each node puts its
    layer first, as ADE's nodes' add_to_start)."""
    s = dict(batch_offset=0, noise_type="default", seed_gen="comfy", seed_offset=0, seed_override=None)
    s.update(settings or {})
    layers = list(reversed(layers_in_chain_order))
    latents = torch.zeros(frames, 4, 6, 7, dtype=dtype)
    base = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(dtype)  # ComfyUI's noise
    length, overlap = context if context else (None, None)
    ctx = SimpleNamespace(context_length=length, context_overlap=overlap)
    expected = ade_prepare_noise(dict(s, layers=layers), seed, latents, base.clone(), ctx, force)
    ours = NoiseSettings(**s)
    for d in layers_in_chain_order:
        ours = ours.with_layer_first(ours_layer(d))
    got = ours.prepare_noise(seed, latents, base.clone(), context, force_create_noise=force)
    assert got.shape == latents.shape and got.dtype == expected.dtype  # a float mask makes fp16 noise fp32, as ADE
    assert torch.equal(got, expected)
    return got, base


def rand_mask(frames, h=24, w=28, seed=0):
    return torch.rand(frames, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("settings", [
    {"seed_offset": 5}, {"seed_offset": -3}, {"batch_offset": 3}, {"seed_gen": "auto1111"},
    {"seed_gen": "auto1111", "batch_offset": 2, "seed_offset": 4}, {"seed_override": 123, "batch_offset": 1},
    {"seed_override": list(range(100, 112)), "seed_offset": 2},
], ids=lambda s: ",".join(f"{k}={v if not isinstance(v, list) else 'list'}" for k, v in s.items()))
def test_seed_options_are_ades(settings):
    got, base = compare(settings)
    assert not torch.equal(got, base)  # each changes the noise


def test_defaults_keep_the_samplers_noise_and_a_lone_int_override_only_seeds_layers():
    got, base = compare({})
    assert torch.equal(got, base)
    got, base = compare({"seed_override": 123})  # ADE: no other setting changed -> the sampler's noise is kept
    assert torch.equal(got, base)
    got, base = compare({"seed_override": 123}, [ade_layer("add", weight=0.5)])
    assert torch.equal(got, base + seeds.create_noise(123, base, seeds.COMFY) * 0.5)
    forced, base = compare({}, force=True)
    assert torch.equal(forced, base)  # forced: drawn again, the same as ComfyUI's for the seed


def test_batch_offset_and_auto1111_frames_are_their_seeds():
    lat = torch.zeros(5, 4, 6, 7)
    whole = seeds.create_noise(7, torch.zeros(8, 4, 6, 7), seeds.COMFY)
    assert torch.equal(seeds.create_noise(7, lat, seeds.COMFY, batch_offset=3), whole[3:])
    a1111 = seeds.create_noise(7, lat, seeds.AUTO1111, batch_offset=2)
    assert torch.equal(a1111[1], seeds.create_noise(10, lat[:1], seeds.COMFY)[0])  # frame 1: seed 7 + 1 + 2


@pytest.mark.parametrize("noise_type", ["constant", "empty", "repeated_context", "FreeNoise"])
@pytest.mark.parametrize("seed_gen", ["comfy", "auto1111"])
def test_noise_types_are_ades(noise_type, seed_gen):
    got, _ = compare({"noise_type": noise_type, "seed_gen": seed_gen, "batch_offset": 1}, context=(4, 1))
    if noise_type == "constant":
        assert all(torch.equal(got[i], got[0]) for i in range(10))
    if noise_type == "empty":
        assert not got.any()
    if noise_type == "repeated_context":
        assert torch.equal(got[4:8], got[:4]) and not torch.equal(got[1], got[0])


@pytest.mark.parametrize("frames,context", [(10, (4, 2)), (10, (3, 0)), (16, (8, 4)), (7, (8, 4)), (11, (4, 1))])
def test_freenoise_layout_is_ades(frames, context):
    got, _ = compare({"noise_type": "FreeNoise"}, frames=frames, context=context, seed=9)
    length, overlap = context
    if frames > length:  # the block after the first window holds the window's first frames, reordered
        delta = min(length - overlap, frames - length)
        assert sorted(got[length:length + delta, 0, 0, 0].tolist()) == sorted(got[:delta, 0, 0, 0].tolist())


def test_context_noise_types_without_context_windows_leave_the_noise_as_drawn():
    for noise_type in ("repeated_context", "FreeNoise"):
        got, base = compare({"noise_type": noise_type}, context=None)
        assert torch.equal(got, base)


@pytest.mark.parametrize("kind", ["replace", "add", "add_weighted", "normalized_sum"])
@pytest.mark.parametrize("mask_frames", [None, 10, 1, 3, 12])  # no mask, per frame, one, repeated, cut
def test_each_layer_with_and_without_mask_is_ades(kind, mask_frames):
    mask = None if mask_frames is None else rand_mask(mask_frames, seed=mask_frames)
    got, base = compare({}, [ade_layer(kind, seed_offset=2, mask=mask, weight=0.35, balance=0.8)])
    assert not torch.equal(got, base)


def test_layer_seed_options_are_ades():
    compare({"seed_offset": 1}, [ade_layer("add", seed_gen="auto1111", seed_override=55, batch_offset=2,
                                           noise_type="constant", weight=0.7)])
    compare({}, [ade_layer("replace", seed_override=list(range(20, 31)), seed_offset=4, mask=rand_mask(10))])
    compare({"seed_override": list(range(40, 50))}, [ade_layer("add", weight=0.5, seed_offset=3)])  # its first seed
    compare({"seed_gen": "auto1111"}, [ade_layer("add", weight=0.3, mask=rand_mask(10))], dtype=torch.float16)


def test_layer_stacking_order_is_ades_and_matters():
    a = ade_layer("replace", seed_offset=1, mask=rand_mask(10))
    b = ade_layer("add", seed_offset=2, weight=0.3)
    ab, _ = compare({}, [a, b])
    ba, _ = compare({}, [b, a])
    assert not torch.equal(ab, ba)
    # the layer chained last (nearest the settings) runs first: chain [a, b] is b then a
    base = torch.randn(10, 4, 6, 7, generator=torch.Generator().manual_seed(7))
    la, lb = ours_layer(a), ours_layer(b)
    step = lb.apply(lb.create_noise(7, base, "comfy"), base)
    assert torch.equal(ab, la.apply(la.create_noise(7, base, "comfy"), step))
    compare({"seed_gen": "auto1111", "batch_offset": 2, "seed_offset": 1},
            [a, ade_layer("add", seed_offset=2, weight=0.3, noise_type="FreeNoise"),
             ade_layer("add_weighted", seed_offset=3, weight=0.4, balance=0.5, seed_gen="comfy", mask=rand_mask(1)),
             ade_layer("normalized_sum", seed_offset=4, weight=0.6, noise_type="repeated_context")], context=(4, 1))


def test_mask_is_resized_and_fitted_to_the_frames_with_a_note(caplog):
    noise = torch.zeros(6, 4, 5, 7)
    with caplog.at_level(logging.WARNING, logger="MotionKit"):
        m = mask_for(torch.rand(4, 20, 28), noise)
    assert m.shape == noise.shape and torch.equal(m[4:], m[:2])
    assert "4 frames" in caplog.text and "has 6" in caplog.text and "repeated" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="MotionKit"):
        mask_for(torch.rand(20, 28), noise)
        mask_for(torch.rand(6, 20, 28), noise)
    assert caplog.text == ""


# ---------------------------------------------------------------------------------------------------------------
# bad input

def test_seed_lists_shorter_than_the_batch_are_refused():
    with pytest.raises(NoiseOptionError, match="3 seeds but the latent has 10 frames"):
        NoiseSettings(seed_override=[1, 2, 3]).prepare_noise(0, torch.zeros(10, 4, 6, 7), None)
    layer = NoiseLayer(seed_override=[1, 2])
    with pytest.raises(NoiseOptionError, match="2 seeds"):
        NoiseSettings(layers=(layer,)).prepare_noise(0, torch.zeros(4, 4, 6, 7), torch.zeros(4, 4, 6, 7))


@pytest.mark.parametrize("make,phrase", [
    (lambda: NoiseSettings(noise_type="pink"), "Noise type 'pink' is unknown"),
    (lambda: NoiseSettings(seed_gen="use existing"), "Choose one of: comfy"),
    (lambda: NoiseLayer(application="multiply"), "application 'multiply' is unknown"),
    (lambda: parse_seed_override("1, two"), "not a seed or a list"),
    (lambda: seeds.create_noise(2**64, torch.zeros(1, 4, 2, 2)), "outside the range"),
    (lambda: seeds.create_noise(0, torch.zeros(1, 4, 2, 2, 2)), "latents are 5D"),
])
def test_bad_options_are_refused_clearly(make, phrase):
    with pytest.raises(NoiseOptionError, match=phrase):
        make()


def test_seed_override_text():
    assert parse_seed_override("") is None and parse_seed_override("  ") is None
    assert parse_seed_override("42") == 42 and parse_seed_override(" 42 ") == 42
    assert parse_seed_override("1, 2,3") == [1, 2, 3] and parse_seed_override("5,") == [5]
    assert parse_seed_override("-4 7") == [-4, 7]


# ---------------------------------------------------------------------------------------------------------------
# the OUTER_SAMPLE wrapper with a stand-in executor (the real sampler: test_sampler_receives_the_settings_noise)

class Executor:
    def __init__(self, handler=None):
        self.class_obj = SimpleNamespace(model_options={} if handler is None else {"context_handler": handler})
        self.noise = None

    def __call__(self, noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed):
        self.noise = noise
        return latent_image


def test_wrapper_makes_the_noise_from_the_samplers_seed_and_the_models_context_windows():
    settings = NoiseSettings(noise_type="FreeNoise", layers=(NoiseLayer(application="add", weight=0.2),))
    latents, noise = torch.zeros(10, 4, 6, 7), torch.randn(10, 4, 6, 7, generator=torch.Generator().manual_seed(3))
    ex = Executor(SimpleNamespace(context_length=4, context_overlap=1))
    make_outer_sample(settings)(ex, noise, latents, "sampler", torch.ones(2), None, None, True, 3)
    assert torch.equal(ex.noise, settings.prepare_noise(3, latents, noise.clone(), (4, 1), force_create_noise=False))
    zeros = torch.zeros(10, 4, 6, 7)  # KSamplerAdvanced add_noise disabled: no noise, as ADE
    make_outer_sample(settings)(ex, zeros, latents, "sampler", torch.ones(2), None, None, True, 3)
    assert ex.noise is zeros


# ---------------------------------------------------------------------------------------------------------------
# nodes (ComfyUI: the nodes package registers model folders)

@pytest.fixture(scope="module")
def comfy():
    import comfy_env
    comfy_env.comfy_on_cpu()
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models_base
    return comfy


@pytest.mark.comfyui
def test_nodes_explain_each_control_and_chain_like_ades(comfy):
    from motionkit.nodes.noise_layers import NoiseLayerNode, SampleSettingsNode
    for node in (NoiseLayerNode, SampleSettingsNode):
        types = node.INPUT_TYPES()
        for group in ("required", "optional"):
            for name, (_, opts) in types[group].items():
                assert len(opts["tooltip"]) > 60, name
        assert node.DESCRIPTION and node.SEARCH_ALIASES
    assert list(SampleSettingsNode.INPUT_TYPES()["required"]) == ["model", "noise_seed", "batch_offset", "noise_type",
                                                                  "seed_gen", "seed_offset"]
    node = NoiseLayerNode()
    mask = torch.rand(2, 8, 8)
    (first,) = node.make("replace", 0.5, 1.0, 1, "use existing", "default", 0, mask=mask)
    (second,) = node.make("add", 0.25, 1.0, 2, "auto1111", "constant", 3, prev_noise_layers=first,
                          seed_override="4, 5")
    assert [l.application for l in second] == ["add", "replace"] and len(first) == 1
    assert second[0].seed_override == [4, 5] and second[0].seed_gen_override == "auto1111"
    assert second[0].batch_offset == 3 and second[0].weight == 0.25 and torch.equal(second[1].mask, mask)
    with pytest.raises(NoiseOptionError, match="normalized_sum"):
        node.make("normalized_sum", 1.5, 1.0, 0, "use existing", "default", 0)


@pytest.mark.comfyui
def test_sampler_receives_the_settings_noise(comfy):
    """In-process ComfyUI: KSampler's path (comfy.sample.sample) with the node's MODEL, and SamplerCustomAdvanced's
    (CFGGuider.sample with a NOISE's noise and seed) with the node's NOISE, the MODEL, or both: a SAMPLER_SAMPLE
    wrapper records the noise the sampler gets."""
    import comfy.sample
    import comfy.samplers
    from comfy.patcher_extension import WrappersMP
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise
    from motionkit.nodes.noise_layers import SampleSettingsNode

    class Config(comfy.supported_models_base.BASE):
        unet_config = {}
        sampling_settings = {}
        latent_format = comfy.latent_formats.SD15
        memory_usage_factor = 1.0

    class StandIn(torch.nn.Module):
        dtype = torch.float32

        def forward(self, x, timesteps, context=None, **kwargs):
            return torch.zeros_like(x)

    base = comfy.model_base.BaseModel(Config({"disable_unet_model_creation": True}), device=torch.device("cpu"))
    base.diffusion_model = StandIn()
    model = comfy.model_patcher.ModelPatcher(base, torch.device("cpu"), torch.device("cpu"))
    received = []

    def record(executor, guider, sigmas, extra_args, callback, noise, *args, **kwargs):
        received.append(noise.clone())
        return executor(guider, sigmas, extra_args, callback, noise, *args, **kwargs)

    mask = torch.zeros(8, 16, 16)
    mask[:, :, 8:] = 1.0
    layer = NoiseLayer(application="replace", seed_offset=5, mask=mask)
    node_model, node_noise = SampleSettingsNode().apply(model, 11, 2, "default", "auto1111", 3,
                                                        noise_layers=(layer,), seed_override="")
    node_model.add_wrapper_with_key(WrappersMP.SAMPLER_SAMPLE, "test_record", record)
    plain = model.clone()
    plain.add_wrapper_with_key(WrappersMP.SAMPLER_SAMPLE, "test_record", record)
    settings = node_noise.settings
    latent = torch.zeros(8, 4, 2, 2)
    cond = [[torch.zeros(1, 1, 768), {}]]

    comfy.sample.sample(node_model, comfy.sample.prepare_noise(latent, 21), 1, 1.0, "euler", "normal", cond, cond,
                        latent, seed=21, disable_pbar=True)  # KSampler, seed 21
    expected = settings.prepare_noise(21, latent, comfy.sample.prepare_noise(latent, 21), force_create_noise=False)
    assert torch.equal(received[-1], expected)
    assert not torch.equal(expected, comfy.sample.prepare_noise(latent, 21))
    assert torch.equal(expected[..., :1], seeds.create_noise(21 + 3, latent, seeds.AUTO1111, batch_offset=2)[..., :1])

    def custom_advanced(guider_model, noise):
        guider = comfy.samplers.CFGGuider(guider_model)
        guider.set_conds(cond, cond)
        guider.set_cfg(1.0)
        sampler = comfy.samplers.sampler_object("euler")
        sigmas = comfy.samplers.calculate_sigmas(guider_model.get_model_object("model_sampling"), "normal", 1)
        guider.sample(noise.generate_noise({"samples": latent}), latent, sampler, sigmas, disable_pbar=True,
                      seed=noise.seed)
        return received[-1]

    from_noise = settings.prepare_noise(11, latent, comfy.sample.prepare_noise(latent, 11), force_create_noise=False)
    assert torch.equal(custom_advanced(plain, node_noise), from_noise)  # the NOISE output, noise_seed 11
    assert torch.equal(custom_advanced(node_model, node_noise), from_noise)  # NOISE and MODEL: applied once
    assert torch.equal(custom_advanced(node_model, Noise_RandomNoise(11)), from_noise)  # RandomNoise + MODEL
    assert torch.equal(custom_advanced(plain, Noise_RandomNoise(11)), comfy.sample.prepare_noise(latent, 11))
    assert len(received) == 5

    # with FreeInit, before or after this node: the settings make the first pass's noise, FreeInit the later ones
    from motionkit.sampling import freeinit as fi
    free_init = fi.FreeInitSettings(iterations=2)
    for with_both in (fi.apply_free_init(node_model, free_init),
                      SampleSettingsNode().apply(fi.apply_free_init(plain, free_init), 11, 2, "default", "auto1111", 3,
                                                 noise_layers=(layer,), seed_override="")[0]):
        with_both.remove_wrappers_with_key(WrappersMP.SAMPLER_SAMPLE, "test_record")  # node_model's, cloned
        with_both.add_wrapper_with_key(WrappersMP.SAMPLER_SAMPLE, "test_record", record)
        del received[:]
        comfy.sample.sample(with_both, comfy.sample.prepare_noise(latent, 21), 1, 1.0, "euler", "normal", cond, cond,
                            latent, seed=21, disable_pbar=True)
        first, second = received
        assert torch.equal(first, expected)
        mixed = fi.mix_frequencies(expected, fi.fresh_noise(latent.shape, 21, 1), fi.filter_for(expected, free_init))
        torch.testing.assert_close(second, mixed.to(second.dtype))
