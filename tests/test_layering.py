"""The architecture of issue 10: imports go only downward, and no two modules import each other.

Layers: custom_layers (0) <- data_tools (1) <- e2e_drive (2: models, train, evaluate, saliency, sim, replay)
<- deploy (3) <- the top layer (4: e2e_drive.cli, e2e_drive.bench, e2e_drive.demo, ``python -m e2e_drive``).

Every module of the four packages is parsed with ``ast``; every import counts, module-level or inside a
function (except under ``if TYPE_CHECKING:``, which never runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("custom_layers", "data_tools", "e2e_drive", "deploy")
TOP = ("e2e_drive.cli", "e2e_drive.bench", "e2e_drive.demo", "e2e_drive.__main__")


def layer(module: str) -> int:
    if any(module == top or module.startswith(top + ".") for top in TOP):
        return 4
    return {"custom_layers": 0, "data_tools": 1, "e2e_drive": 2, "deploy": 3}[module.split(".")[0]]


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (the longest known prefix), or None for a third-party import."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def imports_of(module: str) -> dict[str, int]:
    """Project modules ``module`` imports, with the line of the first import of each."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import name``: the submodule pkg.name when there is one, else pkg itself.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.setdefault(target, node.lineno)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_parser_sees_function_level_and_relative_imports(tmp_path):
    # An independent check of the walker on known source: what it must find, and what it must skip.
    source = (
        "import os\nfrom typing import TYPE_CHECKING\nimport data_tools.io as io\n"
        "if TYPE_CHECKING:\n    from deploy import export\n"
        "def f():\n    from e2e_drive.models import pilotnet\n    return pilotnet\n"
        "class A:\n    def g(self):\n        import custom_layers\n"
    )
    tree = ast.parse(source)
    names = sorted(alias.name if isinstance(n, ast.Import) else n.module
                   for n in _import_nodes(tree) for alias in n.names)
    assert names == ["custom_layers", "data_tools.io", "e2e_drive.models", "os", "typing"]
    assert layer("e2e_drive.cli.train") == 4 and layer("e2e_drive.sim.drive") == 2 and layer("deploy.export") == 3
    assert "e2e_drive.cli" in MODULES and "data_tools.io" in MODULES


def test_imports_only_go_downward():
    upward = [
        f"{MODULES[module].relative_to(REPO)}:{line}: {module} (layer {layer(module)}) imports {target} "
        f"(layer {layer(target)})"
        for module, targets in GRAPH.items()
        for target, line in sorted(targets.items())
        if layer(target) > layer(module)
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (as a path a -> b -> ... -> a) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:
        members = set(component)
        start = min(component)
        # Breadth-first from start back to start inside the component: the shortest cycle through it.
        paths = {start: [start]}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:
            following = []
            for node in frontier:
                for nxt in sorted(graph[node]):
                    if nxt == start:
                        cycle = paths[node] + [start]
                        break
                    if nxt in members and nxt not in paths:
                        paths[nxt] = paths[node] + [nxt]
                        following.append(nxt)
                if cycle:
                    break
            frontier = following
        cycles.append(cycle)
    return cycles


def test_cycle_finder_on_a_known_graph():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"e2": 1}, "e2": {}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    described = [" -> ".join(f"{m} ({MODULES[m].relative_to(REPO)}:{GRAPH[m].get(n, '?')})" if n else m
                             for m, n in zip(cycle, cycle[1:] + [None])) for cycle in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(described)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_was_parsed(package):
    assert any(name == package or name.startswith(package + ".") for name in MODULES)
