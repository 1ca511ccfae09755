"""The structure of the package, read from its source with `ast`: which module imports which (imports under
``if TYPE_CHECKING`` included). No import circle, no import of a higher floor of the house, and no import of
a project module inside a function (such imports hide circles)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "noiseadaptor"

FLOORS = [
    ("checks", "hooks", "distributed", "progress"),
    ("data", "ann"),
    ("snn",),
    ("io", "plot"),
    ("training",),
    ("methods",),
    ("runconfig",),
    ("study", "interop"),
    ("cli", ""),  # "" is the package's own face, noiseadaptor/__init__.py
]
"""The house from the ground up, by top-level part of the package: a module imports its own floor or lower."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """The project modules an import statement in `module` names (a `from package import submodule` names the
    submodule)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != PACKAGE:
        return []
    names = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
    return names or [target]


def _imports() -> tuple[dict[str, set[str]], list[str]]:
    """Module-level imports between project modules, and every project import found inside a function."""
    graph, inside = {}, []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        graph[module] = set()
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        in_function = {id(n) for f in functions for n in ast.walk(f) if n is not f}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = [t for t in _resolve(module, node, is_package) if t != module]
            if id(node) in in_function:
                inside += [f"{module}:{node.lineno} imports {t}" for t in targets]
            else:
                graph[module].update(t for t in targets if t in MODULES)
    return graph, inside


GRAPH, INSIDE = _imports()


def _floor(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    for i, floor in enumerate(FLOORS):
        if part in floor:
            return i
    raise AssertionError(f"{module} is on no floor of FLOORS: place its part of the package there")


def test_every_module_is_on_a_floor_and_imports_only_its_floor_or_below():
    up = [
        f"{m} (floor {_floor(m)}) imports {t} (floor {_floor(t)})"
        for m, targets in GRAPH.items()
        for t in targets
        if _floor(t) > _floor(m)
    ]
    assert not up, "imports that run back up:\n" + "\n".join(up)


def test_no_import_circle():
    def circle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in GRAPH[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    circles = [c for c in map(circle_from, GRAPH) if c]
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_project_import_inside_a_function():
    # third-party imports inside functions stay allowed: optional extras, and heavy libraries loaded on use
    assert not INSIDE, "imports inside functions:\n" + "\n".join(INSIDE)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_docstrings_say_what_the_module_is_in_a_few_lines(module):
    doc = ast.get_docstring(ast.parse(MODULES[module].read_text())) or ""
    assert doc, f"{module} has no docstring"
    assert len(doc.splitlines()) <= 25, f"{module}'s docstring is {len(doc.splitlines())} lines: move the essay to docs"
