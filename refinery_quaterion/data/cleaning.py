"""Label cleaning: weak labels that their nearest neighbours clearly contradict.

A weak-supervision label is suspicious when most of the records closest to it in embedding
space carry one *other* label. `clean_labels` finds, for every weak-supervision record, its
``k`` nearest neighbours by cosine similarity (the record itself excluded, manual and weak
records alike as neighbours), and flags it when at least ``majority`` of them share one label
different from its own. Flagged records are dropped, or down-weighted. Manual labels are never
touched. A pure function on arrays: it needs embeddings (e.g. of the raw, untrained encoder)
but imports no model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from refinery_quaterion._util import fields_dict

if TYPE_CHECKING:  # pragma: no cover
    from refinery_quaterion.data.labels import LabelReport

__all__ = ["CleaningReport", "clean_labels"]


@dataclass
class CleaningReport:
    """What `clean_labels` did.

    Attributes:
        k: Neighbours looked at per record.
        majority: Share of the neighbours that had to agree on another label.
        action: ``"drop"`` or ``"downweight"``.
        checked: Weak-supervision records checked.
        flagged_by_class: Flagged records by their (weak) label.
        dropped_by_class: Records dropped, by label (``action="drop"``).
        downweighted_by_class: Records down-weighted, by label (``action="downweight"``).
        suggested: ``{weak label: {neighbours' label: n}}`` for the flagged records.
    """

    k: int
    majority: float
    action: str
    checked: int
    flagged_by_class: dict[str, int] = field(default_factory=dict)
    dropped_by_class: dict[str, int] = field(default_factory=dict)
    downweighted_by_class: dict[str, int] = field(default_factory=dict)
    suggested: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def flagged(self) -> int:
        """Records flagged in all."""
        return sum(self.flagged_by_class.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return fields_dict(self, "k", "majority", "action", "checked", "flagged", "flagged_by_class",
                           "dropped_by_class", "downweighted_by_class", "suggested")

    def __str__(self) -> str:
        verb = "dropped" if self.action == "drop" else "down-weighted"
        lines = [f"Label cleaning (k={self.k}, majority {self.majority:g}): {verb} {self.flagged} of "
                 f"{self.checked} weak-supervision labels"]
        for label, n in sorted(self.flagged_by_class.items()):
            others = ", ".join(f"{k}×{v}" for k, v in sorted(self.suggested.get(label, {}).items()))
            lines.append(f"  {label}: {n} (neighbours say {others})")
        return "\n".join(lines)


def _normalised(embeddings: Any, n: int) -> np.ndarray:
    array = np.asarray(embeddings, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != n:
        raise ValueError(f"embeddings must be an array of shape (records, dim) = ({n}, d); got {array.shape}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        raise ValueError(f"embeddings row {int(np.flatnonzero(~finite)[0])} holds NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms > 0, norms, 1.0)


def clean_labels(
    records: pd.DataFrame,
    embeddings: Any,
    *,
    k: int = 10,
    majority: float = 0.7,
    action: Literal["drop", "downweight"] = "drop",
    label_column: str = "label",
    source_column: str = "label_source",
    weight_column: str = "weight",
    report: LabelReport | None = None,
    batch_size: int = 1024,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Drop or down-weight weak labels that a clear majority of their neighbours contradicts.

    For each record whose ``label_source`` is ``"weak_supervision"``: take its ``k`` nearest
    records by cosine similarity of ``embeddings`` (itself excluded); when at least
    ``majority × k`` of them carry one same label other than the record's own, the record is
    flagged. ``action="drop"`` removes flagged records; ``action="downweight"`` multiplies
    their ``weight`` by the share of neighbours that agree with their label (so 2 of 10 → × 0.2).

    Args:
        records: Output of `refinery_quaterion.data.labels.combine_labels` (columns ``label``,
            ``label_source`` and, for ``"downweight"``, ``weight``).
        embeddings: One vector per row of ``records``, in order, shape ``(len(records), dim)``.
        k: Neighbours per record (at least 1, fewer than the records).
        majority: Share of the ``k`` neighbours that must agree on another label (above 0.5,
            at most 1).
        action: ``"drop"`` or ``"downweight"``.
        label_column: Column holding the label names.
        source_column: Column saying whether a label is manual or weak supervision.
        weight_column: Column of weights (created as 1.0 / confidence if missing, see above).
        report: A `LabelReport` of the same records, updated in place with the counts
            (`LabelReport.add_cleaning`).
        batch_size: Rows compared at once (memory: ``batch_size × len(records)`` floats).

    Returns:
        ``(records, report)``: the cleaned records (fresh index) and a `CleaningReport`.

    Raises:
        ValueError: For a missing column, embeddings of the wrong shape or with NaN (naming
            the row), or ``k`` / ``majority`` / ``action`` out of range.
    """
    for column in (label_column, source_column):
        if column not in records.columns:
            raise ValueError(f"no column {column!r} (columns: {list(records.columns)}); pass the output of "
                             "combine_labels()")
    n = len(records)
    vectors = _normalised(embeddings, n)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be an integer from 1 to {n - 1} (fewer than the {n} records), got {k!r}")
    if not 0.5 < float(majority) <= 1.0:
        raise ValueError(f"majority must be above 0.5 and at most 1 (a clear majority), got {majority!r}")
    if action not in ("drop", "downweight"):
        raise ValueError(f"action must be 'drop' or 'downweight', got {action!r}")
    labels = records[label_column].astype(str).to_numpy()
    weak = np.flatnonzero(records[source_column].astype(str).to_numpy() == "weak_supervision")
    need = int(np.ceil(majority * k - 1e-9))

    flagged: list[int] = []
    agreeing: list[float] = []
    suggestions: dict[str, Counter[str]] = {}
    for start in range(0, len(weak), batch_size):
        rows = weak[start : start + batch_size]
        sims = vectors[rows] @ vectors.T
        sims[np.arange(len(rows)), rows] = -np.inf  # never one's own neighbour
        neighbours = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for row, near in zip(rows, neighbours):
            votes = Counter(labels[near])
            top, count = votes.most_common(1)[0]  # a count above k/2 has no tie
            if top != labels[row] and count >= need:
                flagged.append(int(row))
                agreeing.append(votes.get(labels[row], 0) / k)
                suggestions.setdefault(labels[row], Counter())[top] += 1

    flagged_by_class = {str(key): int(v) for key, v in sorted(Counter(labels[flagged]).items())}
    out = records.copy()
    if weight_column not in out.columns:
        manual = out[source_column].astype(str) == "manual"
        confidence = out["confidence"] if "confidence" in out.columns else pd.Series(1.0, index=out.index)
        out[weight_column] = np.where(manual, 1.0, confidence.fillna(1.0)).astype("float64")
    result = CleaningReport(
        k=int(k), majority=float(majority), action=action, checked=len(weak), flagged_by_class=flagged_by_class,
        suggested={key: dict(sorted(v.items())) for key, v in sorted(suggestions.items())},
    )
    if action == "drop":
        out = out.drop(index=out.index[flagged])
        result.dropped_by_class = dict(flagged_by_class)
    else:
        weights = out[weight_column].to_numpy(dtype=np.float64, copy=True)
        weights[flagged] *= np.asarray(agreeing, dtype=np.float64)
        out[weight_column] = weights
        result.downweighted_by_class = dict(flagged_by_class)
    if report is not None:
        report.add_cleaning(result)
    return out.reset_index(drop=True), result
