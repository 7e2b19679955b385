"""MotionLoRA (MOTION_FORMATS.md §4.9) and the v3 domain adapter (§4.10): reading, checking, and the weight math.

The file-level tests need only torch. The math tests run ComfyUI's own ModelPatcher in-process (CPU) on a
full-size SD1.5 motion model whose weights are windows of one random pool (real shapes, little memory), and
compare the patched weights with W + s·(up @ down) computed here by hand.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import comfy_env
import motion_files as mf
from motionkit.motion.errors import IncompatibleModelError, MotionKitError, WrongFileTypeError
from motionkit.motion.formats import build_motion_model, classify
from motionkit.motion.model import MotionArchitecture, MotionModel
from motionkit.motion.lora import (add_motion_loras, classify_domain_adapter, classify_motion_lora, motion_lora_key_map,
                         plan_motion_lora, read_motion_lora)

ATTN = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.{}."


def pooled(layout: dict, seed: int) -> dict:
    """Random tensors in `layout`'s shapes as views of one seeded pool (PE entries kept as they are)."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randn(1 << 24, generator=gen) * 0.05
    out = {}
    for k, v in layout.items():
        if k.endswith("pos_encoder.pe"):
            out[k] = v
            continue
        start = int(torch.randint(0, pool.numel() - v.numel(), (1,), generator=gen))
        out[k] = pool[start:start + v.numel()].view(v.shape)
    return out


def motion_model(layout, name="mm.ckpt", seed=0):
    info, weights = classify(pooled(layout, seed), name)
    return build_motion_model(info, weights, name)


def lora(seed, strength=1.0, rank=4):
    return replace(classify_motion_lora(mf.motion_lora(rank=rank, seed=seed, scale=0.1), f"lora{seed}.ckpt"),
                   strength=strength)


def weight_key(lora_key: str) -> str:
    """§4.9 by hand: strip `processor.`, `_lora`, `up.`/`down.`; to_out → to_out.0."""
    layer, proj = lora_key.split(".processor.")
    proj = proj.split("_lora.")[0]
    return f"{layer}.{'to_out.0' if proj == 'to_out' else proj}.weight"


def expected(base: dict, *loras) -> dict:
    """W + Σ s·(up @ down) per target weight."""
    out = {}
    for entry in loras:
        for k, up in entry.weights.items():
            if not k.endswith("up.weight"):
                continue
            target = weight_key(k)
            if target not in base:
                continue
            down = entry.weights[k.replace("up.weight", "down.weight")]
            out[target] = out.get(target, base[target].float()) + entry.strength * (up.float() @ down.float())
    return out


# ---------------------------------------------------------------------------------------------
# Reading and checking files (torch only)

def test_motion_lora_file_is_read_and_described(tmp_path):
    sd = mf.motion_lora(rank=8)
    path = tmp_path / "v2_lora_ZoomIn.ckpt"
    torch.save({"state_dict": sd, "animatediff_config": {"motion_lora": True}}, str(path))
    entry = read_motion_lora(str(path))
    assert (entry.name, entry.base, entry.has_mid, entry.rank, entry.strength) == ("v2_lora_ZoomIn.ckpt", "SD1.5", True, 8, 1.0)
    assert len(entry.weights) == 336  # §4.9: 21 modules × 2 attentions × 4 projections × up/down


def test_key_map_follows_the_spec_on_a_v2_model():
    layout = mf.v2(device="meta")
    key_map = motion_lora_key_map(layout)
    assert len(key_map) == 21 * 2 * 4
    assert key_map[ATTN.format(1) + "processor.to_out"] == ATTN.format(1) + "to_out.0.weight"
    assert key_map[ATTN.format(0) + "processor.to_q"] == ATTN.format(0) + "to_q.weight"
    for k in mf.motion_lora(rank=2):
        layer = k.split("_lora.")[0]
        assert key_map[layer] == weight_key(k)


def test_v3_plan_skips_the_mid_block():
    model = motion_model(mf.v3(device="meta"), "v3_sd15_mm.ckpt")
    tensors, key_map, skipped = plan_motion_lora(lora(1), model.state_dict(), model.arch, "v3_sd15_mm.ckpt")
    assert len(skipped) == 8 and all(k.startswith("mid_block.") for k in skipped)
    assert len(key_map) == 20 * 8 and len(tensors) == 20 * 16
    assert not any(k.startswith("mid_block.") for k in tensors)


@pytest.mark.parametrize("sd, phrases", [
    (mf.domain_adapter(device="cpu"), ["domain adapter", "Apply Domain Adapter", "not a MotionLoRA"]),
    (mf.v2(device="meta"), ["is a motion model", "Load Motion Model"]),
    (mf.sparsectrl_rgb(device="meta"), ["SparseCtrl"]),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320)}, ["LoRA for the SD model", "Load LoRA"]),
    ({"encoder.conv_in.weight": torch.zeros(4, 4)}, ["not a MotionLoRA", "encoder.conv_in.weight"]),
])
def test_other_files_are_refused_by_the_motion_lora_reader(sd, phrases):
    with pytest.raises(MotionKitError) as e:
        classify_motion_lora(sd, "picked.ckpt")
    assert "'picked.ckpt'" in str(e.value)
    for phrase in phrases:
        assert phrase in str(e.value)


def test_other_files_are_refused_by_the_domain_adapter_reader():
    with pytest.raises(WrongFileTypeError) as e:
        classify_domain_adapter(mf.motion_lora(rank=2), "v2_lora_PanLeft.ckpt")
    assert "MotionLoRA" in str(e.value) and "Load MotionLoRA" in str(e.value) and "'v2_lora_PanLeft.ckpt'" in str(e.value)
    with pytest.raises(WrongFileTypeError) as e:
        classify_domain_adapter(mf.v3(device="meta"), "v3_sd15_mm.ckpt")
    assert "motion model" in str(e.value)
    assert len(classify_domain_adapter(mf.domain_adapter_full(rank=2), "v3_sd15_adapter.ckpt")) == 256


def test_damaged_motion_lora_files_are_refused():
    sd = mf.motion_lora(rank=4)
    up = ATTN.format(0) + "processor.to_q_lora.up.weight"
    half = dict(sd)
    del half[up.replace("up.weight", "down.weight")]
    with pytest.raises(MotionKitError, match="only its 'up' half"):
        classify_motion_lora(half, "half.ckpt")
    bad_rank = {**sd, up: torch.zeros(320, 5)}
    with pytest.raises(MotionKitError, match="do not form a LoRA"):
        classify_motion_lora(bad_rank, "bad_rank.ckpt")
    extra = {**sd, "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight": torch.zeros(320, 320)}
    with pytest.raises(MotionKitError, match="unexpected weight"):
        classify_motion_lora(extra, "extra.ckpt")


def test_motion_lora_that_does_not_fit_the_motion_model_is_refused():
    sdxl = motion_model(mf.sdxl_beta(device="meta"), "mm_sdxl_v10_beta.ckpt")
    with pytest.raises(IncompatibleModelError) as e:
        plan_motion_lora(lora(1), sdxl.state_dict(), sdxl.arch, "mm_sdxl_v10_beta.ckpt")
    assert "for SD1.5 motion models" in str(e.value) and "SDXL motion model" in str(e.value)
    v2 = motion_model(mf.v2(device="meta"), "mm_sd_v15_v2.ckpt")
    narrow = replace(lora(2), weights=mf.motion_lora(rank=4, levels=(32, 64, 128, 128)))
    with pytest.raises(IncompatibleModelError) as e:
        plan_motion_lora(narrow, v2.state_dict(), v2.arch, "mm_sd_v15_v2.ckpt")
    assert "wrong shape" in str(e.value) and "'mm_sd_v15_v2.ckpt'" in str(e.value)


# ---------------------------------------------------------------------------------------------
# The math, through ComfyUI's own ModelPatcher (in-process, CPU)

@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.model_management
    import comfy.model_patcher  # noqa: F401
    import comfy.ops  # noqa: F401
    yield comfy
    comfy.model_management.unload_all_models()


CPU = torch.device("cpu")
UNET = SimpleNamespace(load_device=CPU, offload_device=CPU)  # what motion_patcher reads of the UNet's patcher
SMALL = (32, 64, 64, 64)  # an SD1.5-layout motion model with narrow levels: every module and key, little compute


def small_model(mid=True, seed=5):
    sd = mf.original_state_dict(SMALL, mid=mid, pe_length=32, seed=seed)
    model = MotionModel(MotionArchitecture(SMALL, has_mid=mid))
    model.load_state_dict({k: v for k, v in sd.items() if not k.endswith("pos_encoder.pe")}, strict=True)
    return model.eval().requires_grad_(False)


def small_lora(seed, strength=1.0):
    sd = mf.motion_lora(rank=4, seed=seed, scale=0.1, levels=SMALL)
    return replace(classify_motion_lora(sd, f"small_lora{seed}.ckpt"), strength=strength)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def patched_state(model, loras):
    """The motion model's parameters while ComfyUI has the LoRAs patched in; unpatched after. (ComfyUI patches by
    replacing a parameter, so the tensors returned keep the patched values.)"""
    from motionkit.motion.lora import motion_patcher
    patcher = motion_patcher(model, UNET)
    add_motion_loras(patcher, loras, "mm.ckpt")
    patcher.patch_model(device_to=CPU)
    try:
        return dict(model.named_parameters())
    finally:
        patcher.unpatch_model(device_to=CPU)


@pytest.mark.comfyui
def test_patched_weights_equal_hand_computed_lora_math(comfy):
    """On a full-size SD1.5 v2 motion model: all 168 targets change, nothing else does; the values are checked
    by hand on a sample spanning every level and projection (the key mapping of all of them is checked above)."""
    model = motion_model(mf.v2(device="meta"), "mm_sd_v15_v2.ckpt", seed=3)
    params = dict(model.named_parameters())
    a = lora(1, strength=0.8)
    targets = [weight_key(k) for k in a.weights if k.endswith("up.weight")]
    assert len(targets) == 21 * 8 and all(k in params for k in targets)
    before = {k: params[k].clone() for k in targets}
    sample = targets[::11]
    want = expected({k: params[k] for k in sample}, a)
    assert len(want) == len(sample) == 16
    got = patched_state(model, [a])
    assert all(not torch.equal(got[k], before[k]) for k in targets)
    for k in sample:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    untouched = [k for k in params if k not in before]
    assert untouched and all(got[k] is params[k] for k in untouched), "only LoRA targets may change"
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in targets), "unpatching must restore the exact weights"


@pytest.mark.comfyui
def test_two_loras_compose_as_the_sum_of_their_deltas_in_any_order(comfy):
    model = small_model()
    before = state(model)
    a, b = small_lora(1, strength=0.8), small_lora(2, strength=0.5)
    ab, ba = patched_state(model, [a, b]), patched_state(model, [b, a])
    only_a = patched_state(model, [a])
    want = expected(before, a, b)
    for k in want:
        torch.testing.assert_close(ab[k], want[k], rtol=0, atol=1e-6)
        torch.testing.assert_close(ba[k], ab[k], rtol=0, atol=1e-6)
    assert any(not torch.allclose(ab[k], only_a[k], atol=1e-6) for k in want), "the second LoRA must count"


@pytest.mark.comfyui
def test_strength_zero_equals_no_lora(comfy):
    model = small_model()
    before = state(model)
    zero = patched_state(model, [small_lora(1, strength=0.0)])
    assert all(torch.equal(zero[k], before[k]) for k in before)
    with_zero = patched_state(model, [small_lora(1, strength=0.0), small_lora(2, strength=0.5)])
    only_b = patched_state(model, [small_lora(2, strength=0.5)])
    assert all(torch.equal(with_zero[k], only_b[k]) for k in before)
    assert any(not torch.equal(only_b[k], before[k]) for k in before)


@pytest.mark.comfyui
def test_v3_model_skips_mid_block_keys_and_says_so(comfy, caplog):
    model = small_model(mid=False)  # the v3 layout: no mid block
    before = state(model)
    a = small_lora(1)
    assert a.has_mid
    with caplog.at_level(logging.INFO):
        got = patched_state(model, [a])
    assert any("no mid block" in r.getMessage() and "8 mid_block layers" in r.getMessage() and "small_lora1.ckpt" in r.getMessage()
               for r in caplog.records), caplog.text
    want = expected(before, a)
    assert len(want) == 20 * 8
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    assert not any("lora key not loaded" in r.getMessage() for r in caplog.records)


@pytest.mark.comfyui
def test_graphs_sharing_a_motion_model_each_get_their_own_weights(comfy):
    """Two clones of the shared motion model (one with a LoRA) loaded alternately through ComfyUI's model
    management: loading the plain one restores the exact loaded weights; a dtype copy made while the LoRA is
    in place copies the weights as loaded."""
    import comfy.model_management as mm
    from motionkit.motion.lora import motion_patcher, unpatched_copy
    shared = small_model()
    before = state(shared)
    a = small_lora(1, strength=0.8)
    with_lora, plain = motion_patcher(shared, UNET), motion_patcher(shared, UNET)
    add_motion_loras(with_lora, [a], "mm.ckpt")
    want = expected(before, a)
    key = next(iter(want))
    try:
        mm.load_models_gpu([with_lora])
        torch.testing.assert_close(shared.state_dict()[key], want[key], rtol=0, atol=1e-6)
        half = unpatched_copy(shared, torch.float16)
        assert all(torch.equal(v, before[k].half()) for k, v in half.state_dict().items())
        mm.load_models_gpu([plain])
        assert all(torch.equal(v, before[k]) for k, v in shared.state_dict().items())
        mm.load_models_gpu([with_lora])
        torch.testing.assert_close(shared.state_dict()[key], want[key], rtol=0, atol=1e-6)
    finally:
        mm.unload_all_models()
    assert all(torch.equal(v, before[k]) for k, v in shared.state_dict().items())


@pytest.mark.comfyui
@pytest.mark.parametrize("unet, fits", [("SD15_UNET", True), ("SDXL_UNET", False)])
def test_domain_adapter_must_fit_the_model(comfy, unet, fits):
    """ComfyUI's own key map for the UNet (meta device): all 128 adapter layers land on SD1.5 weights of their
    shapes; on SDXL some names exist (640-wide blocks) but the adapter does not fit, which must be refused."""
    import comfy.lora
    import unet_helpers
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from motionkit.motion.lora import check_adapter_fits
    config = getattr(unet_helpers, unet)
    model = UNetModel(**config, image_size=32, device="meta", operations=comfy.ops.disable_weight_init)
    sd = {f"diffusion_model.{k}": v for k, v in model.state_dict().items()}
    key_map = comfy.lora.model_lora_keys_unet(SimpleNamespace(state_dict=lambda: sd, model_config=SimpleNamespace(unet_config=config)), {})
    adapter = classify_domain_adapter(mf.domain_adapter_full(rank=2), "v3_sd15_adapter.ckpt")
    if fits:
        check_adapter_fits(adapter, key_map, sd, "v3_sd15_adapter.ckpt", "SD15")
        return
    with pytest.raises(IncompatibleModelError) as e:
        check_adapter_fits(adapter, key_map, sd, "v3_sd15_adapter.ckpt", "SDXL")
    assert "'v3_sd15_adapter.ckpt' does not fit this MODEL (SDXL)" in str(e.value) and "SD1.5" in str(e.value)
    with pytest.raises(IncompatibleModelError, match="matches no weight of this MODEL"):  # e.g. a DiT model: no such names
        check_adapter_fits(adapter, {}, sd, "v3_sd15_adapter.ckpt", "Flux")
