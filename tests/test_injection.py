"""Where motion modules go in ComfyUI's own UNet classes, and that ejecting restores them exactly.

Uses ComfyUI's UNetModel on the meta device (shapes, no memory), in-process.
"""
from types import SimpleNamespace

import pytest

import comfy_env
import motion_files as mf

pytestmark = pytest.mark.comfyui

SD15_UNET = dict(in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                 channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], context_dim=768, num_heads=8,
                 use_spatial_transformer=True, use_linear_in_transformer=False, legacy=False)
SDXL_UNET = dict(in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2], channel_mult=[1, 2, 4],
                 transformer_depth=[0, 0, 2, 2, 10, 10], transformer_depth_middle=10,
                 transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], context_dim=2048, num_head_channels=64,
                 adm_in_channels=2816, num_classes="sequential", use_spatial_transformer=True,
                 use_linear_in_transformer=True, legacy=False)


@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfyui_on_syspath()
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.ops
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, UNetModel, Upsample
    return SimpleNamespace(ops=comfy.ops, UNetModel=UNetModel, ResBlock=ResBlock, Upsample=Upsample,
                           SpatialTransformer=SpatialTransformer)


def unet(comfy, config):
    return comfy.UNetModel(**config, image_size=32, device="meta", operations=comfy.ops.disable_weight_init)


def motion(state_dict, name):
    from motionkit.motion.formats import build_motion_model, classify
    info, weights = classify(state_dict, name)
    return build_motion_model(info, weights, name), info


def snapshot(model):
    return {name: (list(m._modules.items())) for name, m in model.named_modules()}


def inject(comfy, unet_model, state_dict, name):
    from motionkit.motion.injection import MotionApplication, MotionSettings, make_injection
    mm, info = motion(state_dict, name)
    app = MotionApplication(mm, info, name, MotionSettings())
    patcher = SimpleNamespace(model=SimpleNamespace(diffusion_model=unet_model))
    injection = make_injection(app)
    injection.inject(patcher)
    return injection, patcher


def layer_types(block):
    return [type(layer).__name__ for layer in block]


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
