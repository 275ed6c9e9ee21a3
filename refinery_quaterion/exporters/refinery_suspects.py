"""Suspected label errors of a refinery project: labeled records their fine-tuned neighbourhood contradicts.

The check is `refinery_quaterion.data.cleaning.clean_labels` run on every labeled record of one
classification task (a record's manual label, else its weak-supervision label): a record is a
suspect when at least ``majority`` of its ``k`` nearest labeled records (cosine, the record
itself excluded) agree on one other label. Its score is the share of neighbours that do not
carry its label (above 0, at most 1), which `to_refinery` stores as the slice's
``outlier_score``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from refinery_quaterion.data.cleaning import clean_labels
from refinery_quaterion.data.snapshot import SnapshotTask

__all__ = ["record_labels", "suspected_label_errors"]


def record_labels(task: SnapshotTask) -> list[str | None]:
    """Per record, the label the check compares: its manual label, else its weak-supervision one.

    A record with several manual labels (joined with ``", "``) counts as unlabeled.
    """
    known = set(task.labels)
    labels: list[str | None] = []
    for manual, weak in zip(task.manual, task.weak, strict=True):
        if manual is not None:
            labels.append(manual if manual in known else None)
        else:
            labels.append(weak)
    return labels


def suspected_label_errors(labels: Sequence[str | None], record_ids: Sequence[Any], vectors: np.ndarray, *,
                           k: int, majority: float, limit: int) -> dict[Any, float]:
    """The suspects among the labeled records, highest disagreement first: ``{record id: score}``.

    Args:
        labels: Per record, its label or ``None`` (not checked, not a neighbour).
        record_ids: Per record, its id.
        vectors: Per record, its vector (any length; compared by cosine).
        k: Neighbours per labeled record; with no more labeled records than ``k``, nothing is
            checked.
        majority: Share of the ``k`` neighbours that must agree on another label.
        limit: Most suspects returned.

    Returns:
        Record id -> the share of its neighbours that disagree with its label (rounded to 4
        places).
    """
    rows = [i for i, label in enumerate(labels) if label is not None]
    if len(rows) <= k:
        return {}
    frame = pd.DataFrame({"label": [labels[i] for i in rows], "label_source": "weak_supervision", "weight": 1.0})
    cleaned, _ = clean_labels(frame, np.asarray(vectors)[rows], k=k, majority=majority, action="downweight")
    agreeing = cleaned["weight"].to_numpy(dtype=np.float64)
    flagged = np.flatnonzero(agreeing < 1.0)
    scores = 1.0 - agreeing[flagged]
    order = np.argsort(-scores, kind="stable")[:limit]
    return {record_ids[rows[flagged[j]]]: round(float(scores[j]), 4) for j in order}
