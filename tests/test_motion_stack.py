"""Two motion models applied to one MODEL (Apply Motion Model twice in a chain): both sets of layers go in,
in the order applied, and ejecting them (ComfyUI ejects injections in the order they were added)
restores the UNet exactly, also when both pool the UNet's norms (v1). ComfyUI's UNet on the meta device."""
import pytest

import motion_files as mf
from unet_helpers import SD15_UNET, comfy, layer_types, snapshot, unet  # noqa: F401 (comfy: fixture)

pytestmark = pytest.mark.comfyui


def inject_two(comfy, model, first, second):
    from types import SimpleNamespace

    from motionkit.motion.formats import build_motion_model, classify
    from motionkit.motion.injection import MotionApplication, MotionSettings, make_injection

    patcher = SimpleNamespace(model=SimpleNamespace(diffusion_model=model))
    apps, injections = [], []
    for name, sd in (("a.ckpt", first), ("b.ckpt", second)):
        info, weights = classify(sd, name)
        app = MotionApplication(build_motion_model(info, weights, name), info, name, MotionSettings())
        injection = make_injection(app)
        injection.inject(patcher)
        apps.append(app)
        injections.append(injection)
    return apps, injections, patcher


def test_two_v2_models_stack_in_order_everywhere_and_eject_exactly(comfy):
    from motionkit.motion.injection import MotionLayer
    model = unet(comfy, SD15_UNET)
    before = snapshot(model)
    (a, b), injections, patcher = inject_two(comfy, model, mf.v2(device="meta"), mf.v2(device="meta"))
    layers = [m for m in model.modules() if isinstance(m, MotionLayer)]
    assert len(layers) == 42 and len({id(layer) for layer in layers}) == 42
    for block in [*model.input_blocks, model.middle_block, *model.output_blocks]:
        owners = [layer.app for layer in block if isinstance(layer, MotionLayer)]
        assert owners in ([], [a, b]), f"block {layer_types(block)}: the first model's layer must come first"
    assert layer_types(model.middle_block) == ["ResBlock", "SpatialTransformer", "MotionLayer", "MotionLayer", "ResBlock"]
    assert layer_types(model.output_blocks[5]) == ["ResBlock", "SpatialTransformer", "MotionLayer", "MotionLayer",
                                                   "Upsample"]
    for injection in injections:
        injection.eject(patcher)
    assert snapshot(model) == before


def test_two_v1_models_share_the_pooled_norms_and_eject_exactly(comfy):
    from motionkit.motion.injection import FramePooledGroupNorm
    model = unet(comfy, SD15_UNET)
    before = snapshot(model)
    (a, b), injections, patcher = inject_two(comfy, model, mf.v1(device="meta"), mf.v1(device="meta"))
    pooled = [m for m in model.modules() if isinstance(m, FramePooledGroupNorm)]
    assert pooled and all(not isinstance(p.norm, FramePooledGroupNorm) for p in pooled), "norms pooled twice"
    assert all(p.contexts[0] is a.context and p.contexts[1] is b.context for p in pooled)
    for injection in injections:  # in the order added, as ModelPatcher.eject_model does
        injection.eject(patcher)
    assert snapshot(model) == before
    for injection in injections:  # and again: a second sampling run injects and ejects the same way
        injection.inject(patcher)
    assert len([m for m in model.modules() if isinstance(m, FramePooledGroupNorm)]) == len(pooled)
    for injection in reversed(injections):
        injection.eject(patcher)
    assert snapshot(model) == before
