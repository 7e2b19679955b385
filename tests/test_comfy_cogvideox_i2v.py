"""One whole CogVideoX image-to-video run inside ComfyUI against diffusers 0.42.1's own CogVideoXImageToVideoPipeline
(Tora's diffusers-version i2v_pipeline.py is that pipeline plus the flow), on the same tiny random weights
(tests/cogvideox_files.py: a transformer with 32 input channels and no learned position embedding, as Tora's I2V
runs), the same start image, seed and steps.

Ours: Load CogVideoX's load_model, CogVideoX Image to Video (start image -> conditioning + empty latent), CogVideoX
Sampling (draw order I2V: the image's VAE sample first, then the noise), CogVideoX Dynamic CFG, core's
CFGGuider.sample. Theirs: the pipeline with the image as a PIL image at the video size (no resize on either side),
prompt embeddings passed in, generator seeded once, output_type "latent"."""

import pytest
import torch

import cogvideox_files
from cogvideox_runs import PUBLISHED_SCHEDULER, SAMPLER, as_pipelines, guided_sample, nodes, relative
import comfy_env

SEED, STEPS, FRAMES, SIZE, CFG = 42, 3, 9, 64, 6.0
I2V_ORDER = "I2V (image latent, then noise)"

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    comfy_env.comfy_on_cpu()
    torch.manual_seed(0)
    root = cogvideox_files.write_tora_folder(tmp_path_factory.mktemp("cogvideox_i2v"), tora=False, in_channels=32)
    g = torch.Generator().manual_seed(3)
    text = cogvideox_files.TINY_T5["d_model"]
    positive, negative = torch.randn(1, 226, text, generator=g), torch.randn(1, 226, text, generator=g)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=g) * 255).round().to(torch.uint8)
    return root, positive, negative, pixels


@pytest.fixture(scope="module")
def pipeline(env):
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXImageToVideoPipeline,
                           CogVideoXTransformer3DModel)
    root = env[0]
    transformer = CogVideoXTransformer3DModel.from_pretrained(root / "transformer", torch_dtype=torch.float32)
    assert transformer.config.in_channels == 32 and not transformer.config.use_learned_positional_embeddings
    vae = AutoencoderKLCogVideoX.from_pretrained(root / "vae", torch_dtype=torch.float32)
    return CogVideoXImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer,
                                         scheduler=CogVideoXDPMScheduler.from_config(PUBLISHED_SCHEDULER))


def theirs(pipeline, env, steps=STEPS):
    from PIL import Image
    _, positive, negative, pixels = env
    with torch.no_grad():
        return pipeline(image=Image.fromarray(pixels.numpy()), prompt_embeds=positive,
                        negative_prompt_embeds=negative, num_frames=FRAMES, height=SIZE, width=SIZE,
                        num_inference_steps=steps, guidance_scale=CFG, use_dynamic_cfg=True,
                        generator=torch.Generator().manual_seed(SEED), output_type="latent").frames


@pytest.fixture(scope="module")
def model(env):
    from motionkit.tora.apply import load_model
    return load_model(str(env[0]), "cogvideox_i2v_tiny/", dtype=torch.float32)


@pytest.fixture(scope="module")
def vae(env):
    from motionkit.cogvideox.comfy_vae import ComfyCogVideoXVAE
    return ComfyCogVideoXVAE.from_file(str(env[0] / "vae"), dtype=torch.float32)


def ours(model, vae, env, draw_order=I2V_ORDER, steps=STEPS, image=True):
    _, positive, negative, pixels = env
    cv = nodes()
    model = cv.CogVideoXDynamicCFG().patch(model)[0]
    positive, negative = [[positive, {}]], [[negative, {}]]
    if image:
        start = pixels.float()[None] / 255
        positive, negative, latent = cv.CogVideoXImageToVideo().encode(positive, negative, vae, start, SIZE, SIZE,
                                                                       FRAMES, 1)
    else:
        latent = cv.EmptyCogVideoXLatent().generate(SIZE, SIZE, FRAMES, 1)[0]
    return guided_sample(model, positive, negative, latent, SEED, steps, SAMPLER["dpm"], draw_order, CFG)


@pytest.fixture(scope="module")
def runs(pipeline, model, vae, env):
    return theirs(pipeline, env), ours(model, vae, env)


def test_i2v_run_is_the_pipelines(pipeline, runs):
    expected, latent = runs
    assert latent.shape == (1, 16, 3, SIZE // 8, SIZE // 8) and expected.shape == (1, 3, 16, SIZE // 8, SIZE // 8)
    rel = relative(as_pipelines(latent, pipeline.vae.config.scaling_factor), expected)
    print(f"I2V dpm, {STEPS} steps, dynamic cfg {CFG}: max |Δ| / max |x| = {rel:.2e}")
    assert rel <= 1e-4


def test_the_comparison_sees_the_image_and_the_draw_order(pipeline, model, vae, env, runs):
    """It can fail: noise drawn first (the text-to-video order) is another run, and so is another start image."""
    expected, _ = runs
    scale = pipeline.vae.config.scaling_factor
    other_order = ours(model, vae, env, draw_order="CogVideoX (noise first)")
    assert relative(as_pipelines(other_order, scale), expected) > 1e-2
    dark = (env[0], env[1], env[2], env[3] // 4)
    assert relative(as_pipelines(ours(model, vae, dark), scale), expected) > 1e-3


def test_image_to_video_mismatches_are_clear(model, vae, env):
    from motionkit.cogvideox.errors import CogVideoXImageError
    from motionkit.tora.apply import load_model
    with pytest.raises(CogVideoXImageError, match="image-to-video model.*no start image"):
        ours(model, vae, env, image=False, steps=1)
    t2v_root = cogvideox_files.write_tora_folder(env[0].parent / "t2v", tora=False)
    t2v = load_model(str(t2v_root), "cogvideox_tiny/", dtype=torch.float32)
    with pytest.raises(CogVideoXImageError, match="text-to-video model"):
        ours(t2v, vae, env, steps=1)


def test_tora_i2v_sat_checkpoint_samples_with_a_trajectory(vae, env):
    """Tora's I2V checkpoint layout (SAT pickle) loads as a ComfyUI MODEL with Tora's modules; with a start image and
    a trajectory it samples, and the trajectory changes the video."""
    from motionkit.tora.apply import apply_tora, load_model, modules_of
    from motionkit.tora.model import ToraModules
    from motionkit.trajectory.encoding import DENSE, Trajectory
    path = env[0].parent / "mp_rank_00_model_states.pt"
    weights = cogvideox_files.write_sat_file(path, seed=5)
    model = load_model(str(path), "tora_i2v/mp_rank_00_model_states.pt", dtype=torch.float32)
    config = model.model.model_config.unet_config["config"]
    assert isinstance(modules_of(model), ToraModules) and config.in_channels == 32 and config.norm_eps == 1e-6
    loaded = model.model.diffusion_model.state_dict()
    assert all(torch.equal(loaded[k], weights[k]) for k in loaded)
    flow = 4 * torch.randn(FRAMES, SIZE, SIZE, 2, generator=torch.Generator().manual_seed(7))
    guided = apply_tora(model, Trajectory(flow, SIZE, SIZE, kind=DENSE), vae)
    plain, steered = ours(model, vae, env, steps=2), ours(guided, vae, env, steps=2)
    assert torch.isfinite(steered).all() and relative(steered, plain) > 1e-3
