"""The loss curve as an IMAGE tensor [1, H, W, 3] (Pillow): raw loss per step and a running mean."""
from __future__ import annotations

import numpy as np
import torch


def loss_curve(losses: list[float], width: int = 512, height: int = 256, first_step: int = 1) -> torch.Tensor:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 48, width - 10, 12, height - 24
    draw.rectangle([left, top, right, bottom], outline=(180, 180, 180))
    values = [v for v in losses if np.isfinite(v)]
    if values:
        lo, hi = min(values), max(values)
        hi = hi if hi > lo else lo + 1e-8
        n = len(losses)

        def point(i, v):
            x = left + (right - left) * (i / max(n - 1, 1))
            return x, bottom - (bottom - top) * (v - lo) / (hi - lo)

        raw = [point(i, v) for i, v in enumerate(losses) if np.isfinite(v)]
        window = max(1, n // 20)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid") if len(values) >= window else values
        if len(raw) > 1:
            draw.line(raw, fill=(150, 180, 235), width=1)
        if len(smooth) > 1:
            draw.line([point(i + window - 1, v) for i, v in enumerate(smooth)], fill=(20, 60, 200), width=2)
        elif raw:
            draw.ellipse([raw[0][0] - 2, raw[0][1] - 2, raw[0][0] + 2, raw[0][1] + 2], fill=(20, 60, 200))
        draw.text((4, top), f"{hi:.3g}", fill=(0, 0, 0))
        draw.text((4, bottom - 10), f"{lo:.3g}", fill=(0, 0, 0))
        draw.text((left, bottom + 6), f"step {first_step}", fill=(0, 0, 0))
        draw.text((right - 70, bottom + 6), f"step {first_step + n - 1}", fill=(0, 0, 0))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]
