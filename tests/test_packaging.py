"""Registry packaging: pyproject.toml as the Comfy Registry expects it, its dependencies equal to requirements.txt,
a GPL-3.0-compatible LICENSE, and a README install section that matches (docs.comfy.org/registry/specifications)."""
from __future__ import annotations

import json

import re
from pathlib import Path

import pytest

import comfy_env

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def requirement_lines(path: Path) -> list[str]:
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines())
    return [ln for ln in lines if ln]


def normalized(requirement: str) -> str:
    """'Safetensors >= 0.4.2' -> 'safetensors>=0.4.2' (PEP 503 name, no spaces)."""
    name, rest = re.match(r"([A-Za-z0-9._-]+)(.*)", requirement.replace(" ", "")).groups()
    return re.sub(r"[-_.]+", "-", name).lower() + rest


def test_dependencies_equal_requirements_txt(pyproject):
    deps = sorted(map(normalized, pyproject["project"]["dependencies"]))
    reqs = sorted(map(normalized, requirement_lines(REPO / "requirements.txt")))
    assert deps == reqs, ("pyproject.toml [project].dependencies and requirements.txt differ: the Registry installs "
                          f"the first, `pip install -r` the second. pyproject: {deps}; requirements.txt: {reqs}")
    assert not any(d.startswith("torch") for d in deps), "ComfyUI brings torch; a pack must not pin it"


def test_project_section_follows_the_registry_spec(pyproject):
    project = pyproject["project"]
    name = project["name"]
    # < 100 characters; letters, digits, - _ . only; no two specials in a row; starts with a letter
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z](?:[A-Za-z0-9]|[-_.](?=[A-Za-z0-9]))*", name), name
    assert "comfyui" not in name.lower(), "the registry asks not to put ComfyUI in the node id"
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), "X.Y.Z semantic version"
    assert len(project["description"]) > 40
    assert project["license"] == {"file": "LICENSE"}
    urls = project["urls"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", urls["Repository"])
    for key in ("Documentation", "Issues"):
        assert urls[key].startswith(urls["Repository"])


def test_tool_comfy_section(pyproject):
    comfy = pyproject["tool"]["comfy"]
    assert comfy["PublisherId"] and re.fullmatch(r"[a-z0-9-]+", comfy["PublisherId"])
    assert comfy["DisplayName"] == "MotionKit"
    icon = comfy["Icon"]
    repo = pyproject["project"]["urls"]["Repository"]
    raw = repo.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    assert icon.startswith(raw) and icon.endswith((".svg", ".png", ".jpg", ".gif"))
    icon_file = REPO / icon[len(raw):]
    assert icon_file.is_file(), f"the Icon URL points at {icon_file.name}, which is not in the repository"
    if icon_file.suffix == ".svg":  # at most 800 x 400 px
        width, height = (int(re.search(rf'{k}="(\d+)"', icon_file.read_text()).group(1)) for k in ("width", "height"))
        assert width <= 800 and height <= 400
    assert "web" not in comfy, "WEB_DIRECTORY in __init__.py serves web/ (a [tool.comfy] web would rename it)"
    assert comfy["requires-comfyui"].startswith(">=")


def test_license_is_gpl3_compatible(pyproject):
    text = (REPO / "LICENSE").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 3, 29 June 2007" in text
    assert "GPLv3+" in " ".join(pyproject["project"]["classifiers"])


def test_readme_install_section_matches(pyproject):
    """Only what is true today: the pack is not published (no public repository, not in the Registry), its
    pyproject.toml is ready for the Registry, and it installs from a local copy."""
    readme = (REPO / "README.md").read_text()
    install = readme[readme.index("## Install"):readme.index("\n## ", readme.index("## Install") + 3)]
    assert "<this repository>" not in readme
    for claim in ("published in the Comfy Registry", "git clone", pyproject["project"]["urls"]["Repository"]):
        assert claim not in install, f"the Install section claims {claim!r}, which does not exist yet"
    assert "not published yet" in install and "not in the Comfy Registry" in install
    assert f"name `{pyproject['project']['name']}`" in install
    assert f"publisher `{pyproject['tool']['comfy']['PublisherId']}`" in install
    assert "ComfyUI/custom_nodes/MotionKit" in install
    assert "pip install -r ComfyUI/custom_nodes/MotionKit/requirements.txt" in install


def test_readme_first_animation_matches_its_example():
    """The walk-through describes the saver txt2anim_sd15.json really uses (core's keeps the frontend's own
    preview: MotionKit's player with pause and a frame slider only with the Core nodes setting on)."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Your first animation")
    walk = " ".join(readme[start:readme.index("\n## ", start + 3)].split())  # line breaks as spaces
    ui = json.loads((REPO / "example_workflows" / "txt2anim_sd15.json").read_text())
    savers = [n["type"] for n in ui["nodes"] if n["type"].startswith(("Save", "MotionKitSave"))]
    assert savers == ["SaveAnimatedWEBP"], savers
    assert "*Save Animated WEBP*" in walk and "Settings → MotionKit → Preview → Core nodes" in walk
    assert "click to pause" not in walk
    prefix = next(n for n in ui["nodes"] if n["type"] == "SaveAnimatedWEBP")["widgets_values"][0]
    assert f"ComfyUI/output/{prefix.split('/')[0]}/" in walk


def test_comfyuis_own_parser_reads_it(pyproject):
    """ComfyUI reads pyproject.toml when it loads the pack (nodes.load_custom_node -> comfy_config)."""
    if comfy_env.COMFYUI_ROOT is None:
        pytest.skip(comfy_env.SKIP_REASON)
    comfy_env.comfyui_on_syspath()
    pytest.importorskip("pydantic_settings", reason="ComfyUI's pyproject parser needs pydantic-settings")
    from comfy_config import config_parser
    config = config_parser.extract_node_configuration(str(REPO))
    assert config.project.name == pyproject["project"]["name"]
    assert config.project.version == pyproject["project"]["version"]
    assert config.project.license.file == "LICENSE"
    assert config.project.urls.repository == pyproject["project"]["urls"]["Repository"]
    assert config.project.urls.issues == pyproject["project"]["urls"]["Issues"]
    assert (config.tool_comfy.publisher_id, config.tool_comfy.display_name) == ("motionkit", "MotionKit")
    assert config.tool_comfy.icon == pyproject["tool"]["comfy"]["Icon"] and config.tool_comfy.web is None
    assert config.project.supported_comfyui_version == ">=0.3.64"
    assert config.project.supported_os == ["OS Independent"]
