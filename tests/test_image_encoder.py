"""AnimateLCM-I2V's image encoder and how its features reach the motion modules (MOTION_FORMATS.md §4.7).

Core tests (no ComfyUI) except the placement test, which builds ComfyUI's SD1.5 UNet on the meta device.
Key names and shapes come from tests/motion_files.py (written from the spec); the math from a plain
reference below (explicit convolutions on the state dict, no code shared with motion/image_encoder.py).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import pytest
import torch
import torch.nn.functional as F

import motion_files as mf
from motionkit.motion.errors import MotionKitError
from motionkit.motion.formats import load_motion_model
from motionkit.motion.image_encoder import ImageEncoder, build_image_encoder, split_image_encoder
from reference import sinusoidal
from motion_files import tiny

SPEC_TENSORS = 38
SPEC_PARAMS = 76_827_840  # §4.7
LEVELS = (320, 640, 1280, 1280)


@functools.lru_cache(maxsize=None)
def _weights(seed, zero_output):
    return split_image_encoder(mf.image_encoder(seed=seed, zero_output=zero_output))


def encoder_weights(seed=0, zero_output=False) -> dict:
    return dict(_weights(seed, zero_output))


@functools.lru_cache(maxsize=None)
def encoder(seed=0, zero_output=False):
    return build_image_encoder(encoder_weights(seed, zero_output))


def reference_features(sd: dict, latent: torch.Tensor, frames: int, motion_scale: float) -> list[torch.Tensor]:
    """§4.7 written out: conv_in, + motion_scale·PE[frame], then per level (pool), (in_conv), 2× x + b2(relu(b1(x)))."""
    x = F.conv2d(latent, sd["conv_in.weight"], sd["conv_in.bias"], padding=1).repeat(frames, 1, 1, 1)
    pe = sinusoidal(frames, 320)
    for f in range(frames):
        x[f] += motion_scale * pe[f][:, None, None]
    features = []
    for level in range(4):
        for j in range(2):
            p = f"body.{2 * level + j}."
            if level and j == 0:
                h, w = x.shape[-2:]
                x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
                x = F.avg_pool2d(x, 2)
            if p + "in_conv.weight" in sd:
                x = F.conv2d(x, sd[p + "in_conv.weight"], sd[p + "in_conv.bias"])
            h = F.relu(F.conv2d(x, sd[p + "block1.weight"], sd[p + "block1.bias"], padding=1))
            x = x + F.conv2d(h, sd[p + "block2.weight"], sd[p + "block2.bias"])
        features.append(x)
    return features


def test_encoder_has_exactly_the_files_tensors():
    """Key set, shapes, tensor and parameter counts of the spec (§4.7) — which pins down kernel sizes and biases."""
    spec = {k[len("img_encoder."):]: shape for k, shape in mf.image_encoder_shapes().items()}
    assert len(spec) == SPEC_TENSORS and sum(math.prod(s) for s in spec.values()) == SPEC_PARAMS
    with torch.device("meta"):
        ours = ImageEncoder().state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == spec
    assert sorted(k for k in spec if "in_conv" in k) == ["body.2.in_conv.bias", "body.2.in_conv.weight",
                                                        "body.4.in_conv.bias", "body.4.in_conv.weight"]


@pytest.mark.parametrize("size, expected", [
    ((64, 64), [(64, 64), (32, 32), (16, 16), (8, 8)]),
    ((9, 7), [(9, 7), (5, 4), (3, 2), (2, 1)]),  # odd sizes round up, like the UNet's stride-2 convs
])
def test_feature_shapes(size, expected):
    with torch.device("meta"):  # shapes only
        feats = ImageEncoder()(torch.empty(1, 4, *size), frames=2)
    assert [tuple(f.shape) for f in feats] == [(2, c, *hw) for c, hw in zip(LEVELS, expected)]


@pytest.mark.parametrize("motion_scale", [0.8, 0.0, 2.5])
def test_features_equal_reference(motion_scale):
    weights = encoder_weights(seed=3)
    latent = torch.randn(1, 4, 6, 5, generator=torch.Generator().manual_seed(1))  # odd: padded pools
    with torch.no_grad():
        ours = encoder(seed=3)(latent, 3, motion_scale)
        ref = reference_features(weights, latent, 3, motion_scale)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_frames_differ_only_through_the_embedding():
    enc = encoder(seed=3)
    latent = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        same = enc(latent, 4, motion_scale=0.0)
        moving = enc(latent, 4, motion_scale=0.8)
        longer = enc(latent, 6, motion_scale=0.8)
    for f in same:
        assert torch.equal(f, f[:1].expand_as(f)), "no embedding: every frame gets the same features"
    for f in moving:
        assert (f[1:] - f[:1]).abs().amax() > 1e-3, "with the embedding, frames differ"
    for a, b in zip(moving, longer):  # frame f's embedding depends on f only, not on the clip length
        torch.testing.assert_close(a, b[:4])


def test_zero_output_weights_give_zero_features_only_without_embedding():
    """The integration test's 'zeroed' encoder: conv_in, block2 and in_conv biases zero. Features are all 0
    only when motion_scale is 0 too — the residual path carries the embedding through every level."""
    enc = encoder(zero_output=True)
    latent = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert all(torch.equal(f, torch.zeros_like(f)) for f in enc(latent, 4, motion_scale=0.0))
        assert all(f.abs().amax() > 0.1 for f in enc(latent, 4, motion_scale=0.8))


def test_i2v_file_loads_its_encoder_and_t2v_has_none(tmp_path):
    sd = tiny(mf.animatelcm_i2v(device="meta"))  # every tensor a distinct number: shows which went where
    path = tmp_path / "AnimateLCM_sd15_i2v.ckpt"
    torch.save(sd, path)
    model, info = load_motion_model(str(path))
    assert info.family == "AnimateLCM-I2V" and model.img_encoder is not None
    file_encoder = {k[len("img_encoder."):]: v for k, v in sd.items() if k.startswith("img_encoder.")}
    loaded = model.img_encoder.state_dict()
    assert set(loaded) == set(file_encoder) and all(torch.equal(loaded[k], file_encoder[k]) for k in loaded)
    t2v = tmp_path / "AnimateLCM_sd15_t2v.ckpt"
    torch.save({k: v for k, v in sd.items() if not k.startswith("img_encoder.")}, t2v)
    model, info = load_motion_model(str(t2v))
    assert info.family == "AnimateLCM" and model.img_encoder is None


@pytest.mark.parametrize("damage, phrase", [
    (lambda w: w.pop("body.5.block2.bias"), "missing 1 of 38"),
    (lambda w: w.__setitem__("body.2.in_conv.weight", torch.zeros(640, 320, 3, 3)), "body.2.in_conv.weight has shape"),
    (lambda w: w.__setitem__("body.6.in_conv.weight", torch.zeros(1280, 1280, 1, 1)), "unexpected tensor"),
])
def test_damaged_encoder_is_refused_with_the_file_name(damage, phrase):
    weights = encoder_weights()
    damage(weights)
    with pytest.raises(MotionKitError) as e:
        build_image_encoder(weights, "AnimateLCM_sd15_i2v.ckpt")
    assert "'AnimateLCM_sd15_i2v.ckpt'" in str(e.value) and phrase in str(e.value) and "download" in str(e.value)


# ---------------------------------------------------------------------------------------------
# Features in the motion modules

def small_module(seed=0):
    from motionkit.motion.model import MotionModule
    torch.manual_seed(seed)
    m = MotionModule(320)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return m.eval()


def test_module_adds_feature_to_its_input_and_scale_blends_it():
    m = small_module()
    x = torch.randn(2 * 4, 320, 4, 4)
    f = torch.randn(4, 320, 4, 4).repeat(2, 1, 1, 1)
    with torch.no_grad():
        assert torch.equal(m(x, 4, feature=torch.zeros_like(x)), m(x, 4)), "a zero feature is exactly t2v"
        full = m(x, 4, feature=f)
        torch.testing.assert_close(full, m(x + f, 4))  # original: h = h + feature; h = motion_module(h)
        half = m(x, 4, scale=0.5, feature=f)
        torch.testing.assert_close(half, x + 0.5 * (full - x))
        assert torch.equal(m(x, 4, scale=0.0, feature=f), x), "scale 0: no motion model, image included"


def fake_app(model):
    from motionkit.motion.formats import MotionModelInfo
    from motionkit.motion.injection import MotionApplication, MotionSettings
    from motionkit.motion.model import PER_FRAME
    info = MotionModelInfo("AnimateLCM-I2V", model.arch, 64, PER_FRAME, PER_FRAME, "lcm (AnimateLCM-I2V)", "original", True)
    return MotionApplication(model, info, "i2v.ckpt", MotionSettings())


def i2v_motion_model():
    """The AnimateLCM-I2V MotionModel; only the two modules of down block 0 hold real (random) weights."""
    from motionkit.motion.model import SD15_CHANNELS, MotionArchitecture, MotionModel
    with torch.device("meta"):
        model = MotionModel(MotionArchitecture(SD15_CHANNELS, has_mid=True))
    model.down_blocks[0].motion_modules[0] = small_module(1)
    model.down_blocks[0].motion_modules[1] = small_module(2)
    model.img_encoder = encoder(seed=3)
    return model


def test_features_go_to_the_second_module_of_each_down_block_for_every_chunk():
    from motionkit.motion.image_conditioning import ImageCondition
    from motionkit.motion.injection import IMAGE_FEATURES, MotionLayer

    model = i2v_motion_model()
    app = fake_app(model)
    latent = torch.randn(1, 4, 4, 4)
    cond = ImageCondition(torch.zeros(1, 32, 32, 3), None, None, 0.8, [app], latents={(4, 4): latent})
    x = torch.randn(3 * 4, 4, 4, 4)  # 3 chunks (e.g. cond, uncond, a second cond) of 4 frames
    with torch.no_grad():
        feats = cond.features_for(app, x, frames=4)
        expected = model.img_encoder(latent, 4, 0.8)
    assert list(feats) == [model.down_blocks[level].motion_modules[1] for level in range(4)]
    for level, f in enumerate(feats.values()):
        assert f.shape[0] == 12
        for chunk in range(3):
            assert torch.equal(f[chunk * 4:(chunk + 1) * 4], expected[level])
    assert len(cond.features) == 1, "computed once, then reused"

    # the motion layer adds exactly the feature mapped to its module
    module = model.down_blocks[0].motion_modules[1]
    layer = MotionLayer(module, app)
    h = torch.randn(8, 320, 4, 4)
    options = {"cond_or_uncond": [0, 1], IMAGE_FEATURES: {module: feats[module][:8]}}
    with torch.no_grad():
        assert torch.equal(layer.run(h, options), module(h, 4, feature=feats[module][:8]))
        other = MotionLayer(model.down_blocks[0].motion_modules[0], app)
        assert torch.equal(other.run(h, options), model.down_blocks[0].motion_modules[0](h, 4))


@pytest.mark.comfyui
def test_second_down_modules_sit_after_resnet_and_attention(comfy_unet_sd15):
    """In ComfyUI's SD1.5 UNet the features' modules are the last layer of input_blocks 2, 5, 8, 11:
    after that layer's ResBlock (and SpatialTransformer), before the next block — where the original adds them."""
    from motionkit.motion.injection import make_injection
    from motionkit.motion.model import SD15_CHANNELS, MotionArchitecture, MotionModel

    with torch.device("meta"):
        model = MotionModel(MotionArchitecture(SD15_CHANNELS, has_mid=True))
    injection = make_injection(fake_app(model))
    from types import SimpleNamespace
    patcher = SimpleNamespace(model=SimpleNamespace(diffusion_model=comfy_unet_sd15))
    injection.inject(patcher)
    try:
        for level, index in enumerate((2, 5, 8, 11)):
            block = comfy_unet_sd15.input_blocks[index]
            names = [type(layer).__name__ for layer in block]
            assert names == (["ResBlock", "SpatialTransformer", "MotionLayer"] if level < 3 else ["ResBlock", "MotionLayer"])
            assert block[-1].module is model.down_blocks[level].motion_modules[1]
    finally:
        injection.eject(patcher)


@pytest.fixture
def comfy_unet_sd15():
    import comfy_env
    comfy_env.comfy_on_cpu()
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from unet_helpers import SD15_UNET
    return UNetModel(**SD15_UNET, image_size=32, device="meta", operations=comfy.ops.disable_weight_init)


# ---------------------------------------------------------------------------------------------
# Errors the node gives before anything runs

class FakePatcher:
    """What find_i2v_applications reads from a ModelPatcher: its attachments and its UNet."""

    def __init__(self, apps, unet=None):
        self.attachments = {a.key: a for a in apps}
        self.unet = unet

    def get_model_object(self, name):
        assert name == "diffusion_model"
        return self.unet


def test_models_without_an_image_encoder_are_refused_with_the_fix():
    from motionkit.motion.errors import IncompatibleModelError
    from motionkit.motion.image_conditioning import find_i2v_applications

    with_encoder = fake_app(i2v_motion_model())
    t2v_model = i2v_motion_model()
    t2v_model.img_encoder = None
    t2v = fake_app(t2v_model)
    t2v.name, t2v.info = "AnimateLCM_sd15_t2v.ckpt", dataclasses.replace(t2v.info, family="AnimateLCM", has_image_encoder=False)
    assert find_i2v_applications(FakePatcher([t2v, with_encoder])) == [with_encoder]
    with pytest.raises(IncompatibleModelError) as e:
        find_i2v_applications(FakePatcher([t2v]))
    assert "'AnimateLCM_sd15_t2v.ckpt' (AnimateLCM)" in str(e.value) and "AnimateLCM_sd15_i2v.ckpt" in str(e.value)


@pytest.mark.comfyui
def test_sdxl_model_is_refused(comfy_unet_sd15):
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    import comfy.ops
    from unet_helpers import SDXL_UNET
    from motionkit.motion.errors import IncompatibleModelError
    from motionkit.motion.image_conditioning import find_i2v_applications

    sdxl = UNetModel(**SDXL_UNET, image_size=32, device="meta", operations=comfy.ops.disable_weight_init)
    with pytest.raises(IncompatibleModelError) as e:
        find_i2v_applications(FakePatcher([], sdxl))
    assert "SDXL" in str(e.value) and "SD1.5 only" in str(e.value) and "Apply Motion Model" in str(e.value)
    with pytest.raises(IncompatibleModelError) as e:
        find_i2v_applications(FakePatcher([], comfy_unet_sd15))
    assert "no motion model" in str(e.value)


@pytest.mark.parametrize("channels, ratio", [(16, 8), (4, 16), (None, None)])
def test_vaes_other_than_sd_are_refused(channels, ratio):
    from types import SimpleNamespace
    from motionkit.motion.errors import IncompatibleModelError
    from motionkit.motion.image_conditioning import check_vae

    check_vae(SimpleNamespace(latent_channels=4, downscale_ratio=8))
    with pytest.raises(IncompatibleModelError) as e:
        check_vae(SimpleNamespace(latent_channels=channels, downscale_ratio=ratio))
    assert "SD1.5 VAE" in str(e.value)
