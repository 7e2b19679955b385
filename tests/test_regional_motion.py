"""Regional motion (a motion-scale MASK) and per-block motion scale, through MotionLayer.run.

The oracle is AnimateDiff-Evolved's definition of a masked `effect_multival`, written out here from its code
(Kosinkadink/ComfyUI-AnimateDiff-Evolved at 90fb133): animatediff/motion_module_ad.py
VanillaTemporalModule.forward / get_effect_mask and animatediff/utils_motion.py prepare_mask_batch /
extend_to_batch_size. ADE's own module, run on the same weights, agrees to float rounding (checked outside the
repo; numbers in the branch's report).
"""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import motion_files as mf
from motionkit.motion.errors import MotionMaskError
from motionkit.motion.injection import MotionApplication, MotionLayer, MotionSettings
from motionkit.motion.model import PER_FRAME
from motionkit.motion.regional import MotionMask
from unet_helpers import comfy, frames_input, make_module, module_weights, unet, SD15_UNET  # noqa: F401

CHANNELS, SIZE = 64, 6


@pytest.fixture(scope="module")
def module():
    return make_module(module_weights(channels=CHANNELS, seed=11), channels=CHANNELS)


def layer(module, kind=None, **settings):
    app = MotionApplication(None, SimpleNamespace(module_norm=PER_FRAME), "mm.ckpt", MotionSettings(**settings))
    return MotionLayer(module, app, kind)


def ade_effect(x, module_out, mask, full_length, video_length, sub_idxs=None):
    """ADE: input*(1-effect) + temporal_transformer(input)*effect, with effect = get_effect_mask(input)."""
    batch, _, height, width = x.shape
    m = F.interpolate(mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])), size=(height, width), mode="bilinear")
    if m.shape[0] > full_length:  # extend_to_batch_size
        m = m[:full_length]
    elif m.shape[0] < full_length:
        m = torch.cat([m] + [m[-1:]] * (full_length - m.shape[0]), dim=0)
    batched_number = batch // video_length
    idxs = sub_idxs * batched_number if sub_idxs is not None else list(range(video_length)) * batched_number
    effect = m[idxs]
    return x * (1.0 - effect) + module_out * effect


def random_mask(frames, height=48, width=48, seed=0):
    return torch.rand(frames, height, width, generator=torch.Generator().manual_seed(seed))


COND_UNCOND = {"cond_or_uncond": [0, 1]}


@pytest.mark.parametrize("mask_frames", [1, 6, 4])  # one for all, one per frame, too few (last one held)
def test_masked_scale_is_ades_masked_effect(module, mask_frames):
    x = frames_input(batch=2, frames=6, channels=CHANNELS, size=SIZE, seed=3)
    mask = random_mask(mask_frames, seed=mask_frames)
    with torch.no_grad():
        out = layer(module, mask=MotionMask(mask)).run(x, COND_UNCOND)
        expected = ade_effect(x, module(x, 6), mask, full_length=6, video_length=6)
    delta = (expected - x).abs().max()
    assert delta > 0.1
    assert (out - expected).abs().max() <= 1e-5 * delta


def test_masked_scale_takes_the_context_windows_frames(module):
    x = frames_input(batch=2, frames=4, channels=CHANNELS, size=SIZE, seed=4)
    mask = random_mask(12, height=40, width=56, seed=5)  # not square: stretched, as ADE does
    window = [9, 10, 11, 0]  # a looped window
    options = {**COND_UNCOND, "context_window": SimpleNamespace(index_list=window)}
    with torch.no_grad():
        out = layer(module, mask=MotionMask(mask)).run(x, options)
        expected = ade_effect(x, module(x, 4), mask, full_length=16, video_length=4, sub_idxs=window)
        first = layer(module, mask=MotionMask(mask)).run(x, COND_UNCOND)  # frames 0..3 instead
    delta = (expected - x).abs().max()
    assert (out - expected).abs().max() <= 1e-5 * delta
    assert (first - out).abs().max() > 1e-2 * delta, "the window's frames must matter"
    # frame 15 of a 16-frame animation with a 12-frame mask: mask frame 11 held (ADE extend_to_batch_size)
    held = layer(module, mask=MotionMask(mask)).run(x, {**COND_UNCOND, "context_window": SimpleNamespace(
        index_list=[11, 13, 14, 15])})
    torch.testing.assert_close(held, ade_effect(x, module(x, 4), mask, 16, 4, [11, 11, 11, 11]), rtol=0, atol=1e-5)


def test_mask_multiplies_motion_scale_and_schedule(module):
    from motionkit.motion.keyframes import parse_motion_scale
    x = frames_input(batch=1, frames=4, channels=CHANNELS, size=SIZE, seed=6)
    mask = random_mask(1, seed=7)
    with torch.no_grad():
        out = layer(module, scale=0.7, schedule=parse_motion_scale("0, 0.5, 1, 1"), mask=MotionMask(mask)).run(x, {})
        full = module(x, 4)
    m = F.interpolate(mask[:, None], size=(SIZE, SIZE), mode="bilinear")
    expected = x + (full - x) * m * (0.7 * torch.tensor([0, 0.5, 1, 1]))[:, None, None, None]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert torch.equal(out[0], x[0]), "schedule 0 on frame 0: no motion there, mask or not"


def test_all_ones_mask_is_scale_one_and_all_zeros_is_no_motion_bit_for_bit(module):
    x = frames_input(batch=2, frames=5, channels=CHANNELS, size=SIZE, seed=8)
    with torch.no_grad():
        ones = layer(module, mask=MotionMask(torch.ones(1, 64, 64))).run(x, COND_UNCOND)
        plain = layer(module).run(x, COND_UNCOND)
        zeros = layer(module, mask=MotionMask(torch.zeros(5, 64, 64))).run(x, COND_UNCOND)
        scale0 = layer(module, scale=0.0).run(x, COND_UNCOND)
    assert torch.equal(ones, plain)
    assert torch.equal(zeros, x) and torch.equal(scale0, x)


def test_still_region_stays_exactly_still(module):
    x = frames_input(batch=1, frames=4, channels=CHANNELS, size=SIZE, seed=9)
    mask = torch.zeros(1, SIZE * 8, SIZE * 8)
    mask[:, :, : SIZE * 4] = 1.0  # left half moves
    with torch.no_grad():
        out = layer(module, mask=MotionMask(mask)).run(x, {})
    assert torch.equal(out[..., SIZE // 2 + 1:], x[..., SIZE // 2 + 1:])  # right of the bilinear seam: untouched
    assert (out[..., : SIZE // 2 - 1] - x[..., : SIZE // 2 - 1]).abs().max() > 0.1


def test_per_block_scale_multiplies_that_groups_modules(module):
    x = frames_input(batch=1, frames=4, channels=CHANNELS, size=SIZE, seed=10)
    scales = {"down": 1.0, "mid": 0.0, "up": 0.5}
    with torch.no_grad():
        half = layer(module, scale=0.5).run(x, {})
        assert torch.equal(layer(module, "output", block_scales=scales).run(x, {}), half)
        assert torch.equal(layer(module, "middle", block_scales=scales).run(x, {}), x)
        assert torch.equal(layer(module, "input", block_scales=scales).run(x, {}), layer(module).run(x, {}))


@pytest.mark.comfyui
def test_injected_layers_know_their_block_group(comfy):
    from motionkit.motion.formats import build_motion_model, classify
    from motionkit.motion.injection import MotionApplication, make_injection
    info, weights = classify(mf.v2(device="meta"), "v2.ckpt")
    app = MotionApplication(build_motion_model(info, weights, "v2.ckpt"), info, "v2.ckpt", MotionSettings())
    model = unet(comfy, SD15_UNET)
    make_injection(app).inject(SimpleNamespace(model=SimpleNamespace(diffusion_model=model)))
    kind = lambda blocks: {layer.kind for b in blocks for layer in b.modules() if isinstance(layer, MotionLayer)}
    assert kind(model.input_blocks) == {"input"}
    assert kind([model.middle_block]) == {"middle"}
    assert kind(model.output_blocks) == {"output"}


@pytest.mark.parametrize("bad, phrase", [
    (torch.ones(1, 1, 8, 8), "[frames, height, width]"),
    (torch.zeros(0, 8, 8), "at least one frame"),
    (-torch.ones(1, 8, 8), "negative"),
    ("mask.png", "MASK"),
])
def test_bad_masks_are_refused_clearly(bad, phrase):
    with pytest.raises(MotionMaskError) as e:
        MotionMask(bad)
    assert phrase in str(e.value)


def test_frame_count_and_shape_that_do_not_fit_are_noted():
    mask = MotionMask(torch.ones(10, 512, 768))
    notes = mask.notes(16, 64, 64)
    assert len(notes) == 2
    assert "10 frames" in notes[0] and "has 16" in notes[0] and "last frame" in notes[0]
    assert "768x512" in notes[1] and "64x64" in notes[1]
    assert mask.notes(10, 64, 96) == [] and MotionMask(torch.ones(512, 768)).notes(16, 64, 96) == []
    assert "not used" in MotionMask(torch.ones(20, 8, 8)).notes(16, 8, 8)[0]


def test_apply_motion_model_keeps_its_inputs_and_takes_regional_and_keyframe_inputs():
    from motionkit.nodes.apply_motion_model import ApplyMotionModel
    types = ApplyMotionModel.INPUT_TYPES()
    assert list(types["required"]) == ["model", "motion_model", "motion_scale", "start_percent", "end_percent",
                                       "noise_schedule"]
    assert list(types["optional"]) == ["motion_lora", "motion_scale_schedule", "precision", "regional_motion",
                                       "motion_keyframes"]
    assert types["optional"]["regional_motion"][0] == "MOTION_REGION"


def test_regional_motion_node_explains_each_control_and_makes_the_settings():
    from motionkit.nodes.regional_motion import RegionalMotionNode
    types = RegionalMotionNode.INPUT_TYPES()
    assert list(types["required"]) == ["down_scale", "mid_scale", "up_scale", "attention_scale"]
    assert list(types["optional"]) == ["motion_scale_mask", "attention_scale_mask"]
    for group in ("required", "optional"):
        for name, (_, opts) in types[group].items():
            assert len(opts["tooltip"]) > 60, name
    for name in types["required"]:
        assert types["required"][name][1]["default"] == 1.0
    mask = torch.rand(3, 8, 8)
    (region,) = RegionalMotionNode().make(0.5, 1.0, 0.25, 0.8, motion_scale_mask=mask)
    assert region.block_scales == {"down": 0.5, "mid": 1.0, "up": 0.25} and region.attention_scale == 0.8
    assert torch.equal(region.mask.mask, mask) and region.attention_mask is None


# ---------------------------------------------------------------------------------------------
# attention scale: ADE's scale_multival multiplies every temporal attention's keys

def ade_key_scale(mask, full_length, video_length, batch, height, width, sub_idxs=None):
    """ADE TemporalTransformer3DModel.get_scale_mask: (batched·h·w, frames, 1), the window's frames."""
    m = F.interpolate(mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])), size=(height, width), mode="bilinear")
    m = torch.cat([m] + [m[-1:]] * (full_length - m.shape[0])) if m.shape[0] < full_length else m[:full_length]
    frames, channel = m.shape[0], m.shape[1]
    m = m.permute(0, 2, 3, 1).reshape(frames, height * width, channel).permute(1, 0, 2)
    m = torch.cat([m] * (batch // video_length), dim=0)
    return m[:, sub_idxs, :] if sub_idxs is not None else m


def test_attention_scale_mask_is_ades_masked_scale():
    from reference import reference_module
    sd = module_weights(channels=CHANNELS, seed=12)
    module = make_module(sd, channels=CHANNELS)
    x = frames_input(batch=2, frames=4, channels=CHANNELS, size=SIZE, seed=13)
    mask = random_mask(10, seed=14) * 2.0
    window = [5, 6, 7, 8]
    options = {**COND_UNCOND, "context_window": SimpleNamespace(index_list=window)}
    with torch.no_grad():
        out = layer(module, attention_scale=0.8, attention_mask=MotionMask(mask, "attention_scale_mask")).run(x, options)
        expected = reference_module(sd, x, 4, pooled=False,
                                    key_scale=0.8 * ade_key_scale(mask, 12, 4, 8, SIZE, SIZE, window)).float()
        plain = module(x, 4)
    effect = (plain - x).abs().max()
    assert (out - expected).abs().max() <= 1e-4 * effect
    assert (out - plain).abs().max() > 1e-2 * effect, "the key scale must change the motion"


def test_attention_scale_number_and_all_ones_mask():
    from reference import reference_module
    sd = module_weights(channels=CHANNELS, seed=15)
    module = make_module(sd, channels=CHANNELS)
    x = frames_input(batch=1, frames=4, channels=CHANNELS, size=SIZE, seed=16)
    with torch.no_grad():
        zero = layer(module, attention_scale=0.0).run(x, {})
        ones = layer(module, attention_mask=MotionMask(torch.ones(1, 8, 8), "attention_scale_mask")).run(x, {})
        plain = layer(module).run(x, {})
    torch.testing.assert_close(zero, reference_module(sd, x, 4, False, key_scale=0.0).float(), rtol=0, atol=1e-4)
    assert (zero - x).abs().max() > 0.1, "attention scale 0 averages the frames: still motion, unlike motion_scale 0"
    assert torch.equal(ones, plain)


def test_notes_are_logged_before_sampling(caplog):
    from motionkit.motion.regional import log_mask_notes
    with caplog.at_level("WARNING"):
        log_mask_notes(MotionMask(torch.ones(3, 64, 64), "attention_scale_mask"), "mm.ckpt", torch.zeros(8, 4, 8, 8))
        log_mask_notes(MotionMask(torch.ones(8, 64, 64)), "mm.ckpt", torch.zeros(8, 4, 8, 8))  # fits: nothing
    assert len(caplog.records) == 1
    assert "'mm.ckpt'" in caplog.text and "attention_scale_mask has 3 frames" in caplog.text
