"""SparseCtrl's CONTROL_NET in-process (ComfyUI imported, no UNet): what the encoder is given per call and per
context window, the multipliers, and the window state being reset after every step, also after a cancel."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import comfy_env
from motionkit.control.sparsectrl.errors import SparseCtrlError
from motionkit.control.sparsectrl.keyframes import INDICES, NEAREST_HINT, NO_CONTROL, ZERO_CONDITION, KeyframeSettings
from motionkit.control.sparsectrl.model import SCRIBBLE

pytestmark = pytest.mark.comfyui  # in-process ComfyUI


@pytest.fixture(scope="module")
def comfy():
    comfy_env.comfy_on_cpu()
    import comfy.controlnet  # noqa: F401
    from motionkit.control.sparsectrl.apply import control_class
    from motionkit.sampling import context_handler
    return SimpleNamespace(control_class=control_class, handler=context_handler)


class RecordingEncoder(torch.nn.Module):
    """Stands in for the encoder: records its inputs, returns residuals of ones (12 + 1)."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(variant=SCRIBBLE)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    @property
    def dtype(self):
        return torch.float32

    def forward(self, x, hint, timesteps, context, frames, motion_scale):
        self.calls.append(dict(hint=hint, frames=frames, motion_scale=motion_scale, x=x))
        ones = torch.ones(x.shape[0], 1, 1, 1)
        return {"output": [ones.clone() for _ in range(12)], "middle": [ones.clone()]}


def make(comfy, settings, images=2):
    encoder = RecordingEncoder()
    c = comfy.control_class()(encoder, "v3_sd15_sparsectrl_scribble.ckpt", 32, settings, load_device=torch.device("cpu"))
    c = c.copy()  # what Apply ControlNet does
    hint = torch.stack([torch.full((3, 16, 16), 0.25 * (i + 1)) for i in range(images)])
    c.set_cond_hint(hint, 1.0, (0.0, 1.0))
    c.model_sampling_current = SimpleNamespace(timestep=lambda t: t)
    return c, encoder


def call(c, frames, batched=2):
    x = torch.randn(frames * batched, 4, 2, 2)
    cond = {"c_crossattn": torch.zeros(frames * batched, 3, 768)}
    return c.get_control(x, torch.full((frames * batched,), 500.0), cond, batched, {})


def mask_rows(encoder):
    return [int(r) for r in torch.nonzero(encoder.calls[-1]["hint"][:, -1].amax(dim=(1, 2))).flatten()]


def test_hints_mask_and_zero_condition_per_frame(comfy):
    c, enc = make(comfy, KeyframeSettings(INDICES, (0, -1), motion_strength=0.5))
    call(c, 8)
    hint = enc.calls[-1]["hint"]
    assert hint.shape == (16, 4, 16, 16)  # cond + uncond, [image, mask] at 8x the latent size
    assert mask_rows(enc) == [0, 7, 8, 15]
    assert torch.equal(hint[0, :3], torch.full((3, 16, 16), 0.25)) and torch.equal(hint[7, :3], torch.full((3, 16, 16), 0.5))
    assert hint[1:7].abs().max() == 0  # non-hint frames: zero condition, mask 0
    assert enc.calls[-1]["frames"] == 8 and enc.calls[-1]["motion_scale"] == 0.5


def test_hint_and_nonhint_multipliers(comfy):
    c, enc = make(comfy, KeyframeSettings(INDICES, (0, -1), hint_multiplier=2.0, nonhint_multiplier=0.25))
    out = call(c, 4)
    scale = out["output"][0][:, 0, 0, 0].tolist()
    assert scale == [2.0, 0.25, 0.25, 2.0] * 2 and out["middle"][0][:, 0, 0, 0].tolist() == scale


def test_windows_get_their_hints_and_the_state_is_reset(comfy):
    c, enc = make(comfy, KeyframeSettings(INDICES, (0, 20, -1)), images=3)
    h = comfy.handler.make_handler(16, 4, "static", 1, "flat", False)
    seen = {}

    def calc(model, conds, x, timestep, model_options):
        window = model_options["transformer_options"]["context_window"].index_list
        assert c.window == (window, 40)
        c.get_control(x.repeat(2, 1, 1, 1), torch.full((2 * len(window),), 500.0),
                      {"c_crossattn": torch.zeros(2 * len(window), 3, 768)}, 2, {})
        seen[window[0]] = mask_rows(enc)
        return [x.clone() for _ in conds]

    options = {"transformer_options": {"sample_sigmas": torch.tensor([14.6, 0.0])}}
    x = torch.randn(40, 4, 2, 2)
    h.execute(calc, None, [[{"control": c}]], x, torch.full((40,), 14.6), options)
    assert seen == {0: [0, 16], 12: [8, 24], 24: [15, 31]}  # frames 0, 20, 39 in their windows (cond and uncond)
    assert c.window is None

    def cancelled(*args):
        calc(*args)
        raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        h.execute(cancelled, None, [[{"control": c}]], x, torch.full((40,), 14.6), options)
    assert c.window is None, "a cancelled step left the window in the control"


def test_a_window_without_hint_gets_the_nearest_one_when_asked(comfy):
    c, enc = make(comfy, KeyframeSettings(INDICES, (0, 39), empty_window=NEAREST_HINT))
    c.set_context_window(list(range(14, 30)), 40)
    call(c, 16, batched=1)
    assert mask_rows(enc) == [15]  # 39 is 9 frames away, 0 is 14: 39, on the window's last frame
    assert torch.equal(enc.calls[-1]["hint"][15, :3], torch.full((3, 16, 16), 0.5))


class Previous:
    """A ControlNet before SparseCtrl on core's chain: residuals of 10."""

    def __init__(self, rows):
        self.rows = rows

    def get_control(self, *args):
        return {"input": [], "output": [torch.full((self.rows, 1, 1, 1), 10.0) for _ in range(12)],
                "middle": [torch.full((self.rows, 1, 1, 1), 10.0)]}


def test_no_control_runs_no_encoder_in_a_window_without_hint(comfy):
    """'no control' (the default) adds nothing in a window with no keyframe, whatever nonhint_multiplier says:
    the encoder is not run, a ControlNet before it on the chain passes through unchanged."""
    c, enc = make(comfy, KeyframeSettings(INDICES, (0, 39), nonhint_multiplier=0.5))
    assert c.settings.empty_window == NO_CONTROL
    c.set_context_window(list(range(12, 28)), 40)
    assert call(c, 16) is None and enc.calls == []
    c.set_previous_controlnet(Previous(32))
    out = call(c, 16)
    assert enc.calls == [] and all(torch.equal(r, torch.full((32, 1, 1, 1), 10.0)) for r in out["output"] + out["middle"])
    c.set_context_window(list(range(0, 16)), 40)  # a window with a keyframe is still controlled
    assert call(c, 16)["output"][0][0, 0, 0, 0] == 11.0 and mask_rows(enc) == [0, 16]


def test_zero_condition_keeps_the_encoder_running_without_hint(comfy):
    """'zero condition' (Advanced-ControlNet's behaviour): the encoder runs on a zero condition and mask 0 for every
    frame of the window and its residuals are added, scaled by nonhint_multiplier."""
    c, enc = make(comfy, KeyframeSettings(INDICES, (0, 39), nonhint_multiplier=0.5, empty_window=ZERO_CONDITION))
    c.set_context_window(list(range(12, 28)), 40)
    out = call(c, 16)
    assert enc.calls[-1]["hint"].abs().max() == 0
    assert out["output"][0][:, 0, 0, 0].tolist() == [0.5] * 32


def test_residuals_in_a_window_without_hint_with_the_real_encoder(comfy):
    """Measured on the encoder itself (small, random trained-looking weights, scribble): in a window without a
    keyframe, 'no control' adds no residual; 'zero condition' adds residuals of the same order as a window with one."""
    from motionkit.control.sparsectrl.files import build
    from sparsectrl_files import random_state_dict
    from sparsectrl_files import SMALL, small_config

    encoder = build(small_config(SCRIBBLE), random_state_dict(SCRIBBLE, seed=1, **SMALL))
    hints = torch.stack([torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)])
    x = torch.randn(16, 4, 4, 4)
    cond = {"c_crossattn": torch.randn(16, 7, SMALL["context_dim"])}

    def largest(empty, window):
        c = comfy.control_class()(encoder, "v3_sd15_sparsectrl_scribble.ckpt", 32,
                                  KeyframeSettings(INDICES, (0, 39), empty_window=empty),
                                  load_device=torch.device("cpu")).copy()
        c.set_cond_hint(hints, 1.0, (0.0, 1.0))
        c.model_sampling_current = SimpleNamespace(timestep=lambda t: t)
        c.set_context_window(window, 40)
        with torch.no_grad():
            out = c.get_control(x, torch.full((16,), 500.0), cond, 1, {})
        return 0.0 if out is None else max(r.abs().max().item() for r in out["output"] + out["middle"])

    empty, keyframe = list(range(12, 28)), list(range(0, 16))
    assert largest(NO_CONTROL, empty) == 0.0
    with_hint, without = largest(NO_CONTROL, keyframe), largest(ZERO_CONDITION, empty)
    assert with_hint > 0 and without > 0.25 * with_hint, (with_hint, without)


def test_errors_at_apply_and_at_sampling(comfy):
    with pytest.raises(SparseCtrlError, match="2 indices .* 3 hint images"):
        make(comfy, KeyframeSettings(INDICES, (0, -1)), images=3)
    c, _ = make(comfy, KeyframeSettings(INDICES, (0, 20)))
    with pytest.raises(SparseCtrlError, match="index 20 is outside the animation of 16 frames"):
        call(c, 16)
    c, _ = make(comfy, KeyframeSettings())
    with pytest.raises(SparseCtrlError, match="at most 32 frames.*Context Windows"):
        call(c, 40, batched=1)


class StubVAE:
    """Records what it is asked to encode; 'encodes' to the mean colour per channel (+ a 4th channel)."""

    def __init__(self):
        self.seen = []

    def encode(self, pixels):
        self.seen.append(pixels)
        n, h, w, _ = pixels.shape
        mean = pixels.mean(dim=(1, 2))
        return torch.cat([mean, torch.ones(n, 1)], dim=1)[:, :, None, None].expand(n, 4, h // 8, w // 8).clone()


def test_rgb_hints_are_vae_encoded_and_scaled_as_the_original(comfy):
    """The original: vae.encode(image * 2 - 1) * 0.18215; ComfyUI's VAE takes 0..1 NHWC and does the *2-1 itself."""
    from motionkit.control.sparsectrl.model import RGB
    enc = RecordingEncoder()
    enc.config = SimpleNamespace(variant=RGB)
    c = comfy.control_class()(enc, "v3_sd15_sparsectrl_rgb.ckpt", 32, KeyframeSettings(INDICES, (0, -1)),
                              load_device=torch.device("cpu")).copy()
    with pytest.raises(SparseCtrlError, match="RGB SparseCtrl.*VAE.*Apply ControlNet"):
        c.copy().set_cond_hint(torch.zeros(2, 3, 24, 32), 1.0, (0.0, 1.0))
    vae = StubVAE()
    images = torch.stack([torch.full((3, 24, 32), 0.2), torch.full((3, 24, 32), 0.8)])
    c.set_cond_hint(images, 1.0, (0.0, 1.0), vae=vae)
    c.model_sampling_current = SimpleNamespace(timestep=lambda t: t)
    call(c, 6)
    call(c, 6)  # encoded once per size, not every step
    assert len(vae.seen) == 1
    (pixels,) = vae.seen
    assert pixels.shape == (2, 16, 16, 3) and 0.19 < pixels[0].min() and pixels[1].max() < 0.81  # 0..1, 8x latent
    hint = enc.calls[-1]["hint"]
    assert hint.shape == (12, 5, 2, 2)  # [latent (4), mask]
    torch.testing.assert_close(hint[0, :4, 0, 0], torch.tensor([0.2, 0.2, 0.2, 1.0]) * 0.18215)
    torch.testing.assert_close(hint[5, :4, 0, 0], torch.tensor([0.8, 0.8, 0.8, 1.0]) * 0.18215)
    assert mask_rows(enc) == [0, 5, 6, 11] and hint[1:5].abs().max() == 0


def test_chained_after_another_controlnet(comfy):
    """On core's chain: the previous ControlNet's residuals and SparseCtrl's are added; outside its
    start/end range SparseCtrl passes the previous ones on unchanged."""
    c, enc = make(comfy, KeyframeSettings(INDICES, (0, -1), hint_multiplier=3.0, nonhint_multiplier=1.0))

    class Previous:
        def get_control(self, *args):
            return {"input": [], "output": [torch.full((8, 1, 1, 1), 10.0) for _ in range(12)],
                    "middle": [torch.full((8, 1, 1, 1), 10.0)]}

    c.set_previous_controlnet(Previous())
    out = call(c, 4)
    assert out["output"][5][:, 0, 0, 0].tolist() == [13.0, 11.0, 11.0, 13.0] * 2
    c.timestep_range = (400.0, 0.0)  # the step's timestep (500) is before this control's range
    assert call(c, 4)["middle"][0][:, 0, 0, 0].tolist() == [10.0] * 8
