"""Prompt schedules: the parser, the per-frame weights (linear / hold, held outside the keyframes) and how the
encoded prompts become one conditioning row per frame. Pure torch, no ComfyUI: a small CLIP double stands in
for ComfyUI's CLIP object (tokenize + encode_from_tokens(return_pooled=True, return_dict=True))."""
import pytest
import torch

from motionkit.common.errors import MotionKitError
from motionkit.sampling.errors import PromptScheduleError
from motionkit.sampling.prompt_schedule import parse_prompt_schedule, prompt_schedule_conditioning


def weights(text, frames, interpolation="linear"):
    s = parse_prompt_schedule(text, frames)
    prompts = s.prompts()
    return [{prompts[i]: pytest.approx(v) for i, v in w.items()} for w in s.weights(frames, interpolation)]


# ---------------------------------------------------------------------------------------------
# Parser

def test_lines_become_sorted_keyframes():
    s = parse_prompt_schedule("\n  16: a cat jumping \n\n0:a cat sitting\n", 20)
    assert s.keyframes == ((0, "a cat sitting"), (16, "a cat jumping"))
    # only the first ':' separates: prompt weights and colons stay in the prompt
    assert parse_prompt_schedule("3: (cat:1.2), style: anime", 4).keyframes == ((3, "(cat:1.2), style: anime"),)
    assert parse_prompt_schedule("0: a\n4: b\n8: a", 9).prompts() == ["a", "b"]  # each prompt encoded once


@pytest.mark.parametrize("text, frames, phrases", [
    ("", 16, ["schedule is empty", "'frame: prompt'"]),
    ("\n   \n", 16, ["schedule is empty"]),
    ("a cat sitting", 16, ["'a cat sitting'", "no 'frame:'", "'0: a cat sitting'"]),
    ("0: a cat\nx: a dog", 16, ["'x: a dog'", "whole number", "'frame: prompt'"]),
    ("-1: a cat", 16, ["'-1: a cat'", "whole number of 0 or more"]),
    ("2.5: a cat", 16, ["'2.5: a cat'", "whole number"]),
    ("0:   ", 16, ["'0:'", "no prompt after ':'"]),
    ("0: a cat\n16: a dog", 16, ["'16: a dog'", "frame 16", "16 frames (0 to 15)", "raise 'frames'"]),
    ("0: a cat\n4: a dog\n4: a bird", 16, ["frame 4 has two keyframes", "'4: a dog'", "'4: a bird'"]),
])
def test_bad_schedules_are_refused_clearly(text, frames, phrases):
    with pytest.raises(PromptScheduleError) as e:
        parse_prompt_schedule(text, frames)
    assert isinstance(e.value, MotionKitError)
    for phrase in phrases:
        assert phrase in str(e.value), f"{phrase!r} not in {str(e.value)!r}"


# ---------------------------------------------------------------------------------------------
# Weights per frame

def test_linear_blends_between_keyframes_and_holds_outside():
    w = weights("2: a\n6: b\n8: c", 10)
    assert w[:3] == [{"a": 1.0}] * 3  # first keyframe holds before it
    assert w[3:6] == [{"a": 0.75, "b": 0.25}, {"a": 0.5, "b": 0.5}, {"a": 0.25, "b": 0.75}]
    assert w[6:] == [{"b": 1.0}, {"b": 0.5, "c": 0.5}, {"c": 1.0}, {"c": 1.0}]  # last holds after it


def test_hold_keeps_each_prompt_until_the_next_keyframe():
    w = weights("2: a\n6: b\n8: c", 10, "hold")
    assert w == [{"a": 1.0}] * 6 + [{"b": 1.0}] * 2 + [{"c": 1.0}] * 2


def test_single_keyframe_and_repeated_prompt_hold_everywhere():
    assert weights("5: a", 8) == [{"a": 1.0}] * 8
    assert weights("0: a\n7: a", 8) == [{"a": 1.0}] * 8  # same prompt on both sides: no blend needed


def test_unknown_interpolation_is_refused():
    with pytest.raises(PromptScheduleError, match="'cubic' is unknown"):
        parse_prompt_schedule("0: a", 4).weights(4, "cubic")


# ---------------------------------------------------------------------------------------------
# Conditioning rows

class FakeClip:
    """ComfyUI's CLIP interface as CLIPTextEncode uses it. A prompt's embedding is a function of its text;
    a prompt with '+' in it is 154 tokens long (two chunks of 77), as a long prompt would be."""

    def __init__(self, dim=6):
        self.dim, self.encoded = dim, []

    def tokenize(self, text):
        return {"l": text}

    def encode_from_tokens(self, tokens, return_pooled=False, return_dict=False):
        assert return_pooled is True and return_dict is True
        text = tokens["l"]
        self.encoded.append(text)
        g = torch.Generator().manual_seed(sum(map(ord, text)))
        length = 154 if "+" in text else 77
        return {"cond": torch.randn(1, length, self.dim, generator=g), "pooled_output": torch.randn(1, self.dim, generator=g),
                "some_option": text}


def test_each_frame_gets_its_prompts_rows():
    clip = FakeClip()
    [[cond, extra]] = prompt_schedule_conditioning(clip, "0: a\n4: b\n6: a", 8, "linear")
    assert clip.encoded == ["a", "b"]
    a, b = (FakeClip().encode_from_tokens({"l": t}, True, True) for t in "ab")
    assert cond.shape == (8, 77, 6) and extra["pooled_output"].shape == (8, 6)
    for frame, t in enumerate([0, 0.25, 0.5, 0.75, 1, 0.5, 0, 0]):
        expected = a["cond"][0] * (1 - t) + b["cond"][0] * t
        torch.testing.assert_close(cond[frame], expected)
        torch.testing.assert_close(extra["pooled_output"][frame], a["pooled_output"][0] * (1 - t) + b["pooled_output"][0] * t)
    assert torch.equal(cond[0], a["cond"][0]) and torch.equal(cond[4], b["cond"][0])  # keyframes exact
    assert extra["some_option"] == "a"  # the other keys are the first keyframe's


def test_hold_rows_are_the_prompts_exactly():
    [[cond, extra]] = prompt_schedule_conditioning(FakeClip(), "0: a\n3: b", 5, "hold")
    a, b = (FakeClip().encode_from_tokens({"l": t}, True, True) for t in "ab")
    assert all(torch.equal(cond[f], (a if f < 3 else b)["cond"][0]) for f in range(5))
    assert all(torch.equal(extra["pooled_output"][f], (a if f < 3 else b)["pooled_output"][0]) for f in range(5))


def test_prompts_of_different_lengths_are_padded_by_repeating():
    [[cond, _]] = prompt_schedule_conditioning(FakeClip(), "0: short\n2: long + prompt", 3, "hold")
    short = FakeClip().encode_from_tokens({"l": "short"}, True, True)["cond"][0]
    long = FakeClip().encode_from_tokens({"l": "long + prompt"}, True, True)["cond"][0]
    assert cond.shape == (3, 154, 6)
    assert torch.equal(cond[0], torch.cat([short, short])) and torch.equal(cond[2], long)


def test_no_clip_is_refused():
    with pytest.raises(PromptScheduleError, match="clip input is empty"):
        prompt_schedule_conditioning(None, "0: a", 4)
