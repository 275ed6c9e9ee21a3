"""Make quaterion 0.1.35 work on the current stack (Python 3.11+, torch 2.x).

Import this module before anything from ``quaterion``; ``refinery_quaterion`` does so in
every module that touches quaterion. Each shim is idempotent and only patches what is
missing or wrong, so it is harmless on stacks where quaterion already works.

Shims (see ``docs/quaterion-notes``):

1. ``T_co``: quaterion imports ``T_co`` from ``torch.utils.data.dataloader`` and
   ``torch.utils.data.dataset``; current torch names it ``_T_co``.
2. ``TrainStage`` log keys: on Python >= 3.11 ``format()`` of a mixed-in ``str`` enum gives
   ``TrainStage.VALIDATION`` instead of ``validation``, so quaterion logs
   ``TrainStage.VALIDATION_loss`` and monitors on ``validation_loss`` never match.
3. The ``pkg_resources`` deprecation warning raised by lightning_fabric at import is
   silenced (setuptools < 81 is pinned, so ``pkg_resources`` itself is present), and so are
   the deprecation warnings of quaterion's own imports.
"""

from __future__ import annotations

import warnings


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


def apply() -> None:
    """Apply every shim. Safe to call more than once.

    quaterion (and Lightning under it) is imported here with third-party deprecation
    warnings silenced, so ``python -W error::DeprecationWarning -c "import refinery_quaterion"``
    works; warnings raised later by your own code are untouched.
    """
    warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated.*")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated.*")
        _patch_t_co()
        _patch_train_stage()


apply()
