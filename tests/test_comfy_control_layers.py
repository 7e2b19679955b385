"""SparseCtrl's encoder and MotionCtrl's OMCM adapter on ComfyUI's layers, as their loaders build them under ComfyUI
(control.sparsectrl.apply.comfy_encoder, control.motionctrl.apply.comfy_operations): comfy.ops layers, the same
state-dict keys and the same numbers as the default (plain torch) build on the same weights, and ComfyUI's model
management can load them partially (low VRAM) or with fp8-stored weights, with the full load's result.

In-process ComfyUI on the CPU (`--cpu`), as tests/test_comfy_layers.py does for the motion model: small-width
SparseCtrl encoders in the real key layout; the OMCM from the full-size random file (its loader checks the
published shapes). Load and offload device are both the CPU, so partial loading runs the casting path only.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import comfy_env
from motionkit.control.motionctrl.apply import USED_FEATURES, OMCMRun, comfy_operations
from motionkit.control.motionctrl.files import load_omcm
from motionkit.control.sparsectrl.files import build
from motionkit.control.sparsectrl.model import RGB, SCRIBBLE
from motionkit.trajectory.encoding import Path, encode_paths
from omcm_files import cached_omcm_file
from sparsectrl_files import random_state_dict
from sparsectrl_files import SMALL, small_config

pytestmark = [pytest.mark.comfyui, pytest.mark.usefixtures("one_thread")]

CPU = torch.device("cpu")



@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.model_management
    import comfy.model_patcher
    import comfy.ops
    yield SimpleNamespace(mm=comfy.model_management, ops=comfy.ops, patcher=comfy.model_patcher)
    comfy.model_management.unload_all_models()


def sparsectrl_inputs(variant, frames=4, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = frames * batch
    x = torch.randn(n, 4, 8, 8, generator=g)
    hint = torch.rand(n, 5, 8, 8, generator=g) if variant == RGB else torch.rand(n, 4, 64, 64, generator=g)
    return dict(x=x, hint=hint, timesteps=torch.tensor(500.0), context=torch.randn(n, 7, SMALL["context_dim"], generator=g),
                frames=frames, motion_scale=0.7)


def run_encoder(encoder, variant, dtype=torch.float32):
    with torch.no_grad():
        out = encoder(**{k: v.to(dtype) if isinstance(v, torch.Tensor) else v
                         for k, v in sparsectrl_inputs(variant).items()})
    return out["output"] + out["middle"]


def comfy_sparsectrl(variant, seed=1):
    from motionkit.control.sparsectrl.apply import comfy_encoder
    sd = random_state_dict(variant, seed=seed, **SMALL)
    encoder, load_device, manual_cast = comfy_encoder(small_config(variant), sd, f"v3_sd15_sparsectrl_{variant}.ckpt")
    return encoder, build(small_config(variant), sd), load_device, manual_cast


@pytest.mark.parametrize("variant", [RGB, SCRIBBLE])
def test_sparsectrl_built_the_comfy_way_has_comfy_ops_layers_and_the_same_numbers(comfy, variant):
    encoder, plain, load_device, manual_cast = comfy_sparsectrl(variant)
    assert load_device == CPU and manual_cast is None and encoder.dtype == torch.float32  # --cpu: fp32, no casting
    block = encoder.down_blocks[0]
    tt = block.motion_modules[0].temporal_transformer
    layers = [encoder.conv_in, encoder.time_embedding.linear_1, encoder.controlnet_down_blocks[3],
              encoder.controlnet_mid_block, block.resnets[0].norm1, block.resnets[0].conv1, block.resnets[0].time_emb_proj,
              block.attentions[0].proj_in, block.attentions[0].transformer_blocks[0].norm2,
              block.attentions[0].transformer_blocks[0].attn2.to_k, tt.norm, tt.proj_in,
              tt.transformer_blocks[0].attention_blocks[0].to_q, encoder.mid_block.resnets[1].conv2]
    layers += [encoder.controlnet_cond_embedding] if variant == RGB else [encoder.controlnet_cond_embedding.blocks[1]]
    for layer in layers:
        assert isinstance(layer, comfy.ops.CastWeightBiasOp) and hasattr(layer, "comfy_cast_weights"), \
            f"{type(layer).__name__} is not a comfy.ops layer"
    torch_layers = [m for m in encoder.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm,
                                                                    torch.nn.LayerNorm))]
    assert all(isinstance(m, comfy.ops.CastWeightBiasOp) for m in torch_layers), "every weighted layer is comfy.ops"
    assert not isinstance(plain.conv_in, comfy.ops.CastWeightBiasOp)  # the default build stays plain torch
    assert list(encoder.state_dict()) == list(plain.state_dict()), "state-dict keys must not change"
    got, want = run_encoder(encoder, variant), run_encoder(plain, variant)
    assert len(got) == 13 and all(torch.equal(a, b) for a, b in zip(got, want)), "comfy.ops changed the numbers"


def test_sparsectrl_partial_load_and_fp8_weights(comfy):
    mm = comfy.mm
    encoder, plain, _, _ = comfy_sparsectrl(SCRIBBLE, seed=2)
    want = run_encoder(plain, SCRIBBLE)
    patcher = comfy.patcher.ModelPatcher(encoder, load_device=CPU, offload_device=CPU)  # as core's ControlNet wraps it
    size = patcher.model_size()
    try:
        loaded = mm.LoadedModel(patcher)
        loaded.model_load(size // 4)  # what load_models_gpu does when the device has little free memory
        assert encoder.model_lowvram and 0 < patcher.loaded_size() <= size // 4
        cast = [m for m in encoder.modules() if getattr(m, "prev_comfy_cast_weights", None) is not None]
        assert len(cast) > 10 and all(m.comfy_cast_weights for m in cast)
        got = run_encoder(encoder, SCRIBBLE)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), "partial load changed the result"
    finally:
        mm.unload_all_models()

    if not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("this torch has no float8_e4m3fn")
    fp8, _, _, _ = comfy_sparsectrl(SCRIBBLE, seed=2)
    fp8 = fp8.to(torch.float8_e4m3fn)
    # the same computation on the weights rounded to fp8: what the per-call cast must give exactly
    rounded = build(small_config(SCRIBBLE), {k: v.to(torch.float8_e4m3fn).float()
                                             for k, v in random_state_dict(SCRIBBLE, seed=2, **SMALL).items()})
    patcher = comfy.patcher.ModelPatcher(fp8, load_device=CPU, offload_device=CPU)
    patcher.force_cast_weights = True  # what core's set_model_compute_dtype sets for fp8 storage
    try:
        mm.load_models_gpu([patcher])
        assert {p.dtype for p in fp8.parameters()} == {torch.float8_e4m3fn}
        got = run_encoder(fp8, SCRIBBLE)
    finally:
        mm.unload_all_models()
    assert all(a.dtype == torch.float32 for a in got)
    assert all(torch.equal(a, b) for a, b in zip(got, run_encoder(rounded, SCRIBBLE))), "fp8 weights not cast per call"
    assert all(not torch.equal(a, b) for a, b in zip(got, want)), "the weights were not stored in fp8"


def omcm_features(adapter, seed=0):
    traj = encode_paths([Path([(5, 5), (60, 40), (10, 60)])], 4, 64, 64)
    run = OMCMRun(SimpleNamespace(adapter=adapter, name="omcm.ckpt"), traj)
    cond, zero = run.features(list(range(4)), CPU, torch.float32)
    return cond + zero


def test_omcm_built_the_comfy_way_has_comfy_ops_layers_and_the_same_numbers(comfy):
    path = str(cached_omcm_file())
    omcm, plain = load_omcm(path, comfy_operations()), load_omcm(path)
    adapter = omcm.adapter
    convs = [m for m in adapter.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 and all(isinstance(m, comfy.ops.CastWeightBiasOp) and hasattr(m, "comfy_cast_weights")
                                    for m in convs)
    assert not isinstance(plain.adapter.conv_in, comfy.ops.CastWeightBiasOp)
    assert list(adapter.state_dict()) == list(plain.adapter.state_dict())
    want = omcm_features(plain.adapter)
    got = omcm_features(adapter)
    assert len(got) == 2 * USED_FEATURES and all(torch.equal(a, b) for a, b in zip(got, want))

    mm = comfy.mm
    patcher = comfy.patcher.ModelPatcher(adapter, load_device=CPU, offload_device=CPU)  # as apply_omcm adds it
    try:
        mm.LoadedModel(patcher).model_load(patcher.model_size() // 4)
        assert adapter.model_lowvram and any(getattr(m, "comfy_cast_weights", False) for m in convs)
        got = omcm_features(adapter)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), "partial load changed the features"
    finally:
        mm.unload_all_models()
