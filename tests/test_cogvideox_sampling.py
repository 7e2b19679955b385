"""CogVideoX / Tora sampling on ComfyUI's machinery against the originals: diffusers 0.42.1's
CogVideoXDPMScheduler / CogVideoXDDIMScheduler with CogVideoX-5B's published scheduler config (the one Tora's
inference loads, switching to the DPM scheduler with trailing spacing), and a copy of the pipeline's denoising
loop (diffusers' pipeline_cogvideox.py = Tora's t2v_pipeline.py loop) driving a tiny stand-in v-prediction model."""
import functools
import math

import pytest
import torch

import comfy_env
from cogvideox_runs import PUBLISHED_SCHEDULER as PUBLISHED_CONFIG



def scheduler(kind="dpm"):
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler
    cls = CogVideoXDPMScheduler if kind == "dpm" else CogVideoXDDIMScheduler
    return cls.from_config(PUBLISHED_CONFIG)


# (a) the schedule ------------------------------------------------------------------------------------------------

def test_alphas_cumprod_are_the_schedulers():
    from motionkit.cogvideox.schedule import alphas_cumprod
    ours, theirs = alphas_cumprod(), scheduler().alphas_cumprod
    assert ours.dtype == theirs.dtype == torch.float64 and torch.equal(ours, theirs)
    assert ours[-1] == 0  # zero terminal SNR
    shifted = scheduler().from_config({**PUBLISHED_CONFIG, "snr_shift_scale": 3.0}).alphas_cumprod  # CogVideoX-2B
    assert torch.equal(alphas_cumprod(snr_shift_scale=3.0), shifted)


def test_trailing_timesteps_are_the_schedulers_for_every_step_count():
    from motionkit.cogvideox.schedule import trailing_timesteps
    sch = scheduler()
    for steps in range(1, 1001):
        sch.set_timesteps(steps)
        assert torch.equal(trailing_timesteps(steps), sch.timesteps), steps
    assert trailing_timesteps(50).tolist() == list(range(999, 0, -20))


@pytest.mark.parametrize("steps", [50, 30, 16])
def test_sigmas_are_the_schedulers_noise_levels(steps):
    from motionkit.cogvideox.schedule import comfy_sigmas, timestep_for_sigma
    sch = scheduler()
    sch.set_timesteps(steps)
    ac = sch.alphas_cumprod[sch.timesteps]
    sigmas = comfy_sigmas(steps)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (steps + 1,) and sigmas[-1] == 0
    assert torch.isinf(((1 - ac) / ac).sqrt()[0]) and 4000 < sigmas[0] < 5000  # ᾱ = 0 there: a finite stand-in
    torch.testing.assert_close(sigmas[1:-1].double(), ((1 - ac) / ac).sqrt()[1:], rtol=2e-7, atol=0)
    assert [timestep_for_sigma(s) for s in sigmas[:-1]] == sch.timesteps.tolist()


# ComfyUI ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.latent_formats
    import comfy.model_base
    import comfy.model_patcher
    import comfy.model_sampling
    import comfy.sample
    import comfy.samplers
    import comfy.sd
    import comfy.supported_models_base
    return comfy


def core_model_sampling(comfy):
    """Core's discrete v-prediction sampling as the CogVideoX model declares it: ComfyUI's "linear" betas are
    diffusers' scaled_linear (sqrt-linspace squared), zero terminal SNR."""
    class Config:
        sampling_settings = {"beta_schedule": "linear", "linear_start": 0.00085, "linear_end": 0.012, "zsnr": True}

    class Sampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.V_PREDICTION):
        pass
    return Sampling(Config())


@pytest.mark.comfyui
@pytest.mark.parametrize("steps", [50, 30])
def test_core_maps_our_sigmas_to_the_schedulers_timesteps(comfy, steps):
    from motionkit.cogvideox.schedule import comfy_sigmas
    sch = scheduler()
    sch.set_timesteps(steps)
    ms = core_model_sampling(comfy)
    sigmas = comfy_sigmas(steps)
    assert ms.timestep(sigmas[:-1]).tolist() == sch.timesteps.tolist()
    torch.testing.assert_close(sigmas[:-1], ms.sigmas[sch.timesteps], rtol=1e-6, atol=0)  # core's own table
    assert math.isclose(float(sigmas[0]), float(ms.sigma_max), rel_tol=1e-5)  # so ComfyUI starts at full noise


# the stand-in: v = a fixed random map of (x_t, t, text), in the pipeline's [B, T, C, H, W] layout
C, T, H, W, D, L = 4, 3, 4, 4, 8, 5


class StandIn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dtype = torch.float32  # BaseModel.get_dtype reads it, as from core's diffusion models
        g = torch.Generator().manual_seed(7)
        self.mix = torch.nn.Parameter(torch.randn(C, C, generator=g) / C ** 0.5)
        self.text = torch.nn.Parameter(torch.randn(D, C, generator=g) / D ** 0.5)
        self.time = torch.nn.Parameter(torch.randn(C, generator=g))

    def v(self, x_t, t, context):
        """x_t [B, T, C, H, W], t [B] (0 … 999), context [B, L, D]."""
        t = t.float()[:, None, None, None, None] / 1000
        mixed = torch.einsum("btchw,dc->btdhw", x_t, self.mix) * (0.5 + t)
        text = (context.mean(1) @ self.text)[:, None, :, None, None]
        return torch.tanh(mixed) + text * (1 - t) + self.time[None, None, :, None, None] * t

    def forward(self, x, timesteps, context=None, **kwargs):
        """As ComfyUI's BaseModel calls a diffusion model: x [B, C, T, H, W] already scaled to x_t."""
        return self.v(x.permute(0, 2, 1, 3, 4), timesteps, context).permute(0, 2, 1, 3, 4)


def pipeline_loop(standin, kind, steps, guidance_scale, use_dynamic_cfg, seed, prompt_embeds,
                  negative_prompt_embeds, vae_shape=None):
    """diffusers' CogVideoXPipeline.__call__ steps 4–8 (Tora's t2v loop is the same), copied with the transformer
    replaced by the stand-in: the same generator order (Tora's VAE posterior sample first, then the initial noise,
    then the scheduler's draws)."""
    from diffusers import CogVideoXDPMScheduler
    from diffusers.utils.torch_utils import randn_tensor
    sch = scheduler(kind)
    generator = torch.Generator().manual_seed(seed)
    do_classifier_free_guidance = guidance_scale > 1.0
    if do_classifier_free_guidance:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
    sch.set_timesteps(steps, device="cpu")
    timesteps, num_inference_steps = sch.timesteps, steps
    if vae_shape is not None:  # Tora: flow latents = vae.encode(flow).latent_dist.sample(generator)
        randn_tensor(vae_shape, generator=generator, device=torch.device("cpu"), dtype=prompt_embeds.dtype)
    latents = randn_tensor((1, T, C, H, W), generator=generator, device=torch.device("cpu"), dtype=prompt_embeds.dtype)
    latents = latents * sch.init_noise_sigma
    extra_step_kwargs = {"eta": 0.0, "generator": generator}
    old_pred_original_sample = None
    guidance = guidance_scale
    for i, t in enumerate(timesteps):
        latent_model_input = torch.cat([latents] * 2) if do_classifier_free_guidance else latents
        latent_model_input = sch.scale_model_input(latent_model_input, t)
        timestep = t.expand(latent_model_input.shape[0])
        with torch.no_grad():
            noise_pred = standin.v(latent_model_input, timestep, prompt_embeds)
        noise_pred = noise_pred.float()
        if use_dynamic_cfg:
            guidance = 1 + guidance_scale * (
                (1 - math.cos(math.pi * ((num_inference_steps - t.item()) / num_inference_steps) ** 5.0)) / 2)
        if do_classifier_free_guidance:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance * (noise_pred_text - noise_pred_uncond)
        if not isinstance(sch, CogVideoXDPMScheduler):
            latents = sch.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
        else:
            latents, old_pred_original_sample = sch.step(
                noise_pred, old_pred_original_sample, t, timesteps[i - 1] if i > 0 else None, latents,
                **extra_step_kwargs, return_dict=False)
        latents = latents.to(prompt_embeds.dtype)
    return latents, generator


def comfy_model(comfy, standin):
    """A real BaseModel (v-prediction, core's zsnr discrete sampling) around the stand-in, in a ModelPatcher."""
    class Latent(comfy.latent_formats.LatentFormat):
        latent_channels = C
        latent_dimensions = 3

    class Config(comfy.supported_models_base.BASE):
        unet_config = {}
        sampling_settings = {"beta_schedule": "linear", "linear_start": 0.00085, "linear_end": 0.012, "zsnr": True}
        latent_format = Latent
        memory_usage_factor = 1.0

    base = comfy.model_base.BaseModel(Config({"disable_unet_model_creation": True}),
                                      model_type=comfy.model_base.ModelType.V_PREDICTION, device=torch.device("cpu"))
    base.diffusion_model = standin
    return comfy.model_patcher.ModelPatcher(base, torch.device("cpu"), torch.device("cpu"))


CASES = [  # (sampler, steps, guidance, dynamic CFG, Tora's flow-latent draw first)
    ("dpm", 50, 6.0, True, True),    # Tora's inference.py: DPM, 50 steps, guidance 6, dynamic CFG, flow latents
    ("dpm", 30, 4.5, False, False),  # 30 does not divide 1000: the step lands on t − 33, the model runs at t − 34
    ("dpm", 20, 1.0, False, False),  # guidance 1: no CFG
    ("ddim", 50, 6.0, False, False),
    ("ddim", 25, 7.0, False, False),  # (the pipeline's docs: dynamic CFG is for the DPM scheduler)
]


@pytest.mark.comfyui
@pytest.mark.parametrize("kind,steps,guidance,dynamic,flow", CASES)
def test_whole_run_equals_the_pipeline_loop(comfy, kind, steps, guidance, dynamic, flow):
    from motionkit.cogvideox.guidance import DynamicCFG
    from motionkit.cogvideox.sampler import (CogVideoXNoise, pipeline_shape, sample_cogvideox_ddim,
                                             sample_cogvideox_dpm)
    from motionkit.cogvideox.schedule import comfy_sigmas
    seed = 1234
    standin = StandIn()
    g = torch.Generator().manual_seed(3)
    positive, negative = torch.randn(1, L, D, generator=g), torch.randn(1, L, D, generator=g)
    vae_shape = (1, C, T, H, W) if flow else None
    expected, generator = pipeline_loop(standin, kind, steps, guidance, dynamic, seed, positive, negative, vae_shape)

    patcher = comfy_model(comfy, standin)
    if dynamic:
        patcher.set_model_sampler_post_cfg_function(DynamicCFG())
    latent = torch.zeros(1, C, T, H, W)  # ComfyUI's video layout
    draws = (vae_shape,) if flow else ()
    noise = CogVideoXNoise(seed, draws_before=draws).generate_noise({"samples": latent})
    options = {} if kind == "ddim" else {"draws_before": draws + (pipeline_shape(latent.shape),)}
    function = sample_cogvideox_dpm if kind == "dpm" else sample_cogvideox_ddim
    sampler = comfy.samplers.KSAMPLER(function, extra_options=options)
    out = comfy.sample.sample_custom(patcher, noise, guidance, sampler, comfy_sigmas(steps),
                                     [[positive, {}]], [[negative, {}]], latent, seed=seed)
    out = out.permute(0, 2, 1, 3, 4)
    rel = float((out - expected).abs().max() / expected.abs().max())
    print(f"{kind} {steps} steps, cfg {guidance}{' dynamic' if dynamic else ''}: max |Δ| / max |x| = {rel:.2e}")
    assert rel <= 1e-5
    if kind == "dpm":  # the scheduler drew 1 + 2·(steps − 2) + 1 noises after the initial noise (the note's count)
        ours = CogVideoXNoise(seed, draws_before=draws + (pipeline_shape(latent.shape),) * (2 * steps - 1))
        assert torch.equal(ours.generate_noise({"samples": latent}),
                           torch.randn((1, T, C, H, W), generator=generator).permute(0, 2, 1, 3, 4))


@pytest.mark.comfyui
def test_a_wrong_draw_count_is_seen(comfy):
    """The comparison above can fail: one draw fewer before the scheduler changes the result."""
    from motionkit.cogvideox.sampler import sample_cogvideox_dpm
    from motionkit.cogvideox.schedule import comfy_sigmas
    standin = StandIn()
    positive = torch.randn(1, L, D, generator=torch.Generator().manual_seed(3))
    expected, _ = pipeline_loop(standin, "dpm", 10, 1.0, False, 5, positive, None)
    latent = torch.zeros(1, C, T, H, W)
    noise = torch.randn((1, T, C, H, W), generator=torch.Generator().manual_seed(5)).permute(0, 2, 1, 3, 4)
    sampler = comfy.samplers.KSAMPLER(sample_cogvideox_dpm, extra_options={"draws_before": ()})
    out = comfy.sample.sample_custom(comfy_model(comfy, standin), noise.contiguous(), 1.0, sampler, comfy_sigmas(10),
                                     [[positive, {}]], [[positive, {}]], latent, seed=5)
    assert (out.permute(0, 2, 1, 3, 4) - expected).abs().max() > 1e-2


# (c) dynamic CFG -------------------------------------------------------------------------------------------------

@pytest.mark.comfyui
@pytest.mark.parametrize("steps", [50, 30, 25])
def test_dynamic_cfg_scale_is_the_pipelines_at_every_timestep(comfy, steps):
    from motionkit.cogvideox.guidance import DynamicCFG
    ms = core_model_sampling(comfy)

    class Model:
        model_sampling = ms
    fn = DynamicCFG()
    options = {"transformer_options": {"sample_sigmas": torch.zeros(steps + 1)}}
    cond, uncond = torch.full((1, 2), 3.0), torch.full((1, 2), 1.0)
    for t in range(1000):
        args = {"cond_denoised": cond, "uncond_denoised": uncond, "cond_scale": 6.0, "sigma": ms.sigmas[t:t + 1],
                "model": Model, "model_options": options}
        expected = 1 + 6.0 * ((1 - math.cos(math.pi * ((steps - t) / steps) ** 5.0)) / 2)
        assert fn.scale(args) == expected, t
        assert torch.equal(fn(args), uncond + expected * (cond - uncond))
    assert torch.equal(fn({**args, "cond_scale": 1.0}), cond)  # the pipeline does no guidance at ≤ 1
    assert DynamicCFG(num_inference_steps=50).steps({"model_options": {}}) == 50


# (d) text: core's T5 encoder and tokenizer against transformers' ---------------------------------------------------

PROMPTS = [
    "A golden retriever runs across a sunny meadow, (slow motion:1.3), cinematic.",
    "",
    " ".join(["a red kite drifts over the sea and the town below"] * 30),  # > 226 tokens: truncated
]


@pytest.fixture(scope="module")
def t5(comfy):
    """(ComfyUI CLIP with core's T5 and PixArt's tokenizer, transformers' T5EncoderModel) on the same tiny weights."""
    from support_pack import tiny_t5
    return tiny_t5(0)


@functools.lru_cache(maxsize=1)
def reference_tokenizer():
    from pathlib import Path
    from transformers import T5TokenizerFast
    return T5TokenizerFast.from_pretrained(Path(comfy_env.COMFYUI_ROOT) / "comfy" / "text_encoders" / "t5_tokenizer")


def reference_ids(prompt):
    """The pipeline's tokenizer call, on the tokenizer files core ships (CogVideoX's own is the slow T5Tokenizer on
    spiece.model, the same vocabulary; core ships only the fast tokenizer's files)."""
    return reference_tokenizer()(prompt, padding="max_length", max_length=226, truncation=True, add_special_tokens=True,
                     return_tensors="pt").input_ids


@pytest.mark.comfyui
@pytest.mark.parametrize("prompt", PROMPTS, ids=["weights-syntax", "empty", "long"])
def test_t5_ids_and_embeds_are_the_pipelines(t5, prompt):
    from motionkit.cogvideox.text import cogvideox_conditioning, cogvideox_prompt_embeds, cogvideox_tokens
    clip, reference = t5
    ids = reference_ids(prompt)
    assert [t for t, _ in cogvideox_tokens(clip, prompt)["t5xxl"][0]] == ids[0].tolist()
    with torch.no_grad():
        expected = reference(ids)[0]
    ours = cogvideox_prompt_embeds(clip, prompt)
    assert ours.shape == (1, 226, 16)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    ((cond, extra),) = cogvideox_conditioning(clip, prompt)
    assert torch.equal(cond, ours)


@pytest.mark.comfyui
def test_sd3_tokenizer_gives_the_same_t5_ids(comfy):
    import comfy.text_encoders.sd3_clip
    from motionkit.cogvideox.text import cogvideox_tokens

    class Clip:  # only the tokenizer is used here: ComfyUI's CLIP.tokenize
        tokenizer = comfy.text_encoders.sd3_clip.SD3Tokenizer()
        tokenizer_options = {}
        tokenize = comfy.sd.CLIP.tokenize
    for prompt in PROMPTS:
        assert [t for t, _ in cogvideox_tokens(Clip(), prompt)["t5xxl"][0]] == reference_ids(prompt)[0].tolist()


@pytest.mark.comfyui
def test_a_masked_t5_is_refused(comfy):
    from motionkit.cogvideox.text import CogVideoXTextEncoderError, cogvideox_prompt_embeds

    class Masked:
        class cond_stage_model:
            class t5xxl:
                enable_attention_masks = True
    with pytest.raises(CogVideoXTextEncoderError, match="type \"sd3\""):
        cogvideox_prompt_embeds(Masked, "a cat")
