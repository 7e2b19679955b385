"""Our motion modules against diffusers' independent AnimateDiff implementation (MOTION_FORMATS.md §2, §6, §7).

One full-size SD1.5 v2-layout file (fp16, original key names, as AnimateDiff-Lightning's `_comfyui` file) is read
by both `diffusers.MotionAdapter.from_single_file` (offline, with a local config) and `motion.formats`; module
forwards are compared in fp32. diffusers pools the module GroupNorm over frames (§7), so it must equal our POOLED
mode and differ from PER_FRAME. Then the adapter's own state dict, saved as a diffusers-format file (as
AnimateDiff-Lightning's `_diffusers` file), must load through our loader to the same weights.
"""
from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

import motion_files as mf
from motionkit.motion.formats import load_motion_model
from motionkit.motion.model import PER_FRAME, POOLED, sinusoidal_table
from reference import sinusoidal

FRAMES_CASES = [  # (module, channels, spatial size, frames): a down one, the mid one, an up one
    ("down_blocks.0.motion_modules.0", 320, 4, 16),
    ("mid_block.motion_modules.0", 1280, 2, 8),
    ("up_blocks.2.motion_modules.1", 640, 3, 12),
]


@functools.lru_cache(maxsize=None)
def pe_table(length: int, channels: int) -> torch.Tensor:
    return sinusoidal(length, channels)[None]


def random_weights(layout: dict, seed: int, dtype=torch.float16) -> dict:
    """Random tensors in `layout`'s shapes (windows of one seeded normal pool, scaled like motion_files:
    matrices 1/sqrt(fan_in), norms 1 ± 0.1, biases 0.02); stored PE = the sinusoidal table (§2)."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.empty(1 << 25, dtype=dtype).normal_(generator=gen)
    out = {}
    for k, m in layout.items():
        if k.endswith("pos_encoder.pe"):
            out[k] = pe_table(m.shape[1], m.shape[2]).to(dtype)
            continue
        start = int(torch.randint(0, pool.numel() - m.numel(), (1,), generator=gen))
        t = pool[start:start + m.numel()].view(m.shape)
        out[k] = t * 0.02 if k.endswith("bias") else t * 0.1 + 1.0 if m.dim() == 1 else t * m.shape[-1] ** -0.5
    return out


def frames_input(channels, size, frames, batch=2, seed=1):
    """Frames of different brightness and contrast: where pooled and per-frame GroupNorm disagree (§7)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch * frames, channels, size, size, generator=g)
    scale = torch.linspace(0.5, 2.0, frames).repeat(batch)[:, None, None, None]
    return x * scale + (scale - 1.0) * 3.0


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        diffusers = pytest.importorskip(
            "diffusers", reason="diffusers is not installed: the cross-check against its AnimateDiff is skipped")
        import huggingface_hub.constants
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        try:
            from diffusers.models.modeling_utils import no_init_weights
        except ImportError:  # older/newer diffusers: just pay for the random init
            from contextlib import nullcontext as no_init_weights

        folder = tmp_path_factory.mktemp("oracle")
        weights = random_weights(mf.v2(device="meta"), seed=3)
        path = folder / "animatediff_lightning_4step_comfyui.safetensors"
        save_file(weights, str(path))

        # a local config dir (no network): the default MotionAdapter = SD1.5, mid block, max_seq_length 32
        with torch.device("meta"):
            diffusers.MotionAdapter().save_config(str(folder / "config"))
        with no_init_weights():  # every weight comes from the file (checked below); skip the random init
            adapter = diffusers.MotionAdapter.from_single_file(
                str(path), config=str(folder / "config"), torch_dtype=torch.float32, local_files_only=True)
    ours, info = load_motion_model(str(path))
    return SimpleNamespace(adapter=adapter.eval(), ours=ours, info=info, weights=weights, folder=folder)


def test_diffusers_read_every_tensor_of_the_file(oracle):
    """diffusers' converter and ours see the same file: its state dict is the §6 rename of the file's tensors."""
    expected = mf.to_diffusers(oracle.weights)
    got = oracle.adapter.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        if k.endswith("pos_embed.pe"):  # diffusers recomputes its table; it equals ours and the stored one
            assert got[k].shape == (1, 32, v.shape[-1])
            torch.testing.assert_close(got[k][0], sinusoidal_table(32, v.shape[-1]), atol=1e-5, rtol=0)
        else:
            assert torch.equal(got[k], v.float()), k
    assert oracle.info.family == "AnimateDiff v2" and oracle.info.max_frames == 32


def test_same_modules_in_the_same_places(oracle):
    """ordered_modules() (UNet execution order, §3) pairs each of our modules with the same diffusers module."""
    ad = oracle.adapter
    seen = 0
    for kind, index, module in oracle.ours.ordered_modules():
        theirs = {"input": lambda i: ad.down_blocks[i // 2].motion_modules[i % 2],
                  "middle": lambda i: ad.mid_block.motion_modules[0],
                  "output": lambda i: ad.up_blocks[i // 3].motion_modules[i % 3]}[kind](index)
        assert torch.equal(module.temporal_transformer.proj_in.weight.float(), theirs.proj_in.weight), (kind, index)
        seen += 1
    assert seen == 21


@pytest.mark.parametrize("module, channels, size, frames", FRAMES_CASES)
def test_forward_equals_diffusers_with_pooled_norm(oracle, module, channels, size, frames):
    x = frames_input(channels, size, frames)
    with torch.no_grad():
        theirs = oracle.adapter.get_submodule(module)(x, num_frames=frames)
        ours = oracle.ours.get_submodule(module)(x, frames=frames, norm_mode=POOLED)
    assert ours.dtype == torch.float32 and ours.shape == x.shape
    motion = (theirs - x).abs().max()  # what the module adds; the comparison is relative to it
    assert motion > 0.5, "the module must do something for the comparison to mean anything"
    assert (ours - theirs).abs().max() <= 1e-4 * motion


@pytest.mark.parametrize("module, channels, size, frames", FRAMES_CASES)
def test_per_frame_norm_differs_from_diffusers(oracle, module, channels, size, frames):
    """§7: the original SD1.5 modules normalise per frame, diffusers pools: not noise, a different result."""
    x = frames_input(channels, size, frames)
    with torch.no_grad():
        theirs = oracle.adapter.get_submodule(module)(x, num_frames=frames)
        ours = oracle.ours.get_submodule(module)(x, frames=frames, norm_mode=PER_FRAME)
    motion = (theirs - x).abs().max()
    assert (ours - theirs).abs().max() > 0.1 * motion


def test_diffusers_format_file_loads_to_the_same_model(oracle):
    """The MotionAdapter's own state dict (the Lightning `_diffusers` format, fp16) through our loader."""
    path = oracle.folder / "animatediff_lightning_4step_diffusers.safetensors"
    save_file({k: v.half().contiguous() for k, v in oracle.adapter.state_dict().items()}, str(path))
    model, info = load_motion_model(str(path))
    assert info.source_format == "diffusers" and info.family.startswith("AnimateDiff v2")
    assert info.max_frames == 32 and info.arch.has_mid
    reference = oracle.ours.state_dict()
    loaded = model.state_dict()
    assert set(loaded) == set(reference)
    for k, v in reference.items():
        assert torch.equal(loaded[k], v), k
    module, channels, size, frames = FRAMES_CASES[1]
    x = frames_input(channels, size, frames, seed=2)
    with torch.no_grad():
        theirs = oracle.adapter.get_submodule(module)(x, num_frames=frames)
        ours = model.get_submodule(module)(x, frames=frames, norm_mode=POOLED)
    assert (ours - theirs).abs().max() <= 1e-4 * (theirs - x).abs().max()
