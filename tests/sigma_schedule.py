"""A stand-in for a model's sampling in the start-percent tests (motion keyframes, scheduled context windows)."""
import torch

BIGMAX_TENSOR = torch.tensor(9999999999.9)  # ADE's "no sample_sigmas" maximum


class Sampling:
    """percent_to_sigma as ComfyUI's ModelSamplingDiscrete shapes it: 999999999.9 at 0, 0.0 at 1, decreasing."""

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(torch.tensor(14.6 * (1.0 - percent) ** 3))
