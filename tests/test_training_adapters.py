"""Train MotionLoRA's ComfyUI path, in-process: the LoRA is core's weight adapter (comfy.weight_adapter LoraDiff) hung
on the motion layers by ModelPatcher weight wrappers, it computes exactly the published rule W + up @ down, and
training runs on an SDXL-architecture MODEL with an SDXL motion model."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

import comfy_env
import motion_files as mf
from training_helpers import TINY, tiny_motion_model

pytestmark = pytest.mark.comfyui
FRAMES = 4


@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfyui_on_syspath()
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.model_patcher
    import comfy.weight_adapter.lora
    from training import comfy_train
    return SimpleNamespace(ModelPatcher=comfy.model_patcher.ModelPatcher, LoraDiff=comfy.weight_adapter.lora.LoraDiff,
                           train=comfy_train)


def comfy_ops_motion_model(seed=0):
    """The tiny motion model on comfy.ops layers (as Load Motion Model builds it under ComfyUI), random weights."""
    from motion.injection import comfy_layers
    from motion.model import MotionModel
    ops, attention = comfy_layers()
    model = MotionModel(TINY, ops, attention)
    model.load_state_dict(tiny_motion_model(seed).state_dict())
    return model.requires_grad_(False)


def test_lora_diff_is_the_published_rule_exactly(comfy):
    """alpha = rank makes LoraDiff's scale exactly 1: its weight is bit for bit w + up @ down (fp32, then w's dtype),
    the same as the pure-torch WeightDelta; and the adapters start as diffusers' LoRALinearLayer (up 0, down N(0, 1/r))."""
    from training.lora import MotionLoRALayers, WeightDelta

    g = torch.Generator().manual_seed(0)
    up, down = torch.randn(48, 8, generator=g), torch.randn(8, 32, generator=g)
    adapter = comfy.train.lora_diff(up, down)
    assert isinstance(adapter, comfy.LoraDiff) and float(adapter.alpha / adapter.rank) == 1.0
    for dtype in (torch.float32, torch.bfloat16):
        w = torch.randn(48, 32, generator=g).to(dtype)
        expected = (w.float() + up @ down).to(dtype)
        assert torch.equal(adapter(w), expected), dtype
        assert torch.equal(WeightDelta(up, down)(w), expected), dtype

    lora = MotionLoRALayers(tiny_motion_model(), 16, torch.Generator().manual_seed(1), comfy.train.lora_diff)
    modules = len(list(tiny_motion_model().ordered_modules()))
    assert all(isinstance(a, comfy.LoraDiff) for a in lora.adapters) and len(lora.adapters) == modules * 2 * 4
    assert all(not p.any() for p in lora.up)
    downs = torch.cat([p.detach().flatten() for p in lora.down])
    assert abs(float(downs.std()) - 1 / 16) < 0.005 and abs(float(downs.mean())) < 0.005
    assert set(map(id, lora.trainable())) == set(map(id, lora.up + lora.down))  # not LoraDiff's fixed alpha


def test_motion_layers_get_the_lora_through_modelpatcher_weight_wrappers(comfy):
    motion = comfy_ops_motion_model()
    base = {k: v.clone() for k, v in motion.state_dict().items()}
    lora = comfy.train.MotionLoRALayers(motion, 4, torch.Generator().manual_seed(0), comfy.train.lora_diff)
    patcher = comfy.ModelPatcher(motion, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    with pytest.raises(Exception, match=f"did not attach the LoRA to {len(lora.names)} of"):
        comfy.train.check_lora_attached(motion, lora)        # nothing hung on the layers before loading
    comfy.train.add_lora_wrappers(patcher, lora)
    module = motion.up_blocks[1].motion_modules[2]
    x = torch.randn(2 * FRAMES, 64, 3, 3, generator=torch.Generator().manual_seed(3))
    plain = module(x, FRAMES)

    patcher.patch_model(device_to=torch.device("cpu"))     # ModelPatcher.load: weight wrappers -> weight_function
    try:
        comfy.train.check_lora_attached(motion, lora)
        assert torch.equal(module(x, FRAMES), plain)          # up = 0: exactly the base motion model
        with torch.no_grad():
            for p in lora.up:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(4))
        adapted = module(x, FRAMES)
        assert not torch.allclose(adapted, plain, atol=1e-3)  # a changed LoRA parameter changes the output
        merged = copy.deepcopy(tiny_motion_model())            # the published rule, written into plain weights
        sd = lora.state_dict_published()
        params = dict(merged.named_parameters())
        for name, path in lora.targets.items():
            params[path + ".weight"].data += sd[f"{name}_lora.up.weight"] @ sd[f"{name}_lora.down.weight"]
        torch.testing.assert_close(adapted, merged.up_blocks[1].motion_modules[2](x, FRAMES), rtol=1e-5, atol=1e-5)

        adapted.square().mean().backward()                    # gradients reach the LoRA of this module's layers
        prefix = "up_blocks.1.motion_modules.2."
        used = [a for n, a in zip(lora.names, lora.adapters) if n.startswith(prefix)]
        assert len(used) == 8 and all(float(a.lora_down.weight.grad.abs().sum()) > 0 for a in used)
        assert all(a.lora_up.weight.grad is None for n, a in zip(lora.names, lora.adapters) if not n.startswith(prefix))
    finally:
        patcher.unpatch_model()
    for key, value in motion.state_dict().items():            # the frozen weights were never written
        assert torch.equal(value, base[key]), key
