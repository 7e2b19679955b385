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
    comfy_env.comfy_on_cpu()
    import comfy.model_patcher
    import comfy.weight_adapter.lora
    from motionkit.training import comfy_train
    return SimpleNamespace(ModelPatcher=comfy.model_patcher.ModelPatcher, LoraDiff=comfy.weight_adapter.lora.LoraDiff,
                           train=comfy_train)


def comfy_ops_motion_model(seed=0):
    """The tiny motion model on comfy.ops layers (as Load Motion Model builds it under ComfyUI), random weights."""
    from motionkit.motion.injection import comfy_layers
    from motionkit.motion.model import MotionModel
    ops, attention = comfy_layers()
    model = MotionModel(TINY, ops, attention)
    model.load_state_dict(tiny_motion_model(seed).state_dict())
    return model.requires_grad_(False)


def test_lora_diff_is_the_published_rule_exactly(comfy):
    """alpha = rank makes LoraDiff's scale exactly 1: its weight is bit for bit w + up @ down (fp32, then w's dtype),
    the same as the pure-torch WeightDelta; and the adapters start as diffusers' LoRALinearLayer (up 0, down N(0, 1/r))."""
    from motionkit.training.lora import MotionLoRALayers, WeightDelta

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


# ---------------------------------------------------------------------------------------------
# SDXL

# ComfyUI's SDXL model class with the real SDXL UNet layout (3 levels of 320/640/1280 channels, attention from the
# second level on, 2048-wide cross-attention, the 2816-wide `y` vector of pooled text + size embeddings), only with
# one transformer block per attention instead of 2/10: 0.64 B instead of 2.57 B parameters. The motion model only
# sees the block layout and channels, which are SDXL's; the full-depth UNet is trained in bench/ (bench_training).
SDXL_ONE_BLOCK = dict(in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2], channel_mult=[1, 2, 4],
                      transformer_depth=[0, 0, 1, 1, 1, 1], transformer_depth_middle=1,
                      transformer_depth_output=[0, 0, 0, 1, 1, 1, 1, 1, 1], context_dim=2048, adm_in_channels=2816,
                      num_classes="sequential", use_spatial_transformer=True, use_linear_in_transformer=True,
                      legacy=False, use_temporal_attention=False, image_size=32)


def random_fill(module: torch.nn.Module, seed=0) -> None:
    """Random-looking weights, fast: slices of one shared N(0, 1) pool at random offsets, scaled like an init
    (weights 1/√fan_in, norm scales around 1, biases around 0). Drawing 0.6 B fresh values would take most of the
    test's time and proves nothing more here."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(1 << 22, generator=g)
    with torch.no_grad():
        for name, p in module.named_parameters():
            flat = p.view(-1)
            for start in range(0, flat.numel(), pool.numel()):
                n = min(pool.numel(), flat.numel() - start)
                offset = int(torch.randint(0, pool.numel() - n + 1, (1,), generator=g))
                flat[start:start + n] = pool[offset:offset + n]
            if p.dim() > 1:
                p.mul_(p[0].numel() ** -0.5)
            elif "norm" in name and name.endswith("weight"):
                p.mul_(0.02).add_(1.0)
            else:
                p.mul_(0.02)


def sdxl_model(unet_config, seed=0, dtype=torch.float32):
    """A random-weight SDXL MODEL as ComfyUI loads an SDXL checkpoint on the CPU (fp32)."""
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.SDXL(unet_config)
    config.set_inference_dtype(dtype, None if dtype == torch.float32 else torch.float32)
    with torch.inference_mode():  # as ComfyUI's loader node makes it: inference tensors, requires_grad left on
        model = config.get_model({}, device="cpu")
        random_fill(model.diffusion_model, seed)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def loaded_motion_model(name):
    """What Load Motion Model outputs for a random-weight file in the real format (the shared test-model cache):
    the motion model on comfy.ops layers, weights as in the file."""
    import model_cache
    from motionkit.motion.formats import load_motion_model
    from motionkit.motion.injection import comfy_layers
    ops, attention = comfy_layers()
    path = model_cache.cached_file(name, model_cache.MOTION_FILES[name])
    with torch.inference_mode():  # as the node runs
        model, info = load_motion_model(str(path), name, operations=ops, attention=attention)
    return SimpleNamespace(model=model, info=info, name=name)


def test_training_runs_on_sdxl_with_an_sdxl_motion_model(comfy, tmp_path):
    """Train MotionLoRA's ComfyUI path (training.comfy_train.run, what the node calls) on an SDXL MODEL with the SDXL
    beta motion model: it trains, saves the SDXL MotionLoRA layout (no mid block, 3 levels), and leaves both models
    as they were."""
    from motionkit.motion.lora import read_motion_lora
    from motionkit.training import checkpoint
    from motionkit.training.loop import TrainSettings

    model = sdxl_model(SDXL_ONE_BLOCK)
    motion = loaded_motion_model("mm_sdxl_random.safetensors")  # the SDXL beta layout (§4.4), fp16
    motion_before = {k: v.clone() for k, v in motion.model.state_dict().items() if ".attention_blocks." in k}
    unet_sample = {k: v.clone() for i, (k, v) in enumerate(model.model.diffusion_model.state_dict().items()) if i % 25 == 0}

    latents = torch.randn(FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(2))   # one 64×64 clip
    g = torch.Generator().manual_seed(3)
    caption = [[torch.randn(1, 77, 2048, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g)}]]
    path = tmp_path / "sdxl_zoom.safetensors"
    request = comfy.train.TrainRequest(rank=4, settings=TrainSettings(steps=1, learning_rate=1e-3, seed=0),
                                       gradient_checkpointing=True, save_path=str(path), frames_per_clip=FRAMES)
    with torch.inference_mode():  # as ComfyUI runs nodes
        lora, losses, step = comfy.train.run(model, motion, [latents], [caption], request)

    assert step == 1 and len(losses) == 1 and all(torch.isfinite(torch.tensor(losses)))
    assert (lora.base, lora.has_mid, lora.rank) == ("SDXL", False, 4)
    assert any(bool(v.any()) for k, v in lora.weights.items() if k.endswith("up.weight")), "the LoRA did not train"
    saved = read_motion_lora(str(path))
    expected = {k: tuple(v.shape) for k, v in mf.motion_lora(rank=4, mid=False, levels=mf.SDXL, device="meta").items()}
    assert {k: tuple(v.shape) for k, v in saved.weights.items()} == expected  # the published SDXL layout (§4.9)
    assert all(torch.equal(saved.weights[k], lora.weights[k]) for k in expected)
    assert checkpoint.read_metadata(str(path)).base == "SDXL"
    motion_after = motion.model.state_dict()
    assert all(torch.equal(motion_after[k], v) for k, v in motion_before.items())
    unet_after = model.model.diffusion_model.state_dict()
    assert all(torch.equal(unet_after[k], v) for k, v in unet_sample.items())
    assert all(p.grad is None for p in model.model.diffusion_model.parameters())  # the UNet stayed frozen


def unet_inputs(model):
    """Records what the UNet is called with (x = calculate_input(σ, x_t), the rows' σ, context), by a PyTorch forward
    pre-hook on the diffusion model; returns (records, handle)."""
    records = []

    def hook(module, args, kwargs):
        sigma = kwargs["transformer_options"]["sigmas"]
        records.append((args[0].detach().float().clone(), sigma.detach().clone(), kwargs["context"].detach().clone()))

    return records, model.model.diffusion_model.register_forward_pre_hook(hook, with_kwargs=True)



def train_recording(comfy, model, motion, latents, caption, request):
    """Trains one clip as the node does and returns what the UNet was called with (unet_inputs' records)."""
    records, handle = unet_inputs(model)
    try:
        with torch.inference_mode():
            comfy.train.run(model, motion, [latents], [caption], request)
    finally:
        handle.remove()
    return records

def test_training_noises_the_models_latents_not_the_raw_vae_latents(comfy):
    """The x0 that training noises is model.process_latent_in(VAE latents) (×0.13025 for SDXL), as the samplers and
    core's Train LoRA feed the model, and AnimateDiff's train.py (latents * 0.18215): the UNet's input equals the
    noising of exactly those latents with the step's drawn noise and σ."""
    from motionkit.training.loop import TrainSettings, draw_batch, step_generator
    from motionkit.training.objective import draw_sigmas

    model = sdxl_model(SDXL_ONE_BLOCK)
    motion = loaded_motion_model("mm_sdxl_random.safetensors")
    latents = torch.randn(FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(2)) * 5  # VAE-sized latents
    g = torch.Generator().manual_seed(3)
    caption = [[torch.randn(1, 77, 2048, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g)}]]
    request = comfy.train.TrainRequest(rank=4, settings=TrainSettings(steps=1, learning_rate=1e-3, seed=6),
                                       gradient_checkpointing=False, save_path=None, frames_per_clip=FRAMES)
    xc, sigma, _ = train_recording(comfy, model, motion, latents, caption, request)[0]

    sampling = model.get_model_object("model_sampling")  # ε-prediction: x_t = x0 + σ·ε, input x_t / √(σ² + 1)
    expected = model.model.process_latent_in(latents)
    assert not torch.allclose(expected, latents)  # SDXL's scale is 0.13025: the two spaces differ

    def unet_input(x0):  # what the UNet gets when x0 is noised with step 0's noise (training.loop's own draw) at σ
        batch = draw_batch(x0[None], 1, step_generator(6, 0), lambda n, gen: draw_sigmas(sampling, n, gen))
        return sampling.calculate_input(sigma, sampling.noise_scaling(sigma, batch.noise, batch.x0))

    torch.testing.assert_close(xc, unet_input(expected), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(xc, unet_input(latents), rtol=1e-3, atol=1e-3)


def test_caption_dropout_trains_dropped_clips_on_the_empty_caption(comfy, caplog):
    """caption_dropout (AnimateDiff's cfg_random_null_text): a clip whose caption is dropped this step is trained on
    the empty caption's conditioning (the node encodes "" with the captions' CLIP), the others on their caption; which
    ones follow the seed (training.loop's draw). Without an empty caption it warns and keeps the captions."""
    from motionkit.training.loop import TrainSettings, draw_batch, step_generator
    from motionkit.training.objective import draw_sigmas

    model = sdxl_model(SDXL_ONE_BLOCK)
    motion = loaded_motion_model("mm_sdxl_random.safetensors")
    latents = torch.randn(FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    caption = [[torch.randn(1, 77, 2048, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g)}]]
    empty = [[torch.randn(1, 77, 2048, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g)}]]
    sampling = model.get_model_object("model_sampling")
    expected = [draw_batch(latents[None], 1, step_generator(0, step), lambda n, gen: draw_sigmas(sampling, n, gen),
                           0.5).dropped[0] for step in range(2)]
    assert set(expected) == {True, False}  # seed 0 drops in one of the two steps: both cases are seen

    def contexts(empty_caption):
        request = comfy.train.TrainRequest(rank=4, settings=TrainSettings(steps=2, learning_rate=1e-3, seed=0,
                                                                          caption_dropout=0.5),
                                           gradient_checkpointing=False, save_path=None, frames_per_clip=FRAMES,
                                           empty_caption=empty_caption)
        return [r[2] for r in train_recording(comfy, model, motion, latents, caption, request)]

    seen = contexts(empty)
    assert len(seen) == 2
    for context, dropped in zip(seen, expected):
        want = (empty if dropped else caption)[0][0]
        assert torch.equal(context, want.expand(FRAMES, -1, -1)), dropped

    caplog.clear()
    with caplog.at_level("WARNING"):
        seen = contexts(None)
    assert all(torch.equal(c, caption[0][0].expand(FRAMES, -1, -1)) for c in seen)
    assert "connect the checkpoint's CLIP" in caplog.text
