"""The floor plan: imports point down and no two files import each other, directly or through others.

Packages sit on floors: ``ophora`` (data, model, the weights registry, video sets) at the bottom; ``baselines``
and the evaluation harness in ``benchmarks`` above it, independent of each other; ``benchmarks.table1`` and
``downstream`` (the applications) on top. Every import counts, the ones inside functions too: an import that
only dodges a circle at run time is still a circle in the design.

One declared exception, FACADES: the user-facing entry points, which may import any floor because that is their
job (the ``ophora`` command dispatches to every tool; ``ophora.evaluate_videos`` wraps the evaluation harness).
They live in the ``ophora`` package so that ``ophora <command>`` and ``import ophora`` are where a user starts,
and nothing below them may import them (no circle: the circle test covers them like every module).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ophora", "benchmarks", "baselines", "downstream")
FLOORS = {"ophora": 0, "baselines": 1, "benchmarks": 1, "table1": 2, "downstream": 2}
# floor -> the floors it may import (besides itself)
ALLOWED = {"ophora": set(), "baselines": {"ophora"}, "benchmarks": {"ophora"},
           "table1": {"ophora", "baselines", "benchmarks"}, "downstream": {"ophora", "baselines", "benchmarks"}}
# the user-facing entry points, allowed to import every floor: the ophora command (its subcommands are the tools of
# all four packages) and the one-call API (ophora.evaluate_videos wraps benchmarks.evaluate)
FACADES = {"ophora.__main__", "ophora.api"}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The project module that ``name`` (a module or a name inside one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str) -> set[str]:
    """Project modules that ``module`` imports anywhere in its body (``from p import m`` counts as ``p.m``)."""
    path, is_package = MODULES[module]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        targets |= {owner for n in names if (owner := _owner(n)) and owner != module}
    return targets


GRAPH = {module: _imported(module) for module in MODULES}


def _floor(module: str) -> str:
    return "table1" if module.startswith("benchmarks.table1") else module.split(".")[0]


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that ``start`` imports, directly or through others."""
    seen, todo = set(), list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: groups of modules that reach each other (strongly connected), sorted."""
    reach = {module: _reachable(graph, module) for module in graph}
    circles = {tuple(sorted({m} | {n for n in reach[m] if m in reach[n]})) for m in graph if m in reach[m]}
    return sorted(list(c) for c in circles)


def test_the_checker_sees_a_circle_and_a_wrong_way_arrow():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert "ophora.data.frame_folders" in GRAPH["ophora.data.video"]  # a module-level import is seen
    assert "ophora.data.frames" in GRAPH["ophora.data.frame_folders"]


def test_no_import_circle_between_files():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("floor", sorted(ALLOWED))
def test_imports_point_down(floor):
    wrong = sorted(f"{a} -> {b}" for a, targets in GRAPH.items() if _floor(a) == floor and a not in FACADES
                   for b in targets if _floor(b) != floor and _floor(b) not in ALLOWED[floor])
    assert wrong == []


def test_the_facades_exist_and_nothing_in_the_suite_imports_them():
    """A facade may reach every floor only because no tool depends on it: the package ``ophora`` itself (its lazy
    ``ophora.evaluate_videos``) is the one module that may import ``ophora.api``."""
    assert "ophora.__main__" in MODULES
    assert "benchmarks.evaluate" in _reachable(GRAPH, "ophora.__main__")  # the checker sees the launcher's imports
    users = sorted(f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets & FACADES
                   if a not in FACADES and a != "ophora")
    assert users == []


def test_nothing_reads_the_shared_folder_beside_the_checkout():
    """A user's clone has no ``../shared``: code, configs and tests read only what ships with the project."""
    suffixes = {".py", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".txt"}
    offenders = [str(p.relative_to(ROOT)) for folder in (*PACKAGES, "tests") for p in (ROOT / folder).rglob("*")
                 if p.suffix in suffixes and p.is_file() and "../shared" in p.read_text(errors="replace")
                 and p.name != Path(__file__).name]
    assert offenders == []
