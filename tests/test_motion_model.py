"""The motion module against the from-spec reference (MOTION_FORMATS.md §2, §7)."""
import pytest
import torch

from motionkit.motion.model import POOLED, PER_FRAME, sinusoidal_table
from reference import reference_module, sinusoidal
from unet_helpers import frames_input, make_module, module_weights


def test_sinusoidal_table_matches_spec():
    assert torch.allclose(sinusoidal_table(32, 320), sinusoidal(32, 320), atol=1e-5)


@pytest.mark.parametrize("mode", [PER_FRAME, POOLED])
def test_forward_equals_reference(mode):
    sd = module_weights()
    x = frames_input()
    with torch.no_grad():
        ours = make_module(sd)(x, frames=8, norm_mode=mode)
    ref = reference_module(sd, x, frames=8, pooled=(mode == POOLED))
    assert ours.shape == x.shape
    torch.testing.assert_close(ours.double(), ref, atol=2e-4, rtol=2e-4)


def test_norm_modes_really_differ():
    sd = module_weights()
    x = frames_input()
    with torch.no_grad():
        m = make_module(sd)
        diff = (m(x, 8, PER_FRAME) - m(x, 8, POOLED)).abs().max()
    assert diff > 1e-2


def test_single_attention_block_variant():
    sd = module_weights(attention_blocks=1)
    x = frames_input(frames=4)
    with torch.no_grad():
        ours = make_module(sd, attention_blocks=1)(x, frames=4)
    torch.testing.assert_close(ours.double(), reference_module(sd, x, 4, False, attention_blocks=1), atol=2e-4, rtol=2e-4)


def test_frames_are_coupled_and_batches_are_not():
    sd = module_weights()
    x = frames_input(batch=2, frames=8)
    y = x.clone()
    y[3] += torch.randn(y[3].shape, generator=torch.Generator().manual_seed(5))  # batch 0, frame 3
    with torch.no_grad():
        m = make_module(sd)
        a, b = m(x, 8), m(y, 8)
    changed = (a - b).flatten(1).abs().amax(1)
    assert (changed[:8] > 1e-4).all(), "every frame of batch item 0 must see frame 3"
    assert (changed[8:] == 0).all(), "batch item 1 must not"


def test_zero_proj_out_is_exact_identity():
    sd = module_weights()
    sd["proj_out.weight"].zero_()
    sd["proj_out.bias"].zero_()
    x = frames_input()
    with torch.no_grad():
        assert torch.equal(make_module(sd)(x, 8), x)


def test_scale_blends_and_per_frame_scale_zero_keeps_that_frame():
    sd = module_weights()
    x = frames_input(batch=2, frames=4)
    with torch.no_grad():
        m = make_module(sd)
        full, zero, half = m(x, 4), m(x, 4, scale=0.0), m(x, 4, scale=0.5)
        per = m(x, 4, scale=torch.tensor([1.0, 0.0, 1.0, 1.0]))
    assert torch.equal(zero, x)
    torch.testing.assert_close(half, x + 0.5 * (full - x))
    for row in (1, 5):  # frame 1 of both batch items
        assert torch.equal(per[row], x[row])
    torch.testing.assert_close(per[0], full[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_runs_in_activation_dtype(dtype):
    sd = module_weights()
    x = frames_input(frames=4)
    with torch.no_grad():
        m = make_module(sd)
        ref = m(x, 4)
        out = m(x.to(dtype), 4)  # fp32 weights, low-precision activations: computes in `dtype`
        m16 = make_module({k: v.to(dtype) for k, v in sd.items()})
        out16 = m16(x, 4)  # low-precision weights, fp32 activations: computes in fp32
    assert out.dtype == dtype and out16.dtype == torch.float32
    tol = 0.1 if dtype == torch.bfloat16 else 0.02
    assert (out.float() - ref).abs().max() / ref.abs().max() < tol
    assert (out16 - ref).abs().max() / ref.abs().max() < tol


def test_pe_table_cached_and_safe_for_training_after_inference():
    """The PE table is made once per (length, width, device, dtype) and reused; one made under inference_mode (as
    ComfyUI samples) is never handed to autograd afterwards (Train Motion LoRA runs in the same process)."""
    from motionkit.motion.model import cached_sinusoidal_table
    assert cached_sinusoidal_table(8, 64, "cpu", torch.float32) is cached_sinusoidal_table(8, 64, "cpu", torch.float32)
    torch.testing.assert_close(cached_sinusoidal_table(8, 64, "cpu", torch.float32), sinusoidal_table(8, 64))
    with torch.inference_mode():
        made_in_inference = cached_sinusoidal_table(8, 48, "cpu", torch.float32)
    assert not cached_sinusoidal_table(8, 48, "cpu", torch.float32).is_inference() and made_in_inference.is_inference()
    m = make_module(module_weights())
    x = frames_input()
    with torch.inference_mode():
        sampled = m(x, frames=8)
    out = m(x.clone().requires_grad_(), frames=8)  # same table key, now with autograd
    out.sum().backward()
    torch.testing.assert_close(out.detach(), sampled)
