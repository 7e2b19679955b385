"""The one model-folder registration: a `models/<name>` folder ComfyUI lists for our loaders."""
from __future__ import annotations

import os


def register_model_folder(name: str, subfolders: tuple[str, ...] = (), extensions: tuple[str, ...] = ()) -> None:
    """Make `name` a ComfyUI model folder holding models/<name> and models/<each subfolder>.

    When another pack (e.g. AnimateDiff-Evolved) registered the same name first, our paths are added to its list,
    so both packs see one collection. `extensions` are accepted besides ComfyUI's usual weight files."""
    import folder_paths  # ComfyUI's; imported here so the rest of this package needs no ComfyUI

    paths = [os.path.join(folder_paths.models_dir, d) for d in (name, *subfolders)]
    if name not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[name] = (paths, set(folder_paths.supported_pt_extensions) | set(extensions))
    else:
        for path in paths:
            folder_paths.add_model_folder_path(name, path)
