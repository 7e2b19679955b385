"""Animate Anyone's pure parts against from-spec references: pose guider, reference attention in one
ComfyUI transformer block, pose features per call, file recognition (random weights, published layout)."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import animate_anyone_files as aaf
import motion_files as mf
from motionkit.animate_anyone.errors import AnimateAnyoneError
from motionkit.animate_anyone.files import check_kind, kind_of
from motionkit.animate_anyone.pose_guider import (expected_keys, pose_features_for_rows, pose_guider_from_state_dict,
                                        poses_to_frames)
from motionkit.animate_anyone.reference_attention import ReferenceAttention, ReferenceBank


# ---- inventories -------------------------------------------------------------------------------

def test_motion_module_file_is_animatediff_v2_layout():
    v2 = {k: tuple(v.shape) for k, v in mf.original_state_dict(mid=True, device="meta").items()}
    assert aaf.INVENTORY["motion_module"] == v2  # the original's keys are exactly the v2 spec's
    from motionkit.motion.formats import classify
    info, _ = classify({k: torch.empty(s, device="meta") for k, s in aaf.INVENTORY["motion_module"].items()},
                       "motion_module.pth")
    assert (info.family, info.max_frames) == ("AnimateDiff v2", 32)


def test_unet_inventories_are_sd15_diffusers_unets():
    den, ref = aaf.INVENTORY["denoising_unet"], aaf.INVENTORY["reference_unet"]
    assert set(den) - set(ref) == {"conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias"}
    assert set(ref) < set(den) and all(ref[k] == den[k] for k in ref)
    assert den["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"] == (320, 768)


def test_pose_guider_keys_equal_the_original_inventory():
    assert expected_keys() == aaf.INVENTORY["pose_guider"]


# ---- pose guider ---------------------------------------------------------------------------------

def pose_guider_spec(sd, poses):
    """PoseGuider.forward as written in the original: InflatedConv3d = the same Conv2d on every frame."""
    e = F.silu(F.conv2d(poses, sd["conv_in.weight"], sd["conv_in.bias"], padding=1))
    for i in range(6):
        e = F.silu(F.conv2d(e, sd[f"blocks.{i}.weight"], sd[f"blocks.{i}.bias"], padding=1, stride=1 + i % 2))
    return F.conv2d(e, sd["conv_out.weight"], sd["conv_out.bias"], padding=1)


def test_pose_guider_equals_from_spec_reference():
    sd = {k: v.float() for k, v in aaf.state_dict("pose_guider", seed=1).items()}
    poses = torch.rand(5, 3, 48, 32, generator=torch.Generator().manual_seed(0))
    out = pose_guider_from_state_dict(sd)(poses, chunk=2)
    assert out.shape == (5, 320, 6, 4)
    torch.testing.assert_close(out, pose_guider_spec(sd, poses), rtol=1e-5, atol=1e-5)
    assert out.abs().mean() > 1e-3


def test_pose_guider_refuses_other_files():
    sd = aaf.state_dict("pose_guider")
    with pytest.raises(AnimateAnyoneError, match="my_guider.pth.*pose_guider.pth"):
        pose_guider_from_state_dict({k: v for k, v in sd.items() if k != "conv_out.bias"}, "my_guider.pth")
    bad = dict(sd, **{"conv_out.weight": torch.zeros(128, 256, 3, 3)})
    with pytest.raises(AnimateAnyoneError, match=r"conv_out.weight has shape \(128, 256, 3, 3\)"):
        pose_guider_from_state_dict(bad, "x.pth")


def test_poses_resampled_in_time_with_a_note():
    poses = torch.arange(4.0)[:, None, None, None].expand(4, 2, 2, 3)
    same, note = poses_to_frames(poses, 4)
    assert same is poses and note is None
    more, note = poses_to_frames(poses, 7)
    assert more[:, 0, 0, 0].tolist() == [0, 1, 1, 2, 2, 3, 3] and "4 pose images for 7" in note


def test_pose_features_per_chunk_and_window():
    features = torch.arange(10.0)[:, None, None, None].expand(10, 2, 1, 1)
    rows = pose_features_for_rows(features, [3, 4, 5], 6)  # uncond + cond chunks of a 3-frame window
    assert rows[:, 0, 0, 0].tolist() == [3, 4, 5, 3, 4, 5]


def test_input_block_patch_adds_the_windows_frames_after_the_first_conv():
    from motionkit.animate_anyone.apply import AnimateAnyoneRun
    run = AnimateAnyoneRun(None, None, None, None, None, None)
    run.pose_features = torch.arange(10.0)[:, None, None, None].expand(10, 4, 2, 2)
    h = torch.ones(6, 4, 2, 2)
    window = SimpleNamespace(index_list=[7, 8, 9])
    out = run.input_block_patch(h, {"block": ("input", 0), "cond_or_uncond": [1, 0], "context_window": window})
    assert out[:, 0, 0, 0].tolist() == [8, 9, 10, 8, 9, 10]
    assert run.input_block_patch(h, {"block": ("input", 1), "cond_or_uncond": [1, 0]}) is h
    out = run.input_block_patch(h[:4], {"block": ("input", 0), "cond_or_uncond": [0]})  # no window: frames 0..3
    assert out[:, 0, 0, 0].tolist() == [1, 2, 3, 4]


# ---- reference attention in one ComfyUI transformer block -----------------------------------------

@pytest.fixture(scope="module")
def comfy_attention():
    import comfy_env
    comfy_env.comfy_on_cpu()
    import comfy.ops
    from comfy.ldm.modules.attention import BasicTransformerBlock
    return SimpleNamespace(ops=comfy.ops, Block=BasicTransformerBlock)


def block(comfy_attention, seed, dim=64, heads=4, context_dim=32):
    torch.manual_seed(seed)
    b = comfy_attention.Block(dim, heads, dim // heads, context_dim=context_dim, operations=comfy_attention.ops.manual_cast)
    for p in b.parameters():
        torch.nn.init.normal_(p, std=0.5 / p.shape[-1] ** 0.5) if p.ndim > 1 else torch.nn.init.normal_(p, 0.1, 0.1)
    return b.eval()


def attention_spec(q, k, v, heads):
    """softmax(q kᵀ/√d) v per head, written out."""
    b, n, c = q.shape
    d = c // heads
    q, k, v = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    w = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, dim=-1)
    return (w @ v).transpose(1, 2).reshape(b, n, c)


def block_spec(blk, x, context, ref, with_ref_rows):
    """The original's read path (mutual_self_attention.py) for one block: rows in `with_ref_rows` attend over
    [own tokens ; reference tokens], the others (CFG's unconditional half) over their own only."""
    n = blk.norm1(x)
    a = blk.attn1
    out = []
    for r in range(x.shape[0]):
        kv = torch.cat([n[r:r + 1], ref], 1) if with_ref_rows[r] else n[r:r + 1]
        out.append(attention_spec(a.to_q(n[r:r + 1]), a.to_k(kv), a.to_v(kv), blk.n_heads))
    x = a.to_out(torch.cat(out)) + x
    x = blk.attn2(blk.norm2(x), context=context) + x
    return blk.ff(blk.norm3(x)) + x


@pytest.mark.parametrize("cond_or_uncond", [[1, 0], [0], [0, 1]])
def test_reference_attention_in_one_block_equals_from_spec(comfy_attention, cond_or_uncond):
    frames, tokens, ref_tokens = 3, 10, 6
    reference_block, denoising_block = block(comfy_attention, 0), block(comfy_attention, 1)
    g = torch.Generator().manual_seed(2)
    key = {"block": ("output", 4), "block_index": 0}
    # write: the ReferenceNet's block keeps norm1(x) through the capture attn1 patch
    bank = ReferenceBank()
    bank.capturing = True
    ref_x, ref_ctx = torch.randn(1, ref_tokens, 64, generator=g), torch.randn(1, 1, 32, generator=g)
    with torch.no_grad():
        reference_block(ref_x, context=ref_ctx, transformer_options={**key, "patches": {"attn1_patch": [bank.capture]}})
    bank.capturing = False
    assert torch.equal(bank.features[(("output", 4), 0)], reference_block.norm1(ref_x))
    # read: the denoising block, cond and uncond rows in one batch as ComfyUI batches them
    rows = frames * len(cond_or_uncond)
    x, ctx = torch.randn(rows, tokens, 64, generator=g), torch.randn(rows, 1, 32, generator=g)
    attend = ReferenceAttention(bank)
    options = {**key, "cond_or_uncond": cond_or_uncond, "patches": {"attn1_patch": [attend.attn1_patch]},
               "patches_replace": {"attn1": {("output", 4, 0): attend.attn1_replace}}}
    with torch.no_grad():
        got = denoising_block(x, context=ctx, transformer_options=options)
        with_ref = [c != 1 for c in cond_or_uncond for _ in range(frames)]
        want = block_spec(denoising_block, x, ctx, bank.features[(("output", 4), 0)], with_ref)
        plain = denoising_block(x, context=ctx, transformer_options=key)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for r, uses_ref in enumerate(with_ref):  # the reference changes exactly the conditional rows
        assert (got[r] - plain[r]).abs().max() > 1e-3 if uses_ref else torch.allclose(got[r], plain[r], atol=1e-6)
    # another block with nothing in the bank is left as it was
    other = {**options, "block": ("input", 1)}
    with torch.no_grad():
        assert torch.equal(denoising_block(x, context=ctx, transformer_options=other),
                           denoising_block(x, context=ctx, transformer_options={"block": ("input", 1)}))
    bank.clear()
    assert len(bank) == 0 and not bank._cast


# ---- recognising files ---------------------------------------------------------------------------

def meta(role):
    return {k: torch.empty(s, device="meta") for k, s in aaf.INVENTORY[role].items()}


def test_each_published_file_is_recognised():
    for role in aaf.FILE_NAMES:
        check_kind(meta(role), aaf.FILE_NAMES[role], role)
        expected = role if role != "motion_module" else "motion_module"
        assert kind_of(meta(role)) == expected


@pytest.mark.parametrize("role,given,message", [
    ("denoising_unet", "sd_checkpoint", r"full Stable Diffusion checkpoint.*own trained UNets.*denoising_unet.pth.*models/animate_anyone"),
    ("denoising_unet", "reference_unet", r"reference UNet.*belongs in the reference_unet input.*Choose denoising_unet.pth"),
    # same keys as the ReferenceNet plus output layers, other weights: it would load and animate wrongly
    ("reference_unet", "denoising_unet", r"output layers \(denoising_unet.pth\).*belongs in the denoising_unet input"
                                         r".*Choose reference_unet.pth"),
    ("pose_guider", "motion_module", r"motion module.*Choose pose_guider.pth"),
    ("motion_module", "pose_guider", r"pose guider.*Choose motion_module.pth"),
    ("reference_unet", "lora", r"LoRA.*Choose reference_unet.pth"),
])
def test_wrong_component_says_which_file_and_folder(role, given, message):
    if given == "sd_checkpoint":
        sd = {"model.diffusion_model." + k: v for k, v in meta("denoising_unet").items()}
        sd["first_stage_model.encoder.conv_in.weight"] = torch.empty(1, device="meta")
    elif given == "lora":
        sd = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.empty(1, device="meta")}
    else:
        sd = meta(given)
    with pytest.raises(AnimateAnyoneError, match=message) as e:
        check_kind(sd, "picked.pth", role)
    assert "'picked.pth'" in str(e.value)


def test_unreadable_files_say_which_file_and_what_to_do(tmp_path):
    from motionkit.animate_anyone.files import read_weights
    with pytest.raises(AnimateAnyoneError, match=r"pose_guider file .*missing.pth' does not exist.*models/animate_anyone"):
        read_weights(str(tmp_path / "missing.pth"), "pose_guider")
    good = tmp_path / "pose_guider.pth"
    torch.save(aaf.state_dict("pose_guider"), good)
    assert set(read_weights(str(good), "pose_guider")) == set(aaf.INVENTORY["pose_guider"])
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(AnimateAnyoneError, match=r"Could not read 'cut.pth'.*download pose_guider.pth again"):
        read_weights(str(cut), "pose_guider")
    code = tmp_path / "code.pth"
    torch.save({"w": torch.zeros(1), "f": SimpleNamespace(a=1)}, code)
    with pytest.raises(AnimateAnyoneError, match=r"'code.pth' holds code .*refused it and ran none of it"):
        read_weights(str(code), "motion_module")


def test_motion_module_of_another_layout_is_refused():
    from motionkit.animate_anyone.files import load_motion_module
    v3 = mf.original_state_dict(mid=False, pe_length=32, device="meta")  # AnimateDiff v3: no mid block
    with pytest.raises(AnimateAnyoneError, match=r"'v3_sd15_mm.ckpt'.*AnimateDiff v3.*motion_module.pth"):
        load_motion_module(v3, "v3_sd15_mm.ckpt")


# ---- the example workflow's pose video ------------------------------------------------------------

def test_example_stretches_the_pose_video_as_the_original():
    """The original's pipeline resizes each pose frame with diffusers' VaeImageProcessor (PIL lanczos to
    width × height, no crop): its 512×704 pose videos are stretched to 512×768. The example's Load Video Frames
    must give the same pixels (a centre crop would cut the skeleton's top and bottom)."""
    import json

    import numpy as np
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    import example_layout as el
    from motionkit.media.animation import FrameSelection, fit_frame

    api = json.loads((el.EXAMPLES / "api" / "animate_anyone_api.json").read_text())
    (load,) = [v["inputs"] for v in api.values() if v["class_type"] == "MotionKitLoadVideo"]
    (apply,) = [v["inputs"] for v in api.values() if v["class_type"] == "MotionKitApplyAnimateAnyone"]
    assert (load["width"], load["height"]) == (apply["width"], apply["height"])
    frame = np.random.default_rng(0).integers(0, 256, (704, 512, 3), dtype=np.uint8)  # an original pose video's
    ours = fit_frame(frame, FrameSelection(width=load["width"], height=load["height"], method=load["resize_method"],
                                           crop=load["crop"]))
    original = VaeImageProcessor(vae_scale_factor=8, do_convert_rgb=True, do_normalize=False).preprocess(
        Image.fromarray(frame), height=apply["height"], width=apply["width"])  # pipeline_pose2vid_long.py's
    assert torch.equal(torch.from_numpy(ours.copy()).permute(2, 0, 1)[None].float() / 255, original)
