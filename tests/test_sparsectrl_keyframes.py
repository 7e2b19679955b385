"""SparseCtrl keyframe placement (control/sparsectrl_keyframes.py): pure python/torch."""
from __future__ import annotations

import pytest
import torch

from motionkit.control.sparsectrl.errors import SparseCtrlError
from motionkit.control.sparsectrl.keyframes import (CENTRED, FROM_START, INDICES, NEAREST_HINT, NO_CONTROL, TO_END, UNIFORM,
                                          KeyframeSettings, cover_resize, frame_multipliers, hint_frames, parse_indices,
                                          place, window_hints)


def test_parse_indices():
    assert parse_indices("0, 8, -1") == (0, 8, -1)
    assert parse_indices(" 0 15 ") == (0, 15)
    with pytest.raises(SparseCtrlError, match="empty"):
        parse_indices("  ")
    with pytest.raises(SparseCtrlError, match="'a' .* not a whole number"):
        parse_indices("0, a")


@pytest.mark.parametrize("placement,images,frames,expected", [
    (UNIFORM, 2, 16, [0, 15]), (UNIFORM, 3, 16, [0, 8, 15]), (UNIFORM, 1, 16, [0]), (UNIFORM, 16, 16, list(range(16))),
    (FROM_START, 4, 16, [0, 4, 8, 12]), (FROM_START, 3, 16, [0, 5, 11]),
    (TO_END, 4, 16, [3, 7, 11, 15]), (TO_END, 1, 16, [15]),
    (CENTRED, 4, 16, [2, 6, 10, 14]), (CENTRED, 1, 16, [8]),
])
def test_spreads(placement, images, frames, expected):
    assert hint_frames(KeyframeSettings(placement), images, frames) == expected


def test_indices_and_their_errors():
    s = KeyframeSettings(INDICES, (0, 8, -1))
    assert hint_frames(s, 3, 16) == [0, 8, 15]
    assert hint_frames(s, 3, 40) == [0, 8, 39]
    with pytest.raises(SparseCtrlError, match="3 indices .* for 2 hint images \\(more indices than images\\)"):
        hint_frames(s, 2, 16)
    with pytest.raises(SparseCtrlError, match="more images than indices"):
        hint_frames(s, 4, 16)
    with pytest.raises(SparseCtrlError, match="index 20 is outside the animation of 16 frames"):
        hint_frames(KeyframeSettings(INDICES, (0, 20)), 2, 16)
    with pytest.raises(SparseCtrlError, match="index -17 is outside"):
        hint_frames(KeyframeSettings(INDICES, (-17,)), 1, 16)
    with pytest.raises(SparseCtrlError, match="second image on frame 15"):
        hint_frames(KeyframeSettings(INDICES, (15, -1)), 2, 16)
    with pytest.raises(SparseCtrlError, match="5 hint images for an animation of 4 frames"):
        hint_frames(KeyframeSettings(UNIFORM), 5, 4)


def test_place_gives_hint_frames_the_condition_and_mask_1():
    images = torch.arange(1, 3, dtype=torch.float32)[:, None, None, None].expand(2, 4, 2, 2)
    pairs = window_hints(hint_frames(KeyframeSettings(INDICES, (0, -1)), 2, 6), list(range(6)))
    cond, mask = place(images, pairs, 6)
    assert cond.shape == (6, 4, 2, 2) and mask.shape == (6, 1, 2, 2)
    assert cond[:, 0, 0, 0].tolist() == [1, 0, 0, 0, 0, 2]
    assert mask[:, 0, 0, 0].tolist() == [1, 0, 0, 0, 0, 1]


def test_windows_get_their_hints_reindexed():
    hints = [0, 15, 39]  # 40 frames, windows 16 / overlap 4
    assert window_hints(hints, list(range(0, 16))) == [(0, 0), (15, 1)]
    assert window_hints(hints, list(range(12, 28))) == [(3, 1)]
    assert window_hints(hints, list(range(24, 40))) == [(15, 2)]
    # a window with no hint: nothing, or the nearest hint on the window frame nearest to it
    assert window_hints([0, 39], list(range(12, 28)), NO_CONTROL) == []
    assert window_hints([0, 39], list(range(14, 30)), NEAREST_HINT) == [(15, 1)]  # 39 is 9 away, 0 is 14
    assert window_hints([0, 39], list(range(12, 28)), NEAREST_HINT) == [(0, 0)]   # a tie: the earlier hint


def test_frame_multipliers():
    assert frame_multipliers([(0, 0)], 4, 1.0, 1.0) is None
    assert frame_multipliers([(0, 0), (3, 1)], 4, 2.0, 0.5).tolist() == [2.0, 0.5, 0.5, 2.0]


def test_cover_resize_centre_crops_to_the_aspect_ratio():
    img = torch.zeros(1, 3, 10, 20)
    img[:, :, :, 5:15] = 1.0  # a bright centre band: what a centred square crop keeps
    out = cover_resize(img, 8, 8)
    assert out.shape == (1, 3, 8, 8)
    assert out.min() > 0.9
    assert cover_resize(img, 10, 20) is img
