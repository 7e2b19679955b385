"""Where CogVideoX / Tora files are found under ComfyUI (imports ComfyUI's folder_paths: use only there).

models/cogvideox/ holds single .safetensors transformers and whole diffusers folders (e.g. Tora_T2V_diffusers/ with
transformer/ and vae/); a folder is offered once, as "<name>/", not as its shards. CogVideoX VAEs are the vae/ of
such a folder ("<name>/vae") or a single file in models/vae/."""
from __future__ import annotations

import os

from .errors import CogVideoXFileError

FOLDER = "cogvideox"
WHERE = "ComfyUI/models/cogvideox"
VAE_SUFFIX = "/vae"


def _roots(folder: str = FOLDER) -> list[str]:
    import folder_paths
    return [p for p in folder_paths.get_folder_paths(folder) if os.path.isdir(p)]


def _model_folders() -> list[tuple[str, str]]:
    """(name, path) of each diffusers model folder: one holding transformer/, or a transformer folder itself."""
    found = []
    for root in _roots():
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if os.path.isdir(path) and (os.path.isdir(os.path.join(path, "transformer"))
                                        or os.path.isfile(os.path.join(path, "config.json"))):
                found.append((name, path))
    return found


def transformer_choices() -> list[str]:
    import folder_paths
    folders = [name for name, _ in _model_folders()]
    files = [f for f in folder_paths.get_filename_list(FOLDER)
             if f.endswith((".safetensors", ".pt")) and f.replace("\\", "/").split("/")[0] not in folders]
    return [f"{name}/" for name in folders] + files


def vae_choices() -> list[str]:
    import folder_paths
    folders = [f"{name}{VAE_SUFFIX}" for name, path in _model_folders() if os.path.isdir(os.path.join(path, "vae"))]
    return folders + [f for f in folder_paths.get_filename_list("vae") if f.endswith(".safetensors")]


def transformer_path(name: str) -> str:
    """The file or folder of a transformer_choices() entry (only inside models/cogvideox)."""
    import folder_paths
    if name.endswith("/"):
        for folder, path in _model_folders():
            if folder == name[:-1]:
                return path
    else:
        path = folder_paths.get_full_path(FOLDER, name)
        if path is not None:
            return path
    raise CogVideoXFileError(f"'{name}' is not in {WHERE}. Put Tora's diffusers folder (Tora_T2V_diffusers/) or a "
                             f"single .safetensors transformer or Tora's SAT checkpoint (mp_rank_00_model_states.pt) there, then "
                             f"press R to refresh the list.")


def vae_path(name: str) -> str:
    """The vae/ folder or VAE file of a vae_choices() entry (inside models/cogvideox or models/vae)."""
    import folder_paths
    if name.endswith(VAE_SUFFIX):
        for folder, path in _model_folders():
            if folder == name[: -len(VAE_SUFFIX)] and os.path.isdir(os.path.join(path, "vae")):
                return os.path.join(path, "vae")
    else:
        path = folder_paths.get_full_path("vae", name)
        if path is not None:
            return path
    raise CogVideoXFileError(f"CogVideoX VAE '{name}' was not found. Use the vae/ of a diffusers folder in {WHERE}, "
                             f"or put the VAE's .safetensors file in ComfyUI/models/vae, then press R to refresh.")
