"""Lazy re-exports (PEP 562) for the package and its stage folders.

A package lists what it offers as ``{module: (name, ...)}``; `lazy_exports` returns the
``__getattr__`` and ``__dir__`` that import a module only when one of its names is first used,
so ``import refinery_quaterion.data`` stays as light as the modules a caller actually touches.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]], namespace: dict[str, Any]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__all__``, ``__getattr__`` and ``__dir__`` of a package that re-exports names lazily.

    Args:
        package: The package's dotted name (its ``__name__``).
        exports: Module path relative to ``package`` -> the names it offers.
        namespace: The package's ``globals()``: a name is cached there once imported.

    Returns:
        ``(__all__, __getattr__, __dir__)`` for the package to assign.
    """
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(module_of))

    return sorted(module_of), __getattr__, __dir__
