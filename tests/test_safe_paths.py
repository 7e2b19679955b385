"""Path inputs are confined to ComfyUI's input/output/temp folders and the folders the server allows
(media/safe_paths.py), without ComfyUI: one test per escape attempt, one per allowed way in."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from motionkit.media import safe_paths
from motionkit.media.safe_paths import ENV_VAR, SETTINGS_FILE, PathNotAllowedError, Roots, check_file, extra_roots, resolve
from motionkit.motion.errors import MotionKitError


@pytest.fixture
def comfy(tmp_path):
    """A ComfyUI-like base folder, and a 'secret' folder elsewhere on the host."""
    base = tmp_path / "comfy"
    for d in ("input", "output", "temp", "user"):
        (base / d).mkdir(parents=True)
    (base / "input" / "frames").mkdir()
    (base / "output" / "renders").mkdir()
    secret = tmp_path / "host_secret" / "photos"
    secret.mkdir(parents=True)
    (secret / "a.png").write_bytes(b"not really")
    roots = Roots(str(base / "input"), str(base / "output"), str(base / "temp"))
    return base, secret, roots


def refused(value, roots, secret, what="folder"):
    """The refusal for *value*; checks that it names no host path outside the allowed folders."""
    with pytest.raises(PathNotAllowedError) as e:
        resolve(value, roots, what=what)
    msg = str(e.value)
    rest = msg.replace(value.strip(), "<what was typed>")  # echoing the input back reveals nothing new
    assert str(secret) not in rest and "host_secret" not in rest and "/tmp" not in rest, msg
    assert "input folder" in msg, "says where to put the folder instead"
    return msg


def test_relative_names_resolve_inside_input_and_annotations_pick_the_folder(comfy):
    base, _, roots = comfy
    path, shown = resolve("frames", roots)
    assert path == os.path.realpath(base / "input" / "frames") and shown == "'frames' in ComfyUI's input folder"
    assert resolve(' "frames" ', roots)[0] == path, "pasted with quotes"
    assert resolve("renders [output]", roots)[0] == os.path.realpath(base / "output" / "renders")
    assert resolve("x [temp]", roots)[0] == os.path.realpath(base / "temp" / "x")
    assert resolve("frames/../frames", roots)[0] == path, "'..' that stays inside is fine"
    # an absolute path into an allowed folder is accepted as it is
    assert resolve(str(base / "output" / "renders"), roots)[0] == os.path.realpath(base / "output" / "renders")


def test_absolute_path_outside_is_refused_whether_it_exists_or_not(comfy):
    _, secret, roots = comfy
    msg = refused(str(secret), roots, secret)
    assert "outside ComfyUI's input, output or temp folder" in msg and ENV_VAR in msg
    missing = refused(str(secret.parent / "no_such_folder"), roots, secret)
    # the same words apart from the echoed input: nothing tells which host folders exist
    assert msg.replace(str(secret), "X") == missing.replace(str(secret.parent / "no_such_folder"), "X")


def test_dotdot_escape_is_refused(comfy):
    _, secret, roots = comfy
    for value in ("../../host_secret/photos", "frames/../../../host_secret/photos", "../host_secret [output]",
                  "..", "../input/../../host_secret"):
        refused(value, roots, secret)


def test_symlink_out_is_refused_without_saying_where_it_leads(comfy):
    base, secret, roots = comfy
    (base / "input" / "innocent").symlink_to(secret, target_is_directory=True)
    (base / "input" / "dangling").symlink_to(secret.parent / "gone", target_is_directory=True)
    msg = refused("innocent", roots, secret)
    assert "after following links" in msg
    assert refused("dangling", roots, secret).replace("dangling", "innocent") == msg, "existence is not revealed"
    # a link to a file outside, inside an allowed folder
    (base / "input" / "frames" / "b.png").symlink_to(secret / "a.png")
    path, shown = resolve("frames", roots)
    with pytest.raises(PathNotAllowedError, match=r"b\.png in 'frames' in ComfyUI's input folder is a link") as e:
        check_file(os.path.join(path, "b.png"), roots, shown)
    assert str(secret) not in str(e.value)
    # links that stay inside are followed
    (base / "input" / "alias").symlink_to(base / "output" / "renders", target_is_directory=True)
    assert resolve("alias", roots)[0] == os.path.realpath(base / "output" / "renders")


def test_home_folder_is_refused(comfy):
    _, secret, roots = comfy
    for value in ("~", "~/", "~/Pictures", "~root/.ssh"):
        assert "home-folder paths" in refused(value, roots, secret)


def test_empty_and_odd_names(comfy):
    _, secret, roots = comfy
    with pytest.raises(PathNotAllowedError, match="'folder' is empty"):
        resolve("  ", roots)
    with pytest.raises(PathNotAllowedError, match="NUL"):
        resolve("frames\x00/x", roots)
    with pytest.raises(PathNotAllowedError, match=r"absolute path with a \[output\] annotation"):
        resolve(str(secret) + " [output]", roots)
    assert issubclass(PathNotAllowedError, MotionKitError), "shown in the node's error box like every MotionKit error"


def test_extra_roots_come_from_the_server_environment_and_settings_file(comfy, tmp_path, caplog):
    base, secret, _ = comfy
    other = tmp_path / "shared_footage"
    other.mkdir()
    env = {ENV_VAR: os.pathsep.join([str(secret.parent), "relative/ignored", ""])}
    (base / "user" / SETTINGS_FILE).write_text(f"# footage on the NAS\n{other}   # trailing comment\n\n")
    safe_paths._warned.clear()
    with caplog.at_level(logging.WARNING, logger="MotionKit"):
        found = extra_roots(env, str(base / "user"))
    assert found == [str(secret.parent), str(other)]
    assert "relative/ignored" in caplog.text and "absolute path" in caplog.text

    fp = FakeFolderPaths(base)
    roots = Roots.from_comfy(fp, environ=env)
    assert resolve(str(secret), roots)[0] == os.path.realpath(secret), "an allowed extra root is readable"
    assert resolve(str(other / "clip"), roots)[0] == os.path.realpath(other / "clip")
    # a link inside input to an allowed extra root is fine too
    (base / "input" / "nas").symlink_to(other, target_is_directory=True)
    assert resolve("nas", roots)[0] == os.path.realpath(other)
    # ... but not beyond it, and without the variable the same path is refused again
    with pytest.raises(PathNotAllowedError, match="or a folder this server allows"):
        resolve(str(tmp_path), roots)
    assert not Roots.from_comfy(fp, environ={}).extra[:1] == (str(secret.parent),)
    (base / "user" / SETTINGS_FILE).unlink()
    with pytest.raises(PathNotAllowedError):
        resolve(str(other), Roots.from_comfy(fp, environ={}))


class FakeFolderPaths:
    """The four functions of ComfyUI's folder_paths that Roots.from_comfy reads."""

    def __init__(self, base: Path):
        self.base = base

    def get_input_directory(self):
        return str(self.base / "input")

    def get_output_directory(self):
        return str(self.base / "output")

    def get_temp_directory(self):
        return str(self.base / "temp")

    def get_user_directory(self):
        return str(self.base / "user")
