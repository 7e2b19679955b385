"""Animate Anyone in ComfyUI's own UNet, in-process: random weights in Moore-AnimateAnyone's published
layout (tests/animate_anyone_files.py) loaded through core's conversion and MotionKit's motion loader,
then sampled with comfy.sample (8 frames, 64×64). Heavy: two SD1.5-sized UNets (run under the heavy lock).
"""
import gc
import logging
from types import SimpleNamespace

import pytest
import torch

import animate_anyone_files as aaf
import comfy_env

pytestmark = pytest.mark.comfyui
FRAMES = 8


@pytest.fixture(scope="module")
def aa():
    comfy_env.comfy_on_cpu()
    import comfy.sd
    from safetensors import safe_open

    from motionkit.animate_anyone.apply import load_animate_anyone
    from motionkit.animate_anyone.files import read_weights
    from motionkit.animate_anyone.pose_guider import pose_guider_from_state_dict
    from sd15_checkpoint import cached_sd15_checkpoint

    files = aaf.published_files(seed=3)
    weights = {role: read_weights(str(path), role) for role, path in files.items()}
    names = dict(aaf.FILE_NAMES)
    model, models = load_animate_anyone(weights["denoising_unet"], weights["reference_unet"],
                                        weights["pose_guider"], weights["motion_module"], names)
    zero = aaf.published_files(seed=3, zero_pose_out=True)["pose_guider"]
    zero_guider = pose_guider_from_state_dict(read_weights(str(zero), "pose_guider"))
    with safe_open(str(cached_sd15_checkpoint()), "pt") as f:  # the random SD1.5 checkpoint's VAE
        vae_sd = {k[len("first_stage_model."):]: f.get_tensor(k) for k in f.keys() if k.startswith("first_stage_model.")}
    vae = comfy.sd.VAE(sd=vae_sd)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 64, 64, 3, generator=g)
    poses = torch.zeros(FRAMES, 96, 64, 3)  # another size than the latent: resized
    for f in range(FRAMES):  # a "limb" that moves across the frames
        poses[f, 20:70, 8 + 5 * f:12 + 5 * f] = torch.tensor([1.0, 0.5, 0.0])
    embeds = torch.randn(1, 1, 768, generator=g)
    yield SimpleNamespace(model=model, models=models, zero_guider=zero_guider, vae=vae, image=image, poses=poses,
                          embeds=embeds, weights=weights, names=names, posed=None)
    del model, models, weights
    gc.collect()


def sample(model, embeds, steps=1, cfg=2.0, seed=1):
    import comfy.sample
    latent = torch.zeros(FRAMES, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, seed)
    positive, negative = [[embeds, {}]], [[torch.zeros_like(embeds), {}]]
    return comfy.sample.sample(model, noise, steps, cfg, "ddim", "simple", positive, negative, latent,
                               seed=seed, disable_pbar=True)


def test_files_load_into_comfy_sd15_unets_with_the_v2_motion_module(aa):
    from motionkit.motion.injection import applications
    den = aa.model.model.diffusion_model
    ref = aa.models.reference_unet.model.diffusion_model
    pairs = {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight": lambda u: u.input_blocks[1][1].transformer_blocks[0].attn1.to_q.weight,
             "mid_block.attentions.0.proj_in.weight": lambda u: u.middle_block[1].proj_in.weight,
             "up_blocks.3.resnets.2.conv2.weight": lambda u: u.output_blocks[11][0].out_layers[3].weight,
             "time_embedding.linear_1.weight": lambda u: u.time_embed[0].weight}
    for key, where in pairs.items():
        assert torch.equal(where(den).float(), aa.weights["denoising_unet"][key].float()), key
        assert torch.equal(where(ref).float(), aa.weights["reference_unet"][key].float()), key
    assert torch.equal(den.out[2].weight.float(), aa.weights["denoising_unet"]["conv_out.weight"].float())
    assert not ref.out[2].weight.any()  # the ReferenceNet's output layers were removed in the original
    apps = applications(aa.model)
    assert [(a.info.family, a.info.max_frames) for a in apps] == [("AnimateDiff v2", 32)]


def test_schedule_is_v_prediction_on_zero_terminal_snr_linear_betas(aa):
    import comfy.model_sampling as ms
    sampling = aa.model.get_model_object("model_sampling")
    assert isinstance(sampling, ms.V_PREDICTION)
    # diffusers DDIMScheduler(beta_schedule="linear", rescale_betas_zero_snr=True), written out
    betas = torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64)
    sqrt_ac = torch.cumprod(1 - betas, 0).sqrt()
    first, last = sqrt_ac[0].clone(), sqrt_ac[-1].clone()
    sqrt_ac = (sqrt_ac - last) * first / (first - last)
    ac = sqrt_ac ** 2
    want = ((1 - ac[:-1]) / ac[:-1]).sqrt()
    torch.testing.assert_close(sampling.sigmas[:-1].double(), want, rtol=1e-4, atol=1e-6)
    assert sampling.sigmas[-1] > 1000  # core's finite stand-in for the infinite terminal sigma


def test_zero_pose_and_no_reference_bank_equal_plain_animatediff_exactly(aa, caplog):
    from motionkit.animate_anyone.apply import AnimateAnyoneModels, apply_animate_anyone
    plain = sample(aa.model, aa.embeds)
    zero = AnimateAnyoneModels(aa.models.reference_unet, aa.zero_guider, aa.names)
    patched, run = apply_animate_anyone(aa.model, zero, aa.image, aa.poses[:6], aa.vae, aa.embeds, reference=False)
    with caplog.at_level(logging.WARNING, logger="MotionKit"):
        assert torch.equal(sample(patched, aa.embeds), plain)
    assert "6 pose images for 8 latent frames" in caplog.text  # resampled in time, said so
    assert "pose images are 64×96 but the animation is 64×64" in caplog.text  # resized, said so
    assert run.reference_runs == 0
    # the same with the random pose guider moves the result: the pose path is live
    posed, _ = apply_animate_anyone(aa.model, aa.models, aa.image, aa.poses, aa.vae, aa.embeds, reference=False)
    aa.posed = sample(posed, aa.embeds)
    assert (aa.posed - plain).abs().max() > 1e-3


def test_reference_net_runs_once_per_sampling_run_and_its_bank_is_freed(aa):
    from motionkit.animate_anyone.apply import KEY, apply_animate_anyone
    calls = []
    hook = aa.models.reference_unet.model.diffusion_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        patched, run = apply_animate_anyone(aa.model, aa.models, aa.image, aa.poses, aa.vae, aa.embeds)
        sample(patched, aa.embeds, steps=2)
        assert len(calls) == 1 and run.reference_runs == 1  # 2 steps × (cond + uncond): one ReferenceNet call
        assert len(run.bank) == 0 and run.pose_features is None  # freed with the run
        with_ref = sample(patched, aa.embeds)
        assert len(calls) == 2
    finally:
        hook.remove()
    if getattr(aa, "posed", None) is None:  # run alone: the same poses without the reference
        no_ref, _ = apply_animate_anyone(aa.model, aa.models, aa.image, aa.poses, aa.vae, aa.embeds, reference=False)
        aa.posed = sample(no_ref, aa.embeds)
    assert (with_ref - aa.posed).abs().max() > 1e-3  # the bank reached the UNet
    # nothing was left on the input MODEL
    options = aa.model.model_options["transformer_options"]
    assert not {"attn1_patch", "input_block_patch"} & set(options.get("patches", {}))
    assert "attn1" not in options.get("patches_replace", {})
    assert aa.model.get_attachment(KEY) is None
