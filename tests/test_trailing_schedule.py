"""The Trailing Scheduler's sigmas against the original's own scheduler: diffusers' DDIMScheduler configured
as Moore-AnimateAnyone's configs/inference/inference_v2.yaml (linear betas 0.00085 -> 0.012, v-prediction,
rescale_betas_zero_snr, timestep_spacing "trailing"). The UNet must be given exactly its timesteps, at its
noise levels; the last one (t = 999) is infinite there and core's finite stand-in here."""
import functools

import pytest
import torch

import comfy_env

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def sampling():
    comfy_env.comfy_on_cpu()
    from motionkit.animate_anyone.schedule import make_model_sampling
    return make_model_sampling()


@functools.lru_cache(maxsize=None)
def original(steps):
    """(timesteps, sigma of every training timestep) of the original's DDIM scheduler."""
    from diffusers import DDIMScheduler
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                              clip_sample=False, steps_offset=1, prediction_type="v_prediction",
                              rescale_betas_zero_snr=True, timestep_spacing="trailing")
    scheduler.set_timesteps(steps)
    ac = scheduler.alphas_cumprod.double()
    return scheduler.timesteps.tolist(), ((1 - ac) / ac).sqrt()


def check_against_original(sampling, sigmas, steps):
    timesteps, table = original(steps)
    assert sigmas.shape == (steps + 1,) and sigmas[-1] == 0  # ends with 0, as ComfyUI's schedulers
    # the timestep the UNet is given for each sigma (core maps sigma -> t) is the original's
    assert sampling.timestep(sigmas[:-1]).tolist() == timesteps
    assert timesteps[0] == 999 and torch.isinf(table[999])  # zero terminal SNR: infinite there,
    assert sigmas[0] == sampling.sigma_max and 1000 < sigmas[0] < float("inf")  # core's finite stand-in here
    # neighbouring timesteps' sigmas are >= 0.39 % apart: 1e-4 (float32 vs float64 tables) tells them apart
    torch.testing.assert_close(sigmas[1:-1].double(), table[timesteps[1:]], rtol=1e-4, atol=0)


@pytest.mark.parametrize("steps", [16, 20, 25, 30, 48, 50])  # 16 and 48: x.5 ties, rounded to even
def test_sigmas_are_the_originals_at_its_timesteps(sampling, steps):
    from motionkit.sampling.schedules import trailing_sigmas
    check_against_original(sampling, trailing_sigmas(sampling, steps), steps)


def test_simple_scheduler_is_not_the_originals_spacing(sampling):
    """Core's `simple` floors where diffusers rounds: the check above tells the two apart."""
    import comfy.samplers
    with pytest.raises(AssertionError):
        check_against_original(sampling, comfy.samplers.simple_scheduler(sampling, 30), 30)


def test_exactly_steps_timesteps_where_numpy_arange_overshoots():
    from motionkit.sampling.schedules import trailing_timesteps
    timesteps, _ = original(61)  # diffusers' float arange gives 62 here, the last one -1
    ours = trailing_timesteps(1000, 61)
    assert len(ours) == 61 and ours == timesteps[:61] and min(ours) >= 0
    with pytest.raises(ValueError, match="between 1 and 1000 steps"):
        trailing_timesteps(1000, 0)


def test_example_samples_as_the_original():
    """example_workflows' Animate Anyone graph: SamplerCustom with ddim and the Trailing Scheduler on the sampled
    model, the original's scripts/pose2vid.py defaults (30 steps, cfg 3.5)."""
    import json
    from pathlib import Path
    api = json.loads((Path(__file__).parent.parent / "example_workflows" / "api" / "animate_anyone_api.json").read_text())
    (sampler,) = [n["inputs"] for n in api.values() if n["class_type"] in ("SamplerCustom", "KSampler")]
    assert api[sampler["sampler"][0]] == {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "ddim"}}
    schedule = api[sampler["sigmas"][0]]
    assert schedule["class_type"] == "MotionKitTrailingScheduler" and schedule["inputs"]["steps"] == 30
    assert schedule["inputs"]["model"] == sampler["model"] and sampler["cfg"] == 3.5
