"""Tora's SAT checkpoints (the training code's `{'module': state dict}` pickles, e.g. ckpts/tora/i2v/
mp_rank_00_model_states.pt) read by cogvideox/files.py: a tiny random file written by the INVERSE of the renaming
rules from diffusers 0.42.1's own CogVideoXTransformer3DModel (image-to-video: 32 input channels, no learned position
embedding) and Tora's modules comes back as exactly that state dict, and runs as diffusers does; the refusals."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
from einops import rearrange

import cogvideox_files

from motionkit.cogvideox import files, sat_keys
from motionkit.cogvideox.errors import CogVideoXFileError, WrongCogVideoXModelError
from motionkit.cogvideox.model import CogVideoXTransformer
from motionkit.tora.files import build_tora
from motionkit.tora.model import ToraConfig, ToraModules

pytest.importorskip("diffusers", reason="the oracle is diffusers 0.42.1 (tests/requirements.txt)")
from diffusers import CogVideoXTransformer3DModel  # noqa: E402
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline  # noqa: E402

TINY = dict(num_attention_heads=2, attention_head_dim=16, in_channels=32, out_channels=16, time_embed_dim=16,
            text_embed_dim=8, num_layers=2, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
            max_text_seq_length=5, use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False,
            norm_eps=1e-6)
FRAMES, HEIGHT, WIDTH, TEXT = 3, 8, 8, 5
P = sat_keys.PREFIX  # the inverse of the rules is tests/cogvideox_files.sat_state_dict


def randomised(module, seed):
    return cogvideox_files.randomised(module, seed, spread=0.2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    oracle = randomised(CogVideoXTransformer3DModel(**TINY), 0)
    tora = randomised(ToraModules(ToraConfig(layers=2, width=32)), 1)
    diffusers_sd = oracle.state_dict()
    tora_sd = tora.state_dict()
    sat = cogvideox_files.sat_state_dict({**diffusers_sd, **tora_sd}, width=32, text=TEXT)
    path = tmp_path_factory.mktemp("sat") / "mp_rank_00_model_states.pt"
    torch.save({"module": sat, "dp_world_size": 1, "global_steps": 1000}, str(path))
    return SimpleNamespace(oracle=oracle, diffusers_sd=diffusers_sd, tora_sd=tora_sd, sat=sat, path=path,
                           tmp=path.parent)


def test_inverse_builds_the_published_sat_key_layout(tiny):
    """The test's SAT file has the key families of Tora's I2V checkpoint (scratch inventory: 'mixins.*',
    'transformer.layers.*', 'time_embed.*', 'traj_extractor.*', 'mixins.adaln_layer.fuser_list.*')."""
    assert sat_keys.is_sat(tiny.sat)
    qkv = tiny.sat[f"{P}transformer.layers.0.attention.query_key_value.weight"]
    ada = tiny.sat[f"{P}mixins.adaln_layer.adaLN_modulations.1.1.weight"]
    assert qkv.shape == (96, 32) and ada.shape == (12 * 32, 16)
    assert any(k.startswith(f"{P}mixins.adaln_layer.fuser_list.1.") for k in tiny.sat)


def test_sat_checkpoint_loads_as_the_diffusers_state_dict(tiny):
    config, sd, tora = files.load_cogvideox_files(str(tiny.path))
    assert sd.keys() == tiny.diffusers_sd.keys()
    assert all(torch.equal(sd[k], v) for k, v in tiny.diffusers_sd.items())
    assert tora.keys() == tiny.tora_sd.keys()
    assert all(torch.equal(tora[k], v) for k, v in tiny.tora_sd.items())
    assert config.in_channels == 32 and config.out_channels == 16 and config.norm_eps == 1e-6
    built = build_tora(tora, "mp_rank_00_model_states.pt")
    assert all(torch.equal(built.state_dict()[k], v) for k, v in tiny.tora_sd.items())
    # Tora's modules straight from the SAT keys too (tora/files.py renames fuser_list)
    direct = build_tora(tiny.sat, "mp_rank_00_model_states.pt")
    assert all(torch.equal(direct.state_dict()[k], v) for k, v in tiny.tora_sd.items())


def test_sat_model_runs_as_diffusers(tiny):
    config, sd, _ = files.load_cogvideox_files(str(tiny.path))
    ours = CogVideoXTransformer(replace_sample(config)).eval()
    ours.load_state_dict(sd, strict=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 32, FRAMES, HEIGHT, WIDTH, generator=g)
    t, context = torch.tensor([999.0, 412.5]), torch.randn(2, TEXT, 8, generator=g)
    pipe = SimpleNamespace(vae_scale_factor_spatial=8, transformer=tiny.oracle)
    rope = CogVideoXPipeline._prepare_rotary_positional_embeddings(pipe, HEIGHT * 8, WIDTH * 8, FRAMES, "cpu")
    with torch.no_grad():
        want = tiny.oracle(rearrange(x, "b c f h w -> b f c h w"), context, t, image_rotary_emb=rope,
                           return_dict=False)[0]
        got = ours(x, t, context)
    want = rearrange(want, "b f c h w -> b c f h w")
    assert got.shape == (2, 16, FRAMES, HEIGHT, WIDTH)
    rel = ((got - want).abs().max() / want.abs().max()).item()
    print(f"SAT-loaded I2V transformer vs diffusers: max |Δ| / max |y| = {rel:.2e}")
    assert rel <= 1e-4


def replace_sample(config):
    """The single file carries no config: the RoPE base grid is 5B's (60×90); the tiny oracle's is 8×8."""
    from dataclasses import replace
    return replace(config, sample_height=TINY["sample_height"], sample_width=TINY["sample_width"])


def save(tmp, name, sd):
    torch.save({"module": sd}, str(tmp / name))
    return str(tmp / name)


def test_refusals(tiny):
    tmp = tiny.tmp
    # CogVideoX's own 5B-I2V in the SAT layout (no Tora modules): its code adds the learned PE, ours does not
    plain = {k: v for k, v in tiny.sat.items() if "traj_extractor." not in k and "fuser_list." not in k}
    with pytest.raises(WrongCogVideoXModelError, match="learned position embedding"):
        files.load_cogvideox_files(save(tmp, "cogvideox_i2v_sat.pt", plain))
    # without the learned PE (a text-to-video SAT file's layout) it loads
    no_pe = {k: v for k, v in plain.items() if not k.endswith("pos_embedding")}
    config, sd, tora = files.load_cogvideox_files(save(tmp, "no_pe_sat.pt", no_pe))
    assert tora == {} and sd.keys() == tiny.diffusers_sd.keys()
    # a key no rule maps (CogVideoX1.5's ofs embedding)
    with pytest.raises(WrongCogVideoXModelError, match="SAT layout.*cannot map.*ofs_embed"):
        files.load_cogvideox_files(save(tmp, "cogvideox15_sat.pt", {**tiny.sat, f"{P}ofs_embed.0.weight": torch.ones(2)}))
    # diffusers-layout CogVideoX-5B-I2V with its learned PE
    with pytest.raises(WrongCogVideoXModelError, match="I2V with its learned position embedding"):
        files.load_cogvideox_files(save(tmp, "diffusers_i2v.pt", {
            **tiny.diffusers_sd, "patch_embed.pos_embedding": torch.zeros(1, TEXT + 27, 32)}))
    # an incomplete SAT file
    cut = {k: v for k, v in tiny.sat.items() if "final_layer.linear" not in k}
    with pytest.raises(CogVideoXFileError, match="incomplete|missing"):
        files.load_cogvideox_files(save(tmp, "cut_sat.pt", cut))


class RunsCode:
    """Unpickling calls os.makedirs(marker): proof of execution if the directory appears."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_sat_pickle_with_code_is_refused_as_code(tiny):
    marker = tiny.tmp / "ran"
    path = tiny.tmp / "evil_mp_rank_00_model_states.pt"
    torch.save({"module": tiny.sat, "ds_config": RunsCode(str(marker))}, str(path))
    with pytest.raises(CogVideoXFileError) as e:
        files.load_cogvideox_files(str(path))
    assert "holds code (" in str(e.value) and "makedirs" in str(e.value) and "ran none of it" in str(e.value)
    assert not marker.exists()
