"""CogVideoX-5B transformer against diffusers 0.42.1's CogVideoXTransformer3DModel (the oracle), its files, and its
ComfyUI model (schedule against diffusers' CogVideoXDPMScheduler, apply_model against the v-prediction formula)."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from einops import rearrange

from motionkit.cogvideox import files
from motionkit.cogvideox.errors import CogVideoXFileError, WrongCogVideoXModelError
from motionkit.cogvideox.model import CogVideoXConfig, CogVideoXTransformer

diffusers = pytest.importorskip("diffusers", reason="the oracle is diffusers 0.42.1 (tests/requirements.txt)")
from diffusers import CogVideoXTransformer3DModel  # noqa: E402
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline  # noqa: E402

# Tiny, with the RoPE's base grid (sample 6×6 latents → 3×3 patches) smaller than, and shaped unlike, the 4×5 grid
# of the 8×10 test latents: the crop region is 2×3 and the positions are fractional.
TINY = dict(num_attention_heads=2, attention_head_dim=16, in_channels=16, out_channels=16, time_embed_dim=16,
            text_embed_dim=8, num_layers=2, sample_width=6, sample_height=6, sample_frames=9, patch_size=2,
            max_text_seq_length=5, use_rotary_positional_embeddings=True)
FRAMES, HEIGHT, WIDTH, TEXT = 3, 8, 10, 5

# THUDM/CogVideoX-5b transformer/config.json (the fields that differ from diffusers' defaults, and the rest)
PUBLISHED_5B = dict(activation_fn="gelu-approximate", attention_bias=True, attention_head_dim=64, dropout=0.0,
                    flip_sin_to_cos=True, freq_shift=0, in_channels=16, max_text_seq_length=226,
                    norm_elementwise_affine=True, norm_eps=1e-5, num_attention_heads=48, num_layers=42,
                    out_channels=16, patch_size=2, sample_frames=49, sample_height=60, sample_width=90,
                    spatial_interpolation_scale=1.875, temporal_compression_ratio=4, temporal_interpolation_scale=1.0,
                    text_embed_dim=4096, time_embed_dim=512, timestep_activation_fn="silu",
                    use_rotary_positional_embeddings=True)


def randomised(model, seed=0):
    """Every weight random (diffusers zero-initialises none here, but LayerNorms start at 1/0: make them matter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    oracle = randomised(CogVideoXTransformer3DModel(**TINY))
    ours = CogVideoXTransformer(files.config_from_diffusers(dict(oracle.config), "tiny")).eval()
    ours.load_state_dict(oracle.state_dict(), strict=True)
    g = torch.Generator().manual_seed(1)
    inputs = SimpleNamespace(x=torch.randn(2, 16, FRAMES, HEIGHT, WIDTH, generator=g),
                             t=torch.tensor([999.0, 412.5]), context=torch.randn(2, TEXT, 8, generator=g))
    return SimpleNamespace(oracle=oracle, ours=ours, inputs=inputs)


def oracle_forward(oracle, inputs):
    """diffusers as its pipeline calls it: frames before channels, RoPE from the pipeline's own method."""
    pipe = SimpleNamespace(vae_scale_factor_spatial=8, transformer=oracle)
    rope = CogVideoXPipeline._prepare_rotary_positional_embeddings(pipe, HEIGHT * 8, WIDTH * 8, FRAMES, "cpu")
    out = oracle(rearrange(inputs.x, "b c f h w -> b f c h w"), inputs.context, inputs.t, image_rotary_emb=rope,
                 return_dict=False)[0]
    return rearrange(out, "b f c h w -> b c f h w")


def relative(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_forward_equals_diffusers(tiny):
    with torch.no_grad():
        want = oracle_forward(tiny.oracle, tiny.inputs)
        got = tiny.ours(tiny.inputs.x, tiny.inputs.t, tiny.inputs.context)
    assert got.shape == tiny.inputs.x.shape
    assert relative(got, want) <= 1e-4


def frame_offset(h, info):
    """A patch that needs the grid: adds 0.1·(block + 1)·frame index to every video token of its frame."""
    frames, rows, cols = info["grid"]
    frame = torch.arange(frames, dtype=h.dtype).repeat_interleave(rows * cols)
    return h + 0.1 * (info["block_index"] + 1) * frame[None, :, None]


def test_video_token_patch_sits_after_norm1_before_attention(tiny):
    """Our patch point against a hook on diffusers' norm1 output (the modulated video tokens): same result."""
    calls = []

    def patch(h, info):
        calls.append((info["block_index"], info["grid"], tuple(h.shape)))
        assert info["transformer_options"] is options
        return frame_offset(h, info)

    options = {"patches": {"cogvideox_video_tokens": [patch]}}
    grid = (FRAMES, HEIGHT // 2, WIDTH // 2)
    hooks = [block.norm1.register_forward_hook(
        lambda m, a, out, i=i: (frame_offset(out[0], {"grid": grid, "block_index": i}),) + out[1:])
        for i, block in enumerate(tiny.oracle.transformer_blocks)]
    try:
        with torch.no_grad():
            want = oracle_forward(tiny.oracle, tiny.inputs)
            got = tiny.ours(tiny.inputs.x, tiny.inputs.t, tiny.inputs.context, transformer_options=options)
            plain = tiny.ours(tiny.inputs.x, tiny.inputs.t, tiny.inputs.context)
    finally:
        for h in hooks:
            h.remove()
    assert calls == [(0, grid, (2, math.prod(grid), 32)), (1, grid, (2, math.prod(grid), 32))]
    assert relative(got, want) <= 1e-4
    assert relative(got, plain) > 1e-2  # the patch mattered


def test_odd_latent_size_is_padded_and_cropped(tiny):
    with torch.no_grad():
        out = tiny.ours(tiny.inputs.x[..., :7, :9], tiny.inputs.t, tiny.inputs.context)
    assert out.shape == (2, 16, FRAMES, 7, 9) and torch.isfinite(out).all()


def test_5b_key_inventory_equals_diffusers():
    with torch.device("meta"):
        oracle = CogVideoXTransformer3DModel(**PUBLISHED_5B)
        ours = CogVideoXTransformer(files.config_from_diffusers(PUBLISHED_5B, "5b"))
    want = {k: tuple(v.shape) for k, v in oracle.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert sorted(set(want) - set(got)) == [] and sorted(set(got) - set(want)) == []
    assert got == want
    assert sum(math.prod(s) for s in got.values()) == sum(p.numel() for p in oracle.parameters())


# ---- files ------------------------------------------------------------------------------------------------------------

def test_sharded_diffusers_folder_round_trip(tiny, tmp_path):
    tiny.oracle.save_pretrained(tmp_path / "transformer", max_shard_size="40KB")  # diffusers' own layout
    shards = sorted(p.name for p in (tmp_path / "transformer").glob("*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "transformer" / files.INDEX).is_file()
    config, sd, tora = files.load_cogvideox_files(str(tmp_path))
    assert config == files.config_from_diffusers(dict(tiny.oracle.config), "tiny")
    assert (config.sample_height, config.sample_width) == (6, 6) and tora == {}
    assert sd.keys() == tiny.oracle.state_dict().keys()
    assert all(torch.equal(sd[k], v) for k, v in tiny.oracle.state_dict().items())

    (tmp_path / "transformer" / shards[0]).unlink()
    with pytest.raises(CogVideoXFileError, match=shards[0]):
        files.load_cogvideox_files(str(tmp_path / "transformer"))


def test_single_file_round_trip_with_tora_keys(tiny, tmp_path):
    from safetensors.torch import save_file
    tora = {"fuser.0.flow_gamma_spatial.weight": torch.randn(8, 128, 3, 3),
            "traj_extractor.conv_in.weight": torch.randn(128, 64, 3, 3)}
    save_file({**tiny.oracle.state_dict(), **tora}, str(tmp_path / "tora.safetensors"))
    config, sd, tora_sd = files.load_cogvideox_files(str(tmp_path / "tora.safetensors"))
    assert sd.keys() == tiny.oracle.state_dict().keys() and tora_sd.keys() == tora.keys()
    # the shapes give everything but the RoPE base size and eps, which take 5B's values
    assert config == CogVideoXConfig(num_attention_heads=2, attention_head_dim=16, time_embed_dim=16,
                                     text_embed_dim=8, num_layers=2)

    del sd["proj_out.bias"]
    save_file(sd, str(tmp_path / "cut.safetensors"))
    with pytest.raises(CogVideoXFileError, match="missing.*proj_out.bias"):
        files.load_cogvideox_files(str(tmp_path / "cut.safetensors"))


def fake(tmp_path, name, sd, config=None):
    from safetensors.torch import save_file
    sd = {k: v.clone() for k, v in sd.items()}  # safetensors refuses shared storage
    if config is None:
        save_file(sd, str(tmp_path / name))
        return str(tmp_path / name)
    (tmp_path / name).mkdir()
    save_file(sd, str(tmp_path / name / files.WEIGHTS))
    (tmp_path / name / files.CONFIG).write_text(json.dumps(config))
    return str(tmp_path / name)


def blocks(n, width=4):
    return {f"transformer_blocks.{i}.attn1.to_q.weight": torch.zeros(width, width) for i in range(n)}


@pytest.mark.parametrize("kind, says", [
    ("sd15", "Stable Diffusion 1.5"), ("sdxl", "Stable Diffusion XL"), ("2b", "CogVideoX-2B"),
    ("2b_config", "CogVideoX-2B"), ("15", "CogVideoX1.5"), ("15_config", "CogVideoX1.5"), ("i2v", "I2V"),
    ("sat", "SAT layout"), ("vae", "AutoencoderKLCogVideoX")])
def test_other_models_are_refused(tmp_path, kind, says):
    z = torch.zeros(1)
    made = {
        "sd15": lambda: fake(tmp_path, "sd15.safetensors", {"model.diffusion_model.input_blocks.0.0.weight": z,
                                                            "first_stage_model.decoder.conv_in.weight": z}),
        "sdxl": lambda: fake(tmp_path, "sdxl.safetensors", {"model.diffusion_model.label_emb.0.0.weight": z,
                                                            "conditioner.embedders.0.x": z}),
        "2b": lambda: fake(tmp_path, "2b.safetensors", {"patch_embed.proj.weight": torch.zeros(1920, 16, 2, 2),
                                                        **blocks(30)}),
        "2b_config": lambda: fake(tmp_path, "2b", {"patch_embed.proj.weight": torch.zeros(8, 16, 2, 2)},
                                  {"_class_name": "CogVideoXTransformer3DModel", "num_attention_heads": 30,
                                   "use_rotary_positional_embeddings": False}),
        "15": lambda: fake(tmp_path, "15.safetensors", {"patch_embed.proj.weight": torch.zeros(8, 128),
                                                        "ofs_embedding.linear_1.weight": z}),
        "15_config": lambda: fake(tmp_path, "15", {"patch_embed.proj.weight": torch.zeros(8, 16, 2, 2)},
                                  {"_class_name": "CogVideoXTransformer3DModel", "patch_size_t": 2,
                                   "use_rotary_positional_embeddings": True}),
        "i2v": lambda: fake(tmp_path, "i2v.safetensors", {"patch_embed.proj.weight": torch.zeros(8, 32, 2, 2),
                                                          "patch_embed.pos_embedding": torch.zeros(1, 4, 8)}),
        "sat": lambda: fake(tmp_path, "sat.safetensors",
                            {"model.diffusion_model.mixins.patch_embed.proj.weight": z,
                             "model.diffusion_model.transformer.layers.0.attention.query_key_value.weight": z,
                             "model.diffusion_model.mixins.ofs_embed.0.weight": z}),  # CogVideoX1.5's: no rule
        "vae": lambda: fake(tmp_path, "vae", {"encoder.conv_in.conv.weight": z},
                            {"_class_name": "AutoencoderKLCogVideoX"}),
    }
    with pytest.raises(WrongCogVideoXModelError, match=says) as e:
        files.load_cogvideox_files(made[kind]())
    assert "CogVideoX-5B text-to-video" in str(e.value)


# ---- ComfyUI ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def comfy_model():
    import comfy_env
    comfy_env.comfy_on_cpu()
    from motionkit.cogvideox import comfy_model
    return comfy_model


@pytest.mark.comfyui
def test_comfy_schedule_equals_cogvideox_dpm_scheduler(comfy_model, tiny, tmp_path):
    from diffusers import CogVideoXDPMScheduler
    from safetensors.torch import save_file
    save_file(tiny.oracle.state_dict(), str(tmp_path / "tiny.safetensors"))
    patcher = comfy_model.load_cogvideox(str(tmp_path / "tiny.safetensors"))
    import comfy.model_patcher
    assert isinstance(patcher, comfy.model_patcher.ModelPatcher)
    sigmas = patcher.model.model_sampling.sigmas.double()

    scheduler = CogVideoXDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                      num_train_timesteps=1000, prediction_type="v_prediction",
                                      rescale_betas_zero_snr=True, snr_shift_scale=1.0, timestep_spacing="trailing",
                                      clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    a = scheduler.alphas_cumprod.double()
    want = ((1 - a) / a).sqrt()
    assert len(sigmas) == 1000
    assert ((sigmas[:-1] - want[:-1]).abs() / want[:-1]).max() < 1e-6
    # diffusers' last ᾱ is 0 (σ infinite); core keeps it finite (ᾱ = 4.9e-8), the only difference
    assert a[-1] == 0 and 4000 < sigmas[-1] < 5000
    assert patcher.model.latent_format.scale_factor == 0.7 and patcher.model.latent_format.latent_channels == 16


@pytest.mark.comfyui
def test_comfy_apply_model_is_v_prediction_of_ours(comfy_model, tiny, tmp_path):
    from safetensors.torch import save_file
    save_file(tiny.oracle.state_dict(), str(tmp_path / "tiny.safetensors"))
    patcher = comfy_model.load_cogvideox(str(tmp_path / "tiny.safetensors"), dtype=torch.float32)
    model = patcher.model
    ours = CogVideoXTransformer(files.config_from_keys(tiny.oracle.state_dict(), "tiny")).eval()
    ours.load_state_dict(tiny.oracle.state_dict())

    sigma = model.model_sampling.sigmas[[700, 120]]
    x, context = tiny.inputs.x * 3, tiny.inputs.context
    s = sigma.view(-1, 1, 1, 1, 1)
    with torch.no_grad():
        got = model.apply_model(x, sigma, c_crossattn=context)
        v = ours(x / (s ** 2 + 1).sqrt(), torch.tensor([700.0, 120.0]), context)
    want = x / (s ** 2 + 1) - v * s / (s ** 2 + 1).sqrt()
    assert relative(got, want) <= 1e-5
    cond = model.extra_conds(cross_attn=context, noise=x, device="cpu")
    assert torch.equal(cond["c_crossattn"].cond, context)


@pytest.mark.comfyui
def test_comfy_bf16_weights_run_with_manual_cast(comfy_model, tiny, tmp_path):
    from safetensors.torch import save_file
    save_file(tiny.oracle.state_dict(), str(tmp_path / "tiny.safetensors"))
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = comfy_model.load_cogvideox(str(tmp_path / "tiny.safetensors"), dtype=dtype).model
        assert next(model.diffusion_model.parameters()).dtype == dtype
        with torch.no_grad():
            out[dtype] = model.apply_model(tiny.inputs.x, model.model_sampling.sigmas[[500, 500]],
                                           c_crossattn=tiny.inputs.context)
    assert 0 < relative(out[torch.bfloat16], out[torch.float32]) < 2e-2


@pytest.mark.comfyui
def test_patch_set_through_model_patcher_reaches_every_block(comfy_model, tiny, tmp_path):
    """ModelPatcher.set_model_patch(fn, "cogvideox_video_tokens") is how an adapter (Tora's fuser) hooks in."""
    from safetensors.torch import save_file
    save_file(tiny.oracle.state_dict(), str(tmp_path / "tiny.safetensors"))
    patcher = comfy_model.load_cogvideox(str(tmp_path / "tiny.safetensors"), dtype=torch.float32)
    seen = []
    patcher.set_model_patch(lambda h, info: seen.append(info["block_index"]) or h, "cogvideox_video_tokens")
    with torch.no_grad():
        patcher.model.apply_model(tiny.inputs.x, patcher.model.model_sampling.sigmas[[10, 10]],
                                  c_crossattn=tiny.inputs.context,
                                  transformer_options=patcher.model_options["transformer_options"])
    assert seen == [0, 1]
