"""A folder of videos → reference clips of F frames, read with Load Video Frames' reader (media.animation)."""
from __future__ import annotations

import os

import torch

from .errors import TrainingError

from ..media.animation import FrameSelection, MediaError, _natural_key, read_video

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v")


def video_folder_clips(folder: str, frames: int, stride: int, clips_per_video: int, width: int, height: int,
                       progress=None, label: str | None = None, check_file=None) -> torch.Tensor:
    """IMAGE [clips·frames, height, width, 3]: from each video, up to `clips_per_video` back-to-back clips of
    `frames` frames taken every `stride`-th frame; videos too short for one clip are skipped (and named if all are).
    `label`: how messages name the folder (never a host path); `check_file(path)`: raises for a file that must not
    be read (a link out of the folders the server allows, media/safe_paths.py)."""
    shown = label or f"'{folder}'"
    if not os.path.isdir(folder):
        raise TrainingError(f"Video folder {shown} does not exist. Give a folder path, absolute or relative to "
                            f"ComfyUI's input folder.")
    names = sorted((n for n in os.listdir(folder) if n.lower().endswith(VIDEO_EXTENSIONS)), key=_natural_key)
    if not names:
        raise TrainingError(f"Video folder {shown} holds no videos ({', '.join(VIDEO_EXTENSIONS)}).")
    clips, short = [], []
    for n, name in enumerate(names):
        sel = FrameSelection(frame_cap=frames * clips_per_video, every_nth=stride, width=width, height=height)
        if check_file is not None:
            check_file(os.path.join(folder, name))
        try:
            video, _ = read_video(os.path.join(folder, name), sel)
        except MediaError as e:  # unreadable, or too short for even one frame at this stride
            short.append(f"{name}: {e}")
            continue
        whole = video.shape[0] // frames
        if whole == 0:
            short.append(f"{name} ({video.shape[0]} frames)")
        clips += list(video[:whole * frames].split(frames))
        if progress is not None:
            progress(n + 1, len(names))
    if not clips:
        raise TrainingError(f"No video in {shown} gives a clip of {frames} frames at frame_stride {stride} "
                            f"({', '.join(short)}). Lower frames or frame_stride.")
    return torch.cat(clips)
