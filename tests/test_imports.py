"""No import circles among the modules of the operator, the runtime and the end-to-end helpers,
counting imports inside functions too (one there must not dodge a circle)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from support import REPO

# Where each tree's modules are imported from (pyproject.toml's packages and pytest's pythonpath).
ROOTS = (REPO / "operator", REPO / "runtime", REPO / "e2e")


def _modules() -> dict[str, Path]:
    """Module name -> file. Hidden directories are pruned, not walked (e2e/.cluster holds the
    plane's image trees)."""
    found = {}
    for root in ROOTS:
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = [name for name in subdirectories if not name.startswith((".", "__"))]
            for file in files:
                if file.endswith(".py"):
                    parts = (Path(directory) / file).relative_to(root).with_suffix("").parts
                    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                    found[name] = Path(directory) / file
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that `name` imports, wherever in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports the module; `from module import name` the module.
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        targets |= {candidate for candidate in candidates if candidate in modules and candidate != name}
    return targets


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle, or [] (depth-first search, colouring nodes)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_module_graph_has_no_circle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "llm_operator.k8s.cache" in graph["llm_operator.handlers"]  # the graph is read at all
    assert _cycle(graph) == []


def test_a_circle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
