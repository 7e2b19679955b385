"""The motion model on ComfyUI's layers (motion.injection.comfy_layers): comfy.ops layers and ComfyUI's selected
attention give the same module as plain torch, and ComfyUI's model management can load it partially when it has
little memory, with the same result as a full load.

In-process ComfyUI on the CPU (`--cpu`), small-width motion models in the real key layout. What is exercised for
partial loading: core's `comfy.model_management.LoadedModel.model_load(lowvram_model_memory)` (the call
`load_models_gpu` makes with the budget it computes from free VRAM; on a CPU load device it always passes 0, so
the test passes a small budget itself) and `LoadedModel.model_unload(memory_to_free)` (how `free_memory` frees part
of a loaded model), i.e. `ModelPatcher.partially_load` / `load(lowvram_model_memory=…)` / `partially_unload`: layers
over the budget keep their weights on the offload device with `comfy_cast_weights` set, and their MotionLoRA patches
become `LowVramPatch` weight functions applied per call. Load and offload device are both the CPU here, so no
transfer between devices happens; the casting and on-the-fly patching paths do run.
"""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import comfy_env
import motion_files as mf
from motionkit.motion.lora import classify_motion_lora
from motionkit.motion.model import PER_FRAME, POOLED, MotionArchitecture, MotionModel, MotionModule, TorchOps
from reference import reference_module
from unet_helpers import frames_input, module_weights

pytestmark = [pytest.mark.comfyui, pytest.mark.usefixtures("one_thread")]

SMALL = (32, 64, 64, 64)  # an SD1.5-layout motion model with narrow levels: every key, little memory
CPU = torch.device("cpu")
UNET = SimpleNamespace(load_device=CPU, offload_device=CPU)  # what motion_patcher reads of the UNet's patcher



@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.ldm.modules.attention
    import comfy.model_management
    import comfy.model_patcher
    import comfy.ops
    from motionkit.motion.injection import comfy_layers
    operations, attention = comfy_layers()
    yield SimpleNamespace(mm=comfy.model_management, ops=comfy.ops, attention=comfy.ldm.modules.attention,
                          operations=operations, optimized_attention=attention)
    comfy.model_management.unload_all_models()


def small_model(operations=None, attention=None, seed=5):
    sd = mf.original_state_dict(SMALL, mid=True, pe_length=32, seed=seed, dtype=torch.float32)
    with torch.device("meta"):
        model = MotionModel(MotionArchitecture(SMALL, has_mid=True), operations, attention)
    model.load_state_dict({k: v for k, v in sd.items() if not k.endswith("pos_encoder.pe")}, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def module_inputs(model, frames=8, size=4):
    """(module, input) for every motion module: B=2 items of `frames` frames."""
    return [(m, frames_input(batch=2, frames=frames, channels=m.temporal_transformer.channels, size=size, seed=n))
            for n, (_, _, m) in enumerate(model.ordered_modules())]


def run_all(model, frames=8, dtype=None):
    """Every motion module's output on its input, alternately with per-frame and pooled norms (computed in `dtype`)."""
    with torch.no_grad():
        return [m(x, frames, PER_FRAME if n % 2 else POOLED, dtype=dtype)
                for n, (m, x) in enumerate(module_inputs(model, frames))]


def test_comfy_layers_are_comfy_ops_and_comfys_attention(comfy):
    model = small_model(comfy.operations, comfy.optimized_attention)
    tt = model.down_blocks[0].motion_modules[0].temporal_transformer
    for layer in (tt.proj_in, tt.proj_out, tt.norm, tt.transformer_blocks[0].norms[0], tt.transformer_blocks[0].ff.net[2],
                  tt.transformer_blocks[0].attention_blocks[1].to_q, tt.transformer_blocks[0].attention_blocks[1].to_out[0]):
        assert isinstance(layer, comfy.ops.CastWeightBiasOp), f"{type(layer).__name__} is not a comfy.ops layer"
    assert tt.transformer_blocks[0].attention_blocks[0].attention is comfy.optimized_attention
    assert list(model.state_dict()) == list(small_model().state_dict()), "state-dict keys must not change"


def test_attention_follows_comfys_choice_except_its_unasked_memory_fallback(comfy, monkeypatch):
    from comfy.cli_args import args
    from motionkit.motion.injection import comfy_attention
    attn = comfy.attention
    # --cpu without attention flags: ComfyUI falls back to sub-quadratic attention; short frame sequences use SDPA
    assert attn.optimized_attention is attn.attention_sub_quad
    assert comfy_attention() is attn.attention_pytorch
    monkeypatch.setattr(args, "use_quad_cross_attention", True)  # the user asked for it: followed
    assert comfy_attention() is attn.attention_sub_quad
    monkeypatch.setattr(args, "use_quad_cross_attention", False)
    for chosen in (attn.attention_xformers, attn.attention_sage, attn.attention_flash, attn.attention_pytorch):
        monkeypatch.setattr(attn, "optimized_attention", chosen)  # what the flags select on a GPU
        assert comfy_attention() is chosen


@pytest.mark.parametrize("mode", [PER_FRAME, POOLED])
def test_comfy_layers_module_equals_reference_and_torch_layers(comfy, mode):
    sd = module_weights()
    x = frames_input()
    torch_m, comfy_m = MotionModule(320), MotionModule(320, 2, comfy.operations, comfy.optimized_attention)
    for m in (torch_m, comfy_m):
        m.temporal_transformer.load_state_dict(sd, strict=True)
        m.eval()
    with torch.no_grad():
        ours, plain = comfy_m(x, 8, mode), torch_m(x, 8, mode)
    torch.testing.assert_close(ours.double(), reference_module(sd, x, frames=8, pooled=(mode == POOLED)),
                               atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(ours, plain, atol=2e-5, rtol=2e-5)


def lora_patcher(model):
    """The motion model's ModelPatcher as Apply Motion Model makes it, with a MotionLoRA as weight patches."""
    from motionkit.motion.lora import add_motion_loras, motion_patcher
    patcher = motion_patcher(model, UNET)
    lora = replace(classify_motion_lora(mf.motion_lora(rank=4, seed=1, scale=0.2, levels=SMALL), "zoom.ckpt"),
                   strength=1.0)
    add_motion_loras(patcher, [lora], "mm.ckpt")
    return patcher


def lowvram_layers(model):
    return [m for m in model.modules() if getattr(m, "prev_comfy_cast_weights", None) is not None]


def test_partial_load_with_little_memory_gives_the_full_load_result(comfy):
    mm = comfy.mm
    model = small_model(comfy.operations, comfy.optimized_attention)
    file_weights = {k: v.clone() for k, v in model.state_dict().items()}
    patcher = lora_patcher(model)
    size = patcher.model_size()
    try:
        full = mm.LoadedModel(patcher)
        full.model_load(0)  # what load_models_gpu does with enough memory
        assert not model.model_lowvram and patcher.loaded_size() == size
        want = run_all(model)
        full.model_unload()
        assert all(torch.equal(v, file_weights[k]) for k, v in model.state_dict().items()), "unpatched after unload"
        plain = run_all(model)
        assert any((a - b).abs().max() > 1e-3 for a, b in zip(want, plain)), "the LoRA must change the result"

        budget = size // 4  # room for a quarter of the weights
        part = mm.LoadedModel(patcher)
        part.model_load(budget)  # what load_models_gpu does when the device has little free memory
        assert model.model_lowvram, "ComfyUI did not load the motion model partially"
        assert 0 < patcher.loaded_size() <= budget < size
        cast = lowvram_layers(model)
        assert len(cast) > 10 and all(m.comfy_cast_weights for m in cast)
        assert model.lowvram_patch_counter > 0 and any(m.weight_function for m in cast), \
            "the MotionLoRA of layers left out must be applied per call"
        got = run_all(model)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), "partial load changed the result"
        part.model_unload()

        again = mm.LoadedModel(patcher)  # full load, then ComfyUI frees part of it for another model
        again.model_load(0)
        assert not again.model_unload(memory_to_free=size // 2), "partially unloaded, still loaded"
        assert model.model_lowvram and patcher.loaded_size() < size and lowvram_layers(model)
        got = run_all(model)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), "partial unload changed the result"
        again.model_unload()
    finally:
        mm.unload_all_models()
    assert all(torch.equal(v, file_weights[k]) for k, v in model.state_dict().items())


def test_weights_stored_in_fp8_run_through_comfy_casting(comfy):
    """fp8 weight storage: with ModelPatcher.force_cast_weights (what core's set_model_compute_dtype sets) every
    comfy.ops layer casts its stored weights to the activations' dtype per call."""
    if not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("this torch has no float8_e4m3fn")
    from motionkit.motion.lora import motion_patcher
    ref = run_all(small_model())
    model = small_model(comfy.operations, comfy.optimized_attention).to(torch.float8_e4m3fn)
    patcher = motion_patcher(model, UNET)
    patcher.force_cast_weights = True
    try:
        comfy.mm.load_models_gpu([patcher])
        assert {p.dtype for p in model.parameters()} == {torch.float8_e4m3fn}
        got = run_all(model)
    finally:
        comfy.mm.unload_all_models()
    for a, b, (_, x) in zip(got, ref, module_inputs(model)):
        assert a.dtype == torch.float32
        err, delta = (a - b).abs().max(), (b - x).abs().max()
        assert 0 < err < 0.25 * delta, f"fp8 weights moved a module's output by {err}, its delta is {delta}"


def test_torch_layers_lose_the_lora_under_the_same_budget(comfy):
    """The same budget with plain torch layers (what the motion model was before it used comfy.ops): ComfyUI can
    leave none of them out to be cast per call, so it loads only what fits and patches only that: the MotionLoRA
    is missing from the rest and the result differs from a full load. (Why the test above can fail.)"""
    mm = comfy.mm
    model = small_model(TorchOps)
    patcher = lora_patcher(model)
    try:
        full = mm.LoadedModel(patcher)
        full.model_load(0)
        want = run_all(model)
        full.model_unload()
        mm.LoadedModel(patcher).model_load(patcher.model_size() // 4)
        assert not model.model_lowvram and not lowvram_layers(model)
        assert len(patcher.backup) < len(patcher.patches), "only the layers that fit were patched"
        assert max(float((a - b).abs().max()) for a, b in zip(run_all(model), want)) > 1e-2
    finally:
        mm.unload_all_models()


def test_dtype_copy_of_a_partially_loaded_model_starts_unloaded(comfy):
    """precision's per-dtype copy made while another graph has the model partially loaded with a MotionLoRA: the copy
    carries none of that graph's load state (layers marked as cast per call, its LoRA as weight functions, loaded
    memory), so the copy loads (partially too) with the file's weights only."""
    from motionkit.motion.lora import motion_patcher
    from motionkit.motion.precision import weights_in
    mm = comfy.mm
    model = small_model(comfy.operations, comfy.optimized_attention)
    want = run_all(weights_in(small_model(comfy.operations, comfy.optimized_attention), torch.bfloat16), dtype=torch.bfloat16)
    patcher = lora_patcher(model)
    try:
        mm.LoadedModel(patcher).model_load(patcher.model_size() // 4)
        assert model.model_lowvram and lowvram_layers(model)
        copy = weights_in(model, torch.bfloat16)
        assert copy is not model and not lowvram_layers(copy)
        assert not any(m.__dict__.get("weight_function") or "comfy_cast_weights" in m.__dict__ for m in copy.modules())
        copy_patcher = motion_patcher(copy, UNET)
        assert copy.model_loaded_weight_memory == 0 and not copy.model_lowvram
        mm.LoadedModel(copy_patcher).model_load(copy_patcher.model_size() // 4)
        assert copy.model_lowvram, "the copy loads partially on its own"
        got = run_all(copy, dtype=torch.bfloat16)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), "the other graph's LoRA leaked into the copy"
    finally:
        mm.unload_all_models()
