"""How much memory the CogVideoX VAE's activations take at their peak: counted, not guessed.

`LiveBytes` is a torch dispatch mode that sees every tensor an operation makes and keeps the sum of the bytes of
the storages still alive (a storage is freed when its last tensor is; weights and the model's input are not
counted). Run on the meta device the model does no arithmetic, so the full size (13 × 60 × 90 latents in bf16)
costs a second and no memory; the count is exact for the tensors the model holds. It does not see memory inside
a kernel (cuDNN workspaces; the SafeConv3d split keeps conv inputs under 2 GiB for them) nor a caching allocator's
rounding and fragmentation: leave a margin for those (tests/test_cogvideox_vae.py checks the count against torch's
own CPU allocator, via the profiler, at a small size).

Counted for CogVideoX-5B's VAE in bf16 (weights 0.40 GiB on top): decode of 13 × 60 × 90 latents (49 × 480 × 720)
6.98 GiB, with Tiling() 2.07 GiB; encode of 49 × 480 × 720 video 4.65 GiB, tiled 1.17 GiB. The count at a small
area scaled up by area is larger (decode 7.97 GiB from 8 × 12 latents): small convs need no time pieces.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .vae import CogVideoXVAE, Tiling, VAEConfig

GIB = 1024 ** 3


class LiveBytes(TorchDispatchMode):
    """Bytes of storages made inside the mode and still alive: `now`, and the most at once: `peak`."""

    def __init__(self, outside: tuple[torch.Tensor, ...] = ()):
        super().__init__()
        self.outside = {t.untyped_storage()._cdata for t in outside}  # weights, inputs: not activations
        self.live: dict[int, list[int]] = {}  # storage -> [bytes, tensors alive on it]
        self.now = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out

    def track(self, t: torch.Tensor) -> None:
        key = t.untyped_storage()._cdata
        if key in self.outside:
            return
        if key in self.live:
            self.live[key][1] += 1
        else:
            self.live[key] = [t.untyped_storage().nbytes(), 1]
            self.now += self.live[key][0]
            self.peak = max(self.peak, self.now)
        weakref.finalize(t, self.release, key)

    def release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[key]


def measure(model: CogVideoXVAE, run, x: torch.Tensor) -> int:
    """Peak activation bytes of `run(x)` (the result counted until it is returned)."""
    with torch.no_grad(), LiveBytes(tuple(model.parameters()) + (x,)) as live:
        out = run(x)
        del out
    return live.peak


def decode_peak_bytes(latent_frames: int = 13, height: int = 60, width: int = 90, dtype=torch.bfloat16,
                      config: VAEConfig = VAEConfig(), tiling: Tiling | None = None, device="meta") -> int:
    """Peak activation bytes of `CogVideoXVAE.decode` on one [1, 16, frames, height, width] latent (defaults:
    CogVideoX's 49 × 480 × 720 video), counted on `device` (meta: no arithmetic, any size)."""
    with torch.device(device):
        model = CogVideoXVAE(config).to(dtype)
        z = torch.zeros(1, config.latent_channels, latent_frames, height, width, dtype=dtype)
    return measure(model, lambda z: model.decode(z, tiling=tiling), z)


def encode_peak_bytes(frames: int = 49, height: int = 480, width: int = 720, dtype=torch.bfloat16,
                      config: VAEConfig = VAEConfig(), tiling: Tiling | None = None, device="meta") -> int:
    """Peak activation bytes of `CogVideoXVAE.encode` on one [1, 3, frames, height, width] video."""
    with torch.device(device):
        model = CogVideoXVAE(config).to(dtype)
        x = torch.zeros(1, config.in_channels, frames, height, width, dtype=dtype)
    return measure(model, lambda x: model.encode(x, tiling=tiling), x)


def weight_bytes(dtype=torch.bfloat16, config: VAEConfig = VAEConfig()) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in CogVideoXVAE(config).parameters()) * torch.finfo(dtype).bits // 8
