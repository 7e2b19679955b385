"""The pack imports itself one way: relative imports only, as the package ComfyUI loads it as.

An absolute fallback (`except ImportError: from motion.errors import ...`) could pick up another pack's
top-level `motion` module and hides real ImportErrors; tests and benches import the pack as `motionkit`
(tests/pack_package.py), never its subpackages as top-level modules (which would make second copies of its
classes)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench", "web", "example_workflows"}


def pack_sources():
    return sorted(p for p in REPO.rglob("*.py")
                  if p.relative_to(REPO).parts[0] not in ("tests", "bench", ".git") and p.name != "motionkit_queue.py")


def _imports_pack(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in PACKAGES
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] in PACKAGES for a in node.names)
    return False


def test_packages_found():
    assert {"motion", "sampling", "control", "training", "nodes"} <= PACKAGES


@pytest.mark.parametrize("path", pack_sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_pack_imports_are_relative_without_fallback(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_imports_pack(s) for s in node.body):
            handled = [ast.unparse(h.type) for h in node.handlers if h.type is not None]
            assert not any("ImportError" in h for h in handled), (
                f"{path.relative_to(REPO)}:{node.lineno}: an import of the pack with an ImportError fallback")
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in PACKAGES:
            pytest.fail(f"{path.relative_to(REPO)}:{node.lineno}: absolute import of the pack's "
                        f"'{node.module}' (use a relative import)")


def test_tests_and_benches_import_the_pack_as_a_package():
    top = re.compile(rf"^\s*(?:from|import)\s+({'|'.join(sorted(PACKAGES - {'queue_tool', 'nodes'}))})(?:\.|\s)", re.M)
    bad = []
    for path in sorted(list((REPO / "tests").glob("*.py")) + list((REPO / "bench").glob("*.py"))):
        for m in top.finditer(path.read_text()):
            bad.append(f"{path.relative_to(REPO)}: {m.group(0).strip()}")
    assert not bad, "import the pack as `motionkit.<package>` (tests/pack_package.py):\n" + "\n".join(bad)



def test_test_modules_import_no_other_test_module():
    """Shared test code lives in helper modules (tests/comfy_graphs.py, model_cache.py, unet_helpers.py,
    browser.py, ...): a test module imported by another one runs its module-level set-up twice and hides
    which tests it holds."""
    tests = REPO / "tests"
    modules = {p.stem for p in tests.glob("test_*.py")}
    bad = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            bad += [f"tests/{path.name}:{node.lineno}: {n}" for n in names if n.split(".")[0] in modules]
    assert not bad, "move what other modules need into a helper module:\n" + "\n".join(bad)

# Floors, lowest first: a package imports only packages on floors below its own (shared/ARCHITECTURE.md).
FLOORS = (
    ("common",),
    ("motion", "sampling"),
    ("media", "trajectory", "queue_tool", "ade_import"),
    ("control", "training", "animate_anyone", "cogvideox", "camera", "pia"),
    ("tora",),
    ("nodes",),
)


def package_imports() -> dict[str, set[str]]:
    """package -> the other packages of ours its modules import (also inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in pack_sources():
        rel = path.relative_to(REPO)
        if len(rel.parts) < 2:
            continue
        pkg = rel.parts[0]
        graph.setdefault(pkg, set())
        depth = len(rel.parts) - 1  # how deep the module's folder is below the pack's root
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == depth + 1:  # reaches the pack's root
                targets = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                graph[pkg].update(t for t in targets if t != pkg)
    return graph


def test_every_package_is_on_a_floor():
    floors = {p for floor in FLOORS for p in floor}
    assert set(package_imports()) <= floors, f"put {set(package_imports()) - floors} on a floor in FLOORS"


def test_imports_point_down_only():
    floor_of = {p: i for i, floor in enumerate(FLOORS) for p in floor}
    up = [f"{pkg} (floor {floor_of[pkg]}) imports {dep} (floor {floor_of[dep]})"
          for pkg, deps in sorted(package_imports().items()) for dep in sorted(deps)
          if floor_of[dep] >= floor_of[pkg]]
    assert not up, "imports that do not point down:\n" + "\n".join(up)
