"""Where a path typed into a node may lead: ComfyUI's input, output and temp folders, and the folders whoever
runs the server allows (never a prompt).

Anyone who can POST a prompt can type a path, so every path input (Load Image Folder, Load Video Frames and any
later one) is resolved here, as core confines its own file access (server.py's /view and /upload check
`os.path.commonpath` against the folder): relative names resolve inside input/ (or output/ / temp/ with core's
annotations "name [output]", "name [temp]"); absolute paths are accepted only inside an allowed folder; links are
followed first, so a link inside input/ that leads elsewhere is refused; `~` is refused. A refusal never says
where a path leads, nor whether it exists, and no message names a host path outside the allowed folders.

More folders: whoever runs the server lists them, one absolute path each, in
* the environment variable MOTIONKIT_EXTRA_INPUT_ROOTS (separated by os.pathsep: ':' on Linux/macOS, ';' on
  Windows), and/or
* the file `motionkit_input_roots.txt` in ComfyUI's user directory (one path a line, '#' comments), read on every
  use, so an edit needs no restart. ComfyUI's HTTP API writes only inside user/<user>/, never this file.

Pure Python (no ComfyUI import): the node files pass ComfyUI's folders in (`Roots.from_comfy`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Tuple

from ..common.errors import MotionKitError

ENV_VAR = "MOTIONKIT_EXTRA_INPUT_ROOTS"
SETTINGS_FILE = "motionkit_input_roots.txt"
ANNOTATIONS = ("input", "output", "temp")  # core's "name [output]" suffixes (folder_paths.annotated_filepath)
LOG = logging.getLogger("MotionKit")
_warned: set = set()


class PathNotAllowedError(MotionKitError):
    """A path input that leads outside the folders this server allows."""


@dataclass(frozen=True)
class Roots:
    """The folders path inputs may reach: ComfyUI's three, then the extra ones (all absolute)."""
    input: str
    output: str
    temp: str
    extra: Tuple[str, ...] = field(default=())

    @classmethod
    def from_comfy(cls, folder_paths, environ: Optional[Mapping[str, str]] = None) -> "Roots":
        """ComfyUI's folders (the `folder_paths` module) plus the extra roots from the environment and the
        settings file in ComfyUI's user directory."""
        environ = os.environ if environ is None else environ
        return cls(folder_paths.get_input_directory(), folder_paths.get_output_directory(),
                   folder_paths.get_temp_directory(),
                   tuple(extra_roots(environ, folder_paths.get_user_directory())))

    def base(self, annotation: str) -> str:
        return {"input": self.input, "output": self.output, "temp": self.temp}[annotation]

    def allowed(self) -> Tuple[str, ...]:
        """Every allowed folder, links resolved."""
        return tuple(os.path.realpath(r) for r in (self.input, self.output, self.temp, *self.extra))


def extra_roots(environ: Mapping[str, str], user_dir: Optional[str]) -> list[str]:
    """The extra folders from MOTIONKIT_EXTRA_INPUT_ROOTS and <user dir>/motionkit_input_roots.txt.

    Relative entries are ignored (with one warning each): a root must not depend on the server's working folder."""
    entries = [(e.strip(), ENV_VAR) for e in environ.get(ENV_VAR, "").split(os.pathsep)]
    if user_dir:
        path = os.path.join(user_dir, SETTINGS_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                entries += [(ln.split("#", 1)[0].strip(), path) for ln in f]
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as e:
            _warn_once(("file", path), f"MotionKit: could not read {path} ({e}); no extra input folders from it.")
    roots = []
    for entry, source in entries:
        if not entry:
            continue
        if not os.path.isabs(entry):
            _warn_once(("rel", entry), f"MotionKit: ignoring extra input folder {entry!r} from {source}: give an "
                                       f"absolute path.")
            continue
        if os.path.normpath(entry) not in roots:
            roots.append(os.path.normpath(entry))
    return roots


def _warn_once(key, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        LOG.warning(message)


def split_annotation(value: str) -> Tuple[str, Optional[str]]:
    """'name [output]' -> ('name', 'output'), as core's folder_paths.annotated_filepath."""
    for annotation in ANNOTATIONS:
        suffix = f"[{annotation}]"
        if value.endswith(suffix):
            return value[:-len(suffix)].rstrip(), annotation
    return value, None


def is_inside(path: str, allowed: Iterable[str]) -> bool:
    """True when the resolved *path* is one of the *allowed* (resolved) folders or inside one."""
    for root in allowed:
        try:
            if os.path.commonpath((root, path)) == root:
                return True
        except ValueError:  # another drive (Windows), or absolute vs relative
            continue
    return False


def describe(roots: Roots) -> str:
    extra = " or a folder this server allows" if roots.extra else ""
    return f"ComfyUI's input, output or temp folder{extra}"


def resolve(value: str, roots: Roots, what: str = "folder", node: str = "MotionKit") -> Tuple[str, str]:
    """The real path of a path input, checked to lie in an allowed folder; and the name to show in messages.

    Raises PathNotAllowedError (never naming where the path leads, nor whether it exists) otherwise."""
    value = (value or "").strip().strip('"').strip()
    if not value:
        raise PathNotAllowedError(f"{node}: '{what}' is empty. Give a {what} in ComfyUI's input folder "
                                  f"(e.g. 'frames'), or 'name [output]' for the output folder.")
    if "\x00" in value:
        raise PathNotAllowedError(f"{node}: the {what} name holds a NUL character; type the name again.")
    name, annotation = split_annotation(value)
    fix = (f"Put the {what} into ComfyUI's input folder and give its name relative to it (e.g. 'frames'), or "
           f"ask whoever runs this server to allow its folder ({ENV_VAR} or {SETTINGS_FILE} in ComfyUI's user "
           f"folder).")
    if name.startswith("~"):
        raise PathNotAllowedError(f"{node}: home-folder paths ('~') are not accepted for the {what} {value!r}. "
                                  + fix)
    if os.path.isabs(name):
        if annotation is not None:
            raise PathNotAllowedError(f"{node}: {value!r} is an absolute path with a [{annotation}] annotation; "
                                      f"give a name relative to the {annotation} folder instead.")
        path, shown = name, value
    else:
        annotation = annotation or "input"
        path = os.path.join(roots.base(annotation), name)
        shown = f"{name!r} in ComfyUI's {annotation} folder"
    real = os.path.realpath(path)
    if not is_inside(real, roots.allowed()):
        # the same words whether the path exists or not, and nothing about where it leads
        raise PathNotAllowedError(f"{node}: the {what} {value!r} is outside {describe(roots)} (after following "
                                  f"links and '..'), so it is not read. " + fix)
    return real, shown


def check_file(path: str, roots: Roots, shown_folder: str, node: str = "MotionKit") -> None:
    """A file found in an allowed folder must not be a link out of the allowed folders."""
    if not is_inside(os.path.realpath(path), roots.allowed()):
        raise PathNotAllowedError(f"{node}: {os.path.basename(path)} in {shown_folder} is a link that leads "
                                  f"outside {describe(roots)}, so it is not read. Replace the link with the file.")
