"""PIA (open-mmlab/PIA): motion-strength presets, the UNet input it reads, and its files.

Oracles, written out from the paper code independently of pia/ (PIA commit 73f06d7):
* animatediff/utils/util.py: `RANGE_LIST` and `prepare_mask_coef_by_statistics` (frame f gets
  `row[|f − cond_frame|]`, the row extended with its last value); inference.py: loop = magnitude + 3,
  style transfer = −magnitude − 1;
* i2v_pipeline.__call__: mask [b, 1, F, h, w] = coef[f] everywhere, masked_image = image latent × 0.18215 on every
  frame, both duplicated for classifier-free guidance; models/unet.py: `cat([sample, mask, masked_image], dim=1)`;
  build_pipeline with a DreamBooth model: conv_in = cat(checkpoint's [:, :4], pia.ckpt's [:, 4:]), bias the
  checkpoint's.
The key fixture tests/pia_keys.json holds pia.ckpt's names and shapes from the original classes on the meta device.
A whole UNet evaluation against the original code is in the report (scratch script, not here): max rel 3e-6 fp32.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from motionkit.pia.errors import PIAError
from motionkit.pia.presets import PRESETS, MotionStrength, parse_values, strength_of

HERE = Path(__file__).resolve().parent

# the paper code's table, as published (util.py)
PAPER_RANGE_LIST = [
    [1.0, 0.9, 0.85, 0.85, 0.85, 0.8],
    [1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75],
    [1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5],
    [1.0, 0.9, 0.85, 0.85, 0.85, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.85, 0.85, 0.9, 1.0],
    [1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75, 0.75, 0.75, 0.75, 0.75, 0.78, 0.79, 0.8, 0.8, 1.0],
    [1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.8, 1.0],
    [0.5, 0.2],
    [0.5, 0.4, 0.4, 0.4, 0.35, 0.35, 0.3, 0.25, 0.2],
    [0.5, 0.4, 0.4, 0.4, 0.35, 0.3],
]


def paper_coef(video_length: int, cond_frame: int, sim_range: int) -> list[float]:
    """prepare_mask_coef_by_statistics, step by step as the original."""
    assert video_length > cond_frame
    coef = PAPER_RANGE_LIST[sim_range]
    coef = coef + [coef[-1]] * (video_length - len(coef))
    order = [abs(i - cond_frame) for i in range(video_length)]
    return [coef[order[i]] for i in range(video_length)]


def paper_row(kind: str, magnitude: int) -> int:
    """inference.py: --magnitude m, then --loop (m + 3) or --style_transfer (−m − 1)."""
    return {"animation": magnitude, "loop": magnitude + 3, "style transfer": -magnitude - 1}[kind]


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("frames,cond", [(1, 0), (8, 0), (16, 0), (16, 5), (16, 15), (24, 0), (24, 11), (32, 31)])
def test_presets_are_the_paper_codes(name, frames, cond):
    kind, size = name.split(", ")
    row = paper_row(kind, {"small motion": 0, "moderate motion": 1, "large motion": 2}[size])
    ours = strength_of(name, cond).mask_values(range(frames), frames)
    assert ours == paper_coef(frames, cond, row)


def test_a_wrong_table_value_is_seen():
    """The oracle can fail: ADE's 'Loop (Large Motion)' (a mirrored half-list) is not PIA's row 5 at 15 frames."""
    ade_loop_large = [1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5]
    ade = ade_loop_large[:7] + [ade_loop_large[7]] + list(reversed(ade_loop_large[:7]))  # ADE, odd length 15
    assert strength_of("loop, large motion").mask_values(range(15), 15) != ade
    assert strength_of("loop, large motion").mask_values(range(15), 15) == paper_coef(15, 0, 5)


def test_windows_get_their_absolute_frames_values():
    s = strength_of("animation, large motion", 2)
    assert s.mask_values([8, 9, 10, 11], 16) == paper_coef(16, 2, 2)[8:12]


def test_negative_cond_frame_counts_from_the_end_and_outside_is_refused():
    s = strength_of("animation, small motion", -1)
    assert s.mask_values(range(8), 8) == paper_coef(8, 7, 0)
    with pytest.raises(PIAError, match="frames"):
        strength_of("animation, small motion", 16).mask_values([0], 16)


def test_explicit_values_are_per_frame_and_repeat_the_last():
    s = strength_of("animation, small motion", 3, "1.0, 0.8\n0.75")
    assert s.mask_values(range(6), 6) == [1.0, 0.8, 0.75, 0.75, 0.75, 0.75]
    assert parse_values("1 ; 0.5,0.25") == (1.0, 0.5, 0.25)


@pytest.mark.parametrize("text,phrase", [("1.0, x", "not a number"), ("1.2", "outside 0 to 1"), ("nan", "outside"),
                                         (" , ", "empty")])
def test_bad_values_are_refused(text, phrase):
    with pytest.raises(PIAError, match=phrase):
        parse_values(text)


def test_unknown_preset_is_refused():
    with pytest.raises(PIAError, match="animation, small motion"):
        strength_of("huge motion")


# ---------------------------------------------------------------------------------------------
# The UNet input: [noisy latent, mask, image latent × 0.18215], as i2v_pipeline builds it

class Scale:
    @staticmethod
    def process_in(latent):
        return latent * 0.18215


def image_input(strength, latent, start_sigma=float("inf"), end_sigma=0.0, total=16):
    from motionkit.pia.apply import ImageInput
    app = SimpleNamespace(settings=SimpleNamespace(start_sigma=start_sigma, end_sigma=end_sigma))
    cond = ImageInput(torch.zeros(1, 8 * latent.shape[-2], 8 * latent.shape[-1], 3), None, Scale, strength, app)
    cond.latents[tuple(latent.shape[-2:])] = Scale.process_in(latent)
    cond.total_frames = total
    return cond


def paper_input(noisy, image_latent, coef, cfg: bool):
    """i2v_pipeline.__call__ + UNet3DConditionModel.forward's cat, back in ComfyUI's (B·F, C, h, w) rows."""
    frames, _, h, w = noisy.shape
    mask = torch.zeros(1, 1, frames, h, w)
    masked_image = torch.zeros(1, 4, frames, h, w)
    for f in range(frames):
        mask[:, :, f, :, :] = coef[f]
        masked_image[:, :, f, :, :] = image_latent.clone() * 0.18215
    sample = noisy.permute(1, 0, 2, 3)[None]
    if cfg:
        mask, masked_image, sample = (torch.cat([t] * 2) for t in (mask, masked_image, sample))
    x = torch.cat([sample, mask, masked_image], dim=1)
    return x.permute(0, 2, 1, 3, 4).reshape(-1, 9, h, w)


@pytest.mark.parametrize("cfg", [False, True])
def test_unet_input_is_the_pipelines(cfg):
    g = torch.Generator().manual_seed(0)
    noisy, latent = torch.randn(16, 4, 5, 6, generator=g), torch.randn(1, 4, 5, 6, generator=g)
    cond = image_input(strength_of("loop, moderate motion", 3), latent)
    x = torch.cat([noisy] * 2) if cfg else noisy
    options = {"cond_or_uncond": [1, 0] if cfg else [0]}
    ours = torch.cat([x, cond.concat(x, options)], dim=1)
    expected = paper_input(noisy, latent, paper_coef(16, 3, 4), cfg)
    assert torch.equal(ours, expected)
    wrong = paper_input(noisy, latent, paper_coef(16, 0, 4), cfg)  # the oracle can fail: another cond frame
    assert not torch.equal(ours, wrong)


def test_a_context_window_gets_its_frames_values():
    g = torch.Generator().manual_seed(1)
    latent = torch.randn(1, 4, 4, 4, generator=g)
    cond = image_input(strength_of("animation, large motion", 0), latent, total=24)
    x = torch.randn(16, 4, 4, 4, generator=g)  # cond + uncond of an 8-frame window
    options = {"cond_or_uncond": [0, 1], "context_window": SimpleNamespace(index_list=list(range(10, 18)))}
    extra = cond.concat(x, options)
    coef = paper_coef(24, 0, 2)[10:18]
    assert extra[:, 0, 0, 0].tolist() == pytest.approx(coef * 2)
    assert torch.equal(extra[:, 1:], (latent * 0.18215).expand(16, -1, -1, -1))


def test_outside_the_motion_models_percent_range_the_extra_channels_are_zero():
    latent = torch.randn(1, 4, 4, 4)
    cond = image_input(strength_of("animation, small motion"), latent, start_sigma=5.0, end_sigma=1.0)
    x = torch.randn(8, 4, 4, 4)
    assert cond.concat(x, {"sigmas": torch.tensor([0.5])}).abs().max() == 0
    assert cond.concat(x, {"sigmas": torch.tensor([2.0])}).abs().max() > 0


# ---------------------------------------------------------------------------------------------
# Files: pia.ckpt (the whole flat UNet) and AnimateDiff-Evolved's pruned copy

def pia_layout() -> dict[str, torch.Tensor]:
    shapes = {k: v for k, v in json.loads((HERE / "pia_keys.json").read_text()).items() if not k.startswith("_")}
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


def test_fixture_is_pia_ckpt_as_the_notes_count_it():
    sd = pia_layout()
    assert len(sd) == 1246
    assert sum("motion_modules" in k for k in sd) == 560
    assert not any(k.startswith("mid_block.motion_modules") for k in sd)
    assert tuple(sd["conv_in.weight"].shape) == (320, 9, 3, 3)


@pytest.mark.parametrize("pruned", [False, True])
def test_pia_files_are_detected(pruned):
    from motionkit.motion.formats import build_motion_model, classify
    from motionkit.motion.model import PER_FRAME, POOLED
    sd = pia_layout()
    if pruned:  # ADE keeps the "temporal" keys and conv_in (motion_module_ad.py)
        sd = {k: v for k, v in sd.items() if "temporal" in k or k.startswith("conv_in.")}
        assert len(sd) == 562
    info, weights = classify(sd, "pia.ckpt")
    assert (info.family, info.pia, info.base, info.max_frames) == ("PIA", True, "SD1.5", 32)
    assert (info.module_norm, info.unet_norm, info.schedule) == (PER_FRAME, POOLED, "sqrt_linear (AnimateDiff)")
    assert not info.arch.has_mid
    assert set(weights) == {k for k in sd if k.startswith("conv_in.") or
                            ("motion_modules" in k and not k.endswith("pos_encoder.pe"))}
    model = build_motion_model(info, weights, "pia.ckpt")
    assert tuple(model.conv_in.weight.shape) == (320, 9, 3, 3)
    assert set(model.state_dict()) == set(weights)


def test_motion_models_without_conv_in_are_not_pia():
    from motionkit.motion.formats import classify
    sd = {k: v for k, v in pia_layout().items() if "temporal" in k}
    info, weights = classify(sd, "v3_sd15_mm.ckpt")
    assert info.family == "AnimateDiff v3" and not info.pia and "conv_in.weight" not in weights


@pytest.mark.parametrize("shape,phrase", [((320, 4, 3, 3), "conv_in of shape"), ((320, 8, 3, 3), "conv_in of shape")])
def test_other_conv_ins_are_refused(shape, phrase):
    from motionkit.motion.errors import MotionKitError
    from motionkit.motion.formats import classify
    sd = pia_layout()
    sd["conv_in.weight"] = torch.empty(shape, device="meta")
    with pytest.raises(MotionKitError, match=phrase):
        classify(sd, "odd.ckpt")
    sd = pia_layout()
    del sd["conv_in.bias"]
    with pytest.raises(MotionKitError, match="conv_in.bias"):
        classify(sd, "odd.ckpt")


# ---------------------------------------------------------------------------------------------
# Bad input: PIA with an SDXL model, a MODEL without PIA

class FakePatcher:
    def __init__(self, apps, levels):
        self.attachments = {f"a{i}": a for i, a in enumerate(apps)}
        self.unet = SimpleNamespace(channel_mult=[1, 2, 4, 4][:levels])

    def get_model_object(self, name):
        return self.unet


def test_sdxl_model_is_refused():
    from motionkit.pia.apply import apply_pia_image
    with pytest.raises(PIAError, match="SDXL.*SD1.5 only"):
        apply_pia_image(FakePatcher([], 3), torch.zeros(1, 64, 64, 3), None, strength_of("animation, small motion"))


def test_model_without_pia_is_refused_with_the_fix():
    from motionkit.pia.apply import apply_pia_image
    with pytest.raises(PIAError, match="no motion model.*pia.ckpt"):
        apply_pia_image(FakePatcher([], 4), torch.zeros(1, 64, 64, 3), None, strength_of("animation, small motion"))


def test_an_image_never_encoded_names_the_node_and_the_fix():
    """PIA's and AnimateLCM-I2V's image inputs share motion.image_conditioning.EncodedImage: a UNet call before
    sampling encoded the image fails with the node's own name and error class; an encoded size is read back."""
    from motionkit.motion.errors import MotionKitError
    from motionkit.motion.image_conditioning import ImageCondition
    from motionkit.pia.apply import ImageInput
    image = torch.zeros(1, 64, 64, 3)
    pia = ImageInput(image, None, None, strength_of("animation, small motion"), None)
    with pytest.raises(PIAError, match="^Apply PIA Image: .*never encoded. Sample with KSampler"):
        pia.image_latent(8, 8)
    i2v = ImageCondition(image, None, None, 0.8, [])
    with pytest.raises(MotionKitError, match="^Apply AnimateLCM-I2V Image: .*never encoded. Sample with KSampler"):
        i2v.image_latent(8, 8)
    latent = torch.randn(1, 4, 8, 8)
    pia.latents[(8, 8)] = latent
    assert pia.image_latent(8, 8) is latent and not i2v.latents


@pytest.mark.comfyui
def test_pia_motion_model_on_an_sdxl_unet_is_refused():
    import comfy_env
    comfy_env.comfy_on_cpu()
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from unet_helpers import SDXL_UNET
    from motionkit.motion.errors import IncompatibleModelError
    from motionkit.motion.formats import build_motion_model, classify
    from motionkit.motion.injection import plan
    info, weights = classify(pia_layout(), "pia.ckpt")
    model = build_motion_model(info, weights, "pia.ckpt")
    sdxl = UNetModel(**SDXL_UNET, image_size=32, device="meta", operations=comfy.ops.disable_weight_init)
    with pytest.raises(IncompatibleModelError, match="SD1.5 motion model \\(PIA\\) but the MODEL is SDXL"):
        plan(sdxl, model, info, "pia.ckpt")


@pytest.mark.comfyui
def test_conv_in_patch_is_the_dreambooth_concatenation():
    """Core's "diff" patch with pad_weight (comfy.lora.calculate_weight) gives build_pipeline's DreamBooth conv_in."""
    import comfy_env
    comfy_env.comfy_on_cpu()
    import comfy.lora
    from motionkit.pia.apply import KEY, conv_in_diff
    g = torch.Generator().manual_seed(2)
    checkpoint, pia = torch.randn(320, 4, 3, 3, generator=g), torch.randn(320, 9, 3, 3, generator=g)
    patch = (1.0, ("diff", (conv_in_diff(pia), {"pad_weight": True, KEY: True})), 1.0, None, None)
    out = comfy.lora.calculate_weight([patch], checkpoint.clone(), "diffusion_model.input_blocks.0.0.weight")
    assert torch.equal(out, torch.cat([checkpoint, pia[:, 4:]], dim=1))


# ---------------------------------------------------------------------------------------------
# Through ComfyUI's sampling (in-process, CPU, a tiny SD1.5-shaped UNet)

TINY = dict(in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
            transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
            transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], context_dim=32, num_heads=8,
            use_spatial_transformer=True, use_linear_in_transformer=False, legacy=False, image_size=32,
            use_checkpoint=False, use_temporal_attention=False, use_temporal_resblock=False, adm_in_channels=None)


class StubVAE:
    downscale_ratio, latent_channels = 8, 4

    def __init__(self):
        self.calls = 0

    def encode(self, pixels):
        self.calls += 1
        return pixels[..., :1].movedim(-1, 1)[:, :, ::8, ::8].repeat(1, 4, 1, 1) * 2 - 1


@pytest.mark.comfyui
def test_one_sampling_run_feeds_the_unet_nine_channels_and_restores_it():
    import comfy_env
    comfy_env.comfy_on_cpu()
    import comfy.model_patcher
    import comfy.sample
    import comfy.samplers
    import comfy.supported_models
    from motionkit.motion.formats import MotionModelInfo
    from motionkit.motion.injection import MotionSettings, apply_motion_model
    from motionkit.motion.model import PER_FRAME, POOLED, MotionArchitecture, MotionModel
    from motionkit.pia.apply import apply_pia_image

    torch.manual_seed(0)
    config = comfy.supported_models.SD15(dict(TINY))
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model({}, device="cpu")
    for p in base.diffusion_model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    patcher = comfy.model_patcher.ModelPatcher(base, torch.device("cpu"), torch.device("cpu"))
    arch = MotionArchitecture((32, 64, 128, 128), False, 2)
    mm = MotionModel(arch, pia_conv_in=True).eval()
    info = MotionModelInfo("PIA", arch, 32, PER_FRAME, POOLED, "sqrt_linear (AnimateDiff)", "original", pia=True)
    m = apply_motion_model(patcher, mm, info, "pia.ckpt", MotionSettings())
    vae = StubVAE()
    seen = []
    conv = base.diffusion_model.input_blocks[0][0]
    hook = conv.register_forward_pre_hook(lambda module, args: seen.append((args[0].shape[1], module.weight.shape)))

    def run(model):
        def one_eval(model, x, sigmas, extra_args=None, callback=None, disable=None):
            return model(x, sigmas[0] * x.new_ones([x.shape[0]]), **extra_args)
        cond = [[torch.randn(1, 4, 32), {}]]
        return comfy.sample.sample_custom(model, torch.randn(8, 4, 4, 4), 2.0, comfy.samplers.KSAMPLER(one_eval),
                                          torch.tensor([3.0, 0.0]), cond, cond, torch.zeros(8, 4, 4, 4), seed=0)

    images = [torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    first = run(apply_pia_image(m, images[0], vae, strength_of("animation, small motion")))
    assert seen and all(c == 9 and tuple(w) == (32, 9, 3, 3) for c, w in seen)
    assert vae.calls == 1
    other = run(apply_pia_image(m, images[1], vae, strength_of("animation, small motion")))
    assert (first - other).abs().max() > 1e-4  # the image reaches the UNet
    seen.clear()
    run(m)  # the motion model alone: ComfyUI unpatches the PIA clone, conv_in is the checkpoint's again
    assert seen and all(c == 4 and tuple(w) == (32, 4, 3, 3) for c, w in seen)
    hook.remove()
    pia = apply_pia_image(m, images[0], vae, strength_of("animation, small motion"))
    with pytest.raises(PIAError, match="one 'Apply PIA Image' per"):
        apply_pia_image(pia, images[0], vae, strength_of("animation, small motion"))
