"""Animation files in and out: IMAGE batches <-> MP4 / WebM / GIF / animated WebP, and image folders.

Not motion-model files (those are `motion/formats.py`): this is what the Save Animation, Load Video Frames and
Load Image Folder nodes call. Imports without ComfyUI; PyAV (`av`, a ComfyUI requirement) and Pillow are
imported where used. An IMAGE batch is a float tensor [frames, height, width, channels] in 0..1.

Conventions (the README's node reference states them for users):

* ping-pong plays frames 0..n-1 and then n-2..1, so a looping player shows no frame twice in a row:
  2n-2 frames for n >= 2 (`frame_order`).
* loop_count: 0 = loop forever, N = play N times. GIF and WebP store it in the file; MP4/WebM players
  decide looping themselves, so N >= 1 writes the clip N times and 0 writes it once.
* metadata follows ComfyUI core: MP4/WebM container tags ("prompt", "workflow", ... JSON strings; MP4
  with movflags=use_metadata_tags, as core's SaveVideo), animated WebP EXIF ("prompt:{json}" in 0x0110,
  "workflow:{json}" from 0x010F down, as core's SaveAnimatedWEBP), GIF a comment holding one JSON object.

Why not core's writers/readers (comfy_api VideoFromComponents / VideoFromFile, 0.3.64): they write H.264
MP4 only, with no quality (crf), loop or progress settings, and read by decoding every frame of the file
into memory before any selection; GIF/WebP/WebM are node methods, not callable writers. The formats and
metadata layouts match core's, so files from here load in the frontend as core's do.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from ..common.errors import MotionKitError

FORMATS = ("mp4", "webm", "gif", "webp")
EXTENSIONS = {"mp4": "mp4", "webm": "webm", "gif": "gif", "webp": "webp"}
# ComfyUI's ImageScale names, mapped to Pillow filters ("area" = box filter).
RESIZE_METHODS = ("lanczos", "bicubic", "bilinear", "area", "nearest-exact")
CROP_MODES = ("center", "disabled")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_H264_CRF = 51

Progress = Optional[Callable[[int, int], None]]  # (done, total)


class MediaError(MotionKitError):
    """A video or image folder that cannot be read, or settings that select no frames."""


# Reading: FFmpeg may open only these demuxers (its format_whitelist, checked on the probed content, so the file's
# name does not matter) and only plain files. Each reads the one file it is given: no playlist (hls, dash), concat
# list, image2 pattern, sdp, lavfi or tee, which open further files or devices that the path checks in
# safe_paths.py never saw. MOV/MP4 can name external data files ("drefs"): FFmpeg follows them only with
# enable_drefs, which stays off.
VIDEO_DEMUXERS = ("mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "gif")
SAFE_OPEN_OPTIONS = (("format_whitelist", ",".join(VIDEO_DEMUXERS)), ("protocol_whitelist", "file"),
                     ("enable_drefs", "0"))
READABLE = "MP4/MOV, WebM/MKV, AVI and GIF"


def _reason(error: Exception) -> str:
    """FFmpeg's reason without the file name or its log lines (which may name files outside ComfyUI's folders)."""
    return getattr(error, "strerror", None) or type(error).__name__


# ---------------------------------------------------------------------------------------------
# Writing

@dataclass(frozen=True)
class AnimationSettings:
    format: str = "mp4"
    fps: float = 8.0
    loop_count: int = 0      # 0 = forever; N = play N times (see module docstring)
    pingpong: bool = False
    crf: int = 19            # MP4 (H.264, capped at 51) and WebM (VP9): lower = better, bigger
    quality: int = 90        # WebP: 0-100, 100 = lossless; GIF: palette of 256*quality/100 colours


def frame_order(n: int, pingpong: bool = False, repeats: int = 1) -> List[int]:
    """Indices of the frames to write, in order."""
    order = list(range(n))
    if pingpong and n > 2:
        order += list(range(n - 2, 0, -1))
    return order * max(1, repeats)


def write_animation(images: torch.Tensor, path: str, settings: AnimationSettings,
                    metadata: Optional[Dict[str, object]] = None, progress: Progress = None) -> int:
    """Encode an IMAGE batch to *path*; return the number of frames written.

    *metadata*: e.g. {"prompt": {...}, "workflow": {...}}; values that are not strings are stored as JSON.
    """
    if settings.format not in FORMATS:
        raise MediaError(f"Unknown animation format {settings.format!r}; choose one of {', '.join(FORMATS)}.")
    if images.ndim != 4 or images.shape[0] == 0:
        raise MediaError(f"Save Animation needs a batch of images [frames, height, width, channels]; got a tensor "
                         f"of shape {tuple(images.shape)}. Connect the IMAGE output of VAE Decode.")
    if not settings.fps > 0:
        raise MediaError(f"fps must be above 0 (got {settings.fps}). If it comes from Load Video Frames, that video "
                         f"stores no frame rate: type the fps in instead of connecting it.")
    tags = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    video = settings.format in ("mp4", "webm")
    repeats = settings.loop_count if video and settings.loop_count > 0 else 1
    order = frame_order(images.shape[0], settings.pingpong, repeats)
    if video:
        _write_video(images, order, path, settings, tags, progress)
    else:
        _write_image_animation(images, order, path, settings, tags, progress)
    return len(order)


def _to_uint8(frame: torch.Tensor) -> np.ndarray:
    """One [H, W, C] frame in 0..1 -> [H, W, 3] uint8 (alpha dropped, grey repeated)."""
    frame = frame.detach().to("cpu", torch.float32)
    if frame.shape[-1] == 1:
        frame = frame.expand(*frame.shape[:-1], 3)
    return (frame[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _write_video(images, order, path, settings, tags, progress):
    import av

    h264 = settings.format == "mp4"
    height, width = images.shape[1], images.shape[2]
    # H.264 in yuv420p (what browsers play) needs even sizes: repeat the last row/column if odd.
    pad_h, pad_w = (height % 2, width % 2) if h264 else (0, 0)
    options = {"movflags": "use_metadata_tags"} if h264 else {}
    try:
        with av.open(path, mode="w", options=options) as out:
            for key, value in tags.items():
                out.metadata[key] = value
            rate = Fraction(round(settings.fps * 1000), 1000)
            stream = out.add_stream("libx264" if h264 else "libvpx-vp9", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width + pad_w, height + pad_h, "yuv420p"
            crf = min(settings.crf, MAX_H264_CRF) if h264 else settings.crf
            # VP9 is in constant-quality mode only with a zero bitrate target (b=0).
            stream.options = {"crf": str(crf)} if h264 else {"crf": str(crf), "b": "0"}
            for done, i in enumerate(order, 1):
                rgb = _to_uint8(images[i])
                if pad_h or pad_w:
                    rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(packet)
                if progress:
                    progress(done, len(order))
            for packet in stream.encode():
                out.mux(packet)
    except av.error.FFmpegError as e:
        raise MediaError(f"Could not write {os.path.basename(path)} ({settings.format}): {_reason(e)}") from e


def _write_image_animation(images, order, path, settings, tags, progress):
    from PIL import Image

    def frames(palette=None) -> Iterator["Image.Image"]:
        for done, i in enumerate(order, 1):
            im = Image.fromarray(_to_uint8(images[i]))
            yield im.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) if palette else im
            if progress:
                progress(done, len(order))

    fps = settings.fps
    if settings.format == "gif":
        # One palette for all frames (from a mosaic of up to 16 of them): per-frame palettes flicker.
        palette = _shared_palette(images, order, max(2, round(256 * settings.quality / 100)))
        extra = {}
        if settings.loop_count != 1:  # GIF stores repeats after the first play; none stored = play once
            extra["loop"] = max(0, settings.loop_count - 1)
        if tags:
            extra["comment"] = json.dumps({k: _json_or_str(v) for k, v in tags.items()})
        it = frames(palette)
        # Pillow reads append_images lazily for GIF, so progress follows the encoding.
        # GIF durations are whole 1/100 s: round to the nearest one (Pillow would truncate).
        next(it).save(path, save_all=True, append_images=it, duration=10 * max(1, round(100 / fps)), disposal=1,
                      optimize=False, **extra)
        return
    exif = Image.Exif()
    if "prompt" in tags:
        exif[0x0110] = f"prompt:{tags['prompt']}"
    tag = 0x010F
    for key, value in tags.items():
        if key != "prompt":
            exif[tag] = f"{key}:{value}"
            tag -= 1
    # Pillow's WebP writer takes every frame up front: progress counts frames as they are prepared.
    ims = list(frames())
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=1000 / fps, exif=exif, loop=settings.loop_count,
                lossless=settings.quality >= 100, quality=min(settings.quality, 100), method=4)


def _json_or_str(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


def _shared_palette(images, order, colors):
    from PIL import Image

    picks = sorted(set(order))
    picks = [picks[round(k * (len(picks) - 1) / 15)] for k in range(16)] if len(picks) > 16 else picks
    tiles = [Image.fromarray(_to_uint8(images[i])) for i in picks]
    tiles = [t.resize((max(1, t.width // 2), max(1, t.height // 2)), Image.Resampling.BOX)
             if t.width * t.height > 512 * 512 else t for t in tiles]
    mosaic = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
    x = 0
    for t in tiles:
        mosaic.paste(t, (x, 0))
        x += t.width
    return mosaic.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)


# ---------------------------------------------------------------------------------------------
# Reading

@dataclass(frozen=True)
class FrameSelection:
    frame_cap: int = 0       # 0 = all
    skip_first: int = 0
    every_nth: int = 1
    width: int = 0           # 0 = keep (or follow the aspect ratio when only the other is set)
    height: int = 0
    method: str = "lanczos"
    crop: str = "center"     # when both width and height are set: crop to their aspect ratio, or stretch

    def check(self) -> None:
        if self.every_nth < 1:
            raise MediaError(f"every_nth must be 1 or more (got {self.every_nth}); 1 keeps every frame.")
        if min(self.frame_cap, self.skip_first, self.width, self.height) < 0:
            raise MediaError("frame_cap, skip_first, width and height must not be negative.")
        if self.method not in RESIZE_METHODS:
            raise MediaError(f"Unknown resize method {self.method!r}; choose one of {', '.join(RESIZE_METHODS)}.")
        if self.crop not in CROP_MODES:
            raise MediaError(f"Unknown crop mode {self.crop!r}; choose one of {', '.join(CROP_MODES)}.")

    def picks(self, index: int) -> bool:
        return index >= self.skip_first and (index - self.skip_first) % self.every_nth == 0

    def expected(self, total: int) -> int:
        """How many frames this selection takes from *total*."""
        n = max(0, -(-(total - self.skip_first) // self.every_nth))
        return min(n, self.frame_cap) if self.frame_cap else n

    def describe(self) -> str:
        return (f"skip_first={self.skip_first}, every_nth={self.every_nth}"
                + (f", frame_cap={self.frame_cap}" if self.frame_cap else ""))


def target_size(src_w: int, src_h: int, width: int, height: int) -> Tuple[int, int]:
    """Output size; a 0 keeps the source size, or follows the aspect ratio when the other side is set."""
    if width and height:
        return width, height
    if width:
        return width, max(1, round(src_h * width / src_w))
    if height:
        return max(1, round(src_w * height / src_h)), height
    return src_w, src_h


def fit_frame(rgb: np.ndarray, sel: FrameSelection) -> np.ndarray:
    """Resize (and centre-crop to the target aspect ratio when asked) one [H, W, 3] uint8 frame."""
    from PIL import Image

    src_h, src_w = rgb.shape[:2]
    w, h = target_size(src_w, src_h, sel.width, sel.height)
    if (w, h) == (src_w, src_h):
        return rgb
    if sel.crop == "center" and sel.width and sel.height:
        if src_w * h > w * src_h:   # source is wider: trim the sides
            keep = max(1, round(src_h * w / h))
            x = (src_w - keep) // 2
            rgb = rgb[:, x:x + keep]
        else:                       # taller: trim top and bottom
            keep = max(1, round(src_w * h / w))
            y = (src_h - keep) // 2
            rgb = rgb[y:y + keep]
    filters = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
               "bilinear": Image.Resampling.BILINEAR, "area": Image.Resampling.BOX,
               "nearest-exact": Image.Resampling.NEAREST}
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), filters[sel.method]))


def _stack(frames: List[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).to(torch.float32).div_(255.0)


def read_video(path: str, sel: FrameSelection, progress: Progress = None) -> Tuple[torch.Tensor, float]:
    """Decode the selected frames of a video file; return (IMAGE batch, fps of the selected frames).

    The fps is the source frame rate divided by every_nth, so the frames play at the source's speed.
    """
    import av

    sel.check()
    name = os.path.basename(path)
    try:
        container = av.open(path, mode="r", container_options=dict(SAFE_OPEN_OPTIONS))
    except (av.error.FFmpegError, OSError) as e:
        # One message for every refusal: never FFmpeg's text (it can name other files) nor whether a file that a
        # playlist points at exists.
        raise MediaError(f"{name} is not a video file Load Video Frames reads. It reads {READABLE} files, "
                         f"recognised by their content, not their name; playlists (.m3u8), concat lists and other "
                         f"files that point FFmpeg at further files are refused. Use an .mp4, .webm, .mov, .mkv, "
                         f".avi or .gif file, or Load Image Folder for a folder of frames.") from e
    frames: List[np.ndarray] = []
    seen = 0
    with container:
        if not container.streams.video:
            raise MediaError(f"{name} has no video stream (an audio file or an image?). Choose a video file.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        total = stream.frames or (round(float(stream.duration * stream.time_base) * fps)
                                  if stream.duration and fps else 0)
        expected = sel.expected(total) if total else (sel.frame_cap or 0)
        size = None
        try:
            for frame in container.decode(stream):
                if sel.picks(seen):
                    rgb = fit_frame(frame.to_ndarray(format="rgb24"), sel)
                    if size is None:
                        size = rgb.shape
                    elif rgb.shape != size:
                        raise MediaError(f"{name}: frame {seen} is {rgb.shape[1]}x{rgb.shape[0]} but the first "
                                         f"frame was {size[1]}x{size[0]}; set width and height to resize all "
                                         f"frames to one size.")
                    frames.append(rgb)
                    if progress:
                        progress(len(frames), max(expected, len(frames)))
                    if sel.frame_cap and len(frames) >= sel.frame_cap:
                        break
                seen += 1
        except av.error.FFmpegError as e:
            if not frames:
                raise MediaError(f"{name} could not be decoded ({_reason(e)}); the file may be damaged or not a "
                                 f"video.") from e
            # a damaged tail: keep the frames decoded so far, as players do
    if not frames:
        raise MediaError(f"No frames left from {name}: it has {seen} frame(s) and the settings ({sel.describe()}) "
                         f"select none. Lower skip_first.")
    return _stack(frames), fps / sel.every_nth if fps else 0.0


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: str, label: Optional[str] = None) -> List[str]:
    """Image files directly in *folder*, in natural name order (frame2 before frame10).

    *label*: how messages name the folder (default: the path)."""
    label = label or repr(folder)
    if not os.path.isdir(folder):
        raise MediaError(f"Image folder {label} does not exist. Give a folder in ComfyUI's input folder (its name "
                         f"relative to it, e.g. 'frames').")
    names = [n for n in os.listdir(folder)
             if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, n))]
    if not names:
        raise MediaError(f"Image folder {label} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return sorted(names, key=_natural_key)


def read_image_folder(folder: str, sel: FrameSelection, progress: Progress = None, label: Optional[str] = None,
                      check_file: Optional[Callable[[str], None]] = None) -> Tuple[torch.Tensor, List[str]]:
    """Load the selected images of *folder*; return (IMAGE batch, the file names used, in order).

    *label*: how messages name the folder (default: the path); *check_file(path)*: called before each file is
    opened, may raise (the nodes refuse links out of the allowed folders, see safe_paths)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    sel.check()
    label = label or repr(folder)
    names = list_images(folder, label)
    picked = [n for i, n in enumerate(names) if sel.picks(i)]
    if sel.frame_cap:
        picked = picked[:sel.frame_cap]
    if not picked:
        raise MediaError(f"No images left from {label}: it has {len(names)} image(s) and the settings "
                         f"({sel.describe()}) select none. Lower skip_first.")
    frames: List[np.ndarray] = []
    for name in picked:
        if check_file is not None:
            check_file(os.path.join(folder, name))
        try:
            with Image.open(os.path.join(folder, name)) as im:
                im = ImageOps.exif_transpose(im)
                if im.mode.startswith("I"):  # 16/32-bit grey: scale to 8 bits as core's LoadImage does
                    im = im.convert("I").point(lambda v: v * (1 / 255))
                rgb = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise MediaError(f"{name} in {label} is not an image Pillow can read ({e}); remove it or "
                             f"replace it.") from e
        rgb = fit_frame(rgb, sel)
        if frames and rgb.shape != frames[0].shape:
            raise MediaError(f"{name} is {rgb.shape[1]}x{rgb.shape[0]} but {picked[0]} is "
                             f"{frames[0].shape[1]}x{frames[0].shape[0]}; images of one animation must be one "
                             f"size: set width and height to resize them all.")
        frames.append(rgb)
        if progress:
            progress(len(frames), len(picked))
    return _stack(frames), picked
