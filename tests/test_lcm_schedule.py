"""The AnimateLCM schedules that `make_model_sampling` builds, against values computed here from
MOTION_FORMATS.md §9 alone (float64 numpy, no ComfyUI code).

§9: AnimateLCM t2v samples with LCM on diffusers "linear" betas (= ldm sqrt_linear),
linspace(0.00085, 0.012, 1000), original_inference_steps 100; i2v: beta_end 0.014, 200 steps.
The LCM step grid (diffusers LCMScheduler, and ComfyUI's ModelSamplingDiscreteDistilled) keeps
every (1000 / steps)-th timestep counting down from 999: for 100 steps 999, 989, ..., 9 (100 timesteps,
the smallest is 9, not 0); for 200 steps 999, 994, ..., 4. Its sigmas, sqrt((1 - ᾱ_t) / ᾱ_t), are the
only noise levels the model sampling offers, and the timestep it hands the UNet for each is that t.
"""
import numpy as np
import pytest
import torch

import comfy_env

pytestmark = pytest.mark.comfyui


def lcm_grid(beta_end: float, steps: int):
    betas = np.linspace(0.00085, beta_end, 1000, dtype=np.float64)  # diffusers "linear"
    alphas_cumprod = np.cumprod(1.0 - betas)
    sigmas = np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod)
    skip = 1000 // steps
    timesteps = np.array([999 - skip * k for k in range(steps)])[::-1]  # ascending: 9, 19, ..., 999
    return timesteps, sigmas[timesteps]


@pytest.fixture(scope="module")
def schedules():
    comfy_env.comfy_on_cpu()
    from motionkit.sampling import schedules
    return schedules


@pytest.mark.parametrize("name, beta_end, steps", [
    ("lcm (AnimateLCM)", 0.012, 100),
    ("lcm (AnimateLCM-I2V)", 0.014, 200),
])
def test_lcm_sampling_sigmas_and_timesteps_match_the_spec(schedules, name, beta_end, steps):
    sampling = schedules.make_model_sampling(schedules.SCHEDULES[name])
    timesteps, sigmas = lcm_grid(beta_end, steps)
    assert timesteps[0] == 1000 // steps - 1 and timesteps[-1] == 999 and len(timesteps) == steps
    np.testing.assert_allclose(sampling.sigmas.double().numpy(), sigmas, rtol=1e-6)
    assert float(sampling.sigma_max) == pytest.approx(sigmas[-1], rel=1e-6)
    assert float(sampling.sigma_min) == pytest.approx(sigmas[0], rel=1e-6)
    # the UNet gets the grid's own timestep for each of its sigmas
    t = sampling.timestep(torch.tensor(sigmas, dtype=torch.float32))
    assert t.tolist() == timesteps.tolist()


def test_lcm_denoiser_is_lcm_boundary_condition(schedules):
    """LCM's consistency parametrisation (timestep scaling 10, sigma_data 0.5): denoised =
    c_skip·x + c_out·x0 with x0 = x − σ·ε — on top of the grid above."""
    sampling = schedules.make_model_sampling(schedules.SCHEDULES["lcm (AnimateLCM)"])
    timesteps, sigmas = lcm_grid(0.012, 100)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    k = [0, 40, 99]
    sigma = torch.tensor(sigmas[k], dtype=torch.float32)
    ours = sampling.calculate_denoised(sigma, eps, x)
    st = torch.tensor(timesteps[k] * 10.0, dtype=torch.float64)[:, None, None, None]
    c_skip, c_out = 0.25 / (st ** 2 + 0.25), st / (st ** 2 + 0.25) ** 0.5
    s = torch.tensor(sigmas[k])[:, None, None, None]
    ref = c_out * (x.double() - s * eps.double()) + c_skip * x.double()
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)


def test_plain_schedules_are_the_full_1000_step_tables(schedules):
    sampling = schedules.make_model_sampling(schedules.SCHEDULES["sqrt_linear (AnimateDiff)"])
    _, sigmas = lcm_grid(0.012, 1000)
    np.testing.assert_allclose(sampling.sigmas.double().numpy(), sigmas, rtol=1e-6)
