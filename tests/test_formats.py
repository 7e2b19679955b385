"""Reading the published motion-model files: detection, loading, conversions, errors (MOTION_FORMATS.md §1, §3-§7,
§9, §10). No ComfyUI.

Layouts come from tests/motion_files.py (written from the spec). Detection runs on `device="meta"` dicts; files on
disk are either real SDXL-size weights (where values and dtypes matter) or "tiny" pickles whose tensors are
stride-0 views of one number each: full shapes, a few KB on disk.
"""
from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import motion_files as mf
from motion_files import tiny
from motionkit.motion.errors import MotionKitError, WrongFileTypeError
from motionkit.motion.formats import build_motion_model, classify, load_motion_model
from motionkit.motion.model import PER_FRAME, POOLED
from reference import sinusoidal
from motionkit.sampling.schedules import SCHEDULES

INVENTORY = Path(__file__).resolve().parent.parent.parent / "shared" / "orig_keys_sd15.json"


# ---------------------------------------------------------------------------------------------
# Helpers

def is_pe(key: str) -> bool:
    return key.endswith(("pos_encoder.pe", "pos_encoder.positional_encoding", "pos_embed.pe"))


@functools.lru_cache(maxsize=None)
def pe_table(length: int, channels: int) -> torch.Tensor:
    return sinusoidal(length, channels)[None]


def random_weights(layout: dict, seed: int, dtype=torch.float16) -> dict:
    """Real random tensors in `layout`'s shapes, fast: each is a random window of one seeded normal pool, scaled
    like motion_files (matrices 1/sqrt(fan_in), norms 1 ± 0.1, biases 0.02). PE entries get the sinusoidal table
    and draw nothing, so two layouts that differ only in names (and PE) get the same values from the same seed."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.empty(1 << 25, dtype=dtype).normal_(generator=gen)
    out = {}
    for k, m in layout.items():
        if is_pe(k):
            out[k] = pe_table(m.shape[1], m.shape[2]).to(dtype)
            continue
        start = int(torch.randint(0, pool.numel() - m.numel(), (1,), generator=gen))
        t = pool[start:start + m.numel()].view(m.shape)
        if k.endswith("bias"):
            out[k] = t * 0.02
        elif m.dim() == 1:
            out[k] = t * 0.1 + 1.0
        else:
            out[k] = t * m.shape[-1] ** -0.5
    return out


def write(path: Path, payload) -> str:
    if path.suffix == ".safetensors":
        save_file(payload, str(path))
    else:
        torch.save(payload, str(path))
    return str(path)


def assert_actionable(error: Exception, name: str, *hints: str) -> str:
    """The message names the file and contains each hint (what the user should do), case-insensitively."""
    msg = str(error)
    assert name in msg, f"file name {name!r} missing from: {msg}"
    for hint in hints:
        assert hint.lower() in msg.lower(), f"{hint!r} missing from: {msg}"
    return msg


# ---------------------------------------------------------------------------------------------
# Detection of every published format (§4, §5, §7, §8, §9), from spec-built layouts

@dataclass(frozen=True)
class Expected:
    layout: object            # motion_files builder
    family: str
    base: str
    max_frames: int
    has_mid: bool
    module_norm: str
    unet_norm: str
    schedule: tuple           # (ldm beta_schedule, linear_start, linear_end, lcm_steps) per §9
    params: int               # §1 / §4
    source: str = "original"
    image_encoder: bool = False


AD_SD15 = ("sqrt_linear", 0.00085, 0.012, None)  # diffusers "linear" 0.00085→0.012
FORMATS = {
    "v1": Expected(mf.v1, "AnimateDiff v1", "SD1.5", 24, False, PER_FRAME, POOLED, AD_SD15, 417_137_600),
    "v2": Expected(mf.v2, "AnimateDiff v2", "SD1.5", 32, True, PER_FRAME, PER_FRAME, AD_SD15, 453_209_280),
    "v3": Expected(mf.v3, "AnimateDiff v3", "SD1.5", 32, False, PER_FRAME, PER_FRAME, AD_SD15, 417_137_600),
    "sdxl_beta": Expected(mf.sdxl_beta, "AnimateDiff-SDXL beta", "SDXL", 32, False, POOLED, PER_FRAME,
                          ("linear", 0.00085, 0.020, None), 236_779_200),
    "hotshot_xl": Expected(mf.hotshot_xl, "Hotshot-XL", "SDXL", 24, False, PER_FRAME, POOLED,
                           ("linear", 0.00085, 0.012, None), 236_779_200, source="hotshot"),
    "animatelcm": Expected(mf.animatelcm, "AnimateLCM", "SD1.5", 64, True, PER_FRAME, PER_FRAME,
                           ("sqrt_linear", 0.00085, 0.012, 100), 453_209_280),
    "animatelcm_i2v": Expected(mf.animatelcm_i2v, "AnimateLCM-I2V", "SD1.5", 64, True, PER_FRAME, PER_FRAME,
                               ("sqrt_linear", 0.00085, 0.014, 200), 453_209_280, image_encoder=True),
    # Lightning is a distilled v2 (§4.8): same architecture, treated as v2
    "lightning_diffusers": Expected(mf.lightning_diffusers, "AnimateDiff v2 (diffusers format)", "SD1.5", 32, True,
                                    PER_FRAME, PER_FRAME, AD_SD15, 453_209_280, source="diffusers"),
    "lightning_comfyui": Expected(mf.lightning_comfyui, "AnimateDiff v2", "SD1.5", 32, True, PER_FRAME, PER_FRAME,
                                  AD_SD15, 453_209_280),
}

# §3: module widths in UNet execution order (down, mid, up — up blocks reversed)
SD15_ORDER = [320, 320, 640, 640, 1280, 1280, 1280, 1280] + [1280] * 6 + [640] * 3 + [320] * 3
SDXL_ORDER = [320, 320, 640, 640, 1280, 1280] + [1280] * 3 + [640] * 3 + [320] * 3


def check_info(info, exp: Expected):
    assert info.family == exp.family
    assert info.base == exp.base
    assert info.max_frames == exp.max_frames
    assert info.arch.has_mid == exp.has_mid
    assert info.arch.attention_blocks == 2
    assert (info.module_norm, info.unet_norm) == (exp.module_norm, exp.unet_norm)
    assert info.source_format == exp.source
    assert info.has_image_encoder == exp.image_encoder
    assert info.schedule in SCHEDULES, f"{info.schedule!r} is not a schedule sampling/schedules.py offers"
    s = SCHEDULES[info.schedule]
    assert (s.beta_schedule, s.linear_start, s.linear_end, s.lcm_steps) == exp.schedule, info.schedule


def check_model(model, exp: Expected):
    chans = [m.temporal_transformer.channels for _, _, m in model.ordered_modules()]
    order = SD15_ORDER if exp.base == "SD1.5" else SDXL_ORDER
    if exp.base == "SD1.5" and exp.has_mid:
        order = order[:8] + [1280] + order[8:]
    assert chans == order
    for _, _, m in model.ordered_modules():  # §1: 22·C² + 21·C per module
        c = m.temporal_transformer.channels
        assert sum(p.numel() for p in m.parameters()) == 22 * c * c + 21 * c
    # the motion modules; an AnimateLCM-I2V image encoder (model.img_encoder) is checked in test_image_encoder.py
    assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith("img_encoder.")) == exp.params


@pytest.mark.parametrize("fmt", FORMATS)
def test_detects_published_format(fmt):
    exp = FORMATS[fmt]
    sd = exp.layout(device="meta")
    info, weights = classify(sd, f"{fmt}.ckpt")
    check_info(info, exp)
    # every returned weight is a motion-module tensor under original names; PE and img_encoder are not weights
    assert all(".temporal_transformer." in k and not is_pe(k) for k in weights)
    assert sum(v.numel() for v in weights.values()) == exp.params
    model = build_motion_model(info, weights, f"{fmt}.ckpt")
    check_model(model, exp)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_loads_from_a_file(fmt, tmp_path):
    """The same detection through load_motion_model (read, unwrap, classify, build) on a tiny full-layout pickle."""
    exp = FORMATS[fmt]
    path = write(tmp_path / f"{fmt}.ckpt", {"state_dict": tiny(exp.layout(device="meta"))})
    assert os.path.getsize(path) < 2_000_000
    model, info = load_motion_model(path)
    check_info(info, exp)
    check_model(model, exp)
    assert (model.img_encoder is not None) == exp.image_encoder


def test_diffusers_names_map_back_exactly():
    """§6 inverse rename: each original key gets exactly the tensor stored under its diffusers name."""
    for original in (mf.v2(device="meta"), mf.sdxl_beta(device="meta")):
        diffusers = mf.to_diffusers(original)  # same tensor objects, renamed
        assert not any("temporal_transformer" in k or "attention_blocks" in k for k in diffusers)
        _, weights = classify(diffusers)
        expected = {k: v for k, v in original.items() if not is_pe(k)}
        assert set(weights) == set(expected)
        assert all(weights[k] is expected[k] for k in expected)


def test_spec_layouts_equal_the_original_code_inventory():
    """orig_keys_sd15.json lists every key and shape the original code produces (§4.1-4.3)."""
    if not INVENTORY.is_file():
        pytest.skip(f"shared inventory {INVENTORY} not found (the shared folder sits beside the clone as ../shared)")
    inventory = json.loads(INVENTORY.read_text())
    builders = {"v1": (mf.v1, 560, "AnimateDiff v1"), "v2": (mf.v2, 588, "AnimateDiff v2"),
                "v3": (mf.v3, 560, "AnimateDiff v3")}
    assert sorted(name.split()[0] for name in inventory) == sorted(builders)
    for name, keys in inventory.items():
        build, count, family = builders[name.split()[0]]
        ours = {k: list(v.shape) for k, v in build(device="meta").items()}
        assert len(keys) == count
        assert set(ours) == set(keys), (name, sorted(set(ours) ^ set(keys))[:5])
        assert ours == keys, name
        # and the inventory itself is detected as that model
        as_meta = {k: torch.empty(shape, device="meta") for k, shape in keys.items()}
        assert classify(as_meta, name)[0].family == family


# ---------------------------------------------------------------------------------------------
# Real files: values and dtypes survive (§10)

@pytest.fixture(scope="module")
def sdxl_weights():
    return random_weights(mf.sdxl_beta(device="meta"), seed=11, dtype=torch.float16)


@pytest.fixture(scope="module")
def sdxl_safetensors(sdxl_weights, tmp_path_factory):
    return write(tmp_path_factory.mktemp("files") / "mm_sdxl_v10_beta.safetensors", sdxl_weights)


def assert_same_weights(model, weights: dict, dtype):
    loaded = model.state_dict()
    expected = {k: v for k, v in weights.items() if not is_pe(k)}
    assert set(loaded) == set(expected)
    for k, v in expected.items():
        assert loaded[k].dtype == dtype, k
        assert torch.equal(loaded[k], v), k


CONFIG = {"motion_module_type": "Vanilla", "temporal_position_encoding_max_len": 32}  # a plain-data extra entry


@pytest.mark.parametrize("packing", ["safetensors fp16", "ckpt bf16 wrapped", "ckpt fp16 flat"])
def test_real_file_round_trip(packing, sdxl_weights, sdxl_safetensors, tmp_path):
    if packing == "safetensors fp16":
        path, weights, dtype = sdxl_safetensors, sdxl_weights, torch.float16
    elif packing == "ckpt bf16 wrapped":
        dtype = torch.bfloat16
        weights = {k: v.to(dtype) for k, v in sdxl_weights.items()}
        path = write(tmp_path / "mm_sdxl_v10_beta.ckpt", {"state_dict": {**weights, "animatediff_config": CONFIG}})
    else:
        weights, dtype = sdxl_weights, torch.float16
        path = write(tmp_path / "mm_sdxl_v10_beta.ckpt", {**weights, "animatediff_config": CONFIG})
    model, info = load_motion_model(path)
    assert info.family == "AnimateDiff-SDXL beta" and info.max_frames == 32
    assert_same_weights(model, weights, dtype)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("kind", ["hotshot", "diffusers"])
def test_converted_files_load_to_the_original_weights(kind, tmp_path):
    """Hotshot-XL (§4.5) and diffusers-format (§6) files hold the same tensors as an original-format file."""
    seed = 5
    if kind == "hotshot":
        layout, name, pe_length = mf.hotshot_xl(device="meta"), "hsxl_temporal_layers.f16.safetensors", 24
        assert all("temporal_attentions." in k for k in layout)
    else:
        layout, name, pe_length = mf.to_diffusers(mf.sdxl_beta(device="meta")), "mm_sdxl_diffusers.safetensors", 32
        assert not any("temporal_transformer" in k for k in layout)
    original = random_weights(mf.original_state_dict(mf.SDXL, mid=False, pe_length=pe_length, device="meta"), seed)
    model, info = load_motion_model(write(tmp_path / name, random_weights(layout, seed)))
    assert info.source_format == kind and info.max_frames == pe_length
    assert_same_weights(model, original, torch.float16)


# ---------------------------------------------------------------------------------------------
# Files that are not (loadable) motion models: right error type, names the file, says what to do

def test_motion_lora_is_refused(tmp_path):
    sd = {**tiny(mf.motion_lora(rank=4)), "animatediff_config": CONFIG}
    with pytest.raises(WrongFileTypeError) as e:
        load_motion_model(write(tmp_path / "v2_lora_ZoomIn.ckpt", sd))
    assert_actionable(e.value, "v2_lora_ZoomIn.ckpt", "MotionLoRA", "MotionLoRA loader")


def test_domain_adapter_is_refused(tmp_path):
    with pytest.raises(WrongFileTypeError) as e:
        load_motion_model(write(tmp_path / "v3_sd15_adapter.ckpt", {"state_dict": tiny(mf.domain_adapter())}))
    assert_actionable(e.value, "v3_sd15_adapter.ckpt", "domain adapter", "LoraLoaderModelOnly")


@pytest.mark.parametrize("variant", ["rgb", "scribble"])
def test_sparsectrl_is_refused(variant, tmp_path):
    sd = mf.sparsectrl_rgb(device="meta")
    if variant == "scribble":  # §4.11: conv_in → blocks → conv_out instead of one conv
        del sd["controlnet_cond_embedding.weight"]
        sd["controlnet_cond_embedding.conv_in.weight"] = torch.empty((16, 4, 3, 3), device="meta")
        sd["controlnet_cond_embedding.conv_out.weight"] = torch.empty((320, 256, 3, 3), device="meta")
    name = f"v3_sd15_sparsectrl_{variant}.ckpt"
    with pytest.raises(WrongFileTypeError) as e:
        load_motion_model(write(tmp_path / name, {"controlnet": tiny(sd)}))
    assert_actionable(e.value, name, "SparseCtrl", "Load SparseCtrl")


def test_sd_checkpoint_is_refused(tmp_path):
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
          "model.diffusion_model.input_blocks.1.1.proj_in.weight": torch.zeros(320, 320, 1, 1),
          "first_stage_model.decoder.conv_out.weight": torch.zeros(3, 128, 3, 3),
          "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(768)}
    with pytest.raises(WrongFileTypeError) as e:
        load_motion_model(write(tmp_path / "v1-5-pruned-emaonly.ckpt", {"state_dict": sd, "global_step": 840000}))
    assert_actionable(e.value, "v1-5-pruned-emaonly.ckpt", "Stable Diffusion checkpoint", "Load Checkpoint")


def test_kohya_lora_is_refused(tmp_path):
    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    sd = {f"{base}.lora_down.weight": torch.zeros(64, 320), f"{base}.lora_up.weight": torch.zeros(320, 64),
          f"{base}.alpha": torch.tensor(64.0)}
    with pytest.raises(WrongFileTypeError) as e:
        load_motion_model(write(tmp_path / "AnimateLCM_sd15_t2v_lora.safetensors", sd))
    assert_actionable(e.value, "AnimateLCM_sd15_t2v_lora.safetensors", "LoRA", "Load LoRA")


def test_unknown_file_lists_the_key_patterns_it_saw(tmp_path):
    sd = {f"encoder.down.{i}.block.{j}.conv1.weight": torch.zeros(8, 8, 3, 3) for i in range(4) for j in range(2)}
    sd.update({f"decoder.up.{i}.block.0.conv1.weight": torch.zeros(8, 8, 3, 3) for i in range(3)})
    with pytest.raises(MotionKitError) as e:
        load_motion_model(write(tmp_path / "vae-ft-mse-840000.safetensors", sd))
    msg = assert_actionable(e.value, "vae-ft-mse-840000.safetensors", "choose")
    assert "encoder.down.N.block" in msg and "decoder.up.N.block" in msg, msg


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_truncated_file_says_download_again(suffix, sdxl_safetensors, tmp_path):
    if suffix == ".safetensors":
        full = Path(sdxl_safetensors).read_bytes()  # a real 473 MB motion model
    else:
        full = Path(write(tmp_path / "whole.ckpt", tiny(mf.v3(device="meta")))).read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(MotionKitError) as e:
        load_motion_model(str(path))
    assert_actionable(e.value, path.name, "download it again")


@pytest.mark.parametrize("content", [b"<!DOCTYPE html><html><body>404 Not Found</body></html>", os.urandom(4096)],
                         ids=["html page", "random bytes"])
def test_garbage_ckpt_says_download_again(content, tmp_path):
    path = tmp_path / "mm_sd_v15_v2.ckpt"
    path.write_bytes(content)
    with pytest.raises(MotionKitError) as e:
        load_motion_model(str(path))
    assert_actionable(e.value, "mm_sd_v15_v2.ckpt", "download it again")


def test_missing_weight_says_incomplete(tmp_path):
    sd = tiny(mf.v2(device="meta"))
    dropped = "mid_block.motion_modules.0.temporal_transformer.proj_out.bias"
    del sd[dropped]
    with pytest.raises(MotionKitError) as e:
        load_motion_model(write(tmp_path / "mm_sd_v15_v2.ckpt", sd))
    msg = assert_actionable(e.value, "mm_sd_v15_v2.ckpt", "incomplete", "download it again")
    assert dropped in msg


def test_missing_attention_weights_say_incomplete(tmp_path):
    sd = {k: v for k, v in tiny(mf.v3(device="meta")).items() if ".attention_blocks." not in k}
    with pytest.raises(MotionKitError) as e:
        load_motion_model(write(tmp_path / "v3_sd15_mm.ckpt", sd))
    assert_actionable(e.value, "v3_sd15_mm.ckpt", "incomplete", "download it again")


def test_wrong_shape_names_the_weight(tmp_path):
    sd = tiny(mf.v2(device="meta"))
    key = "up_blocks.1.motion_modules.2.temporal_transformer.transformer_blocks.0.ff.net.2.weight"
    assert sd[key].shape == (1280, 5120)
    sd[key] = torch.zeros(1280, 2560)
    with pytest.raises(MotionKitError) as e:
        load_motion_model(write(tmp_path / "mm_sd_v15_v2.ckpt", sd))
    msg = assert_actionable(e.value, "mm_sd_v15_v2.ckpt", "choose")
    assert key in msg and "(1280, 2560)" in msg and "(1280, 5120)" in msg, msg


def test_sdxl_layout_without_positional_encoding_is_refused(tmp_path):
    sd = tiny(mf.original_state_dict(mf.SDXL, mid=False, pe_length=None, device="meta"))
    with pytest.raises(MotionKitError) as e:
        load_motion_model(write(tmp_path / "mm_sdxl.ckpt", sd))
    assert_actionable(e.value, "mm_sdxl.ckpt", "choose")


def test_not_a_dictionary_is_refused(tmp_path):
    with pytest.raises(MotionKitError) as e:
        load_motion_model(write(tmp_path / "list.ckpt", [torch.zeros(3)]))
    assert_actionable(e.value, "list.ckpt", "choose")


def test_nonexistent_path(tmp_path):
    with pytest.raises(MotionKitError) as e:
        load_motion_model(str(tmp_path / "mm_sd_v15_v3.ckpt"))
    assert_actionable(e.value, "mm_sd_v15_v3.ckpt", "does not exist", "animatediff_models")


# Weights-only loading (§10): a pickle that needs code to rebuild is refused, and the code never runs.

class NotWeights:
    """An arbitrary object of this test module (unpickling it would import and instantiate test code)."""

    def __init__(self):
        self.setting = 1


class RunsCode:
    """Unpickling calls os.makedirs(marker): proof of execution if the directory appears."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("payload", ["class instance", "reduce runs code"])
def test_pickle_with_python_objects_is_refused_not_run(payload, zipfile, tmp_path):
    marker = tmp_path / "code_ran"
    extra = NotWeights() if payload == "class instance" else RunsCode(str(marker))
    sd = {**tiny(mf.v3(device="meta")), "animatediff_config": extra}
    path = tmp_path / "v3_sd15_mm.ckpt"
    torch.save(sd, str(path), _use_new_zipfile_serialization=zipfile)
    with pytest.raises(MotionKitError) as e:
        load_motion_model(str(path))
    assert not marker.exists(), "unpickling ran code from the file"
    assert_actionable(e.value, "v3_sd15_mm.ckpt", "download")


@pytest.mark.parametrize("fmt, dtype, words", [
    ("v2", torch.float16, ["AnimateDiff v2 for SD1.5", "PE length 32 frames", "schedule sqrt_linear", "float16"]),
    ("sdxl_beta", torch.float32, ["AnimateDiff-SDXL beta for SDXL", "PE length 32", "float32"]),
    ("animatelcm_i2v", torch.float32, ["AnimateLCM-I2V", "PE length 64", "with image encoder"]),
])
def test_loading_logs_one_line_saying_what_was_detected(fmt, dtype, words, tmp_path, caplog):
    exp = FORMATS[fmt]
    layout = {k: v.to(dtype) for k, v in exp.layout(device="meta").items()}
    path = write(tmp_path / f"{fmt}_file.ckpt", {"state_dict": tiny(layout)})
    with caplog.at_level(logging.INFO, logger="MotionKit"):
        _, info = load_motion_model(path)
    lines = [r.getMessage() for r in caplog.records if r.name == "MotionKit"]
    assert len(lines) == 1, lines
    assert f"{fmt}_file.ckpt" in lines[0] and info.schedule in lines[0]
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
