"""CogVideoX's dynamic classifier-free guidance, as the diffusers pipeline (and Tora's, with use_dynamic_cfg=True)
computes it, as a ComfyUI `sampler_post_cfg_function` (ModelPatcher.set_model_sampler_post_cfg_function).

    scale = 1 + g · (1 − cos(π · ((N − t) / N) ** 5)) / 2

with g the guidance scale, t the TIMESTEP being evaluated (0 … 999, not the step index) and N the pipeline's
num_inference_steps, in Python floats (float64). With N = 50 and t up to 999 the base is far outside [0, 1] and the
cosine oscillates: this is the published behaviour, kept as is (CogVideoX's SAT code uses the step index instead).
A guidance scale ≤ 1 means no guidance at all in the pipeline: the conditional prediction alone.

Why a post-CFG function and not a `sampler_cfg_function`: core hands the latter x − denoised and takes back x − result.
At CogVideoX's first step x is the noise times σ ≈ 4519, so both subtractions round the prediction (about 1) to
float32's resolution at 10⁴ (~1e-3): 5e-4 of the final latent in a 2-step run. The post-CFG function mixes the
denoised predictions themselves, which is what the pipeline's mix of v is (the map from v to denoised is affine with
the same x for both)."""
from __future__ import annotations

import math


def dynamic_cfg_scale(guidance_scale: float, timestep: int, num_inference_steps: int) -> float:
    """The pipeline's expression, term for term (Python floats)."""
    return 1 + guidance_scale * (
        (1 - math.cos(math.pi * ((num_inference_steps - timestep) / num_inference_steps) ** 5.0)) / 2)


class DynamicCFG:
    """A sampler_post_cfg_function (it replaces core's static mix): guidance g is the sampler's cfg value, the
    timestep comes from the model's model_sampling.timestep(sigma), and N from `num_inference_steps` or else the sigmas being sampled
    (transformer_options["sample_sigmas"], which ComfyUI sets for every sampling run: give N explicitly when
    sampling a split of the schedule)."""

    def __init__(self, num_inference_steps: int | None = None):
        self.num_inference_steps = num_inference_steps

    def steps(self, args: dict) -> int:
        if self.num_inference_steps is not None:
            return int(self.num_inference_steps)
        sigmas = args["model_options"].get("transformer_options", {}).get("sample_sigmas")
        if sigmas is None:
            raise ValueError("dynamic CFG needs num_inference_steps: ComfyUI did not pass sample_sigmas")
        return len(sigmas) - 1

    def scale(self, args: dict) -> float:
        timestep = int(args["model"].model_sampling.timestep(args["sigma"]).flatten()[0])
        return dynamic_cfg_scale(float(args["cond_scale"]), timestep, self.steps(args))

    def __call__(self, args: dict):
        cond, uncond = args["cond_denoised"], args["uncond_denoised"]
        if float(args["cond_scale"]) <= 1.0:
            return cond
        return uncond + self.scale(args) * (cond - uncond)
