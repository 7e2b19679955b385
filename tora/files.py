"""Tora's modules from its transformer's state dict (the diffusers-layout Tora transformer).

Tora's ToraTransformer3DModel is CogVideoX's transformer plus two attributes, so its file holds CogVideoX's keys and
* `traj_extractor.conv_in.{weight,bias}`, `traj_extractor.body.{n}.{block1,block2}.{weight,bias}`,
  `traj_extractor.body.{n}.{bn1,bn2}.{weight,bias,running_mean,running_var,num_batches_tracked}`
  (n < 2 x layers),
* `fuser.{i}.flow_{gamma,beta}_{spatial,temporal}.{weight,bias}`, `fuser.{i}.flow_cond_norm.{weight,bias}` (i < layers).
(1598 keys for the published CogVideoX-5B Tora; tests/tora_keys.json.) The sizes are read from the keys.
Tora's SAT checkpoints (ckpts/tora/{t2v,i2v}/mp_rank_00_model_states.pt) hold the same modules, the fusers under
`mixins.adaln_layer.fuser_list.{i}.`: renamed to `fuser.{i}.` (cogvideox/sat_keys.py).
"""
from __future__ import annotations

import re

import torch

from ..cogvideox.sat_keys import fuser_sat_to_diffusers
from .errors import NotToraFileError, ToraError
from .model import ToraConfig, ToraModules

PREFIXES = ("traj_extractor.", "fuser.")
ANCHOR = "traj_extractor.conv_in.weight"
OPTIONAL = ".num_batches_tracked"  # BatchNorm's step counter: unused in eval mode, kept when present


def _prefix(sd: dict) -> str | None:
    """What comes before Tora's keys (nothing in Tora's own file; e.g. 'model.diffusion_model.' in a repacked one)."""
    for k in sd:
        if k.endswith(ANCHOR):
            return k[: -len(ANCHOR)]
    return None


def _not_tora(sd: dict, source: str) -> NotToraFileError:
    keys = list(sd)
    if any(".fuser_list." in k or k.startswith(("fuser_list.", "fuser.")) or ".fuser." in k for k in keys):
        what = ("Tora's fusers without its trajectory extractor (no traj_extractor.* keys): the file is incomplete. "
                "Download Tora's transformer (diffusers folder or SAT checkpoint) again")
    elif any("transformer_blocks." in k and ".attn1." in k for k in keys):
        what = ("a CogVideoX transformer without Tora's modules (no traj_extractor.* / fuser.* keys). Pick Tora's "
                "transformer (diffusers layout) instead")
    else:
        what = "not a Tora transformer (no traj_extractor.* / fuser.* keys)"
    return NotToraFileError(f"'{source}' is {what}.")


def split_tora(sd: dict, source: str = "the transformer file") -> tuple[dict, dict]:
    """(Tora's keys with Tora's names, the other keys unchanged); NotToraFileError when Tora's are absent. SAT
    fusers (`...mixins.adaln_layer.fuser_list.{i}.`) come back as `fuser.{i}.`."""
    sd = fuser_sat_to_diffusers(sd)
    prefix = _prefix(sd)
    if prefix is None:
        raise _not_tora(sd, source)
    tora, rest = {}, {}
    for k, v in sd.items():
        if k.startswith(prefix) and k[len(prefix):].startswith(PREFIXES):
            tora[k[len(prefix):]] = v
        else:
            rest[k] = v
    return tora, rest


def config_from_keys(tora_sd: dict, source: str = "the transformer file") -> ToraConfig:
    """The sizes of ToraModules from Tora's keys (shapes only: works on the meta device)."""
    conv_in = tora_sd[ANCHOR]
    blocks = {int(m.group(1)) for k in tora_sd if (m := re.match(r"traj_extractor\.body\.(\d+)\.", k))}
    fusers = {int(m.group(1)) for k in tora_sd if (m := re.match(r"fuser\.(\d+)\.", k))}
    if not fusers or "fuser.0.flow_gamma_temporal.weight" not in tora_sd:
        raise ToraError(f"'{source}' has Tora's trajectory extractor but not its fusers (fuser.0.* is missing): the "
                        f"file is incomplete. Download Tora's transformer again.")
    layers = max(fusers) + 1
    if not blocks or (max(blocks) + 1) % layers:
        raise ToraError(f"'{source}': Tora's extractor has {max(blocks, default=-1) + 1} residual blocks for "
                        f"{layers} fusers (expected a multiple): the file is incomplete or not Tora's.")
    flow_channels, patched = conv_in.shape[0], conv_in.shape[1]
    width = tora_sd["fuser.0.flow_gamma_temporal.weight"].shape[0]
    latent_channels = ToraConfig.latent_channels  # CogVideoX's VAE; conv_in sees it only times the patch size
    patch_t, rest = divmod(patched, latent_channels * 4)
    if rest or patch_t not in (1, 2):
        raise ToraError(f"'{source}': Tora's conv_in takes {patched} channels; expected 16 latent channels x "
                        f"(1 or 2) x 2 x 2 patches.")
    return ToraConfig(layers=layers, width=width, latent_channels=latent_channels, flow_channels=flow_channels,
                      blocks_per_layer=(max(blocks) + 1) // layers, patch_size=(patch_t, 2, 2))


def build_tora(sd: dict, source: str = "the transformer file", operations=None, device=None,
               dtype: torch.dtype | None = None) -> ToraModules:
    """ToraModules with the file's weights (the Tora keys of a whole transformer state dict, or just those)."""
    tora_sd, _ = split_tora(sd, source)
    config = config_from_keys(tora_sd, source)
    with torch.device("meta"):
        modules = ToraModules(config, operations)
    expected = modules.state_dict()
    missing = [k for k in expected if k not in tora_sd and not k.endswith(OPTIONAL)]
    extra = [k for k in tora_sd if k not in expected]
    if missing or extra:
        detail = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else "") + \
                 (", " if missing and extra else "") + (f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "")
        raise ToraError(f"'{source}': Tora's modules do not match the layout of Tora's published transformer: "
                        f"{detail}. The file is incomplete or a variant MotionKit does not know; download Tora's "
                        f"transformer again.")
    wrong = [(k, tuple(tora_sd[k].shape), tuple(v.shape)) for k, v in expected.items()
             if k in tora_sd and tuple(tora_sd[k].shape) != tuple(v.shape)]
    if wrong:
        k, got, want = wrong[0]
        raise ToraError(f"'{source}': {len(wrong)} of Tora's weights have unexpected shapes (e.g. {k}: {list(got)}, "
                        f"expected {list(want)}). The file is damaged or not Tora's; download it again.")
    weights = dict(tora_sd)
    for k, v in expected.items():
        if k.endswith(OPTIONAL) and k not in weights:
            weights[k] = torch.zeros((), dtype=v.dtype)
    modules.load_state_dict(weights, strict=True, assign=True)  # the file's tensors themselves: no copy
    return modules.to(device=device, dtype=dtype).eval()
