"""Make quaterion 0.1.35 work on the current stack (Python 3.11-3.13, torch 2.x, numpy 2).

Importing this module is cheap: it imports neither torch nor Lightning nor quaterion. It installs
an import hook that applies the shims below the moment ``quaterion``, ``quaterion_models`` or
``pytorch_lightning`` is first imported -- by this package or by your own code, once
``refinery_quaterion`` has been imported -- and patches at once whatever of them is already
imported. ``refinery_quaterion/__init__.py`` imports it first, and every module of the package that
imports quaterion, quaterion_models or pytorch_lightning starts with
``from refinery_quaterion import _compat``, so the order of imports never matters. `apply` applies
every shim eagerly (it imports torch, Lightning and quaterion).

Each shim is idempotent and only patches what is missing or wrong, so it is harmless on stacks
where quaterion already works:

1. ``T_co`` (before quaterion or quaterion_models runs): quaterion imports ``T_co`` from
   ``torch.utils.data.dataloader`` and ``torch.utils.data.dataset``; current torch names it
   ``_T_co``.
2. ``TrainStage`` log keys (after quaterion ran): on Python >= 3.11 ``format()`` of a mixed-in
   ``str`` enum gives ``TrainStage.VALIDATION`` instead of ``validation``, so quaterion logs
   ``TrainStage.VALIDATION_loss`` and monitors on ``validation_loss`` never match.
3. numpy 2 (before pytorch_lightning runs): pytorch-lightning 1.9.5 uses ``np.Inf`` in its
   ``EarlyStopping`` and ``ModelCheckpoint`` callbacks, a name numpy 2.0 removed; it is aliased to
   ``np.inf`` when missing. No other removed numpy name is used by this stack.
4. Warnings: deprecation warnings raised while these packages import are silenced, so
   ``python -W error::DeprecationWarning`` works, and so is the ``pkg_resources is deprecated``
   warning of lightning_fabric (setuptools < 81 is pinned, so ``pkg_resources`` itself is
   there). Warnings raised later by your own code are untouched.

Why these are needed, and the install that goes with them: ``docs/install.md``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

_NUMPY_ALIASES = {"Inf": "inf"}  # removed in numpy 2.0 -> the name that stayed
_PKG_RESOURCES_WARNING = r".*pkg_resources is deprecated.*"


def _patch_t_co() -> None:
    import torch.utils.data.dataloader as dataloader_module
    import torch.utils.data.dataset as dataset_module

    for module in (dataloader_module, dataset_module):
        if not hasattr(module, "T_co"):
            module.T_co = module._T_co  # type: ignore[attr-defined]


def _patch_train_stage() -> None:
    from quaterion.utils.enums import TrainStage

    if format(TrainStage.VALIDATION) != "validation":
        TrainStage.__format__ = lambda self, spec: format(self.value, spec)  # type: ignore[method-assign]
        TrainStage.__str__ = lambda self: self.value  # type: ignore[method-assign]


def _patch_numpy() -> None:
    import numpy as np

    for old, new in _NUMPY_ALIASES.items():
        if old not in vars(np):  # not hasattr: numpy 1.x warns on some deprecated names
            setattr(np, old, getattr(np, new))


_BEFORE = {"quaterion": (_patch_t_co,), "quaterion_models": (_patch_t_co,), "pytorch_lightning": (_patch_numpy,)}
_AFTER = {"quaterion": (_patch_train_stage,)}


@contextmanager
def _quiet_imports() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=_PKG_RESOURCES_WARNING)
        yield


class _ShimLoader:
    """Wraps the real loader of a watched package: shims before and after it runs."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: Any) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        # From here on the module looks exactly as if imported without the hook.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with _quiet_imports():
            for patch in _BEFORE.get(self._name, ()):
                patch()
            self._loader.exec_module(module)
            for patch in _AFTER.get(self._name, ()):
                patch()

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, resource readers ...
        if name == "_loader":
            raise AttributeError(name)
        return getattr(self._loader, name)


class _ShimFinder:
    """A ``sys.meta_path`` finder that only wraps the loaders of the watched top-level packages."""

    refinery_quaterion_shims = True  # marks the one instance, also across reloads of this module

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _BEFORE:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "refinery_quaterion_shims", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ShimLoader(spec.loader, fullname)
        return spec


def install() -> None:
    """Install the import hook (once) and patch whatever of quaterion / Lightning is already imported.

    Imports nothing heavy unless quaterion or Lightning is already loaded. Safe to call more than once.
    """
    warnings.filterwarnings("ignore", message=_PKG_RESOURCES_WARNING)
    if not any(getattr(finder, "refinery_quaterion_shims", False) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ShimFinder())
    for name in _BEFORE:
        if name in sys.modules:
            with _quiet_imports():
                for patch in (*_BEFORE[name], *_AFTER.get(name, ())):
                    patch()


def apply() -> None:
    """Install the hook, import quaterion and Lightning, and apply every shim. Safe to call more than once."""
    install()
    with _quiet_imports():
        import pytorch_lightning  # noqa: F401
        import quaterion  # noqa: F401
        import quaterion_models  # noqa: F401

        for patch in (_patch_numpy, _patch_t_co, _patch_train_stage):
            patch()


install()
