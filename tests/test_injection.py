"""Where motion modules go in ComfyUI's own UNet classes, and that ejecting restores them exactly.

Uses ComfyUI's UNetModel on the meta device (shapes, no memory), in-process.
"""
from types import SimpleNamespace

import pytest

import motion_files as mf
from unet_helpers import SD15_UNET, SDXL_UNET, comfy, layer_types, snapshot, unet  # noqa: F401 (comfy: fixture)

pytestmark = pytest.mark.comfyui


def motion(state_dict, name):
    from motionkit.motion.formats import build_motion_model, classify
    info, weights = classify(state_dict, name)
    return build_motion_model(info, weights, name), info


def inject(comfy, unet_model, state_dict, name):
    from motionkit.motion.injection import MotionApplication, MotionSettings, make_injection
    mm, info = motion(state_dict, name)
    app = MotionApplication(mm, info, name, MotionSettings())
    patcher = SimpleNamespace(model=SimpleNamespace(diffusion_model=unet_model))
    injection = make_injection(app)
    injection.inject(patcher)
    return injection, patcher


def test_sd15_v2_placement_and_exact_eject(comfy):
    model = unet(comfy, SD15_UNET)
    before, keys = snapshot(model), list(model.state_dict())
    injection, patcher = inject(comfy, model, mf.v2(device="meta"), "v2.ckpt")
    from motionkit.motion.injection import MotionLayer
    layers = [m for m in model.modules() if isinstance(m, MotionLayer)]
    assert len(layers) == 21
    widths = [layer.module.temporal_transformer.channels for layer in layers]
    assert sorted(widths) == sorted([320] * 5 + [640] * 5 + [1280] * 11)
    for i in (1, 2, 4, 5, 7):
        assert layer_types(model.input_blocks[i])[-1] == "MotionLayer"
    assert layer_types(model.input_blocks[10]) == ["ResBlock", "MotionLayer"]  # no transformer at the deepest level
    assert layer_types(model.input_blocks[3]) == ["Downsample"]
    assert layer_types(model.middle_block) == ["ResBlock", "SpatialTransformer", "MotionLayer", "ResBlock"]
    assert layer_types(model.output_blocks[2]) == ["ResBlock", "MotionLayer", "Upsample"]
    assert layer_types(model.output_blocks[5]) == ["ResBlock", "SpatialTransformer", "MotionLayer", "Upsample"]
    assert layer_types(model.output_blocks[11]) == ["ResBlock", "SpatialTransformer", "MotionLayer"]
    # the original layers keep their names, so weight-patch key paths still resolve
    assert type(getattr(model.output_blocks[5], "2")).__name__ == "Upsample"
    injection.eject(patcher)
    assert snapshot(model) == before
    assert list(model.state_dict()) == keys


def test_v1_pools_unet_norms_and_eject_restores(comfy):
    from motionkit.motion.injection import FramePooledGroupNorm
    model = unet(comfy, SD15_UNET)
    before = snapshot(model)
    injection, patcher = inject(comfy, model, mf.v1(device="meta"), "mm_sd_v15.ckpt")
    pooled = [m for m in model.modules() if isinstance(m, FramePooledGroupNorm)]
    resblocks = [m for m in model.modules() if isinstance(m, comfy.ResBlock)]
    assert len(pooled) == 2 * len(resblocks) + 1  # in/out norms of every resnet + the output norm
    assert isinstance(model.out[0], FramePooledGroupNorm)
    injection.eject(patcher)
    assert snapshot(model) == before


def test_v2_leaves_unet_norms_per_frame(comfy):
    from motionkit.motion.injection import FramePooledGroupNorm
    model = unet(comfy, SD15_UNET)
    inject(comfy, model, mf.v2(device="meta"), "v2.ckpt")
    assert not [m for m in model.modules() if isinstance(m, FramePooledGroupNorm)]


def test_sdxl_placement(comfy):
    from motionkit.motion.injection import MotionLayer
    model = unet(comfy, SDXL_UNET)
    before = snapshot(model)
    injection, patcher = inject(comfy, model, mf.sdxl_beta(device="meta"), "mm_sdxl_v10_beta.ckpt")
    assert len([m for m in model.modules() if isinstance(m, MotionLayer)]) == 15
    assert layer_types(model.input_blocks[1]) == ["ResBlock", "MotionLayer"]
    assert layer_types(model.output_blocks[2]) == ["ResBlock", "SpatialTransformer", "MotionLayer", "Upsample"]
    assert "MotionLayer" not in layer_types(model.middle_block)
    injection.eject(patcher)
    assert snapshot(model) == before


@pytest.mark.parametrize("unet_config, state_dict, phrases", [
    (SDXL_UNET, mf.v2, ["SD1.5 motion model", "MODEL is SDXL", "load an SD1.5 checkpoint"]),
    (SD15_UNET, mf.sdxl_beta, ["SDXL motion model", "MODEL is SD1.5", "load an SDXL checkpoint"]),
    (SDXL_UNET, mf.hotshot_xl, None),
])
def test_base_model_mismatch_is_refused(comfy, unet_config, state_dict, phrases):
    from motionkit.motion.errors import IncompatibleModelError
    from motionkit.motion.injection import plan
    model = unet(comfy, unet_config)
    mm, info = motion(state_dict(device="meta"), "file.ckpt")
    if phrases is None:
        assert len(plan(model, mm, info, "file.ckpt")) == 15
        return
    with pytest.raises(IncompatibleModelError) as e:
        plan(model, mm, info, "file.ckpt")
    for phrase in phrases:
        assert phrase in str(e.value)
    assert "'file.ckpt'" in str(e.value)
