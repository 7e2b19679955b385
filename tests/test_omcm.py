"""MotionCtrl OMCM: the published file's layout (random weights, the key inventory of the original class), its
forward against an independent functional reference of motionctrl/adapter.py, how its features reach the UNet
(down blocks 0-2 only, zero-flow features on the unconditional rows, strength, start/end, context windows), and
the loader's messages for wrong files. No ComfyUI needed (the UNet hook is called the way ComfyUI calls it)."""
import types

import pytest
import torch
import torch.nn.functional as F

from motionkit.control.motionctrl.apply import KERNEL_SUM, OMCMRun, adapter_input
from motionkit.control.motionctrl.errors import OMCMError
from motionkit.control.motionctrl.files import _unwrap, classify_omcm, load_omcm, read_omcm
from motionkit.control.motionctrl.model import OMCM, OMCMAdapter, expected_shapes
from motionkit.motion.errors import MotionKitError, WrongFileTypeError
from omcm_files import INVENTORY, cached_omcm_file, omcm_file, omcm_weights
from motionkit.trajectory.encoding import DENSE, Path, Trajectory, encode_paths


# ---------------------------------------------------------------------------------------------
# Independent reference: the original Adapter (sk=True, use_conv=False) written as plain functions

def reference_features(sd: dict, flow: torch.Tensor, nums_rb: int = 2, levels: int = 4) -> list[torch.Tensor]:
    x = F.pixel_unshuffle(flow, 8)
    x = F.conv2d(x, sd["conv_in.weight"], sd["conv_in.bias"], padding=1)
    out = []
    for i in range(levels):
        for j in range(nums_rb):
            n = i * nums_rb + j
            if i != 0 and j == 0:
                x = F.avg_pool2d(x, kernel_size=2, stride=2)  # Downsample(use_conv=False)
            if f"body.{n}.in_conv.weight" in sd:  # in_c != out_c
                x = F.conv2d(x, sd[f"body.{n}.in_conv.weight"], sd[f"body.{n}.in_conv.bias"], padding=1)
            h = F.conv2d(x, sd[f"body.{n}.block1.weight"], sd[f"body.{n}.block1.bias"], padding=1)
            h = F.conv2d(F.relu(h), sd[f"body.{n}.block2.weight"], sd[f"body.{n}.block2.bias"], padding=1)
            x = h + x  # sk=True: no skep conv
        out.append(x)
    return out


def test_loader_architecture_has_the_original_key_inventory():
    assert expected_shapes() == INVENTORY


def test_published_layout_loads_and_forward_equals_reference():
    path = str(cached_omcm_file())
    omcm = load_omcm(path)
    sd = {k.removeprefix("module."): v for k, v in torch.load(path, mmap=True)["omcm_state_dict"].items()}
    flow = torch.randn(3, 2, 64, 128, generator=torch.Generator().manual_seed(1)) * 3
    got = omcm.adapter(flow)
    ref = reference_features(sd, flow)
    assert [tuple(f.shape) for f in got] == [(3, 320, 8, 16), (3, 640, 4, 8), (3, 1280, 2, 4), (3, 1280, 1, 2)]
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_file_variants_and_wrong_files():
    sd = omcm_weights(None)
    # DDP prefix or not, wrapped or bare: the same weights
    assert classify_omcm(_unwrap(omcm_file(None), "a"), "a").keys() == INVENTORY.keys()
    assert classify_omcm(_unwrap(omcm_file(None, ddp_prefix=False), "a"), "a").keys() == INVENTORY.keys()
    assert classify_omcm(_unwrap(sd, "a"), "a")["conv_in.weight"] is sd["conv_in.weight"]

    def message(obj, cls=MotionKitError):
        with pytest.raises(cls) as e:
            classify_omcm(_unwrap(obj, "x.ckpt"), "x.ckpt")
        return str(e.value)

    m = message({k: v for k, v in sd.items() if k != "body.3.block2.bias"}, OMCMError)
    assert "missing 1 weights" in m and "body.3.block2.bias" in m and "download" in m
    m = message({**sd, "body.0.block1.weight": torch.zeros(320, 320, 1, 1)}, OMCMError)
    assert "wrong shapes" in m and "(320, 320, 3, 3)" in m
    m = message(omcm_weights(None, cin=192), WrongFileTypeError)  # a T2I-Adapter (RGB in: 3 x 64 channels)
    assert "T2I-Adapter" in m and "Load ControlNet Model" in m
    m = message({"down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight": torch.zeros(2, 2)},
                WrongFileTypeError)
    assert "a motion model" in m and "Load Motion Model" in m and "motionctrl_animatediff_omcm.ckpt" in m
    m = message({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2)}, WrongFileTypeError)
    assert "Stable Diffusion checkpoint" in m


def test_read_refuses_pickled_code_and_missing_files(tmp_path):
    bad = tmp_path / "evil.ckpt"
    torch.save({"omcm_state_dict": {}, "obj": types.SimpleNamespace(a=1)}, bad)
    with pytest.raises(OMCMError, match="holds code .*refused it and ran none of it"):
        read_omcm(str(bad))
    with pytest.raises(OMCMError, match="does not exist"):
        read_omcm(str(tmp_path / "nope.ckpt"))
    cut = tmp_path / "cut.ckpt"
    torch.save({"omcm_state_dict": {k: torch.zeros(64) for k in INVENTORY}}, cut)
    cut.write_bytes(cut.read_bytes()[:1000])
    with pytest.raises(OMCMError, match="corrupt or incomplete"):
        read_omcm(str(cut))


def test_load_motion_model_names_the_omcm_loader(tmp_path):
    from motionkit.motion.formats import load_motion_model
    path = tmp_path / "motionctrl_animatediff_omcm.ckpt"
    small = {"omcm_state_dict": {"module." + k: torch.zeros(1) for k in INVENTORY}, "epoch": 1}
    torch.save(small, path)
    with pytest.raises(WrongFileTypeError) as e:
        load_motion_model(str(path), path.name)
    assert "OMCM" in str(e.value) and "Load MotionCtrl OMCM" in str(e.value)


# ---------------------------------------------------------------------------------------------
# Application: the input_block_patch as ComfyUI calls it, with a small adapter of the same design

SMALL = (8, 16, 32, 32)


def small_run(traj, strength=1.0, seed=3, **kw):
    torch.manual_seed(seed)
    adapter = OMCMAdapter(channels=SMALL)
    for p in adapter.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return OMCMRun(OMCM(adapter.eval(), "small.ckpt"), traj, strength, **kw), adapter.state_dict()


def trajectory(frames=8):
    return encode_paths([Path([(5, 5), (60, 40), (10, 60)])], frames, 64, 64)


def call(run, block, frames, chunks=(0,), window=None, sigma=None, seed=0):
    size = {2: 8, 5: 4, 8: 2}.get(block, 8)
    ch = {2: SMALL[0], 5: SMALL[1], 8: SMALL[2]}.get(block, SMALL[0])
    h = torch.randn(len(chunks) * frames, ch, size, size, generator=torch.Generator().manual_seed(seed))
    opts = {"block": ("input", block), "cond_or_uncond": list(chunks)}
    if window is not None:
        opts["context_window"] = types.SimpleNamespace(index_list=window)
    if sigma is not None:
        opts["sigmas"] = torch.tensor([sigma])
    return h, run.patch(h.clone(), opts)


def test_features_reach_the_end_of_down_blocks_0_to_2_only():
    traj = trajectory()
    run, sd = small_run(traj, strength=0.7)
    ref = reference_features(sd, traj.flow.permute(0, 3, 1, 2) / KERNEL_SUM, levels=3)
    for block, level in ((2, 0), (5, 1), (8, 2)):
        h, out = call(run, block, 8)
        torch.testing.assert_close(out, h + 0.7 * ref[level], rtol=1e-5, atol=1e-6)
    for block in (0, 1, 3, 4, 6, 7, 9, 10, 11):  # elsewhere (and the 4th level, at block 11) nothing is added
        h, out = call(run, block, 8)
        assert torch.equal(out, h)


def test_unconditional_rows_get_the_features_of_a_zero_flow():
    """The original samples with cat([zeros, flow]) under classifier-free guidance."""
    traj = trajectory()
    run, sd = small_run(traj)
    cond = reference_features(sd, traj.flow.permute(0, 3, 1, 2) / KERNEL_SUM, levels=1)[0]
    zero = reference_features(sd, torch.zeros(8, 2, 64, 64), levels=1)[0]
    h, out = call(run, 2, 8, chunks=(1, 0))
    torch.testing.assert_close(out[:8], h[:8] + zero, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[8:], h[8:] + cond, rtol=1e-5, atol=1e-6)
    assert (zero.abs().sum() > 0) and not torch.allclose(zero, cond)


def test_strength_zero_and_outside_start_end_leave_the_unet_exactly_as_it_was():
    run, _ = small_run(trajectory(), strength=0.0)
    h, out = call(run, 2, 8, chunks=(1, 0))
    assert torch.equal(out, h)
    run, _ = small_run(trajectory(), start_percent=0.0, end_percent=0.3)
    run.start_sigma, run.end_sigma = 1e9, 5.0
    h, out = call(run, 2, 8, sigma=4.9)
    assert torch.equal(out, h)
    h, out = call(run, 2, 8, sigma=5.1)
    assert not torch.equal(out, h)


def test_context_window_gets_its_own_frames_flow():
    traj = trajectory(frames=20)
    run, sd = small_run(traj)
    window = [12, 13, 14, 15, 16, 17, 18, 19]
    ref = reference_features(sd, traj.flow[window].permute(0, 3, 1, 2) / KERNEL_SUM, levels=1)[0]
    h, out = call(run, 2, 8, chunks=(0,), window=window)
    torch.testing.assert_close(out, h + ref, rtol=1e-5, atol=1e-6)
    wrong = reference_features(sd, traj.flow[:8].permute(0, 3, 1, 2) / KERNEL_SUM, levels=1)[0]
    assert not torch.allclose(out, h + wrong, atol=1e-4)
    with pytest.raises(OMCMError, match="no context window"):
        call(run, 2, 8)  # 8 frames of 20 without a window


def test_sparse_paths_use_motionctrls_sum_normalised_scale_and_video_flow_is_as_measured():
    traj = trajectory()
    torch.testing.assert_close(adapter_input(traj, [1]), traj.flow[[1]].permute(0, 3, 1, 2) / KERNEL_SUM)
    dense = Trajectory(torch.randn(3, 16, 16, 2), 16, 16, kind=DENSE)
    assert torch.equal(adapter_input(dense, [0, 2]), dense.flow[[0, 2]].permute(0, 3, 1, 2))


def test_warns_when_the_motion_model_is_not_v3(caplog):
    import logging

    from motionkit.control.motionctrl.apply import warn_motion_model
    from motionkit.motion.injection import MotionApplication, MotionSettings

    def patcher(*families):
        apps = {f"k{i}": MotionApplication(None, types.SimpleNamespace(family=f), "mm", MotionSettings())
                for i, f in enumerate(families)}
        return types.SimpleNamespace(attachments=apps)

    with caplog.at_level(logging.WARNING, "MotionKit"):
        warn_motion_model(patcher("AnimateDiff v3"), "omcm.ckpt")
        assert caplog.text == ""
        warn_motion_model(patcher("AnimateDiff v2"), "omcm.ckpt")
        assert "trained with AnimateDiff v3" in caplog.text and "AnimateDiff v2" in caplog.text
        caplog.clear()
        warn_motion_model(patcher(), "omcm.ckpt")
        assert "no motion model" in caplog.text
