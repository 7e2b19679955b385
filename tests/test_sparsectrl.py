"""SparseCtrl encoder and file format (control/sparsectrl/model.py, files.py): pure torch, no ComfyUI.

* the spec-written key inventory (tests/sparsectrl_files.py) equals the original-code inventory;
* both published variants load from random weights with the real names and shapes (pickled, wrapped as
  `{"controlnet": ..., "animatediff_config": ...}`, and as safetensors);
* the encoder equals diffusers' SparseControlNetModel on the same weights, mapped with the key renames of
  diffusers' conversion script, with diffusers' motion-module GroupNorm made per-frame (MOTION_FORMATS.md §7:
  the original SparseCtrl normalises each frame; diffusers pools over frames);
* bad files are refused with what they are and what to choose.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from motionkit.control.sparsectrl.errors import SparseCtrlError
from motionkit.control.sparsectrl.files import build, load_file, load_state_dict
from motionkit.control.sparsectrl.model import RGB, SCRIBBLE, SparseCtrlConfig, SparseCtrlEncoder
from motionkit.motion.errors import WrongFileTypeError
from sparsectrl_files import SMALL, layout, published_dict, random_state_dict, small_config, write_file

SHARED = Path(__file__).resolve().parents[2] / "shared" / "orig_keys_sparsectrl.json"
@pytest.mark.skipif(not SHARED.exists(), reason="original-code inventory ../shared/orig_keys_sparsectrl.json not present")
@pytest.mark.parametrize("variant,name", [(RGB, "sparsectrl_rgb (latent_condition)"),
                                          (SCRIBBLE, "sparsectrl_scribble (image_condition)")])
def test_spec_inventory_equals_original_code(variant, name):
    original = {k: tuple(v) for k, v in json.loads(SHARED.read_text())[name].items()}
    assert layout(variant) == original


@pytest.mark.parametrize("variant", [RGB, SCRIBBLE])
def test_model_parameters_are_the_published_keys(variant):
    with torch.device("meta"):
        model = SparseCtrlEncoder(SparseCtrlConfig(variant))
    expected = {k: v for k, v in layout(variant).items() if not k.endswith("pos_encoder.pe")}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    # the motion modules are MotionKit's own, with one attention block each
    from motionkit.motion.model import MotionModule
    modules = [m for m in model.modules() if isinstance(m, MotionModule)]
    assert len(modules) == 8
    assert all(len(m.temporal_transformer.transformer_blocks[0].attention_blocks) == 1 for m in modules)


@pytest.mark.parametrize("variant", [RGB, SCRIBBLE])
def test_full_size_layout_loads(variant):
    """The published names and shapes (meta tensors: no memory) build the encoder, PE length 32 read."""
    sd = {k: torch.empty(v, dtype=torch.float16, device="meta") for k, v in layout(variant).items()}
    model, limit = load_state_dict(published_dict(sd, variant), f"v3_sd15_sparsectrl_{variant}.ckpt")
    assert model.config.variant == variant and limit == 32
    assert model.dtype == torch.float16  # kept in the file's dtype


@pytest.mark.parametrize("variant,suffix", [(RGB, ".ckpt"), (SCRIBBLE, ".safetensors")])
def test_file_loads(tmp_path, variant, suffix, monkeypatch):
    """Read from disk as published (pickle wrapped with a plain-data animatediff_config) or as safetensors."""
    import sparsectrl_files
    monkeypatch.setattr(sparsectrl_files, "random_state_dict",
                        lambda v, seed, dtype: random_state_dict(v, seed, dtype, **SMALL))
    path = write_file(tmp_path / f"v3_sd15_sparsectrl_{variant}{suffix}", variant, seed=5)
    from motionkit.control.sparsectrl.files import read_file, unwrap
    sd = unwrap(read_file(str(path)), path.name)
    model = build(small_config(variant), sd, path.name)
    written = random_state_dict(variant, seed=5, dtype=torch.float16, **SMALL)
    got = model.state_dict()
    assert set(got) == {k for k in written if not k.endswith("pos_encoder.pe")}
    assert all(torch.equal(got[k], written[k]) for k in got)


# ---------------------------------------------------------------------------------------------
# The diffusers oracle

def diffusers_reference(variant, sd):
    from diffusers import SparseControlNetModel
    ref = SparseControlNetModel(
        in_channels=4, conditioning_channels=4 if variant == RGB else 3, block_out_channels=SMALL["channels"],
        layers_per_block=2, cross_attention_dim=SMALL["context_dim"], attention_head_dim=8,
        use_simplified_condition_embedding=variant == RGB, concat_conditioning_mask=True,
        conditioning_embedding_out_channels=SMALL["widths"], motion_max_seq_length=32, motion_num_attention_heads=8)
    converted = {}
    for k, v in sd.items():  # diffusers' scripts/convert_animatediff_sparsectrl_to_diffusers.py renames
        if "pos_encoder" in k:
            continue
        converted[k.replace(".norms.0", ".norm1").replace(".ff_norm", ".norm3")
                  .replace(".attention_blocks.0", ".attn1").replace(".temporal_transformer", "")] = v
    missing, unexpected = ref.load_state_dict(converted, strict=False)
    assert not unexpected and all(k.endswith("pos_embed.pe") for k in missing), (missing, unexpected)
    return ref.eval()


class PerFrameGroupNorm(torch.nn.Module):
    """diffusers' motion-module norm sees (b, c, f, h, w); the original normalises each frame on its own."""

    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def forward(self, x):
        f = x.shape[2]
        y = F.group_norm(rearrange(x, "b c f h w -> (b f) c h w"), self.norm.num_groups, self.norm.weight,
                         self.norm.bias, self.norm.eps)
        return rearrange(y, "(b f) c h w -> b c f h w", f=f)


def per_frame_norms(ref):
    for name, module in list(ref.named_modules()):
        if name.endswith("motion_modules.0") or name.endswith("motion_modules.1"):
            module.norm = PerFrameGroupNorm(module.norm)
    return ref


def inputs(variant, batch=2, frames=4, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    pixels = size * 8 if variant == SCRIBBLE else size
    cond = torch.randn(batch, 3 if variant == SCRIBBLE else 4, frames, pixels, pixels, generator=g)
    cond = cond * torch.linspace(0.2, 3.0, frames)[None, None, :, None, None]  # frames of different contrast (§7)
    mask = torch.zeros(batch, 1, frames, pixels, pixels)
    mask[:, :, [0, frames - 1]] = 1.0
    cond[:, :, 1:frames - 1] = 0.0  # the non-hint frames carry a zero condition
    return dict(sample=torch.randn(batch, 4, frames, size, size, generator=g), cond=cond, mask=mask,
                t=torch.tensor(637.0), context=torch.randn(batch * frames, 7, SMALL["context_dim"], generator=g))


def ours(model, x, frames, motion_scale=1.0):
    hint = rearrange(torch.cat([x["cond"], x["mask"]], dim=1), "b c f h w -> (b f) c h w")
    sample = rearrange(x["sample"], "b c f h w -> (b f) c h w")
    return model(sample, hint, x["t"], x["context"], frames=frames, motion_scale=motion_scale)


def theirs(ref, x):
    with torch.no_grad():
        down, mid = ref(x["sample"], x["t"], encoder_hidden_states=x["context"], controlnet_cond=x["cond"],
                        conditioning_mask=x["mask"], return_dict=False)
    return list(down), mid


@pytest.mark.parametrize("variant", [RGB, SCRIBBLE])
def test_encoder_equals_diffusers(variant):
    sd = random_state_dict(variant, seed=3, **SMALL)
    model = build(small_config(variant), sd)
    ref = per_frame_norms(diffusers_reference(variant, sd))
    x = inputs(variant)
    with torch.no_grad():
        got = ours(model, x, frames=4)
    down, mid = theirs(ref, x)
    assert len(got["output"]) == len(down) == 12
    for a, b in zip(got["output"] + got["middle"], down + [mid]):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    # the noisy latent is zeroed (published config): another latent gives the same residuals
    x2 = dict(x, sample=torch.randn_like(x["sample"]))
    with torch.no_grad():
        assert torch.equal(ours(model, x2, frames=4)["middle"][0], got["middle"][0])
        still = ours(model, x, frames=4, motion_scale=0.0)
    # guards for the comparison: the motion modules matter, and so does their GroupNorm (diffusers pools it)
    assert (still["middle"][0] - mid).abs().max() > 1e-3 * mid.abs().max()
    for module in ref.modules():
        if isinstance(module, PerFrameGroupNorm):
            module.forward = module.norm.forward
    pooled_down, pooled_mid = theirs(ref, x)
    assert (pooled_mid - mid).abs().max() > 1e-3 * mid.abs().max()


# ---------------------------------------------------------------------------------------------
# Bad files

def test_wrong_files_are_refused(tmp_path):
    cn = {"control_model.input_hint_block.0.weight": torch.zeros(16, 3, 3, 3),
          "control_model.zero_convs.0.0.weight": torch.zeros(320, 320, 1, 1)}
    with pytest.raises(WrongFileTypeError, match="ordinary ControlNet.*Load ControlNet Model"):
        load_state_dict(cn, "control_v11p_sd15_openpose.pth")
    diffusers_cn = {"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3),
                    "controlnet_down_blocks.0.weight": torch.zeros(320, 320, 1, 1)}
    with pytest.raises(WrongFileTypeError, match="ordinary ControlNet"):
        load_state_dict(diffusers_cn, "diffusion_pytorch_model.safetensors")
    mm = {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": torch.zeros(320)}
    with pytest.raises(WrongFileTypeError, match="motion model.*Load Motion Model"):
        load_state_dict(mm, "v3_sd15_mm.ckpt")
    with pytest.raises(WrongFileTypeError, match="not a SparseCtrl model"):
        load_state_dict({"foo": torch.zeros(1)}, "x.ckpt")
    with pytest.raises(SparseCtrlError, match="does not exist"):
        load_file(str(tmp_path / "missing.ckpt"))
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"<html>not a model</html>")
    with pytest.raises(SparseCtrlError, match="corrupt or incomplete"):
        load_file(str(broken))


def test_incomplete_and_sdxl_like_files_are_refused():
    sd = {k: torch.empty(v, device="meta") for k, v in layout(RGB).items()}
    partial = dict(sd)
    del partial["controlnet_mid_block.weight"]
    with pytest.raises(SparseCtrlError, match="missing 1 of .*incomplete"):
        load_state_dict(partial, "v3_sd15_sparsectrl_rgb.ckpt")
    wide = dict(sd)
    wide["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"] = torch.empty(320, 2048, device="meta")
    with pytest.raises(SparseCtrlError, match="width 2048.*SD1.5"):
        load_state_dict(wide, "sdxl_sparsectrl.ckpt")


def test_a_sparsectrl_file_in_the_motion_model_loader_names_the_node():
    from motionkit.motion.formats import classify
    sd = {k: torch.empty(v, device="meta") for k, v in layout(SCRIBBLE).items()}
    with pytest.raises(WrongFileTypeError, match="SparseCtrl.*Load SparseCtrl"):
        classify(sd, "v3_sd15_sparsectrl_scribble.ckpt")
