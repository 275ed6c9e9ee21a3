"""Checks that training can learn, and that what it learned is a usable model.

* `check_learnable`: before training, refuse data that cannot teach the loss anything (every
  weight zero under confidence weighting; a single label for a loss over labels or
  in-batch negatives; no label with two records for a pair or triplet loss).
* `weights_problem`: after training, whether the model's weights hold NaN or infinite values
  (`refinery_quaterion.training.model_files.save` refuses such a model).
* `vectors_problem` and `check_trained_vectors`: whether the trained model's vectors of a
  sample of records are non-finite or collapsed (zero length, or every record on one point).

A non-finite loss is caught during training itself
(`refinery_quaterion.model.trainable.TrainingDiverged`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from refinery_quaterion.errors import Fix, SettingError

__all__ = ["TrainedModelError", "check_learnable", "check_trained_vectors", "vectors_problem", "weights_problem"]

_SAMPLE = 64
_ZERO = 1e-8


class TrainedModelError(ValueError):
    """A trained model whose weights or vectors are unusable (non-finite or collapsed); it is not saved."""


def check_learnable(groups: np.ndarray, weights: np.ndarray, *, weighted: bool, needs_positives: bool,
                    name: str = "train_dataset") -> None:
    """Refuse training data from which the loss can learn nothing.

    Args:
        groups: Label id of each training record.
        weights: Weight of each training record.
        weighted: Whether each record's loss term is scaled by its weight.
        needs_positives: Whether the loss learns from two records of one label (pair and
            triplet-like losses; not the losses over labels such as ``arcface``).
        name: What to call the data in messages.

    Raises:
        SettingError: If every weight is zero under confidence weighting.
        ValueError: If there is one label only, or (``needs_positives``) no label with two records.
    """
    if weighted and not np.any(weights > 0):
        raise SettingError(f"every record of {name} weighs 0, so with {{sample_weighting}} the loss is 0 and "
                           "nothing can be learned", settings={"sample_weighting": "confidence"},
                           fixes=(Fix("sample_weighting", "none"),))
    labels, counts = np.unique(groups, return_counts=True)
    if len(labels) < 2:
        raise ValueError(f"{name} has records of one label only ({len(groups)} records): a similarity model "
                         "learns from differences between labels; label records of at least two classes")
    if needs_positives and not np.any(counts >= 2):
        raise ValueError(f"{name} has no label with two records, so the loss has no positive pair to learn "
                         "from; label more records, or pick a loss over labels (e.g. arcface)")


def weights_problem(parameters: Any) -> str | None:
    """``"N of M weight tensors hold NaN or infinite values"``, or ``None`` when all are finite."""
    import torch

    tensors = [p for p in parameters if isinstance(p, torch.Tensor)]
    bad = sum(1 for p in tensors if p.is_floating_point() and not bool(torch.isfinite(p).all()))
    return f"{bad} of {len(tensors)} weight tensors hold NaN or infinite values" if bad else None


def vectors_problem(vectors: np.ndarray) -> str | None:
    """What is wrong with the vectors of distinct records: non-finite, zero length or all on one point."""
    n = len(vectors)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        return f"{int((~finite).sum())} of {n} vectors hold NaN or infinite values"
    norms = np.linalg.norm(vectors, axis=1)
    if (norms < _ZERO).any():
        return f"{int((norms < _ZERO).sum())} of {n} vectors have zero length"
    unit = vectors / norms[:, None]
    if n > 1 and float(np.ptp(unit, axis=0).max()) < 1e-5:
        return f"all {n} sample records map to one point (the vectors collapsed)"
    return None


def check_trained_vectors(model: Any, records: Sequence[Any], *, where: str = "the model") -> None:
    """Refuse a trained model whose weights are non-finite or whose vectors of ``records`` are unusable.

    Up to 64 records with distinct texts are encoded (no normalisation) and checked with
    `vectors_problem`; fewer than two distinct texts check only the weights.

    Raises:
        TrainedModelError: Naming the reason, e.g. ``all 64 sample records map to one point``.
    """
    problem = weights_problem(model.parameters())
    if problem is None:
        sample = _distinct(records, model.template)
        if len(sample) >= 2:
            problem = vectors_problem(np.asarray(model.encode(sample, normalize=False, progress=False)))
    if problem is not None:
        raise TrainedModelError(f"training produced a broken model: {problem}; {where} was not saved (lower the "
                                "learning rate or check the training data)")


def _distinct(records: Sequence[Any], template: Any) -> list[Any]:
    """Up to `_SAMPLE` records whose rendered texts differ, spread over ``records``."""
    step = max(1, len(records) // (_SAMPLE * 4))
    seen: set[str] = set()
    sample: list[Any] = []
    for record in list(records)[::step]:
        text = template(record)
        if text not in seen:
            seen.add(text)
            sample.append(record)
        if len(sample) == _SAMPLE:
            break
    return sample
