"""Settings as data: how a model is evaluated (`EvalConfig`) and how its linear probe is fit (`ProbeConfig`).

Frozen dataclasses like every stage's config (`refinery_quaterion.data.config.StageConfig`):
validated once, changed with ``config.replace(...)``, written by ``to_dict`` and read back by
``from_dict``. This module imports no torch or scikit-learn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from refinery_quaterion.data.config import StageConfig, is_int, is_number
from refinery_quaterion.evaluate.metrics import DEFAULT_KS

__all__ = ["EvalConfig", "ProbeConfig"]


@dataclasses.dataclass(frozen=True)
class ProbeConfig(StageConfig):
    """The classifier of the linear probe (`refinery_quaterion.evaluate.probe.linear_probe_report`).

    With the defaults it reproduces the seed's probe (75.1% on the AG News test set for raw
    MiniLM).

    Attributes:
        normalize: L2-normalise the rows first (the cosine geometry of the retrieval metrics).
        standardize: Scale each dimension to zero mean and unit variance before the classifier.
        C: Inverse regularisation strength of the logistic regression (> 0).
        max_iter: Solver iterations (>= 1).
        seed: ``random_state`` of the classifier.

    Raises:
        ValueError: For ``C <= 0``, ``max_iter < 1`` or a ``seed`` that is not an integer.
        TypeError: For ``normalize`` / ``standardize`` that are not bools.
    """

    normalize: bool = True
    standardize: bool = False
    C: float = 1.0
    max_iter: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("normalize", "standardize"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not is_number(self.C) or not self.C > 0:
            raise ValueError(f"C must be > 0; got {self.C!r}")
        object.__setattr__(self, "C", float(self.C))
        if not is_int(self.max_iter) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an int >= 1; got {self.max_iter!r}")
        if not is_int(self.seed):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")


def _checked_ks(ks: Any) -> tuple[int, ...]:
    """``ks`` as a sorted tuple of distinct positive integers; a ``ValueError`` naming ``ks`` otherwise."""
    values = [ks] if is_int(ks) else list(ks) if isinstance(ks, Iterable) and not isinstance(ks, str) else None
    if not values or not all(is_int(k) and k >= 1 for k in values):
        raise ValueError(f"ks must be one or more positive integers, got {ks!r}")
    return tuple(sorted(set(values)))


@dataclasses.dataclass(frozen=True)
class EvalConfig(StageConfig):
    """How `refinery_quaterion.workflow.evaluate_model` evaluates a model.

    Attributes:
        ks: k values of precision@k (those above ``len(test) - 1`` are dropped at run time).
        label_column: Column of the test (and reference) records holding the true labels.
        compare_raw: Also evaluate the raw encoder (the ``"raw"`` row).
        batch_size: Texts per encoder forward pass.
        progress: Show encoding progress.
        probe: The linear probe's classifier (a `ProbeConfig`, or a mapping of its fields);
            the probe runs when reference records and a report folder are given.

    Raises:
        ValueError: For an empty or non-positive ``ks``, an empty ``label_column``, a
            ``batch_size`` below 1, or an invalid probe setting.
        TypeError: For ``compare_raw`` / ``progress`` that are not bools, or a ``probe`` that is
            neither a `ProbeConfig` nor a mapping.
    """

    ks: tuple[int, ...] = DEFAULT_KS
    label_column: str = "label"
    compare_raw: bool = True
    batch_size: int = 64
    progress: bool = True
    probe: ProbeConfig = dataclasses.field(default_factory=ProbeConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ks", _checked_ks(self.ks))
        if not isinstance(self.label_column, str) or not self.label_column:
            raise ValueError(f"label_column must be a column name, got {self.label_column!r}")
        for name in ("compare_raw", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if isinstance(self.probe, Mapping):
            object.__setattr__(self, "probe", ProbeConfig.from_dict(self.probe))
        elif not isinstance(self.probe, ProbeConfig):
            raise TypeError(f"probe must be a ProbeConfig or a mapping of its settings, got {self.probe!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (``probe`` as a dict)."""
        return {**super().to_dict(), "probe": self.probe.to_dict()}
