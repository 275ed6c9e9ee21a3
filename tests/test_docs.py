"""The API reference in docs/api/*.md covers the package's public API.

mkdocstrings renders a ``::: module`` directive with the options of mkdocs.yml
(``filters: public``, ``show_if_no_docstring: false``): the members it shows are the names in
the module's ``__all__`` (or, without ``__all__``, the names defined there without a leading
underscore) that have a docstring. These tests check, without building the site, that every
name in ``refinery_quaterion.__all__`` is among them, that every directive points at something
importable, and that every public module has a page.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import refinery_quaterion

ROOT = Path(__file__).resolve().parents[1]
API_DIR = ROOT / "docs" / "api"
PACKAGE = refinery_quaterion.__name__
DIRECTIVE = re.compile(r"^:::[ \t]+(?P<target>[A-Za-z_][\w.]*)[ \t]*$")
DUNDER = re.compile(r"^__\w+__$")


@dataclass
class Directive:
    page: Path
    line: int
    target: str
    options: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_directives(page: Path) -> list[Directive]:
    """The ``::: target`` lines of a page, with their indented YAML options block."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    in_fence = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else DIRECTIVE.match(line)
        if not match:
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and not following.startswith((" ", "\t")):
                break
            block.append(following)
        text = "\n".join(block)
        options = yaml.safe_load(text) if text.strip() else None
        found.append(Directive(page, i + 1, match["target"], options or {}))
    return found


def api_directives() -> list[Directive]:
    pages = sorted(API_DIR.glob("*.md"))
    assert pages, f"no API reference pages in {API_DIR.relative_to(ROOT)}"
    return [d for page in pages for d in parse_directives(page)]


def resolve(target: str) -> tuple[types.ModuleType, str | None]:
    """Import a directive target: ``(module, None)`` for a module, ``(module, name)`` for a member."""
    try:
        return importlib.import_module(target), None
    except ModuleNotFoundError as err:
        if err.name != target:  # the module exists but one of its imports is missing
            raise
    module_name, _, name = target.rpartition(".")
    module = importlib.import_module(module_name)
    if not hasattr(module, name):
        raise AttributeError(f"{module_name} has no attribute {name!r}")
    return module, name


def rendered_names(module: types.ModuleType, options: dict[str, Any]) -> set[str]:
    """The module members a ``::: module`` directive shows (before the docstring filter)."""
    exported = getattr(module, "__all__", None)
    if exported is not None:
        names = set(exported)
    else:
        names = {
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and not isinstance(obj, types.ModuleType)
            and getattr(obj, "__module__", module.__name__) == module.__name__
        }
    members = (options.get("options") or {}).get("members")
    if members is False:
        return set()
    if isinstance(members, list):
        names &= set(members)
    return names


def covered() -> dict[str, list[tuple[str, str]]]:
    """``{name: [(module, member), ...]}`` for every object the API pages render."""
    out: dict[str, list[tuple[str, str]]] = {}
    for directive in api_directives():
        module, name = resolve(directive.target)
        names = {name} if name is not None else rendered_names(module, directive.options)
        for member in names:
            out.setdefault(member, []).append((module.__name__, member))
    return out


def public_api() -> list[str]:
    exported = getattr(refinery_quaterion, "__all__", None)
    if exported is None:
        pytest.fail(
            f"{PACKAGE}/__init__.py defines no __all__; the package must list its public API there "
            "(re-exported names) so the docs can be checked against it"
        )
    return [name for name in exported if not DUNDER.match(name)]


def test_api_directives_import():
    problems = []
    for directive in api_directives():
        try:
            resolve(directive.target)
        except Exception as err:  # report every broken page at once
            problems.append(f"{directive.where()}: ::: {directive.target}: {type(err).__name__}: {err}")
    assert not problems, "API reference directives that do not import:\n" + "\n".join(problems)


def test_every_public_module_has_a_page():
    documented = {d.target for d in api_directives()}
    modules = [
        info.name
        for info in pkgutil.walk_packages(refinery_quaterion.__path__, prefix=f"{PACKAGE}.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    missing = [m for m in modules if m not in documented]
    assert not missing, (
        f"public modules without an API page (add '::: <module>' to its stage's page under docs/api): {missing}"
    )


def test_public_names_are_in_the_api_reference():
    pages = covered()
    missing = []
    for name in public_api():
        obj = getattr(refinery_quaterion, name)
        places = [
            (module, member)
            for module, member in pages.get(name, [])
            if getattr(importlib.import_module(module), member, None) is obj
        ]
        if not places:
            # Re-exported under another name: the defining module's page may show it.
            home = getattr(obj, "__module__", None)
            own = getattr(obj, "__name__", None)
            places = [
                (module, member)
                for module, member in pages.get(own or "", [])
                if module == home and getattr(importlib.import_module(module), member, None) is obj
            ]
        if not places:
            home = getattr(obj, "__module__", None)
            hint = f" (defined in {home})" if home else ""
            missing.append(f"{name}{hint}")
    assert not missing, (
        f"names in {PACKAGE}.__all__ that no docs/api page renders: {missing}. Give the defining "
        "module a page ('::: module') and list the name in that module's __all__, or name it "
        "explicitly ('::: module.name')"
    )


def test_public_names_have_docstrings():
    """mkdocstrings hides members without a docstring (``show_if_no_docstring: false``)."""
    griffe = pytest.importorskip("griffe")
    package = griffe.load(PACKAGE, search_paths=[str(ROOT)], resolve_aliases=False)
    pages = covered()
    undocumented = []
    for name in public_api():
        for module, member in pages.get(name, []):
            path = module.removeprefix(PACKAGE).lstrip(".")
            parent = package[path] if path else package
            try:
                obj = parent[member]
                if obj.is_alias:
                    obj = obj.final_target
            except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue  # defined dynamically; nothing griffe (or mkdocstrings) can show
            if not obj.docstring or not obj.docstring.value.strip():
                undocumented.append(f"{module}.{member}")
    assert not undocumented, (
        f"public names without a docstring, hidden in the API reference: {sorted(set(undocumented))}. "
        'Add one (for a constant: a string literal on the line after it, not a "#:" comment)'
    )
