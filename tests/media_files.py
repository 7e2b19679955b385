"""Synthetic media for the media tests: videos written with PyAV, PNG folders written with Pillow.

Frame i is a flat grey of level ``level(i)`` (steps of 12, far enough apart to survive H.264/VP9; 19
distinct levels), with an 8-pixel green strip on the left edge, so a test can tell which frame it got back
and whether the sides were cropped.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

STEP = 12
STRIP = 8


def level(i: int) -> int:
    return 16 + STEP * (i % 19)


def frame_rgb(i: int, width: int, height: int) -> np.ndarray:
    rgb = np.full((height, width, 3), level(i), np.uint8)
    rgb[:, :STRIP] = (0, 255, 0)
    return rgb


def frame_index(rgb: np.ndarray) -> int:
    """Which synthetic frame an [H, W, 3] array (uint8 or 0..1 float) is, from the grey in its right half."""
    arr = np.asarray(rgb, dtype=np.float64)
    if arr.max() <= 1.0:
        arr = arr * 255
    grey = arr[:, arr.shape[1] // 2:].mean()
    return int(round((grey - 16) / STEP))


def has_strip(rgb: np.ndarray) -> bool:
    """True when the green strip is on the left edge (it is gone after a centre crop of the sides)."""
    arr = np.asarray(rgb, dtype=np.float64)
    if arr.max() <= 1.0:
        arr = arr * 255
    col = arr[:, 0]
    return bool(col[:, 1].mean() > 200 and col[:, 0].mean() < 60)


def write_video(path, frames: int = 18, width: int = 64, height: int = 48, fps: float = 12.0,
                codec: str = "libx264") -> Path:
    import av
    path = Path(path)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "10"} if codec == "libx264" else {"crf": "10", "b": "0"}
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_rgb(i, width, height), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_png_folder(folder, frames: int = 12, width: int = 40, height: int = 30, name: str = "frame{}.png") -> Path:
    from PIL import Image
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        Image.fromarray(frame_rgb(i, width, height)).save(folder / name.format(i))
    return folder


def hls_playlist(segment: str) -> str:
    """An HLS playlist (.m3u8) of one segment: FFmpeg's hls demuxer opens *segment* (relative to the list)."""
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n"


def ffconcat_list(target: str) -> str:
    """An ffconcat list: FFmpeg's concat demuxer (recognised by this first line, whatever the name) opens *target*."""
    return f"ffconcat version 1.0\nfile '{target}'\n"
