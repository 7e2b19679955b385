"""Motion scale per frame: the schedule parser (motion/keyframes.py) and how MotionLayer.run applies it,
with and without a context window in transformer_options. Pure torch, no ComfyUI."""
from types import SimpleNamespace

import pytest
import torch

from motionkit.motion.errors import MotionKitError, MotionScaleScheduleError
from motionkit.motion.injection import (FrameContext, FramePooledGroupNorm, MotionApplication, MotionLayer,
                                        MotionSettings)
from motionkit.motion.keyframes import MotionScaleSchedule, parse_motion_scale
from motionkit.motion.model import PER_FRAME
from unet_helpers import frames_input, make_module, module_weights


def values(text, frames=range(6)):
    return parse_motion_scale(text).values(frames)


# ---------------------------------------------------------------------------------------------
# Parser

def test_empty_text_is_constant_one():
    for text in ("", "   ", "\n\n"):
        assert parse_motion_scale(text) == MotionScaleSchedule()
        assert values(text) == [1.0] * 6


def test_list_one_value_per_frame_last_value_held():
    assert values("0, 0.25, 0.5, 1") == [0.0, 0.25, 0.5, 1.0, 1.0, 1.0]
    assert values("0.3") == [0.3] * 6
    # line breaks separate too; a comma at a line's end and blank lines are fine
    assert values("0,\n0.5,\n\n1.5,") == [0.0, 0.5, 1.5, 1.5, 1.5, 1.5]


def test_keyframes_interpolate_linearly_and_hold_outside():
    s = parse_motion_scale("2:0.0, 6:1.0, 8:0.5")
    assert s.values(range(10)) == pytest.approx([0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.5])
    # the task's example: ramp up over 8 frames, then hold
    assert values("0:0.0, 8:1.0, 15:1.0", range(17)) == pytest.approx([i / 8 for i in range(9)] + [1.0] * 8)
    # order of entries does not matter; spaces around ':' are fine
    assert values("8 : 1.0\n0:0") == values("0:0, 8:1")
    assert values("4:0.5", range(8)) == [0.5] * 8  # a single keyframe holds everywhere


def test_values_at_absolute_frames():
    s = parse_motion_scale("0:0, 10:1")
    assert s.values([4, 5, 6]) == pytest.approx([0.4, 0.5, 0.6])
    assert s.values([38, 39, 0, 1]) == pytest.approx([1.0, 1.0, 0.0, 0.1])  # a looped window


@pytest.mark.parametrize("text, phrases", [
    ("0, abc, 1", ["'abc' is not a number"]),
    ("0, 0.5,, 1", ["empty entry after '0.5'", "two commas"]),
    (", 1", ["empty entry at the start of a line"]),
    ("0:0, 5, 8:1", ["'5' has no frame", "'0:0' has one"]),
    ("x:1", ["'x:1'", "frame before ':' must be a whole number"]),
    ("-1:0.5", ["'-1:0.5'", "whole number of 0 or more"]),
    ("2.5:1", ["'2.5:1'", "whole number"]),
    ("0:0, 4:1, 4:0.5", ["frame 4 has two keyframes", "'4:1'", "'4:0.5'"]),
    ("0:0:1", ["'0:0:1' is not a number"]),
    ("0, -0.5", ["'-0.5' must be a number of 0 or more"]),
    ("nan", ["'nan' must be a number of 0 or more"]),
    ("3:inf", ["'3:inf' must be a number of 0 or more"]),
])
def test_malformed_text_names_the_bad_part(text, phrases):
    with pytest.raises(MotionScaleScheduleError) as e:
        parse_motion_scale(text)
    assert isinstance(e.value, MotionKitError)
    for phrase in phrases:
        assert phrase in str(e.value), f"{phrase!r} not in {str(e.value)!r}"


# ---------------------------------------------------------------------------------------------
# MotionLayer.run: the schedule reaches the module, per frame, in each cond chunk, by absolute frame

CHANNELS, FRAMES = 64, 6


@pytest.fixture(scope="module")
def module():
    return make_module(module_weights(channels=CHANNELS, seed=4), channels=CHANNELS)


def layer(module, text, scale=1.0):
    settings = MotionSettings(scale=scale, schedule=parse_motion_scale(text))
    return MotionLayer(module, MotionApplication(None, SimpleNamespace(module_norm=PER_FRAME), "mm.ckpt", settings))


def changed_frames(out, x, chunks):
    """[chunks, frames]: how much the layer changed each frame of each cond chunk."""
    return (out - x).abs().amax(dim=(1, 2, 3)).reshape(chunks, -1)


def test_layer_zero_on_frame_k_keeps_its_input_in_every_cond_chunk(module):
    x = frames_input(batch=2, frames=FRAMES, channels=CHANNELS, seed=5)  # cond and uncond, 6 frames each
    options = {"cond_or_uncond": [0, 1], "sigmas": torch.tensor([5.0, 5.0])}
    with torch.no_grad():
        out = layer(module, "1, 1, 1, 0, 1").run(x, options)
        full = module(x, FRAMES)
    diff = changed_frames(out, x, 2)
    assert torch.all(diff[:, 3] == 0), "frame 3 (scale 0) must leave the module unchanged"
    assert torch.all(diff[:, [0, 1, 2, 4, 5]] > 1e-3)
    rows = [c * FRAMES + f for c in range(2) for f in range(FRAMES) if f != 3]
    torch.testing.assert_close(out[rows], full[rows])  # scale 1 elsewhere: the module as trained


def test_layer_multiplies_motion_scale_per_frame(module):
    x = frames_input(batch=1, frames=FRAMES, channels=CHANNELS, seed=6)
    with torch.no_grad():
        out = layer(module, "0:0, 5:1", scale=0.8).run(x, {})
        full = module(x, FRAMES)
    expected = x + (full - x) * (0.8 * torch.arange(FRAMES) / 5)[:, None, None, None]
    torch.testing.assert_close(out, expected)


def test_layer_uses_the_context_windows_absolute_frames(module):
    x = frames_input(batch=1, frames=FRAMES, channels=CHANNELS, seed=7)
    window = SimpleNamespace(index_list=[10, 11, 12, 13, 14, 15])  # core's IndexListContextWindow
    schedule = "0:1, 13:1, 14:0, 15:1"  # 0 only at absolute frame 14 = position 4 of this window
    with torch.no_grad():
        out = layer(module, schedule).run(x, {"context_window": window})
        plain = layer(module, schedule).run(x, {})
    diff = changed_frames(out, x, 1)[0]
    assert diff[4] == 0 and torch.all(diff[[0, 1, 2, 3, 5]] > 1e-3)
    assert torch.all(changed_frames(plain, x, 1)[0] > 1e-3), "without a window, frames 0..5 all have scale 1"


def test_all_zero_schedule_and_out_of_range_leave_input(module):
    x = frames_input(batch=1, frames=FRAMES, channels=CHANNELS, seed=8)
    with torch.no_grad():
        assert torch.equal(layer(module, "0").run(x, {}), x)
        assert torch.equal(layer(module, "0, 0, 0").run(x, {}), x)
        outside = layer(module, "1")
        outside.app.settings.start_sigma, outside.app.settings.end_sigma = 3.0, 1.0
        assert torch.equal(outside.run(x, {"sigmas": torch.tensor([5.0])}), x)
        assert not torch.equal(outside.run(x, {"sigmas": torch.tensor([2.0])}), x)


def test_pooled_unet_norm_is_plain_while_no_pooling_model_acts():
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(4, 8)
    x = torch.randn(6, 8, 4, 4) * torch.linspace(0.5, 2, 6)[:, None, None, None]
    first, second = FrameContext(frames=3, active=False), FrameContext(frames=3, active=False)
    pooled = FramePooledGroupNorm(norm, first)
    pooled.contexts.append(second)
    with torch.no_grad():
        assert torch.equal(pooled(x), norm(x))
        second.active = True  # the second model acts: statistics over its 3 frames per batch item
        ref = torch.cat([norm(x[i:i + 3].permute(1, 0, 2, 3)[None])[0].permute(1, 0, 2, 3) for i in (0, 3)])
        torch.testing.assert_close(pooled(x), ref)
        assert not torch.allclose(pooled(x), norm(x))
