"""Combining manual and weak-supervision labels into one training label per record."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from refinery_quaterion.export import ClassificationTask, ExportError, RefineryExport, load_export

__all__ = ["LabelReport", "combine_labels", "threshold_report", "DROP_REASONS"]

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)

DROP_REASONS: dict[str, str] = {
    "no_label": "neither a manual nor a weak-supervision label",
    "low_confidence": "weak-supervision confidence not above the threshold",
    "no_confidence": "weak-supervision label without a confidence",
    "multi_label": "several labels on one record",
}
"""Why `combine_labels` can drop a record (the keys of ``LabelReport.dropped``), described."""


@dataclass
class LabelReport:
    """What `combine_labels` kept and dropped.

    Attributes:
        task: Task name.
        min_confidence: Weak-supervision labels were kept when confidence > this value.
        total: Records in the export.
        kept_manual: Records kept with their manual label.
        kept_weak: Records kept with their weak-supervision label.
        dropped: Dropped records by reason (keys of `DROP_REASONS`).
        kept_by_class: ``{label: {"manual": n, "weak_supervision": n}}``.
        dropped_weak_by_class: Weak-supervision labels dropped for low/no confidence, by label.
    """

    task: str
    min_confidence: float
    total: int
    kept_manual: int
    kept_weak: int
    dropped: dict[str, int] = field(default_factory=dict)
    kept_by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped_weak_by_class: dict[str, int] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        """Records kept in all."""
        return self.kept_manual + self.kept_weak

    @property
    def dropped_total(self) -> int:
        """Records dropped in all."""
        return sum(self.dropped.values())

    def by_class(self) -> pd.DataFrame:
        """One row per label: kept manual, kept weak supervision, total kept, dropped WS."""
        labels = sorted(set(self.kept_by_class) | set(self.dropped_weak_by_class))
        rows = []
        for label in labels:
            kept = self.kept_by_class.get(label, {})
            manual, weak = kept.get("manual", 0), kept.get("weak_supervision", 0)
            rows.append(
                {
                    "label": label,
                    "manual": manual,
                    "weak_supervision": weak,
                    "kept": manual + weak,
                    "dropped_weak_supervision": self.dropped_weak_by_class.get(label, 0),
                }
            )
        columns = ["label", "manual", "weak_supervision", "kept", "dropped_weak_supervision"]
        return pd.DataFrame(rows, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "task": self.task,
            "min_confidence": self.min_confidence,
            "total": self.total,
            "kept": self.kept,
            "kept_manual": self.kept_manual,
            "kept_weak_supervision": self.kept_weak,
            "dropped": dict(self.dropped),
            "kept_by_class": {k: dict(v) for k, v in self.kept_by_class.items()},
            "dropped_weak_supervision_by_class": dict(self.dropped_weak_by_class),
        }

    def __str__(self) -> str:
        share = self.kept / self.total if self.total else 0.0
        lines = [
            f"Task {self.task!r}: kept {self.kept} of {self.total} records ({share:.1%}); "
            f"weak-supervision labels kept when confidence > {self.min_confidence:g}",
            f"  kept   manual            {self.kept_manual:>8}",
            f"  kept   weak supervision  {self.kept_weak:>8}",
        ]
        for reason, count in self.dropped.items():
            lines.append(f"  dropped {reason:<17}{count:>8}  ({DROP_REASONS[reason]})")
        table = self.by_class()
        if len(table):
            width = max(5, *(len(str(x)) for x in table["label"]))
            lines.append("")
            lines.append(f"  {'label':<{width}}  {'manual':>7}  {'weak':>7}  {'kept':>7}  {'dropped':>7}")
            for row in table.itertuples(index=False):
                lines.append(
                    f"  {row.label:<{width}}  {row.manual:>7}  {row.weak_supervision:>7}  "
                    f"{row.kept:>7}  {row.dropped_weak_supervision:>7}"
                )
        return "\n".join(lines)


def _as_export(export: RefineryExport | Any) -> RefineryExport:
    return export if isinstance(export, RefineryExport) else load_export(export)


def _check_threshold(value: float, name: str = "min_confidence") -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= number <= 1.0 or np.isnan(number):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return number


def _task_columns(export: RefineryExport, task: ClassificationTask) -> tuple[pd.Series, pd.Series, pd.Series]:
    frame = export.records
    empty = pd.Series([None] * len(frame), index=frame.index, dtype="object")
    manual = frame[task.manual_column] if task.manual_column else empty
    weak = frame[task.weak_column] if task.weak_column else empty
    if task.confidence_column:
        confidence = frame[task.confidence_column].astype("float64")
    else:
        confidence = pd.Series(np.nan, index=frame.index, dtype="float64")
    return manual, weak, confidence


def _multi_label(values: pd.Series, labels: Iterable[str]) -> pd.Series:
    known = set(labels)

    def is_multi(value: Any) -> bool:
        return isinstance(value, str) and value not in known and all(p in known for p in value.split(", "))

    return values.map(is_multi).astype(bool)


def combine_labels(
    export: RefineryExport | Any,
    task: str | None = None,
    min_confidence: float = 0.7,
    *,
    use_weak_supervision: bool = True,
    attributes: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, LabelReport]:
    """Give each record one label: manual first, else a confident weak-supervision label.

    The seed's rule: a record is kept when it has a manual label, or a weak-supervision
    label whose confidence is strictly greater than ``min_confidence``; the manual label
    wins when both exist. Records with several labels (multi-label cells) are dropped.

    Args:
        export: A `RefineryExport`, or anything
            `load_export` accepts.
        task: Classification task name; may be omitted when the export has one task.
        min_confidence: Weak-supervision threshold (strict ``>``), between 0 and 1.
        use_weak_supervision: ``False`` keeps manual labels only.
        attributes: Record attributes to keep (default: all).

    Returns:
        ``(frame, report)``: the kept records with their attributes plus ``label``,
        ``label_source`` (``"manual"`` or ``"weak_supervision"``) and ``confidence``
        (the weak-supervision confidence; NaN for manual labels without one), and a
        `LabelReport`.

    Raises:
        ExportError: Unknown task name (listing the tasks that exist), unknown attributes.
        ValueError: ``min_confidence`` out of range, no record left after filtering, or
            only one class left (similarity learning needs at least two).
    """
    export = _as_export(export)
    info = export.task(task)
    min_confidence = _check_threshold(min_confidence)
    keep_attributes = list(export.attributes if attributes is None else attributes)
    unknown = [a for a in keep_attributes if a not in export.attributes]
    if unknown:
        raise ExportError(
            f"{export.source}: unknown attribute(s) {unknown}; attributes are {export.attributes}"
        )

    manual, weak, confidence = _task_columns(export, info)
    manual_multi = _multi_label(manual, info.labels)
    weak_multi = _multi_label(weak, info.labels)
    has_manual = manual.notna()
    has_weak = weak.notna() & use_weak_supervision
    confident = confidence > min_confidence  # NaN compares False

    take_manual = has_manual & ~manual_multi
    take_weak = ~has_manual & has_weak & confident & ~weak_multi
    kept = take_manual | take_weak

    multi = (has_manual & manual_multi) | (~has_manual & has_weak & weak_multi & confident)
    dropped = {
        "no_label": int((~has_manual & ~has_weak).sum()),
        "multi_label": int(multi.sum()),
        "low_confidence": int((~has_manual & has_weak & confidence.notna() & ~confident).sum()),
        "no_confidence": int((~has_manual & has_weak & confidence.isna()).sum()),
    }
    labels = manual.where(take_manual, weak)
    source = pd.Series(np.where(take_manual, "manual", "weak_supervision"), index=manual.index)

    out = export.records.loc[kept, keep_attributes].copy()
    out["label"] = labels[kept].astype(str)
    out["label_source"] = source[kept]
    out["confidence"] = confidence[kept]
    out = out.reset_index(drop=True)

    kept_by_class: dict[str, dict[str, int]] = {}
    for (label, src), count in out.groupby(["label", "label_source"]).size().items():
        kept_by_class.setdefault(str(label), {"manual": 0, "weak_supervision": 0})[str(src)] = int(count)
    weak_dropped = ~has_manual & has_weak & ~confident & ~weak_multi
    dropped_counts = weak[weak_dropped].value_counts().sort_index()
    dropped_weak_by_class = {str(k): int(v) for k, v in dropped_counts.items()}

    report = LabelReport(
        task=info.name,
        min_confidence=min_confidence,
        total=len(export.records),
        kept_manual=int(take_manual.sum()),
        kept_weak=int(take_weak.sum()),
        dropped={k: v for k, v in dropped.items() if v},
        kept_by_class=dict(sorted(kept_by_class.items())),
        dropped_weak_by_class=dropped_weak_by_class,
    )
    if out.empty:
        raise ValueError(
            f"{export.source}: no record of task {info.name!r} is left after combining labels "
            f"(min_confidence={min_confidence:g}): {len(export.records)} records, "
            f"{int(has_manual.sum())} with a manual label, {int(has_weak.sum())} with a weak-supervision "
            f"label (max confidence {confidence.max() if confidence.notna().any() else 'n/a'}). "
            "Lower min_confidence or label more records."
        )
    classes = sorted(out["label"].unique())
    if len(classes) < 2:
        raise ValueError(
            f"{export.source}: after combining labels of task {info.name!r} only the class {classes[0]!r} "
            f"is left ({len(out)} records); similarity learning needs at least two classes. "
            f"Labels in the task: {info.labels}"
        )
    return out, report


def threshold_report(
    export: RefineryExport | Any,
    task: str | None = None,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
) -> pd.DataFrame:
    """How the weak-supervision threshold trades data for label quality.

    For each threshold: the records `combine_labels` would keep, their share of the
    export, and the agreement of weak-supervision labels above the threshold with manual
    labels, on records that have both (an estimate of label quality that needs no ground
    truth).

    Args:
        export: A ``RefineryExport`` or anything ``load_export`` accepts.
        task: Classification task name (may be omitted when there is one task).
        thresholds: Confidence thresholds (strict ``>``), each between 0 and 1.

    Returns:
        A DataFrame with columns ``threshold``, ``kept``, ``share``, ``weak_supervision``
        (weak-supervision labels above the threshold, on records without a manual label),
        ``agreement`` (NaN when no record has both labels) and ``compared``.

    Raises:
        ExportError: Unknown task.
        ValueError: A threshold outside 0..1, or no thresholds.
    """
    export = _as_export(export)
    info = export.task(task)
    values = sorted({_check_threshold(t, "threshold") for t in thresholds})
    if not values:
        raise ValueError("thresholds is empty; pass e.g. (0.5, 0.7, 0.9)")
    manual, weak, confidence = _task_columns(export, info)
    manual_multi = _multi_label(manual, info.labels)
    weak_multi = _multi_label(weak, info.labels)
    has_manual = manual.notna()
    total = len(export.records)
    rows = []
    for threshold in values:
        confident = (confidence > threshold) & weak.notna() & ~weak_multi
        weak_kept = int((~has_manual & confident).sum())
        kept = int((has_manual & ~manual_multi).sum()) + weak_kept
        both = has_manual & ~manual_multi & confident
        compared = int(both.sum())
        agreement = float((manual[both] == weak[both]).mean()) if compared else float("nan")
        rows.append(
            {
                "threshold": threshold,
                "kept": kept,
                "share": kept / total if total else float("nan"),
                "weak_supervision": weak_kept,
                "agreement": agreement,
                "compared": compared,
            }
        )
    return pd.DataFrame(rows)
