"""Dense optical flow from footage (OpenCV Farneback), as a TRAJECTORY: transfer a video's motion.

Frame k holds the flow from frame k-1 to frame k, in pixels, at the pixels of frame k-1 (frame 0 zero),
the same convention as drawn paths (and MotionCtrl's video-flow mode, which feeds measured flow unblurred).
"""
from __future__ import annotations

import numpy as np
import torch

from .encoding import DENSE, Trajectory
from .errors import TrajectoryError


def optical_flow(images: torch.Tensor, width: int = 0, height: int = 0, progress=None) -> Trajectory:
    """images [F, H, W, C] in 0..1 -> dense flow Trajectory at width x height (0 = the images' size)."""
    try:
        import cv2
    except ImportError:
        raise TrajectoryError("Optical flow from a video needs OpenCV: pip install opencv-python-headless "
                              "(in ComfyUI's Python environment), then restart ComfyUI.") from None
    if images.ndim != 4 or images.shape[0] < 2:
        raise TrajectoryError(f"Optical flow needs at least 2 frames; got {images.shape[0] if images.ndim == 4 else 0}. "
                              f"Load more frames (Load Video Frames' frame_cap).")
    frames, h0, w0 = images.shape[:3]
    width, height = width or w0, height or h0
    img = images[..., :3].float()
    if (height, width) != (h0, w0):
        img = torch.nn.functional.interpolate(img.movedim(-1, 1), size=(height, width), mode="bilinear",
                                              align_corners=False, antialias=True).movedim(1, -1)
    grey = [cv2.cvtColor(np.round(f.clamp(0, 1).numpy() * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in img]
    flow = np.zeros((frames, height, width, 2), dtype=np.float32)
    for k in range(1, frames):
        flow[k] = cv2.calcOpticalFlowFarneback(grey[k - 1], grey[k], None, pyr_scale=0.5, levels=3, winsize=15,
                                               iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
        if progress is not None:
            progress()
    return Trajectory(torch.from_numpy(flow), width, height, [], [], DENSE)
