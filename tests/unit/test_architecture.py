"""The package's shape: stages never import siblings, no import cycles, small modules and functions."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "edge_agent"
STAGES = frozenset({"sources", "gating", "model", "tools", "sinks", "health", "timeline"})
# Shared by every stage: data types, config, the prompt format and small utilities; they import no stage.
FOUNDATION = frozenset({"", "messages", "config", "prompt", "log", "service", "audio_io", "sqlite_files"})
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    """'edge_agent.model.runtime.engine' for edge_agent/model/runtime/engine.py."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> tuple[tuple[str, Path, ast.Module], ...]:
    """Every module of the package, parsed."""
    return tuple((module_name(p), p, ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py")))


def imported(name: str, path: Path, tree: ast.Module) -> set[str]:
    """The edge_agent modules this module imports, anywhere in it (lazy and TYPE_CHECKING imports included)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    known = {module for module, _, _ in modules()}
    return {module for module in found if module in known and module != name}


def top(module: str) -> str:
    """The first package level under edge_agent ('' for edge_agent itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_stages_import_only_themselves_and_the_foundation() -> None:
    wrong = []
    for name, path, tree in modules():
        owner = top(name)
        if owner not in STAGES | FOUNDATION:
            continue  # the wiring (app, agent, commands, doctor, cli) may import anything
        allowed = FOUNDATION | {owner}
        wrong += [
            f"{name} imports {other}" for other in sorted(imported(name, path, tree)) if top(other) not in allowed
        ]
    assert not wrong, "stage or foundation imports a sibling stage:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = {name: imported(name, path, tree) for name, path, tree in modules()}
    # A package's __init__ runs before its modules, so `pkg` -> `pkg.mod` -> `pkg` is a cycle as well.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_modules_and_functions_stay_small() -> None:
    long_modules = [
        f"{path.relative_to(PACKAGE.parent)}: {count} lines"
        for _, path, _ in modules()
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    long_functions = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
        for _, path, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long_modules + long_functions, "\n".join(long_modules + long_functions)
