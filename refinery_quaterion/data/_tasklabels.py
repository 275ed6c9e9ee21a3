"""The label columns of one classification task, as aligned Series (shared by labels and thresholds)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from refinery_quaterion._util import is_missing
from refinery_quaterion.data.refinery import ClassificationTask, RefineryExport, load_export
from refinery_quaterion.data.text import TextSpec, TextTemplate, is_blank


def as_export(export: RefineryExport | Any) -> RefineryExport:
    """``export`` itself, or whatever `load_export` makes of it."""
    return export if isinstance(export, RefineryExport) else load_export(export)


def check_threshold(value: Any, name: str = "min_confidence") -> float:
    """``value`` as a float in 0..1; a `ValueError` naming ``name`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= number <= 1.0 or np.isnan(number):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return number


@dataclass
class TaskLabels:
    """One task's labels, record by record (index = the export's index).

    Attributes:
        manual: Manual label or ``None``.
        weak: Weak-supervision label or ``None``.
        confidence: Weak-supervision confidence or NaN.
        manual_multi: Whether the manual cell holds several labels.
        weak_multi: Whether the weak-supervision cell holds several labels.
    """

    manual: pd.Series
    weak: pd.Series
    confidence: pd.Series
    manual_multi: pd.Series
    weak_multi: pd.Series


def task_labels(export: RefineryExport, task: ClassificationTask) -> TaskLabels:
    """The label columns of ``task`` (empty ones where the export lacks a column)."""
    frame = export.records
    empty = pd.Series([None] * len(frame), index=frame.index, dtype="object")
    manual = frame[task.manual_column] if task.manual_column else empty
    weak = frame[task.weak_column] if task.weak_column else empty
    if task.confidence_column:
        confidence = frame[task.confidence_column].astype("float64")
    else:
        confidence = pd.Series(np.nan, index=frame.index, dtype="float64")
    return TaskLabels(manual, weak, confidence, _multi_label(manual, task.labels), _multi_label(weak, task.labels))


def _multi_label(values: pd.Series, labels: Iterable[str]) -> pd.Series:
    known = set(labels)

    def is_multi(value: Any) -> bool:
        return isinstance(value, str) and value not in known and all(p in known for p in value.split(", "))

    return values.map(is_multi).astype(bool)


def blank_texts(
    export: RefineryExport, template: TextSpec | None, attributes: Sequence[str]
) -> tuple[pd.Series, TextTemplate | None]:
    """Which records would be embedded as a blank text.

    With a template, the rendered text is checked with `refinery_quaterion.data.text.is_blank`
    (empty, whitespace or invisible characters only). Without one, a record counts as blank
    only when every one of ``attributes`` is missing or blank (then no template can render
    anything from it).

    Raises:
        ValueError: If the template names the ``label`` column `combine_labels` writes or a field
            that is not an attribute (naming the field and the file), or cannot render a record
            (naming the field and the row).
    """
    frame = export.records
    if template is None:
        if not attributes:
            return pd.Series(False, index=frame.index), None
        blank = pd.Series(True, index=frame.index)
        for column in attributes:
            blank &= frame[column].map(_blank_value).astype(bool)
        return blank, None
    compiled = TextTemplate.coerce(template)
    compiled.validate(export.attributes, source=export.source, label_column="label")
    rendered = compiled.render_many(frame.to_dict(orient="records"))
    return pd.Series([is_blank(t) for t in rendered], index=frame.index), compiled


def _blank_value(value: Any) -> bool:
    if isinstance(value, str):
        return is_blank(value)
    if isinstance(value, (list, tuple, dict)):
        return len(value) == 0
    return is_missing(value)


__all__ = ["TaskLabels", "as_export", "blank_texts", "check_threshold", "task_labels"]
