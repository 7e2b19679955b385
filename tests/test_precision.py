"""Apply Motion Model's `precision` (motion.precision): the dtype the motion modules compute in, and the loaded
motion model's weights per dtype (one shared copy per dtype, widened in place when nothing uses it yet).

Module math and weight handling need only torch; the tests marked comfyui run ComfyUI's own ModelPatcher
in-process (CPU; a meta-device UNet for placement). The real-server test: tests/test_comfy_precision.py.
"""
from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import comfy_env
import motion_files as mf
from motionkit.motion.errors import MotionKitError
from motionkit.motion.formats import LOAD_STAGES, build_motion_model, classify, load_motion_model
from motionkit.motion.lora import classify_motion_lora
from motionkit.motion.model import PER_FRAME, POOLED, MotionArchitecture, MotionModel
from motionkit.motion.precision import CHOICES, precision_dtype, weights_in
from unet_helpers import frames_input, make_module, module_weights

SMALL = (32, 64, 64, 64)  # an SD1.5-layout motion model with narrow levels: every key, little memory


def small_model(dtype=torch.float16, seed=5):
    sd = mf.original_state_dict(SMALL, mid=True, pe_length=32, seed=seed, dtype=dtype)
    model = MotionModel(MotionArchitecture(SMALL, has_mid=True))
    model.load_state_dict({k: v for k, v in sd.items() if not k.endswith("pos_encoder.pe")}, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# The module computes delta in the chosen dtype; the residual stays in the input's

@pytest.mark.parametrize("mode", [PER_FRAME, POOLED])
def test_auto_is_exactly_the_unchanged_module_and_bf16_is_close_but_not_equal(mode):
    m = make_module(module_weights())
    x = frames_input(frames=8)
    with torch.no_grad():
        before = x + m.temporal_transformer.delta(x, 8, mode)  # what the module computed before `dtype` existed
        auto = m(x, 8, mode)
        fp32 = m(x, 8, mode, dtype=torch.float32)
        bf16 = make_module({k: v.bfloat16() for k, v in module_weights().items()})  # weights stored in bf16
        low = bf16(x, 8, mode, dtype=torch.bfloat16)
        rounded_weights_only = bf16(x, 8, mode)  # bf16 weights, computed in x's fp32
    assert torch.equal(auto, before) and torch.equal(fp32, before)
    assert low.dtype == torch.float32
    delta, err = before - x, (low - before).abs().max()
    assert not torch.equal(low, rounded_weights_only), "bf16 must really compute in bf16"
    assert err < 0.02 * delta.abs().max(), f"bf16 error {err} of max |delta| {delta.abs().max()}"


def test_bf16_rounds_only_delta_not_the_residual():
    """With a zero proj_out delta is exactly 0 in any dtype: the output is x to the last bit (no round trip of x)."""
    sd = {k: v.bfloat16() for k, v in module_weights().items()}
    sd["proj_out.weight"].zero_()
    sd["proj_out.bias"].zero_()
    x = frames_input(frames=4)
    with torch.no_grad():
        assert torch.equal(make_module(sd)(x, 4, dtype=torch.bfloat16), x)


@pytest.mark.parametrize("x_dtype, dtype", [(torch.bfloat16, None), (torch.bfloat16, torch.float32),
                                            (torch.float16, torch.bfloat16), (torch.float32, torch.float16)])
def test_output_dtype_is_the_input_dtype(x_dtype, dtype):
    m = make_module(module_weights())
    x = frames_input(frames=4).to(x_dtype)
    with torch.no_grad():
        assert m(x, 4, dtype=dtype).dtype == x_dtype


def test_image_feature_path_keeps_auto_exact_and_bf16_close():
    m = make_module(module_weights())
    x = frames_input(frames=4)
    feature = 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = x + (feature + m.temporal_transformer.delta(x + feature, 4, PER_FRAME))
        auto = m(x, 4, feature=feature)
        low = m(x, 4, feature=feature, dtype=torch.bfloat16, scale=1.0)
    assert torch.equal(auto, before)
    err = (low - before).abs().max()
    assert 0 < err < 0.02 * (before - x).abs().max()


def test_precision_choices():
    assert CHOICES[0] == "auto" and set(CHOICES) == {"auto", "fp32", "bf16", "fp16"}
    assert precision_dtype("auto") is None and precision_dtype("bf16") == torch.bfloat16
    with pytest.raises(MotionKitError, match="precision 'int8'.*auto"):
        precision_dtype("int8")


# ---------------------------------------------------------------------------------------------
# Weights per dtype

def test_unused_fp16_model_is_widened_in_place_to_fp32():
    model = small_model(torch.float16)
    file_weights = state(model)
    params = dict(model.named_parameters())
    got = weights_in(model, torch.float32)
    assert got is model, "nothing used the loaded weights yet: no second copy"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(v, file_weights[k].float()) for k, v in model.state_dict().items())
    assert all(params[k] is p for k, p in model.named_parameters()), "the same parameters, widened"


def test_same_dtype_is_the_loaded_model_and_narrowing_copies():
    model = small_model(torch.float16)
    assert weights_in(model, torch.float16) is model
    file_weights = state(model)
    low = weights_in(model, torch.bfloat16)  # fp16 -> bf16 loses bits: the loaded weights stay as they are
    assert low is not model and all(p.dtype == torch.bfloat16 for p in low.parameters())
    assert all(torch.equal(v, file_weights[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, file_weights[k].bfloat16()) for k, v in low.state_dict().items())


def test_one_copy_per_dtype_is_shared_and_freed_with_its_last_user():
    model = small_model(torch.float16)
    a, b = weights_in(model, torch.bfloat16), weights_in(model, torch.bfloat16)
    assert a is b
    assert all(p is q for p, q in zip(a.parameters(), b.parameters()))
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None, "a copy no graph uses any more must not stay in memory"
    assert weights_in(model, torch.bfloat16) is not None


def test_copies_made_after_widening_equal_copies_of_the_file_weights():
    fp16 = small_model(torch.float16)
    direct = state(weights_in(small_model(torch.float16), torch.bfloat16))
    assert weights_in(fp16, torch.float32) is fp16  # widened
    via_fp32 = weights_in(fp16, torch.bfloat16)
    assert all(torch.equal(v, direct[k]) for k, v in via_fp32.state_dict().items())
    back = weights_in(fp16, torch.float16)
    assert back is not fp16 and all(p.dtype == torch.float16 for p in back.parameters())


def test_load_motion_model_reports_each_stage(tmp_path):
    path = tmp_path / "v3_sd15_mm.ckpt"  # the full v3 layout, every tensor a stride-0 view: a few KB
    torch.save({k: torch.zeros((), dtype=torch.float16).expand(v.shape) for k, v in mf.v3(device="meta").items()}, path)
    calls = []
    model, info = load_motion_model(str(path), progress=lambda: calls.append(1))
    assert len(calls) == LOAD_STAGES == 3 and info.family == "AnimateDiff v3"
    broken = tmp_path / "mystery.ckpt"
    torch.save({"encoder.weight": torch.zeros(2)}, broken)
    calls.clear()
    with pytest.raises(MotionKitError):  # read, then refused by detection: the bar stops where it failed
        load_motion_model(str(broken), progress=lambda: calls.append(1))
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------------
# With ComfyUI's ModelPatcher (in-process)

@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.model_management
    import comfy.model_patcher
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    yield SimpleNamespace(mm=comfy.model_management, ModelPatcher=comfy.model_patcher.ModelPatcher, ops=comfy.ops,
                          UNetModel=UNetModel)
    comfy.model_management.unload_all_models()


CPU = torch.device("cpu")
UNET = SimpleNamespace(load_device=CPU, offload_device=CPU)  # what motion_patcher reads of the UNet's patcher


class FakeBase(torch.nn.Module):
    """What apply_motion_model reads of ComfyUI's BaseModel: the UNet and its compute dtype."""

    def __init__(self, unet):
        super().__init__()
        self.diffusion_model = unet
        self.manual_cast_dtype = None

    def get_dtype(self):
        return torch.float32


@pytest.mark.comfyui
def test_two_apply_nodes_with_one_precision_share_one_copy(comfy):
    from unet_helpers import SD15_UNET
    from motionkit.motion.injection import MotionSettings, applications, apply_motion_model
    unet = comfy.UNetModel(**SD15_UNET, image_size=32, device="meta", operations=comfy.ops.disable_weight_init)
    patcher = comfy.ModelPatcher(FakeBase(unet), CPU, CPU)
    info, weights = classify(mf.v2(device="meta", dtype=torch.float16), "mm_sd_v15_v2.ckpt")
    loaded = build_motion_model(info, weights, "mm_sd_v15_v2.ckpt")  # a v2 file in fp16, as published

    def applied(precision):
        m = apply_motion_model(patcher, loaded, info, "mm_sd_v15_v2.ckpt", MotionSettings(), precision=precision)
        (app,) = applications(m)
        return app

    a, b = applied("bf16"), applied("bf16")
    assert a.motion_model is b.motion_model is not loaded and a.dtype == torch.bfloat16
    assert all(p is q for p, q in zip(a.motion_model.parameters(), b.motion_model.parameters()))
    assert {p.dtype for p in a.motion_model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in loaded.parameters()} == {torch.float16}, "the loaded model stays as the file is"
    auto, fp32 = applied("auto"), applied("fp32")
    assert auto.motion_model is loaded and auto.dtype is None, "auto on an fp32 UNet: the loaded model, widened"
    assert fp32.motion_model is loaded and fp32.dtype == torch.float32
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert applied("bf16").motion_model is a.motion_model
    # 2 graphs' worth of models: the fp32 one and one bf16 copy (the fp16 file weights are gone)
    assert len({id(app.motion_model) for app in (a, b, auto, fp32)}) == 2


@pytest.mark.comfyui
def test_motion_lora_on_a_shared_copy_does_not_leak(comfy):
    """Two graphs share the bf16 copy, one with a MotionLoRA: loading the other restores the copy's weights
    exactly; and a copy made while a graph has a LoRA patched into the loaded model is made from the file's weights."""
    from motionkit.motion.lora import add_motion_loras, motion_patcher
    loaded = small_model(torch.float16)
    file_weights = state(loaded)
    lora = replace(classify_motion_lora(mf.motion_lora(rank=4, seed=1, scale=0.1, levels=SMALL), "zoom.ckpt"), strength=1.0)

    on_loaded = motion_patcher(loaded, UNET)  # a graph that runs the loaded fp16 weights themselves, with the LoRA
    add_motion_loras(on_loaded, [lora], "mm.ckpt")
    try:
        comfy.mm.load_models_gpu([on_loaded])
        assert any(not torch.equal(v, file_weights[k]) for k, v in loaded.state_dict().items()), "LoRA is patched in"
        shared = weights_in(loaded, torch.bfloat16)
        want = {k: v.bfloat16() for k, v in file_weights.items()}
        assert all(torch.equal(v, want[k]) for k, v in shared.state_dict().items()), "copied without the LoRA"
        wide = weights_in(loaded, torch.float32)  # a graph runs the loaded weights: never widened under it
        assert wide is not loaded and {p.dtype for p in loaded.parameters()} == {torch.float16}
        assert all(torch.equal(v, file_weights[k].float()) for k, v in wide.state_dict().items())

        with_lora, plain = motion_patcher(shared, UNET), motion_patcher(weights_in(loaded, torch.bfloat16), UNET)
        assert plain.model is shared
        add_motion_loras(with_lora, [lora], "mm.ckpt")
        comfy.mm.load_models_gpu([with_lora])
        assert any(not torch.equal(v, want[k]) for k, v in shared.state_dict().items())
        comfy.mm.load_models_gpu([plain])
        assert all(torch.equal(v, want[k]) for k, v in shared.state_dict().items()), "the LoRA leaked into the copy"
    finally:
        comfy.mm.unload_all_models()
    assert all(torch.equal(v, file_weights[k]) for k, v in loaded.state_dict().items())


@pytest.mark.comfyui
@pytest.mark.parametrize("bf16_instructions", [False, True])
def test_bf16_on_a_cpu_without_bf16_instructions_warns(comfy, monkeypatch, caplog, bf16_instructions):
    from unet_helpers import SD15_UNET
    from motionkit.motion.injection import MotionSettings, apply_motion_model
    from motionkit.motion.precision import cpu_bf16_instructions
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, check, lambda: bf16_instructions)
    assert cpu_bf16_instructions() is bf16_instructions
    unet = comfy.UNetModel(**SD15_UNET, image_size=32, device="meta", operations=comfy.ops.disable_weight_init)
    patcher = comfy.ModelPatcher(FakeBase(unet), CPU, CPU)
    info, weights = classify(mf.v2(device="meta", dtype=torch.float16), "mm_sd_v15_v2.ckpt")
    loaded = build_motion_model(info, weights, "mm_sd_v15_v2.ckpt")
    with caplog.at_level("WARNING"):
        apply_motion_model(patcher, loaded, info, "mm_sd_v15_v2.ckpt", MotionSettings(), precision="bf16")
        apply_motion_model(patcher, loaded, info, "mm_sd_v15_v2.ckpt", MotionSettings(), precision="auto")
    warned = [r.getMessage() for r in caplog.records if "no bf16 instructions" in r.getMessage()]
    assert len(warned) == (0 if bf16_instructions else 1), warned
    if warned:
        assert "'mm_sd_v15_v2.ckpt'" in warned[0] and "choose precision auto" in warned[0]
