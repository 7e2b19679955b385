"""The Plücker ray embedding CameraCtrl's encoder reads: per frame and pixel, the ray through the pixel centre as
(o × d, d), d the unit direction in the frame-0 camera's coordinates and o the camera centre there (inference.py
ray_condition, get_relative_pose).

One deliberate difference: the original calls `torch.cross` without `dim`, which crosses along the FIRST axis of
size 3; with 3 frames (or a batch of 3) that is the frame axis and the embedding is garbage. Here the cross product
is always over the xyz axis, which is what the original computes for every other frame count.
"""
from __future__ import annotations

import torch
from einops import rearrange

from .poses import CameraPoses, intrinsics, relative_c2w


def ray_condition(K: torch.Tensor, c2w: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """K [B, F, 4] (fx fy cx cy in pixels), c2w [B, F, 4, 4] -> [B, F, H, W, 6] = (o × d, d)."""
    rows = torch.linspace(0, height - 1, height, device=c2w.device, dtype=c2w.dtype)
    cols = torch.linspace(0, width - 1, width, device=c2w.device, dtype=c2w.dtype)
    j, i = torch.meshgrid(rows, cols, indexing="ij")
    i = i.reshape(1, 1, height * width) + 0.5  # pixel centres
    j = j.reshape(1, 1, height * width) + 0.5
    fx, fy, cx, cy = K.chunk(4, dim=-1)  # [B, F, 1] each
    xs = (i - cx) / fx
    ys = (j - cy) / fy
    directions = torch.stack((xs, ys, torch.ones_like(ys)), dim=-1)  # [B, F, HW, 3], camera axes (x right, y down)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    rays_d = directions @ c2w[..., :3, :3].transpose(-1, -2)  # into frame 0's axes
    rays_o = c2w[..., :3, 3][:, :, None].expand_as(rays_d)
    plucker = torch.cat([torch.linalg.cross(rays_o, rays_d, dim=-1), rays_d], dim=-1)
    return plucker.reshape(K.shape[0], c2w.shape[1], height, width, 6)


def plucker_embedding(poses: CameraPoses, width: int, height: int) -> torch.Tensor:
    """[F, 6, H, W] float32 for a width x height sample (pixels, not latents), one frame per pose."""
    K = torch.as_tensor(intrinsics(poses, width, height))[None]
    c2w = torch.as_tensor(relative_c2w(poses))[None]
    return rearrange(ray_condition(K, c2w, height, width)[0], "f h w c -> f c h w").contiguous()
