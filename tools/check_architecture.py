"""Check the package's layout: the stages of the flow, no import circles, no import back up the flow.

The package is one folder per stage of the flow, in this order (a module may import its own
stage and the stages before it, never one after it):

    base (_compat, _io, _util, _bars, _lazy, _version, errors, registry)
      -> data -> model -> training -> evaluate -> search -> exporters -> scale -> workflow -> cli -> lab

Every import counts, also one inside a function or under ``TYPE_CHECKING``: each is an arrow a
reader follows. The package root (``__init__``, ``__main__``) only re-exports and is left out.

Also checked: no module over `MAX_MODULE_LINES` lines, no function over `MAX_FUNCTION_LINES`
lines (its body without the docstring).

Usage: ``python tools/check_architecture.py [--graph]``; exit 1 with one line per problem.
``tests/test_architecture.py`` runs the same checks.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "refinery_quaterion"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
STAGES = ("base", "data", "model", "training", "evaluate", "search", "exporters", "scale", "workflow", "cli", "lab")
BASE_MODULES = ("_compat", "_io", "_util", "_bars", "_lazy", "_version", "errors", "registry")
FACADE = {PACKAGE, f"{PACKAGE}.__main__"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


@dataclass
class Graph:
    """Modules (dotted name -> file) and their imports of each other."""

    root: Path
    files: dict[str, Path]
    imports: dict[str, set[str]] = field(default_factory=dict)

    def relative(self, path: Path) -> Path:
        """``path`` relative to the folder that holds the package."""
        return path.relative_to(self.root.parent)


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _owner(name: str, files: dict[str, Path]) -> str:
    """The module a dotted name lives in (``pkg.mod.Class`` -> ``pkg.mod``)."""
    while name and name not in files:
        name = name.rpartition(".")[0]
    return name


def _imported(module: str, path: Path, files: dict[str, Path]) -> Iterator[str]:
    """The package's modules that ``module`` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (_owner(alias.name, files) for alias in node.names if alias.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith(PACKAGE):
                for alias in node.names:
                    yield _owner(f"{base}.{alias.name}", files)


def build_graph(root: Path = ROOT) -> Graph:
    """The import graph of the package under ``root``."""
    files = module_files(root)
    graph = Graph(root, files)
    for module, path in files.items():
        graph.imports[module] = {target for target in _imported(module, path, files) if target and target != module}
    return graph


def stage_of(module: str) -> int | None:
    """Index of the module's stage in `STAGES`; ``None`` for the package root."""
    if module in FACADE:
        return None
    top = module.split(".")[1]
    if top in BASE_MODULES:
        return 0
    if top not in STAGES:
        raise ValueError(f"{module}: not in a stage folder (stages: {', '.join(STAGES[1:])}; base: {BASE_MODULES})")
    return STAGES.index(top)


def backward_imports(graph: Graph) -> list[str]:
    """``a -> b`` lines for every import of a later stage."""
    problems = []
    for module, targets in sorted(graph.imports.items()):
        here = stage_of(module)
        for target in sorted(targets):
            there = stage_of(target)
            if here is not None and (there is None or there > here):
                where = "the package root" if there is None else f"stage {STAGES[there]}"
                problems.append(f"backward import: {module} (stage {STAGES[here]}) imports {target} ({where})")
    return problems


def circles(graph: Graph) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.imports.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph.files):
        if node not in index and node not in FACADE:
            visit(node)
    return found


def long_modules(graph: Graph) -> list[str]:
    """Modules over `MAX_MODULE_LINES` lines."""
    out = []
    for path in sorted(graph.files.values()):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            out.append(f"long module: {graph.relative(path)} has {lines} lines (max {MAX_MODULE_LINES})")
    return out


def function_lengths(path: Path) -> Iterator[tuple[str, int, int]]:
    """``(name, line, body lines without the docstring)`` of every function in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                first.value.value, str
            ):
                if len(body) == 1:
                    continue
                first = body[1]
            yield node.name, node.lineno, node.end_lineno - first.lineno + 1


def long_functions(graph: Graph) -> list[str]:
    """Functions whose body (without the docstring) is over `MAX_FUNCTION_LINES` lines."""
    out = []
    for path in sorted(graph.files.values()):
        for name, line, length in function_lengths(path):
            if length > MAX_FUNCTION_LINES:
                out.append(f"long function: {graph.relative(path)}:{line} {name} has {length} lines "
                           f"(max {MAX_FUNCTION_LINES})")
    return out


def problems(graph: Graph | None = None) -> list[str]:
    """Every problem, one line each (empty when the layout is as it should be)."""
    graph = graph or build_graph()
    found = [f"import circle: {' <-> '.join(circle)}" for circle in circles(graph)]
    return found + backward_imports(graph) + long_modules(graph) + long_functions(graph)


def main(argv: list[str] | None = None) -> int:
    """Print the problems (or, with ``--graph``, the import graph by stage); exit 1 if there are any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", action="store_true", help="print each module's imports of the package")
    args = parser.parse_args(argv)
    graph = build_graph()
    if args.graph:
        for module in sorted(graph.files, key=lambda m: (stage_of(m) or 0, m)):
            stage = stage_of(module)
            name = STAGES[stage] if stage is not None else "root"
            print(f"[{name}] {module} -> {', '.join(sorted(graph.imports[module]))}")
    found = problems(graph)
    for line in found:
        print(line)
    n_imports = sum(len(targets) for targets in graph.imports.values())
    print(f"{len(graph.files)} modules, {n_imports} imports between them: {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
