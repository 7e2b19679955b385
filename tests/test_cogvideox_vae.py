"""The CogVideoX VAE (cogvideox/vae.py) against diffusers 0.42.1's AutoencoderKLCogVideoX with the same random
weights at a tiny size, the full-size key inventory on the meta device, and reading/refusing files."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from motionkit.cogvideox import vae_blocks
from motionkit.cogvideox.vae import CogVideoXVAE, Tiling, VAEConfig, frame_batches
from motionkit.cogvideox.errors import CogVideoXVAEError, NotCogVideoXVAEError
from motionkit.cogvideox.vae_files import load_vae, read_vae

diffusers = pytest.importorskip("diffusers")
from diffusers import AutoencoderKLCogVideoX  # noqa: E402

# Tiny, but every kind of layer the published VAE has: 4 levels (3 samplers, the first 2 also in time: 4×),
# width changes (1×1×1 shortcuts), GroupNorm with several groups, the latent's 16 channels.
TINY = dict(block_out_channels=(8, 16, 16, 16), latent_channels=16, layers_per_block=1, norm_num_groups=4,
            sample_height=32, sample_width=48, scaling_factor=0.7)
# THUDM/CogVideoX-5b vae/config.json (the Tora diffusers weights use the same)
FIVE_B = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 512), latent_channels=16,
              layers_per_block=3, act_fn="silu", norm_eps=1e-6, norm_num_groups=32, temporal_compression_ratio=4,
              sample_height=480, sample_width=720, scaling_factor=0.7, force_upcast=True,
              down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
              use_quant_conv=False, use_post_quant_conv=False)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def pair():
    """diffusers' VAE with random weights (norms too) and ours with the same state dict, strict."""
    torch.manual_seed(0)
    oracle = AutoencoderKLCogVideoX(**TINY).eval()
    with torch.no_grad():
        for name, p in oracle.named_parameters():
            if "norm" in name:  # GroupNorm starts at 1 / 0: make the affine part count
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
    ours = CogVideoXVAE(VAEConfig(**TINY)).eval()
    ours.load_state_dict(oracle.state_dict(), strict=True)
    return oracle, ours


@pytest.fixture(scope="module")
def video():
    # 17 frames: two encode frame batches (9 + 8), so the causal cache crosses a batch boundary
    return torch.rand(1, 3, 17, 32, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_frame_batches_are_diffusers():
    assert [(s.start, s.stop) for s in frame_batches(13, 2)] == [(0, 3), (3, 5), (5, 7), (7, 9), (9, 11), (11, 13)]
    assert [(s.start, s.stop) for s in frame_batches(49, 8)] == [(0, 9)] + [(k, k + 8) for k in range(9, 49, 8)]
    assert [(s.start, s.stop) for s in frame_batches(3, 8)] == [(0, 11)]  # one batch (slice past the end)


@torch.no_grad()
def test_encode_sample_decode_equal_diffusers(pair, video):
    oracle, ours = pair
    posterior = oracle.encode(video).latent_dist
    mean, logvar = ours.encode(video)
    assert mean.shape == (1, 16, 5, 4, 6)
    assert rel(mean, posterior.mean) <= 1e-4 and rel(logvar, posterior.logvar) <= 1e-4

    g_oracle, g_ours = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    z_oracle, z_ours = posterior.sample(g_oracle), ours.sample(mean, logvar, g_ours)
    assert rel(z_ours, z_oracle) <= 1e-4
    assert torch.equal(torch.randn(3, generator=g_oracle), torch.randn(3, generator=g_ours))  # same draws used

    # 5 latent frames: decode batches (0-2) and (3-4); the cache crosses one boundary. 17 video frames come back.
    pixels = ours.decode(z_ours)
    assert pixels.shape == (1, 3, 17, 32, 48)
    assert rel(pixels, oracle.decode(z_ours).sample) <= 1e-4


@torch.no_grad()
def test_decode_even_frames_and_batch(pair):
    """An even first batch (4 latent frames: 0-1, 2-3) and a batch of 2: items are decoded one by one here."""
    oracle, ours = pair
    z = torch.randn(2, 16, 4, 4, 6, generator=torch.Generator().manual_seed(3))
    assert rel(ours.decode(z), oracle.decode(z).sample) <= 1e-4


@torch.no_grad()
def test_frame_batches_change_the_numbers(pair):
    """Why decode walks diffusers' frame batches: GroupNorm pools over a batch's frames, so one pass over all 5
    latent frames is another function (it would also give 18 frames, not 17)."""
    oracle, ours = pair
    z = torch.randn(1, 16, 5, 4, 6, generator=torch.Generator().manual_seed(4))
    expected = oracle.decode(z).sample
    assert rel(ours.decode(z), expected) <= 1e-4
    one_pass = ours.decoder(z, {})
    assert one_pass.shape[2] != expected.shape[2] or rel(one_pass, expected) > 1e-2


@torch.no_grad()
def test_tiled_equal_diffusers_tiled(pair, video):
    """Tiling mirrors diffusers' enable_tiling(): overlapping tiles, each blended with the (already blended) tiles
    above and to the left. 16-pixel tiles overlapping by half: tiles whose crops join to the whole video (diffusers
    leaves a too-small edge tile, or more rows than the video, at other settings; the code mirrors that too)."""
    oracle, ours = pair
    tiling = Tiling(sample_height=16, sample_width=16, overlap_height=0.5, overlap_width=0.5)
    oracle.enable_tiling(16, 16, 0.5, 0.5)
    try:
        posterior = oracle.encode(video).latent_dist
        z = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(5))
        expected = oracle.decode(z).sample
    finally:
        oracle.disable_tiling()
    mean, logvar = ours.encode(video, tiling=tiling)
    assert rel(mean, posterior.mean) <= 1e-4 and rel(logvar, posterior.logvar) <= 1e-4
    pixels = ours.decode(z, tiling=tiling)
    assert pixels.shape == (1, 3, 9, 32, 48)
    assert rel(pixels, expected) <= 1e-4
    assert rel(pixels, ours.decode(z)) > 1e-3  # tiles really were used


@torch.no_grad()
def test_split_convolutions_give_the_same_numbers(pair, monkeypatch):
    """Big conv inputs are split along time with overlapping frames (as CogVideoXSafeConv3d does): force every
    split (one output frame per piece)."""
    _, ours = pair
    z = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(6))
    whole = ours.decode(z)
    monkeypatch.setattr(vae_blocks, "PIECE_GIB", 1e-9)
    assert rel(ours.decode(z), whole) <= 1e-5


def test_full_size_inventory_equals_diffusers():
    with torch.device("meta"):
        oracle = AutoencoderKLCogVideoX(**FIVE_B)
        ours = CogVideoXVAE(VAEConfig())
    theirs = {k: tuple(v.shape) for k, v in oracle.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert len(theirs) == 436
    assert mine == theirs


def write_folder(folder, model, config: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLCogVideoX", **config}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "diffusion_pytorch_model.safetensors"))


@torch.no_grad()
def test_folder_round_trip(pair, tmp_path):
    oracle, ours = pair
    write_folder(tmp_path / "CogVideoX-5b" / "vae", oracle, dict(oracle.config))
    config, sd = read_vae(str(tmp_path / "CogVideoX-5b"))  # a whole model folder: its vae/ is found
    assert config == VAEConfig(**TINY)
    loaded = load_vae(str(tmp_path / "CogVideoX-5b" / "vae"))
    z = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(8))
    assert torch.equal(loaded.decode(z), ours.decode(z))
    assert read_vae(str(tmp_path / "CogVideoX-5b"), scaling_factor=1.15258426)[0].scaling_factor == 1.15258426


def test_single_file_config_from_keys(tmp_path):
    """Without config.json, widths and depths come from the shapes; groups (32), time ratio (4) as published."""
    config = VAEConfig(block_out_channels=(32, 64, 64, 64), layers_per_block=1)
    with torch.device("meta"):
        shapes = CogVideoXVAE(config).state_dict()
    save_file({k: torch.zeros(v.shape) for k, v in shapes.items()}, str(tmp_path / "cogvideox_vae.safetensors"))
    read, sd = read_vae(str(tmp_path / "cogvideox_vae.safetensors"))
    assert read == config and set(sd) == set(shapes)

    del_one = {k: torch.zeros(v.shape) for k, v in shapes.items() if k != "decoder.norm_out.conv_b.conv.bias"}
    save_file(del_one, str(tmp_path / "cut.safetensors"))
    with pytest.raises(CogVideoXVAEError, match="1 missing.*decoder.norm_out.conv_b.conv.bias"):
        read_vae(str(tmp_path / "cut.safetensors"))


def test_refuses_an_image_vae(tmp_path):
    sd_vae = {"encoder.conv_in.weight": torch.zeros(128, 3, 3, 3), "encoder.conv_in.bias": torch.zeros(128),
              "decoder.conv_out.weight": torch.zeros(3, 128, 3, 3),
              "encoder.down_blocks.0.resnets.0.conv1.weight": torch.zeros(128, 128, 3, 3)}
    save_file(sd_vae, str(tmp_path / "sd_vae.safetensors"))
    with pytest.raises(NotCogVideoXVAEError, match="'sd_vae.safetensors' is an image VAE"):
        read_vae(str(tmp_path / "sd_vae.safetensors"))

    folder = tmp_path / "sd" / "vae"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 4}))
    with pytest.raises(NotCogVideoXVAEError, match="the config of AutoencoderKL, not of the CogVideoX VAE"):
        read_vae(str(tmp_path / "sd"))
    with pytest.raises(CogVideoXVAEError, match="does not exist"):
        read_vae(str(tmp_path / "nothing.safetensors"))


@torch.no_grad()
def test_memory_count_equals_the_allocator_and_scales_with_area():
    """vae_memory's count (live tensor storages) against torch's CPU allocator as the profiler records it, at a
    tiny size; on the meta device the same count; and it grows with height × width exactly (4× for 2× each)."""
    from torch.profiler import ProfilerActivity, profile

    from motionkit.cogvideox.vae_memory import decode_peak_bytes, measure

    config = VAEConfig(**TINY)
    model = CogVideoXVAE(config).eval()
    z = torch.randn(1, 16, 5, 4, 6)
    counted = measure(model, model.decode, z)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model.decode(z)
    now = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        now += event.self_cpu_memory_usage
        peak = max(peak, now)
    assert counted == peak
    assert decode_peak_bytes(5, 4, 6, torch.float32, config) == counted
    assert decode_peak_bytes(5, 8, 12, torch.float32, config) == 4 * counted


@pytest.mark.comfyui
@torch.no_grad()
def test_comfy_wrapper(pair, video):
    """On comfy.ops layers in a ModelPatcher (ComfyUI on the CPU): the same numbers, IMAGE in and out."""
    import comfy_env
    comfy_env.comfy_on_cpu()
    import comfy.ops

    from motionkit.cogvideox.comfy_vae import ComfyCogVideoXVAE

    _, ours = pair
    with torch.device("meta"):
        model = CogVideoXVAE(VAEConfig(**TINY), operations=comfy.ops.disable_weight_init)
    model.load_state_dict(ours.state_dict(), assign=True)
    vae = ComfyCogVideoXVAE(model, device=torch.device("cpu"), dtype=torch.float32)

    z = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(9))
    image = vae.decode(z)
    assert image.shape == (9, 32, 48, 3) and 0 <= image.min() and image.max() <= 1
    expected = ((ours.decode(z) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    assert rel(image, expected) <= 1e-5

    frames = (video[0].permute(1, 2, 3, 0) + 1) / 2  # IMAGE: t h w c in 0..1
    mean, logvar = ours.encode(video)
    assert rel(vae.encode(frames), mean) <= 1e-5
    sampled = vae.encode(frames, torch.Generator().manual_seed(2))
    assert rel(sampled, ours.sample(mean, logvar, torch.Generator().manual_seed(2))) <= 1e-5
