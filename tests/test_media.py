"""Animation files in and out (media/animation.py), without ComfyUI: encode each format and read it back
with PyAV / Pillow; decode synthetic videos and PNG folders with every frame-selection option."""
from __future__ import annotations

import json

import pytest
import torch

# PyAV, Pillow and numpy come with ComfyUI (its requirements), not with torch: without them these file tests
# are skipped, so the core tests run with torch and the pack's requirements alone
av = pytest.importorskip("av", reason="test_media writes and reads videos with PyAV (pip install av)")
np = pytest.importorskip("numpy", reason="test_media needs numpy (pip install numpy)")
Image = pytest.importorskip("PIL.Image", reason="test_media writes and reads images with Pillow (pip install Pillow)")

import media_files as mfl  # noqa: E402
from motionkit.media.animation import (FORMATS, AnimationSettings, FrameSelection, MediaError, frame_order,  # noqa: E402
                             read_image_folder, read_video, write_animation)
from motionkit.motion.errors import MotionKitError  # noqa: E402

META = {"prompt": {"3": {"class_type": "KSampler", "inputs": {"seed": 7}}},
        "workflow": {"nodes": [{"id": 3, "type": "KSampler"}], "links": []}}


def clip(n=5, width=48, height=32) -> torch.Tensor:
    """The synthetic frames as an IMAGE batch (frame i identifiable by frame_index)."""
    return torch.from_numpy(np.stack([mfl.frame_rgb(i, width, height) for i in range(n)])).float() / 255


def read_back(path, fmt):
    """(frames as uint8 arrays, metadata dict, fps, extra info) of a written file."""
    if fmt in ("mp4", "webm"):
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            meta = {k.lower(): v for k, v in c.metadata.items()}  # Matroska upper-cases tag names
            fps = float(c.streams.video[0].average_rate)
        return frames, meta, fps, {}
    with Image.open(path) as im:
        frames, durations = [], []
        for k in range(im.n_frames):
            im.seek(k)
            frames.append(np.asarray(im.convert("RGB")))
            durations.append(im.info.get("duration") or float("nan"))
        info = dict(im.info)
        if fmt == "webp":
            meta = {}
            for value in im.getexif().values():
                key, _, text = value.partition(":")
                meta[key] = text
        else:
            meta = {k: json.dumps(v) for k, v in json.loads(info["comment"]).items()} if "comment" in info else {}
    return frames, meta, 1000 / np.mean(durations), info


# ---------------------------------------------------------------------------------------------
# Writing

def test_frame_order_pingpong_and_repeats():
    assert frame_order(5) == [0, 1, 2, 3, 4]
    # ping-pong: forwards, then backwards without repeating either end -> 2n-2 frames
    assert frame_order(5, pingpong=True) == [0, 1, 2, 3, 4, 3, 2, 1]
    assert frame_order(2, pingpong=True) == [0, 1]
    assert frame_order(1, pingpong=True) == [0]
    assert frame_order(3, pingpong=True, repeats=2) == [0, 1, 2, 1] * 2


@pytest.mark.parametrize("pingpong", [False, True])
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, fmt, pingpong):
    images = clip(5)
    path = tmp_path / f"anim.{fmt}"
    calls = []
    written = write_animation(images, str(path), AnimationSettings(format=fmt, fps=10.0, pingpong=pingpong),
                              META, progress=lambda d, t: calls.append((d, t)))
    expected = frame_order(5, pingpong)
    assert written == len(expected) == (8 if pingpong else 5)
    frames, meta, fps, _ = read_back(path, fmt)
    assert [mfl.frame_index(f) for f in frames] == expected
    assert all(f.shape == (32, 48, 3) for f in frames)
    assert fps == pytest.approx(10.0, rel=0.01)
    assert json.loads(meta["prompt"]) == META["prompt"] and json.loads(meta["workflow"]) == META["workflow"]
    for got, i in zip(frames, expected):
        assert np.abs(got.astype(int) - mfl.frame_rgb(i, 48, 32)).mean() < 4, "frame content must survive"
    assert calls[-1] == (len(expected), len(expected)) and len(calls) == len(expected)


def test_no_metadata_when_none_given(tmp_path):
    for fmt in FORMATS:
        path = tmp_path / f"a.{fmt}"
        write_animation(clip(3), str(path), AnimationSettings(format=fmt))
        _, meta, _, _ = read_back(path, fmt)
        assert "prompt" not in meta and "workflow" not in meta


def test_loop_count(tmp_path):
    # GIF stores repeats after the first play (none = play once); WebP stores the play count
    for loop_count, gif_loop in ((0, 0), (1, None), (3, 2)):
        write_animation(clip(3), str(tmp_path / "a.gif"), AnimationSettings(format="gif", loop_count=loop_count))
        with Image.open(tmp_path / "a.gif") as im:
            assert im.info.get("loop") == gif_loop
        write_animation(clip(3), str(tmp_path / "a.webp"), AnimationSettings(format="webp", loop_count=loop_count))
        with Image.open(tmp_path / "a.webp") as im:
            assert im.info["loop"] == loop_count
    # MP4/WebM have no loop count: the clip is written N times
    for fmt in ("mp4", "webm"):
        n = write_animation(clip(3), str(tmp_path / f"a.{fmt}"),
                            AnimationSettings(format=fmt, loop_count=3, pingpong=True))
        frames = read_back(tmp_path / f"a.{fmt}", fmt)[0]
        assert n == len(frames) == 12
        assert [mfl.frame_index(f) for f in frames] == [0, 1, 2, 1] * 3


def test_quality_settings(tmp_path):
    g = torch.Generator().manual_seed(0)
    noisy = torch.rand(4, 48, 64, 3, generator=g)
    sizes = {}
    for crf in (4, 45):
        write_animation(noisy, str(tmp_path / f"{crf}.mp4"), AnimationSettings(format="mp4", crf=crf))
        sizes[crf] = (tmp_path / f"{crf}.mp4").stat().st_size
    assert sizes[4] > 2 * sizes[45], sizes
    # WebP quality 100 is lossless
    write_animation(noisy, str(tmp_path / "l.webp"), AnimationSettings(format="webp", quality=100))
    frames = read_back(tmp_path / "l.webp", "webp")[0]
    assert np.array_equal(frames[2], (noisy[2] * 255).round().byte().numpy())
    # GIF quality sets the palette size
    write_animation(noisy, str(tmp_path / "q.gif"), AnimationSettings(format="gif", quality=5))  # 13 colours
    frames = read_back(tmp_path / "q.gif", "gif")[0]
    assert len(np.unique(np.concatenate([f.reshape(-1, 3) for f in frames]), axis=0)) <= 13


def test_odd_sizes(tmp_path):
    images = clip(3, width=47, height=33)
    write_animation(images, str(tmp_path / "a.mp4"), AnimationSettings(format="mp4"))
    frames = read_back(tmp_path / "a.mp4", "mp4")[0]
    assert frames[0].shape == (34, 48, 3), "H.264 yuv420p: odd sizes are padded by one row/column"
    assert np.abs(frames[0][:33, :47].astype(int) - mfl.frame_rgb(0, 47, 33)).mean() < 4
    for fmt in ("webm", "gif", "webp"):
        write_animation(images, str(tmp_path / f"a.{fmt}"), AnimationSettings(format=fmt))
        assert read_back(tmp_path / f"a.{fmt}", fmt)[0][0].shape == (33, 47, 3)


def test_single_frame_and_grey_and_alpha(tmp_path):
    rgba = torch.cat([clip(1), torch.ones(1, 32, 48, 1)], dim=-1)
    grey = clip(2)[..., :1]
    for fmt in FORMATS:
        write_animation(rgba, str(tmp_path / f"a.{fmt}"), AnimationSettings(format=fmt))
        assert len(read_back(tmp_path / f"a.{fmt}", fmt)[0]) == 1
        write_animation(grey, str(tmp_path / f"g.{fmt}"), AnimationSettings(format=fmt))
        assert read_back(tmp_path / f"g.{fmt}", fmt)[0][0].shape == (32, 48, 3)


@pytest.mark.parametrize("images, settings, phrase", [
    (torch.zeros(0, 8, 8, 3), AnimationSettings(), "batch of images"),
    (torch.zeros(8, 8, 3), AnimationSettings(), "batch of images"),
    (torch.zeros(2, 8, 8, 3), AnimationSettings(format="avi"), "Unknown animation format"),
    (torch.zeros(2, 8, 8, 3), AnimationSettings(fps=0), "fps must be above 0"),
])
def test_write_errors(tmp_path, images, settings, phrase):
    with pytest.raises(MotionKitError, match=phrase):
        write_animation(images, str(tmp_path / "x.mp4"), settings)


# ---------------------------------------------------------------------------------------------
# Reading a video

@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return mfl.write_video(tmp_path_factory.mktemp("vid") / "clip.mp4", frames=18, width=64, height=48, fps=12)


def indices(images: torch.Tensor):
    return [mfl.frame_index(f) for f in images.numpy()]


@pytest.mark.parametrize("sel, expected", [
    (FrameSelection(), list(range(18))),
    (FrameSelection(frame_cap=5), [0, 1, 2, 3, 4]),
    (FrameSelection(skip_first=3), list(range(3, 18))),
    (FrameSelection(every_nth=4), [0, 4, 8, 12, 16]),
    (FrameSelection(frame_cap=3, skip_first=2, every_nth=3), [2, 5, 8]),
    (FrameSelection(skip_first=17), [17]),
])
def test_video_frame_selection(video, sel, expected):
    calls = []
    images, fps = read_video(str(video), sel, progress=lambda d, t: calls.append((d, t)))
    assert images.dtype == torch.float32 and images.shape == (len(expected), 48, 64, 3)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert indices(images) == expected
    assert fps == pytest.approx(12.0 / sel.every_nth)
    assert calls[-1] == (len(expected), len(expected))


def test_video_resize(video):
    images, _ = read_video(str(video), FrameSelection(frame_cap=2, width=32))
    assert images.shape == (2, 24, 64 // 2, 3), "width only: the aspect ratio is kept"
    images, _ = read_video(str(video), FrameSelection(frame_cap=2, height=24, method="area"))
    assert images.shape == (2, 24, 32, 3)
    # both set, 64x48 -> 32x32: centre crop trims 8 px from each side (the green strip), stretch keeps it
    cropped, _ = read_video(str(video), FrameSelection(frame_cap=2, width=32, height=32, crop="center"))
    stretched, _ = read_video(str(video), FrameSelection(frame_cap=2, width=32, height=32, crop="disabled",
                                                         method="nearest-exact"))
    assert cropped.shape == stretched.shape == (2, 32, 32, 3)
    assert not mfl.has_strip(cropped[0].numpy()) and mfl.has_strip(stretched[0].numpy())
    assert indices(cropped) == indices(stretched) == [0, 1]


def test_webm_input(tmp_path):
    path = mfl.write_video(tmp_path / "c.webm", frames=6, width=40, height=30, fps=8, codec="libvpx-vp9")
    images, fps = read_video(str(path), FrameSelection(every_nth=2))
    assert indices(images) == [0, 2, 4] and fps == pytest.approx(4.0)


def test_video_errors(tmp_path, video):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    with pytest.raises(MediaError, match=r"notes\.mp4 is not a video file Load Video Frames reads"):
        read_video(str(text), FrameSelection())
    audio = tmp_path / "tone.mka"  # Matroska audio only (a WAV file is not a format Load Video Frames reads)
    with av.open(str(audio), "w") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            out.mux(p)
        for p in s.encode():
            out.mux(p)
    with pytest.raises(MediaError, match=r"tone\.mka has no video stream"):
        read_video(str(audio), FrameSelection())
    with pytest.raises(MediaError, match=r"No frames left from clip\.mp4: it has 18 frame\(s\).*skip_first=18"):
        read_video(str(video), FrameSelection(skip_first=18))
    with pytest.raises(MediaError, match="every_nth must be 1 or more"):
        read_video(str(video), FrameSelection(every_nth=0))
    with pytest.raises(MediaError, match="Unknown resize method"):
        read_video(str(video), FrameSelection(method="magic"))
    with pytest.raises(MediaError, match="not a video file"):
        read_video(str(tmp_path / "missing.mp4"), FrameSelection())


def test_files_that_point_at_other_files_are_refused(tmp_path):
    """Playlists and concat lists make FFmpeg open further files that the path checks never saw: read_video
    refuses them by content (whatever the name), with one message whether their target exists or not."""
    (tmp_path / "host_secret").mkdir()
    (tmp_path / "input").mkdir()
    secret = mfl.write_video(tmp_path / "host_secret" / "private.mp4", frames=6)
    inbox = tmp_path / "input"
    mfl.write_video(inbox / "sibling.mp4", frames=6)
    files = {"look.m3u8": mfl.hls_playlist("../host_secret/private.mp4"),
             "gone.m3u8": mfl.hls_playlist("../host_secret/missing.mp4"),
             "playlist.mp4": mfl.hls_playlist("../host_secret/private.mp4"),
             "list.ffconcat": mfl.ffconcat_list("sibling.mp4"),
             "list.mp4": mfl.ffconcat_list("sibling.mp4")}
    messages = {}
    for name, text in files.items():
        (inbox / name).write_text(text)
        with pytest.raises(MediaError) as e:
            read_video(str(inbox / name), FrameSelection())
        message = str(e.value)
        assert message.startswith(f"{name} is not a video file Load Video Frames reads"), message
        assert str(tmp_path) not in message and "host_secret" not in message and "sibling" not in message, message
        messages[name] = message.replace(name, "<name>")
    assert messages["look.m3u8"] == messages["gone.m3u8"], "a playlist must not tell whether its target exists"
    assert len(set(messages.values())) == 1
    assert read_video(str(inbox / "sibling.mp4"), FrameSelection())[0].shape == (6, 48, 64, 3)
    assert read_video(str(secret), FrameSelection())[0].shape[0] == 6, "a real MP4 still reads"


def test_training_video_folder_skips_lists(tmp_path):
    """The training video-folder reader uses the same opener: a concat list named .mp4 gives no clip."""
    from motionkit.training.errors import TrainingError
    from motionkit.training.video_clips import video_folder_clips

    mfl.write_video(tmp_path / "a.mp4", frames=4)
    (tmp_path / "b.mp4").write_text(mfl.ffconcat_list("a.mp4"))
    clips = video_folder_clips(str(tmp_path), frames=4, stride=1, clips_per_video=1, width=32, height=32)
    assert clips.shape == (4, 32, 32, 3), "only a.mp4 gives a clip"
    (tmp_path / "a.mp4").unlink()
    with pytest.raises(TrainingError, match=r"b\.mp4 \(unreadable: b\.mp4 is not a video file Load Video Frames reads"):
        video_folder_clips(str(tmp_path), frames=4, stride=1, clips_per_video=1, width=32, height=32)


# ---------------------------------------------------------------------------------------------
# Reading an image folder

def test_folder_natural_order_and_selection(tmp_path):
    folder = mfl.write_png_folder(tmp_path / "frames", frames=12)
    (folder / "readme.txt").write_text("ignored")
    images, names = read_image_folder(str(folder), FrameSelection())
    assert names[:3] == ["frame0.png", "frame1.png", "frame2.png"] and names[-1] == "frame11.png"
    assert indices(images) == list(range(12)), "frame2 comes before frame10"
    assert images.shape == (12, 30, 40, 3)
    images, names = read_image_folder(str(folder), FrameSelection(frame_cap=3, skip_first=1, every_nth=4))
    assert indices(images) == [1, 5, 9] and names == ["frame1.png", "frame5.png", "frame9.png"]
    images, _ = read_image_folder(str(folder), FrameSelection(frame_cap=1, width=16, height=24))
    assert images.shape == (1, 24, 16, 3) and not mfl.has_strip(images[0].numpy()), "40x30 -> 16x24: crop 10 px a side"


def test_folder_mixed_sizes(tmp_path):
    folder = mfl.write_png_folder(tmp_path / "f", frames=3, width=40, height=30)
    Image.fromarray(mfl.frame_rgb(3, 80, 60)).save(folder / "frame3.png")
    with pytest.raises(MediaError, match=r"frame3\.png is 80x60 but frame0\.png is 40x30.*set width and height"):
        read_image_folder(str(folder), FrameSelection())
    images, _ = read_image_folder(str(folder), FrameSelection(width=40, height=30))
    assert images.shape == (4, 30, 40, 3) and indices(images) == [0, 1, 2, 3]


def test_folder_modes(tmp_path):
    folder = tmp_path / "modes"
    folder.mkdir()
    Image.fromarray(mfl.frame_rgb(0, 16, 16)).convert("RGBA").save(folder / "a.png")
    Image.fromarray(mfl.frame_rgb(1, 16, 16)).convert("L").save(folder / "b.png")
    Image.fromarray(mfl.frame_rgb(2, 16, 16)).save(folder / "c.jpg", quality=95)
    images, names = read_image_folder(str(folder), FrameSelection())
    assert names == ["a.png", "b.png", "c.jpg"] and images.shape == (3, 16, 16, 3)
    assert indices(images) == [0, 1, 2]


def test_folder_errors(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        read_image_folder(str(tmp_path / "nope"), FrameSelection())
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(MediaError, match="holds no images"):
        read_image_folder(str(empty), FrameSelection())
    folder = mfl.write_png_folder(tmp_path / "f", frames=2)
    with pytest.raises(MediaError, match=r"it has 2 image\(s\).*select none"):
        read_image_folder(str(folder), FrameSelection(skip_first=2))
    (folder / "frame2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(MediaError, match=r"frame2\.png in .* is not an image"):
        read_image_folder(str(folder), FrameSelection())
