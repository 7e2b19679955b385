"""Random-weight MotionCtrl OMCM files in the published layout (motionctrl_animatediff_omcm.ckpt).

The key inventory below was listed from the original class (TencentARC/MotionCtrl, AnimateDiff branch,
motionctrl/adapter.py `Adapter(channels=[320, 640, 1280, 1280], nums_rb=2, cin=128, sk=True, use_conv=False)`,
the configs' omcm_config) built on the meta device; the file layout follows the original train.py:
torch.save({"epoch", "global_step", "omcm_state_dict": omcm.state_dict()}) with omcm wrapped in DDP, so keys
carry `module.`. Independent of the loader under test.
"""
from __future__ import annotations

import torch

C1, C2, C3 = 320, 640, 1280
INVENTORY = {"conv_in.weight": (C1, 128, 3, 3), "conv_in.bias": (C1,)}
for _i, (_cin, _cout) in enumerate([(C1, C1), (C1, C1), (C1, C2), (C2, C2), (C2, C3), (C3, C3), (C3, C3), (C3, C3)]):
    if _cin != _cout:
        INVENTORY[f"body.{_i}.in_conv.weight"] = (_cout, _cin, 3, 3)
        INVENTORY[f"body.{_i}.in_conv.bias"] = (_cout,)
    for _b in ("block1", "block2"):
        INVENTORY[f"body.{_i}.{_b}.weight"] = (_cout, _cout, 3, 3)
        INVENTORY[f"body.{_i}.{_b}.bias"] = (_cout,)
assert len(INVENTORY) == 38  # as listed from the original class


def omcm_weights(seed: int | None = 0, cin: int = 128) -> dict[str, torch.Tensor]:
    """Random weights, scaled like a trained conv (std ~ 1/sqrt(fan_in)) so features stay O(1);
    seed None: zeros (fast, for tests of the layout only)."""
    g = torch.Generator().manual_seed(seed or 0)
    sd = {}
    for k, shape in INVENTORY.items():
        if k == "conv_in.weight":
            shape = (shape[0], cin, 3, 3)
        if seed is None:
            sd[k] = torch.zeros(shape)
            continue
        fan_in = shape[1] * 9 if len(shape) == 4 else 1
        sd[k] = torch.randn(shape, generator=g) * (0.5 / fan_in ** 0.5 if len(shape) == 4 else 0.05)
    return sd


def omcm_file(seed: int | None = 0, ddp_prefix: bool = True) -> dict:
    """The published file's structure: a dict with the state dict under 'omcm_state_dict'."""
    sd = omcm_weights(seed)
    return {"epoch": 3, "global_step": 25000,
            "omcm_state_dict": {("module." if ddp_prefix else "") + k: v for k, v in sd.items()}}


def cached_omcm_file(seed: int = 0) -> "Path":
    """The random OMCM file in the test model cache (built once: 38 tensors, ~320 MB, like the real one)."""
    import os
    from pathlib import Path

    d = Path(os.environ.get("MOTIONKIT_TEST_CACHE", Path.home() / ".cache" / "motionkit" / "test_models"))
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"motionctrl_omcm_random_{seed}.ckpt"
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp")
        torch.save(omcm_file(seed), str(tmp))
        os.replace(tmp, path)
    return path
