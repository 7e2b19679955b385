"""Tora's modules and flow preparation (motionkit.tora) against independent references: functional formulas for the
extractor and fuser, torchvision's flow_to_image, cv2.filter2D and a reflect-padded conv for the blur, the key
inventory of Tora's original class (tests/tora_keys.json), and the properties Tora's process_points states.
The original code itself runs in the scratch oracles (see the branch's report); these run without it."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from motionkit.tora import flow as tf
from motionkit.tora.errors import NotToraFileError, ToraError
from motionkit.tora.files import build_tora, config_from_keys, split_tora
from motionkit.tora.model import PATCH_POINT, ToraConfig, ToraGuidance, ToraModules, fuse_tokens
from motionkit.common.errors import WrongFileTypeError

INVENTORY = json.loads((Path(__file__).resolve().parent / "tora_keys.json").read_text())
TINY = ToraConfig(layers=3, width=64, blocks_per_layer=2)


def randomised(config=TINY, seed=0, dtype=torch.float32) -> ToraModules:
    """Random weights everywhere, running statistics included (the published temporal convs start at zero)."""
    torch.manual_seed(seed)
    m = ToraModules(config)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 / math.sqrt(p[0].numel()) if p.ndim > 1 else 0.3)
                    + (1.0 if name.endswith(("norm.weight", "bn1.weight", "bn2.weight")) else 0.0))
        for name, b in m.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
    return m.to(dtype).eval()


# ---- the functional references ------------------------------------------------------------------

def ref_extractor(sd: dict, latents: torch.Tensor, layers: int, blocks: int, patch=(1, 2, 2)) -> list:
    pt, ph, pw = patch
    b, c, t, h, w = latents.shape
    x = F.pad(latents, (0, (pw - w % pw) % pw, 0, (ph - h % ph) % ph, 0, (pt - t % pt) % pt))
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t // pt, pt, h // ph, ph, w // pw, pw).permute(0, 2, 1, 3, 5, 7, 4, 6)
    x = x.reshape(b * (t // pt), c * pt * ph * pw, h // ph, w // pw)
    x = F.conv2d(x, sd["traj_extractor.conv_in.weight"], sd["traj_extractor.conv_in.bias"], padding=1)

    def bn(y, pre):
        return (y - sd[pre + "running_mean"][:, None, None]) / torch.sqrt(sd[pre + "running_var"][:, None, None] + 1e-5) \
            * sd[pre + "weight"][:, None, None] + sd[pre + "bias"][:, None, None]

    out = []
    for n in range(layers * blocks):
        pre = f"traj_extractor.body.{n}."
        y = F.conv2d(torch.relu(bn(x, pre + "bn1.")), sd[pre + "block1.weight"], sd[pre + "block1.bias"], padding=1)
        y = F.conv2d(torch.relu(bn(y, pre + "bn2.")), sd[pre + "block2.weight"], sd[pre + "block2.bias"], padding=1)
        x = x + y
        if n % blocks == blocks - 1:
            out.append(x)
    return out


def ref_fuser(sd: dict, i: int, h: torch.Tensor, flow: torch.Tensor, frames: int) -> torch.Tensor:
    """h + GroupNorm32(h)·γ + β; γ, β = temporal conv (replicate padding) of a 3x3 spatial conv of the flow."""
    pre = f"fuser.{i}."

    def branch(name):
        s = F.conv2d(flow, sd[pre + f"flow_{name}_spatial.weight"], sd[pre + f"flow_{name}_spatial.bias"], padding=1)
        bt, c, hh, ww = s.shape
        s = s.reshape(bt // frames, frames, c, hh, ww).permute(0, 3, 4, 2, 1).reshape(-1, c, frames)
        s = torch.cat([s[..., :1], s, s[..., -1:]], dim=-1)  # replicate padding by hand
        s = F.conv1d(s, sd[pre + f"flow_{name}_temporal.weight"], sd[pre + f"flow_{name}_temporal.bias"])
        co = s.shape[1]
        return s.reshape(bt // frames, hh, ww, co, frames).permute(0, 4, 3, 1, 2).reshape(bt, co, hh, ww)

    g = h.reshape(h.shape[0], 32, -1)
    normed = ((g - g.mean(-1, keepdim=True)) / torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + 1e-5)).reshape(h.shape)
    normed = normed * sd[pre + "flow_cond_norm.weight"][:, None, None] + sd[pre + "flow_cond_norm.bias"][:, None, None]
    return h + normed * branch("gamma") + branch("beta")


def close(a, b, tol):
    return ((a - b).abs().max() / b.abs().max()).item() < tol


# ---- modules -------------------------------------------------------------------------------------

def test_extractor_equals_the_functional_formula():
    m = randomised()
    sd = m.state_dict()
    latents = torch.randn(2, 16, 3, 7, 9)  # odd height and width: padded up to whole patches
    with torch.no_grad():
        got = m.traj_extractor(latents)
    want = ref_extractor(sd, latents, 3, 2)
    assert len(got) == 3 and got[0].shape == (6, 128, 4, 5)
    assert all(close(g, w, 1e-5) for g, w in zip(got, want))


def test_extractor_with_temporal_patches_of_two():
    m = randomised(ToraConfig(layers=2, width=64, patch_size=(2, 2, 2)))
    latents = torch.randn(1, 16, 5, 4, 6)  # 5 frames: one padded
    with torch.no_grad():
        got = m.traj_extractor(latents)
    want = ref_extractor(m.state_dict(), latents, 2, 2, (2, 2, 2))
    assert got[0].shape == (3, 128, 2, 3) and all(close(g, w, 1e-5) for g, w in zip(got, want))


def test_fuser_equals_the_functional_formula_and_depends_on_the_flow():
    m = randomised()
    sd = m.state_dict()
    frames = 5
    h, flow = torch.randn(2 * frames, 64, 3, 4), torch.randn(2 * frames, 128, 3, 4)
    with torch.no_grad():
        for i in range(3):
            assert close(m.fuser[i](h, flow, frames), ref_fuser(sd, i, h, flow, frames), 1e-5)
        other = m.fuser[0](h, flow.flip(0), frames)
    assert not close(other, m.fuser[0](h, flow, frames), 1e-2)


def test_fuser_group_norm_runs_in_the_dtype_of_its_bias():
    m = randomised()
    sd = m.state_dict()
    fuser = m.fuser[1].to(torch.bfloat16)
    fuser.flow_cond_norm.float()  # Tora keeps this norm's dtype when the rest is half precision
    fuser.flow_cond_norm.load_state_dict({k[len("fuser.1.flow_cond_norm."):]: v for k, v in sd.items()
                                          if k.startswith("fuser.1.flow_cond_norm.")})  # full-precision weights
    h, flow = torch.randn(4, 64, 2, 3), torch.randn(4, 128, 2, 3)
    with torch.no_grad():
        normed = fuser.norm(h.bfloat16())
        want = F.group_norm(h.bfloat16().float(), 32, sd["fuser.1.flow_cond_norm.weight"], sd["fuser.1.flow_cond_norm.bias"])
        assert normed.dtype == torch.bfloat16 and torch.equal(normed, want.bfloat16())
        assert fuser(h.bfloat16(), flow.bfloat16(), 2).dtype == torch.bfloat16


def test_patch_point_on_tokens_with_a_cfg_batch():
    m = randomised()
    sd = m.state_dict()
    t, hh, ww = 3, 4, 5
    latents = torch.randn(1, 16, t, 2 * hh, 2 * ww)
    guidance = ToraGuidance(m, latents)
    h = torch.randn(2, t * hh * ww, 64)  # uncond and cond rows: both get the trajectory (Tora duplicates it)
    with torch.no_grad():
        got = guidance(h, {"block_index": 2, "grid": (t, hh, ww), "transformer_options": {}})
        feature = ref_extractor(sd, latents, 3, 2)[2]
    x = h.reshape(2, t, hh, ww, 64).permute(0, 1, 4, 2, 3).reshape(2 * t, 64, hh, ww)  # tokens in (t h w) order
    want = ref_fuser(sd, 2, x, torch.cat([feature] * 2), t).reshape(2, t, 64, hh, ww).permute(0, 1, 3, 4, 2).reshape(h.shape)
    assert close(got, want, 1e-5)
    assert PATCH_POINT == "cogvideox_video_tokens"
    assert len(guidance._features) == 1 and guidance.to(torch.float64) is guidance and not guidance._features
    with pytest.raises(ToraError, match="latent frames"):
        guidance(torch.randn(1, 2 * hh * ww, 64), {"block_index": 0, "grid": (2, hh, ww), "transformer_options": {}})
    with pytest.raises(ToraError, match="42 blocks"):
        guidance(h.double(), {"block_index": 3, "grid": (t, hh, ww), "transformer_options": {}})


def test_fuse_tokens_refuses_a_batch_the_trajectory_cannot_fill():
    m = randomised()
    with pytest.raises(ToraError, match="batch"):
        fuse_tokens(m.fuser[0], torch.randn(3, 2 * 4, 64), torch.randn(2 * 2, 128, 2, 2), (2, 2, 2))


@pytest.mark.comfyui
def test_comfy_operations_give_the_same_result():
    import comfy_env
    comfy_env.comfy_on_cpu()
    import comfy.ops
    m = randomised()
    c = ToraModules(TINY, operations=comfy.ops.manual_cast)
    c.load_state_dict(m.state_dict())
    latents = torch.randn(1, 16, 2, 4, 4)
    h = torch.randn(1, 2 * 2 * 2, 64)
    info = {"block_index": 1, "grid": (2, 2, 2), "transformer_options": {}}
    with torch.no_grad():
        assert torch.allclose(ToraGuidance(c.eval(), latents)(h, info), ToraGuidance(m, latents)(h, info), atol=1e-6)


# ---- files ---------------------------------------------------------------------------------------

def test_full_size_keys_equal_the_original_inventory():
    with torch.device("meta"):
        m = ToraModules()
    mine = {k: list(v.shape) for k, v in m.state_dict().items()}
    assert mine == INVENTORY["tora"]
    counts = INVENTORY["_counts"]
    assert sum(p.numel() for p in m.traj_extractor.parameters()) == counts["traj_extractor_params"]
    assert sum(p.numel() for p in m.fuser.parameters()) == counts["fuser_params"]
    assert round(counts["traj_extractor_params"] / 1e6, 1) == 24.9 and round(counts["fuser_params"] / 1e6) == 669
    meta = {k: torch.empty(s, device="meta") for k, s in INVENTORY["tora"].items()}
    assert config_from_keys(meta) == ToraConfig()


def test_split_and_build_from_a_transformer_state_dict():
    m = randomised()
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    rest = {k: torch.zeros(1) for k in INVENTORY["_other_key_examples"]}
    tora, other = split_tora({**rest, **sd})
    assert set(tora) == set(sd) and set(other) == set(rest)
    # a repacked file with a prefix, without BatchNorm's step counters
    prefixed = {"model.diffusion_model." + k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    built = build_tora({**prefixed, **rest}, "tora.safetensors", dtype=torch.float64)
    assert built.config == TINY and not built.training
    assert all(torch.equal(built.state_dict()[k], v.double() if v.is_floating_point() else v)
               for k, v in sd.items() if not k.endswith("num_batches_tracked"))


def test_files_without_tora_modules_are_refused_clearly():
    plain = {k: torch.zeros(1) for k in INVENTORY["_other_key_examples"] + ["transformer_blocks.0.attn1.to_q.weight"]}
    with pytest.raises(NotToraFileError, match="CogVideoX transformer without Tora's modules") as e:
        build_tora(plain, "cogvideox.safetensors")
    assert isinstance(e.value, WrongFileTypeError) and "cogvideox.safetensors" in str(e.value)
    with pytest.raises(NotToraFileError, match="fusers without its trajectory extractor"):
        split_tora({"model.diffusion_model.mixins.adaln_layer.fuser_list.0.flow_cond_norm.weight": torch.zeros(1)})
    sd = randomised().state_dict()
    with pytest.raises(ToraError, match="1 missing"):
        build_tora({k: v for k, v in sd.items() if k != "fuser.1.flow_beta_spatial.bias"})
    with pytest.raises(ToraError, match="incomplete"):
        build_tora({k: v for k, v in sd.items() if not k.startswith("fuser.")})
    bad = dict(sd, **{"fuser.2.flow_cond_norm.bias": torch.zeros(3)})
    with pytest.raises(ToraError, match="unexpected shapes"):
        build_tora(bad)


# ---- trajectory -> flow --------------------------------------------------------------------------

def test_process_points_keeps_the_ends_and_makes_one_point_per_frame():
    rng = np.random.default_rng(1)
    for n in (2, 3, 5, 12, 13, 14, 40, 100):
        pts = [list(p) for p in rng.integers(0, 256, (n, 2))]
        for frames in (13, 49):
            out = tf.process_points(pts, frames)
            assert len(out) == frames and list(out[0]) == pts[0] and list(out[-1]) == pts[-1]
    # 3 points, 8 frames: 5 inserts over 2 segments, the first gets 3, truncated with int()
    assert tf.process_points([[0, 0], [8, 4], [8, 10]], 8) == \
        [[0, 0], [2, 1], [4, 2], [6, 3], [8, 4], [8, 6], [8, 8], [8, 10]]
    assert tf.process_points([[5, 6]], 3) == [[5, 6]] * 3  # Tora would put it off its canvas
    # more points than frames: every (len // frames)-th, the last kept
    assert tf.process_points([[i, i] for i in range(10)], 4) == [[0, 0], [2, 2], [4, 4], [9, 9]]


def test_points_go_through_the_256_canvas():
    assert tf.to_canvas([(0, 0), (511.9, 1023.9), (300, 100)], 512, 1024) == [[0, 0], [255, 255], [150, 25]]
    assert tf.read_points([(1.9, 2.9)] * 3 + [(9, 9)] * 7, 4) == [(1, 2), (1, 2), (9, 9), (9, 9)]  # every 2nd
    assert tf.to_video([[128, 64]], 720, 480).tolist() == [[360, 120]]
    # drawn on a 512 x 256 canvas, made for a 1024 x 128 video: (256, 128) -> canvas (128, 128) -> video (512, 64)
    assert tf.frame_points([[(256, 128)] * 2], 3, 1024, 128, canvas=(512, 256))[0].tolist() == [[512, 64]] * 3


def test_sparse_flow_before_the_blur_and_frame_zero():
    # one 2-point path on a 256 x 256 video: the canvas is the video, the points stay whole numbers; far enough
    # from the borders that no mirrored copy reaches them
    flow = tf.tora_flow([[(100, 120), (103, 124)]], 4, 256, 256)
    assert flow.shape == (4, 256, 256, 2) and not flow[0].any()
    # points (100, 120) (101, 121) (102, 122) (103, 124): each step at the previous point's pixel; the blur's peak is 1
    assert flow[1, 120, 100].tolist() == pytest.approx([1, 1], abs=1e-6)
    assert flow[3, 122, 102].tolist() == pytest.approx([1, 2], abs=1e-6)
    assert flow[3, 122, 112].tolist() == pytest.approx([math.exp(-0.5), 2 * math.exp(-0.5)], abs=1e-6)  # 10 px = σ


def test_partial_frame_ranges_are_refused():
    from motionkit.trajectory.encoding import Path as TrajPath
    with pytest.raises(ToraError, match="whole"):
        tf.frame_points([TrajPath([(1, 1), (5, 5)], 2, -1)], 8, 64, 64)


def reflect_101_conv(frame: np.ndarray) -> np.ndarray:
    """2-D correlation with the 99x99 peak-1 Gaussian on a reflect-101 padded frame (torch conv2d, float64)."""
    ax = np.arange(-49.0, 50.0)
    xx, yy = np.meshgrid(ax, ax)
    kernel = np.exp(-0.5 * (xx ** 2 + yy ** 2) / 100.0)
    kernel = torch.from_numpy(kernel / kernel[49, 49])
    x = torch.from_numpy(frame).permute(2, 0, 1)[:, None]  # (2, 1, H, W)
    x = F.pad(x, (49, 49, 49, 49), mode="reflect")  # torch's "reflect" is reflect-101 (edge not repeated)
    return F.conv2d(x, kernel[None, None]).squeeze(1).permute(1, 2, 0).numpy()


def test_blur_equals_reflect_101_convolution_and_cv2():
    paths = [[(3, 5), (60, 70), (20, 75)], [(70, 2), (50, 40)]]
    flow = tf.tora_flow(paths, 5, 80, 76).numpy()
    sparse = tf.sparse_flow(tf.frame_points(paths, 5, 80, 76), 5, 80, 76)
    assert not flow[0].any()
    for k in range(1, 5):
        want = reflect_101_conv(sparse[k])
        assert np.abs(flow[k] - want).max() / np.abs(want).max() < 1e-6
    cv2 = pytest.importorskip("cv2")
    ax = np.arange(-49.0, 50.0)
    xx, yy = np.meshgrid(ax, ax)
    kernel = np.exp(-0.5 * (xx ** 2 + yy ** 2) / 100.0)
    kernel = kernel / kernel.sum()
    kernel = kernel / kernel[49, 49]  # Tora's blur_kernel
    want = cv2.filter2D(sparse[2].astype(np.float32), -1, kernel)
    assert np.abs(flow[2] - want).max() / np.abs(want).max() < 1e-5


def test_flow_to_image_equals_torchvision():
    tv = pytest.importorskip("torchvision.utils")
    torch.manual_seed(0)
    flow = torch.randn(4, 2, 24, 32) * torch.tensor([0.0, 1.0, 3.0, 0.2])[:, None, None, None]  # frame 0 still
    assert torch.equal(tf.flow_to_image(flow), tv.flow_to_image(flow))
    assert torch.equal(tf.flow_to_image(flow * 1e-6), tv.flow_to_image(flow * 1e-6))  # where its epsilon shows
    directions = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 41), torch.linspace(-1, 1, 41), indexing="xy"))[None]
    assert torch.equal(tf.flow_to_image(directions), tv.flow_to_image(directions))  # every part of the wheel
    assert torch.equal(tf._colorwheel(), tv._make_colorwheel())


def test_flow_video_uses_one_maximum_over_the_clip():
    flow = tf.tora_flow([[(10, 10), (60, 30), (20, 50)]], 6, 64, 64)
    video = tf.flow_video(flow)
    assert video.shape == (6, 3, 64, 64) and torch.all(video[0] == 1)
    assert video.min() >= -1 and video.max() <= 1
    louder = flow.clone()
    louder[5] *= 4  # a faster last frame pales the others (one normalisation for all frames)
    assert not torch.equal(tf.flow_video(louder)[1], video[1])
    assert torch.allclose(tf.flow_images(flow) * 2 - 1, rearrange_video(video), atol=1e-6)


def rearrange_video(video):
    return video.permute(0, 2, 3, 1)
