"""Trajectory encoding against the spec, on hand-computed cases: per-frame positions (arc length / per point,
frame ranges), where each displacement goes, the blur (99x99, sigma 10, peak 1, mirrored borders), the WanTrack
point format, resampling, the preview colours, and each bad input's message. Pure numpy/torch."""
import json
import logging
import math

import numpy as np
import pytest
import torch

from motionkit.trajectory.encoding import (ARC_LENGTH, KERNEL_SUM, PER_POINT, Path, encode_paths, fit, frame_positions,
                                 parse_paths, path_positions, sparse_flow)
from motionkit.trajectory.errors import TrajectoryError
from motionkit.trajectory.preview import flow_colours, render


def g(d2):
    """The spec's peak-normalised Gaussian at squared distance d2 (sigma 10)."""
    return math.exp(-d2 / 200.0)


# ---------------------------------------------------------------------------------------------
# Positions per frame

def test_arc_length_spacing_is_constant_speed_along_the_polyline():
    # an L of length 30 + 40 = 70 over 8 frames: one step of 10 px per frame, turning the corner on frame 3
    pos = path_positions([(0, 0), (30, 0), (30, 40)], 8, ARC_LENGTH)
    expected = [(0, 0), (10, 0), (20, 0), (30, 0), (30, 10), (30, 20), (30, 30), (30, 40)]
    np.testing.assert_allclose(pos, expected, atol=1e-9)


def test_per_point_spacing_spreads_points_evenly_over_frames():
    # 3 points at frames 0, 2, 4 of 5; the second segment is longer but takes as many frames
    pos = path_positions([(0, 0), (10, 0), (10, 30)], 5, PER_POINT)
    np.testing.assert_allclose(pos, [(0, 0), (5, 0), (10, 0), (10, 15), (10, 30)], atol=1e-9)


def test_single_point_and_zero_length_paths_stand_still():
    np.testing.assert_allclose(path_positions([(5, 6)], 3), [(5, 6)] * 3)
    np.testing.assert_allclose(path_positions([(5, 6), (5, 6)], 3), [(5, 6)] * 3)


def test_frame_range_limits_the_path_and_end_minus_one_is_the_last_frame():
    paths = [Path([(0, 10), (20, 10)], start_frame=2, end_frame=4), Path([(1, 1), (1, 7)], 3, -1)]
    a, b = frame_positions(paths, 6, 32, 32)
    assert np.isnan(a[[0, 1, 5]]).all()
    np.testing.assert_allclose(a[2:5], [(0, 10), (10, 10), (20, 10)])
    assert np.isnan(b[:3]).all()
    np.testing.assert_allclose(b[3:], [(1, 1), (1, 4), (1, 7)])


# ---------------------------------------------------------------------------------------------
# Displacements and blur

def test_displacement_sits_at_the_previous_position_and_frame_zero_is_empty():
    # frame k holds p_k - p_{k-1} at int(p_{k-1}); the path's first frame holds nothing
    pos = [np.array([[10.7, 20.2], [14.7, 23.2], [14.7, 23.2]])]
    flow = sparse_flow(pos, 3, 32, 32)
    assert not flow[0].any()
    assert np.count_nonzero(flow[1].any(-1)) == 1
    np.testing.assert_allclose(flow[1, 20, 10], (4.0, 3.0))
    assert not flow[2].any()  # standing still: zero displacement


def test_later_path_wins_on_a_shared_pixel():
    pos = [np.array([[5.0, 5.0], [6.0, 5.0]]), np.array([[5.2, 5.9], [5.2, 8.9]])]
    np.testing.assert_allclose(sparse_flow(pos, 2, 16, 16)[1, 5, 5], (0.0, 3.0))


def test_blur_is_the_peak_normalised_gaussian_around_each_point():
    traj = encode_paths([Path([(80.5, 80.5), (84.5, 83.5)])], 2, 160, 160)  # one step (4, 3) at pixel (80, 80)
    flow = traj.flow.numpy()
    assert traj.flow.shape == (2, 160, 160, 2) and not flow[0].any()
    for dx, dy in [(0, 0), (1, 0), (0, -3), (7, 5), (-20, 11), (49, 0), (30, -49)]:
        np.testing.assert_allclose(flow[1, 80 + dy, 80 + dx], np.array([4.0, 3.0]) * g(dx * dx + dy * dy), rtol=1e-6,
                                   atol=1e-12)
    assert flow[1, 80, 80 + 50].tolist() == [0.0, 0.0]  # the kernel is 99 wide: nothing 50 px away
    # the peak is the displacement itself (Tora's kernel / kernel[centre]); MotionCtrl's sum-normalised
    # kernel is the same divided by the kernel's sum, 2 pi sigma^2 up to the truncation at 4.9 sigma
    assert flow[1, 80, 80].tolist() == pytest.approx([4.0, 3.0], rel=1e-6)
    assert KERNEL_SUM == pytest.approx(sum(g(x * x + y * y) for x in range(-49, 50) for y in range(-49, 50)), rel=1e-12)
    assert KERNEL_SUM == pytest.approx(2 * math.pi * 100, rel=1e-5)


def test_blur_mirrors_at_the_border_like_cv2_reflect_101():
    # a point at column 2: column 0 sees it at offsets +2 and (mirrored, ...|2 1 0 1 2|...) -2
    traj = encode_paths([Path([(2.5, 60.5), (3.5, 60.5)])], 2, 32, 120)
    flow = traj.flow.numpy()
    assert flow[1, 60, 0, 0] == pytest.approx(2 * g(4), rel=1e-6)
    assert flow[1, 60, 2, 0] == pytest.approx(1 + g(16), rel=1e-6)  # itself, and its mirror image at -2 (4 away)
    # several paths add up linearly after the blur
    both = encode_paths([Path([(2.5, 60.5), (3.5, 60.5)]), Path([(20.5, 10.5), (20.5, 12.5)])], 2, 32, 120)
    alone = encode_paths([Path([(20.5, 10.5), (20.5, 12.5)])], 2, 32, 120)
    torch.testing.assert_close(both.flow, traj.flow + alone.flow, rtol=1e-5, atol=1e-6)


def test_blur_equals_cv2_filter2d():
    cv2 = pytest.importorskip("cv2")
    paths = [Path([(3, 4), (40, 30), (60, 2)]), Path([(63, 63), (10, 50)], 2, 9)]
    traj = encode_paths(paths, 10, 64, 64)
    sparse = sparse_flow(frame_positions(paths, 10, 64, 64), 10, 64, 64)
    ax = np.exp(-np.arange(-49, 50) ** 2 / 200.0)
    kernel = np.outer(ax, ax)
    ref = np.stack([sparse[0]] + [cv2.filter2D(sparse[k], -1, kernel) for k in range(1, 10)])
    np.testing.assert_allclose(traj.flow.numpy(), ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Point lists

def test_editor_and_wantrack_formats():
    editor = parse_paths('[{"points": [[1, 2], [3, 4]], "start_frame": 2, "end_frame": 5}]')
    assert editor == [Path([(1.0, 2.0), (3.0, 4.0)], 2, 5)]
    one_track = parse_paths("[{'x': 1, 'y': 2}, {'x': 3, 'y': 4}]")  # single quotes, as core accepts
    assert one_track == [Path([(1.0, 2.0), (3.0, 4.0)])]
    two_tracks = parse_paths(json.dumps([[{"x": 1, "y": 2}], [{"x": 5, "y": 6}, {"x": 7, "y": 8}]]))
    assert [p.points for p in two_tracks] == [[(1.0, 2.0)], [(5.0, 6.0), (7.0, 8.0)]]
    assert parse_paths("") == [] and parse_paths("[]") == []


@pytest.mark.parametrize("paths, frames, phrases", [
    ("[]", 16, ["no path", "draw one"]),
    ('[{"points": []}]', 16, ["Path 1 has no points"]),
    ('[{"points": [[10, 10]]}, {"points": [[10, 10], [70, 5]]}]', 16, ["Path 2", "outside the 64x64 canvas",
                                                                        "(70, 5)"]),
    ('[{"points": [[1, 1]], "start_frame": 20}]', 16, ["frame 20", "frames 0-15"]),
    ('[{"points": [[1, 1]], "start_frame": 8, "end_frame": 4}]', 16, ["end is before its start"]),
    ('[{"points": [[1, 1]], "start_frame": -3}]', 16, ["outside the animation"]),
    ('[{"points": [[1, "a"]]}]', 16, ["not two numbers"]),
    ('[{"points": [[1, 1]}', 16, ["not valid JSON"]),
])
def test_bad_paths_are_clear_errors(paths, frames, phrases):
    with pytest.raises(TrajectoryError) as e:
        encode_paths(parse_paths(paths), frames, 64, 64)
    for phrase in phrases:
        assert phrase in str(e.value), f"{phrase!r} not in {e.value}"


def test_path_ending_after_the_animation_is_cut_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, "MotionKit"):
        traj = encode_paths([Path([(1, 1), (9, 1)], 0, 30)], 5, 16, 16)
    assert "cut at frame 4" in caplog.text
    np.testing.assert_allclose(traj.positions[0][4], (9, 1))


# ---------------------------------------------------------------------------------------------
# Another frame count or size

def test_fit_resamples_paths_and_says_so(caplog):
    traj = encode_paths([Path([(8, 8), (56, 40)], 0, 7)], 8, 64, 64)
    assert fit(traj, 8, 64, 64) is traj
    with caplog.at_level(logging.WARNING, "MotionKit"):
        big = fit(traj, 16, 128, 96, "Test")
    assert "made for 8 frames at 64x64" in caplog.text and "16 frames at 128x96" in caplog.text
    same = encode_paths([Path([(16, 12), (112, 60)], 0, 15)], 16, 128, 96)
    torch.testing.assert_close(big.flow, same.flow)


def test_fit_interpolates_a_dense_flow():
    from motionkit.trajectory.encoding import DENSE, Trajectory
    flow = torch.zeros(5, 8, 8, 2)
    flow[1:, ..., 0] = 2.0  # 2 px right per frame
    traj = Trajectory(flow, 8, 8, kind=DENSE)
    out = fit(traj, 9, 16, 16)
    assert out.flow.shape == (9, 16, 16, 2) and not out.flow[0].any()
    # twice the size: 4 px per original step; twice the frames: 2 px per new frame; same path overall
    assert out.flow[1:, ..., 0].sum(0).mean().item() == pytest.approx(4 * 2.0 * 2, rel=0.2)


# ---------------------------------------------------------------------------------------------
# Preview

def test_preview_colours_follow_the_middlebury_wheel():
    flow = np.zeros((1, 4, 2))
    flow[0, 1] = (1, 0)  # right: atan2(-0, -1) = -pi, the wheel's first entry (red)
    flow[0, 2] = (-1, 0)  # left: the middle of the wheel, entry 27 = CB[2] = (0, 255 - floor(255 * 2 / 11), 255)
    flow[0, 3] = (0, 0.5)  # half length: paler
    c = flow_colours(flow)
    assert c[0, 0].tolist() == [255, 255, 255]  # no motion is white
    assert c[0, 1].tolist() == [255, 0, 0]
    assert c[0, 2].tolist() == [0, 209, 255]
    assert c[0, 3].min() > 100


def test_preview_image_draws_the_paths():
    traj = encode_paths([Path([(8, 32), (56, 32)])], 4, 64, 64)
    img = render(traj)
    assert img.shape == (4, 64, 64, 3) and 0 <= img.min() and img.max() <= 1
    assert img[2, 32, 40].tolist() == pytest.approx([255 / 255, 64 / 255, 64 / 255], abs=0.01)  # frame 2's dot
    background = torch.zeros(1, 32, 32, 3)
    dark = render(traj, background, draw_paths=False)
    assert dark[0].max() == 0  # frame 0 has no flow: only the (resized) background


# ---------------------------------------------------------------------------------------------
# Motion from footage

def test_video_flow_measures_the_shift_between_frames():
    pytest.importorskip("cv2")
    from motionkit.trajectory.encoding import DENSE
    from motionkit.trajectory.video_flow import optical_flow

    g = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 24, generator=g), size=(96, 96), mode="bicubic")
    texture = texture.clamp(0, 1)[0].permute(1, 2, 0)
    frames = torch.stack([texture, torch.roll(texture, shifts=3, dims=1), torch.roll(texture, shifts=(3, 5), dims=(0, 1))])
    traj = optical_flow(frames, 48, 48)  # measured at half size: 1.5 px right, then 1.5 down and 1 right
    assert traj.kind == DENSE and traj.flow.shape == (3, 48, 48, 2) and not traj.positions
    assert not traj.flow[0].any()
    inner = traj.flow[:, 8:-8, 8:-8]
    assert inner[1, ..., 0].median().item() == pytest.approx(1.5, abs=0.3)
    assert inner[1, ..., 1].median().item() == pytest.approx(0.0, abs=0.3)
    assert inner[2, ..., 0].median().item() == pytest.approx(1.0, abs=0.3)
    assert inner[2, ..., 1].median().item() == pytest.approx(1.5, abs=0.3)
    with pytest.raises(TrajectoryError, match="at least 2 frames"):
        optical_flow(frames[:1])
