"""A folder of videos → reference clips of F frames, read with Load Video Frames' reader (media.animation).

Where a video is longer than its clips need, the clips start at a random frame (seeded per video name), as
AnimateDiff's dataset picks a random window of each video (`random.randint(0, video_length - clip_length)`), so
training does not see only the first seconds of every video; window_start "from_start" keeps the first frames.
"""
from __future__ import annotations

import logging
import os
import random

import torch

from .errors import TrainingError

from ..media.animation import FrameSelection, MediaError, _natural_key, read_video

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v")
WINDOW_STARTS = ("random", "from_start")


def frame_count(path: str) -> int:
    """Frames of a video's first video stream, counted from its packets (no decoding: cheap, and right where the
    header has no frame count, as in webm and gif). 0 when it cannot be counted (read_video then says why)."""
    import av

    try:
        with av.open(path, mode="r") as container:
            if not container.streams.video:
                return 0
            return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)
    except (av.error.FFmpegError, OSError):
        return 0


def clip_span(frames: int, stride: int, clips: int = 1) -> int:
    """Source frames that `clips` back-to-back clips of `frames` frames at `stride` reach over."""
    return (clips * frames - 1) * stride + 1


def video_folder_clips(folder: str, frames: int, stride: int, clips_per_video: int, width: int, height: int,
                       progress=None, label: str | None = None, check_file=None, window_start: str = "random",
                       seed: int = 0) -> torch.Tensor:
    """IMAGE [clips·frames, height, width, 3]: from each video, up to `clips_per_video` back-to-back clips of
    `frames` frames taken every `stride`-th frame, starting at a random frame (seeded by `seed` and the video's
    name) or at the first (`window_start` "from_start"). Videos too short for one clip, or unreadable, are skipped
    with a warning naming them; if none gives a clip, the error names each and the frames a clip needs.
    `label`: how messages name the folder (never a host path); `check_file(path)`: raises for a file that must not
    be read (a link out of the folders the server allows, media/safe_paths.py)."""
    shown = label or f"'{folder}'"
    if window_start not in WINDOW_STARTS:
        raise TrainingError(f"Unknown window_start '{window_start}'; choose one of {', '.join(WINDOW_STARTS)}.")
    if not os.path.isdir(folder):
        raise TrainingError(f"Video folder {shown} does not exist. Give a folder path, absolute or relative to "
                            f"ComfyUI's input folder.")
    names = sorted((n for n in os.listdir(folder) if n.lower().endswith(VIDEO_EXTENSIONS)), key=_natural_key)
    if not names:
        raise TrainingError(f"Video folder {shown} holds no videos ({', '.join(VIDEO_EXTENSIONS)}).")
    need = clip_span(frames, stride)
    clips, skipped = [], []
    for n, name in enumerate(names):
        path = os.path.join(folder, name)
        if check_file is not None:
            check_file(path)
        cut, reason = _cut(path, name, frames, stride, clips_per_video, width, height, window_start, seed)
        clips += cut
        if reason:
            skipped.append(reason)
        if progress is not None:
            progress(n + 1, len(names))
    if not clips:
        raise TrainingError(f"No video in {shown} gives a clip of {frames} frames at frame_stride {stride} (a clip "
                            f"takes {need} frames of the video): {', '.join(skipped)}. Lower frames or frame_stride, "
                            f"or add longer videos.")
    if skipped:
        logging.warning(f"MotionKit Video Folder to Clips: skipped {len(skipped)} of {len(names)} videos in {shown} "
                        f"(a clip of {frames} frames at frame_stride {stride} takes {need} frames): "
                        f"{', '.join(skipped)}.")
    return torch.cat(clips)


def _cut(path, name, frames, stride, clips_per_video, width, height, window_start, seed):
    """(clips of one video, why it gave none or None)."""
    total = frame_count(path)
    whole = min(clips_per_video, -(-total // stride) // frames)  # clips the video holds from its first frame
    if total and not whole:
        return [], f"{name} ({total} frames)"
    start, cap = 0, frames * clips_per_video  # (a video whose frames cannot be counted: from its start)
    if whole and window_start == "random":
        start = random.Random(f"{seed}/{name}").randint(0, total - clip_span(frames, stride, whole))
        cap = frames * whole
    try:
        video, _ = read_video(path, FrameSelection(frame_cap=cap, skip_first=start, every_nth=stride, width=width,
                                                   height=height))
    except MediaError as e:
        return [], f"{name} (unreadable: {e})"
    got = video.shape[0] // frames
    if got == 0:  # fewer frames decoded than counted (a damaged tail)
        return [], f"{name} ({video.shape[0]} frames at frame_stride {stride})"
    return list(video[:got * frames].split(frames)), None
