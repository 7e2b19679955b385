"""One whole CogVideoX sampling run inside ComfyUI against diffusers 0.42.1's own CogVideoXPipeline, on the same tiny
random weights (tests/cogvideox_files.py, plain CogVideoX-5B layout), the same seed and the same steps.

The pipeline: diffusers' CogVideoXTransformer3DModel and AutoencoderKLCogVideoX read from the folder, the scheduler
with CogVideoX-5B's published config, prompt embeddings passed in (the T5 path is checked against transformers in
test_cogvideox_sampling.py; here both sides get the same random embeddings), generator seeded once.
Ours: Load CogVideoX's load_model, Empty CogVideoX Latent, CogVideoX Sampling (draw order 'CogVideoX (noise
first)'), CogVideoX Dynamic CFG, core's CFGGuider.sample (what SamplerCustomAdvanced calls), CogVideoX VAE Decode.

Layouts and scales: the pipeline's latents are [B, T, C, H, W] in the transformer's (scaled) space; CFGGuider.sample
returns ComfyUI's LATENT, [B, C, T, H, W] after process_latent_out (÷ the VAE's scaling factor 0.7), the space the
VAE decodes. The comparison maps ours to the pipeline's."""

import pytest
import torch

import cogvideox_files
from cogvideox_runs import PUBLISHED_SCHEDULER, SAMPLER, as_pipelines, guided_sample, nodes, relative
import comfy_env

SEED, STEPS, FRAMES, SIZE, CFG = 42, 4, 9, 64, 6.0
DRAW_NOISE_FIRST = "CogVideoX (noise first)"

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    comfy_env.comfy_on_cpu()
    torch.manual_seed(0)
    root = cogvideox_files.write_tora_folder(tmp_path_factory.mktemp("cogvideox"), tora=False)
    g = torch.Generator().manual_seed(3)
    text = cogvideox_files.TINY_T5["d_model"]
    positive, negative = torch.randn(1, 226, text, generator=g), torch.randn(1, 226, text, generator=g)
    return root, positive, negative


@pytest.fixture(scope="module")
def pipeline(env):
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel
    root, _, _ = env
    transformer = CogVideoXTransformer3DModel.from_pretrained(root / "transformer", torch_dtype=torch.float32)
    vae = AutoencoderKLCogVideoX.from_pretrained(root / "vae", torch_dtype=torch.float32)
    return CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer,
                             scheduler=scheduler("dpm"))


def scheduler(kind):
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler
    return (CogVideoXDPMScheduler if kind == "dpm" else CogVideoXDDIMScheduler).from_config(PUBLISHED_SCHEDULER)


def theirs(pipeline, env, kind, dynamic, steps=STEPS):
    _, positive, negative = env
    pipeline.scheduler = scheduler(kind)
    with torch.no_grad():
        return pipeline(prompt_embeds=positive, negative_prompt_embeds=negative, num_frames=FRAMES, height=SIZE,
                        width=SIZE, num_inference_steps=steps, guidance_scale=CFG, use_dynamic_cfg=dynamic,
                        generator=torch.Generator().manual_seed(SEED), output_type="latent").frames


@pytest.fixture(scope="module")
def model(env):
    from motionkit.tora.apply import load_model
    root, _, _ = env
    return load_model(str(root), "cogvideox_tiny/", dtype=torch.float32)


def ours(model, env, kind, dynamic, draw_order=DRAW_NOISE_FIRST, steps=STEPS):
    """The LATENT CFGGuider.sample returns (ComfyUI's layout and space)."""
    _, positive, negative = env
    if dynamic:
        model = nodes().CogVideoXDynamicCFG().patch(model)[0]
    latent = nodes().EmptyCogVideoXLatent().generate(SIZE, SIZE, FRAMES, 1)[0]
    return guided_sample(model, [[positive, {}]], [[negative, {}]], latent, SEED, steps, SAMPLER[kind], draw_order,
                         CFG)


@pytest.fixture(scope="module")
def dpm_runs(pipeline, model, env):
    return theirs(pipeline, env, "dpm", True), ours(model, env, "dpm", True)


def test_dpm_dynamic_cfg_run_is_the_pipelines(pipeline, dpm_runs):
    expected, latent = dpm_runs
    assert latent.shape == (1, 16, 3, SIZE // 8, SIZE // 8) and expected.shape == (1, 3, 16, SIZE // 8, SIZE // 8)
    rel = relative(as_pipelines(latent, pipeline.vae.config.scaling_factor), expected)
    print(f"dpm, {STEPS} steps, dynamic cfg {CFG}: max |Δ| / max |x| = {rel:.2e}")
    assert rel <= 1e-4


def test_two_step_dpm_dynamic_cfg_run_is_the_pipelines(pipeline, model, env):
    """Two steps: the first, at σ ≈ 4519, weighs most (guidance.py: why dynamic CFG mixes the denoised predictions)."""
    expected, latent = theirs(pipeline, env, "dpm", True, steps=2), ours(model, env, "dpm", True, steps=2)
    rel = relative(as_pipelines(latent, pipeline.vae.config.scaling_factor), expected)
    print(f"dpm, 2 steps, dynamic cfg {CFG}: max |Δ| / max |x| = {rel:.2e}")
    assert rel <= 1e-4


def test_the_comparison_sees_a_wrong_draw_order(pipeline, model, env, dpm_runs):
    """It can fail: Tora's draw order (a flow-latent draw before the noise) is another run."""
    expected, _ = dpm_runs
    latent = ours(model, env, "dpm", True, draw_order="Tora (flow latents, then noise)")
    assert relative(as_pipelines(latent, pipeline.vae.config.scaling_factor), expected) > 1e-2


def test_ddim_static_cfg_run_is_the_pipelines(pipeline, model, env):
    expected = theirs(pipeline, env, "ddim", False)
    latent = ours(model, env, "ddim", False)
    rel = relative(as_pipelines(latent, pipeline.vae.config.scaling_factor), expected)
    print(f"ddim, {STEPS} steps, cfg {CFG}: max |Δ| / max |x| = {rel:.2e}")
    assert rel <= 1e-4


def test_decoded_frames_are_the_pipelines(pipeline, env, dpm_runs):
    """The pipeline's own decode (decode_latents + postprocess_video, output_type "pt") of its latent vs CogVideoX
    VAE Decode of ours."""
    from motionkit.cogvideox.comfy_vae import ComfyCogVideoXVAE
    root, _, _ = env
    expected, latent = dpm_runs
    with torch.no_grad():
        video = pipeline.video_processor.postprocess_video(video=pipeline.decode_latents(expected), output_type="pt")
    expected_frames = video[0].permute(0, 2, 3, 1)  # [T, C, H, W] -> IMAGE [T, H, W, C]
    vae = ComfyCogVideoXVAE.from_file(str(root / "vae"), dtype=torch.float32)
    frames = nodes().CogVideoXDecode().decode({"samples": latent}, vae)[0]
    assert frames.shape == expected_frames.shape == (FRAMES, SIZE, SIZE, 3)
    diff = float((frames - expected_frames).abs().max())
    print(f"decoded frames: max |Δ| = {diff:.2e} (values in 0..1)")
    assert diff <= 1e-4
