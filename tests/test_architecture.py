"""The house rules a newcomer can rely on, checked on the source: no import cycle, imports at the top of a module
(but for optional dependencies), SQLite only inside the store, and no TensorFlow in the runtime."""

from __future__ import annotations

import ast
import functools
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"edgeface": REPO / "edgeface", "edgeface_convert": REPO / "convert" / "edgeface_convert"}
# Imported inside a function on purpose: dependencies a command may lack, loaded only when it needs them (LiteRT's
# fallback; TensorFlow, behind edgeface_convert.commands; scikit-image, behind the demo).
OPTIONAL = {"ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow", "skimage", "paho",
            "edgeface_convert.commands", "edgeface_convert.demo"}


@functools.cache  # `imports` asks for every function of every module; the tree does not change during a run
def modules() -> dict[str, Path]:
    """Every module of both packages by dotted name (not to be changed: the one dict is shared)."""
    found = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts))
            found[name] = path
    return found


@functools.cache  # each test walks every module's tree: parsed once per run
def parsed(path: Path) -> ast.Module:
    """The syntax tree of the module at `path` (not to be changed: the one tree is shared)."""
    return ast.parse(path.read_text())


def imports(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(module imported, node) for every import in the tree; `from package import module` names the module."""
    known = modules()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in known]
            found += [(name, node) for name in submodules] or [(node.module, node)]
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {imported for imported, _ in imports(parsed(path)) if imported in known and imported != name}
        for name, path in known.items()
    }


def test_no_import_cycle():
    edges = graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges[name]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_imports_sit_at_the_top_of_a_module_but_for_optional_dependencies():
    inside_functions = []
    for name, path in modules().items():
        tree = parsed(path)
        for function in [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for imported, node in imports(ast.Module(body=function.body, type_ignores=[])):
                if not any(imported == optional or imported.startswith(optional + ".") for optional in OPTIONAL):
                    inside_functions.append(f"{name}:{node.lineno} imports {imported}")
    assert inside_functions == []


def test_sqlite_only_in_the_store_and_tensorflow_only_on_the_workstation_side():
    for name, path in modules().items():
        imported = {module.split(".")[0] for module, _ in imports(parsed(path))}
        if not name.startswith("edgeface.store"):
            assert "sqlite3" not in imported, name
        if name.startswith("edgeface."):
            assert not imported & {"tensorflow", "keras", "tf_keras"}, name


def test_every_package_is_installed():
    """pyproject.toml lists packages by name, sub-packages too; one left out installs a runtime that cannot start."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert listed == found
