"""Read the workflow to convert: a UI-format JSON file, or a PNG / WebP with the workflow ComfyUI embedded."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import AdeImportError

IMAGE_SUFFIXES = {".png", ".webp"}


def _embedded(path: Path) -> str:
    """The workflow text ComfyUI wrote into an image: PNG text chunk "workflow", WebP EXIF "workflow:{...}"."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            text = image.info.get("workflow")
            if text:
                return text
            prompt_only = "prompt" in image.info
            for tag, value in image.getexif().items():  # SaveAnimatedWEBP: 0x010F "workflow:...", 0x0110 "prompt:..."
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if isinstance(value, str) and value.lower().startswith("workflow:"):
                    return value.split(":", 1)[1]
                prompt_only = prompt_only or (isinstance(value, str) and value.lower().startswith("prompt:"))
    except OSError as e:
        raise AdeImportError(f"{path}: cannot read the image ({e}).") from e
    if prompt_only:
        raise AdeImportError(f"{path}: the image holds only the API-format prompt, not the UI workflow; "
                             f"open it in ComfyUI and save the workflow (Workflow > Save) to convert that.")
    raise AdeImportError(f"{path}: no ComfyUI workflow embedded in this image (saved with metadata disabled, "
                         f"or re-encoded by another program). Convert the workflow's .json instead.")


def parse_workflow(data, source: str = "the workflow") -> dict:
    """Check `data` is a UI-format workflow; API format and anything else are refused, saying what to do."""
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and isinstance(data.get("links"), list):
        return data
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        raise AdeImportError(f"{source} is an API-format prompt (node ids mapped to class_type and inputs): it "
                             f"has no layout or widget order to convert. Load it in ComfyUI and save it as a "
                             f"workflow (Workflow > Save, not Export (API)), then convert that file.")
    raise AdeImportError(f"{source} is not a ComfyUI workflow (a UI-format workflow is a JSON object with "
                         f"'nodes' and 'links' lists). Give the .json ComfyUI saves, or a PNG/WebP it wrote.")


def read_workflow(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AdeImportError(f"{path}: no such file.")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        text = _embedded(path)
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise AdeImportError(f"{path}: not a text file; give a workflow .json or a PNG/WebP ComfyUI saved.") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AdeImportError(f"{path}: not valid JSON ({e}); give the workflow .json ComfyUI saved.") from e
    return parse_workflow(data, str(path))
