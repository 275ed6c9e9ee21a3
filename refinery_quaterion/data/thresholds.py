"""Choosing the weak-supervision confidence threshold, from the manual labels.

Refinery's weak-supervision confidence is not a probability (see the guide), so a fixed
threshold can keep almost nothing of one project and far too much of another. The records
that carry both a manual and a weak-supervision label tell how often the weak labels above a
threshold are right. `choose_threshold` (and ``combine_labels(min_confidence="auto")``) uses
them to pick the threshold with the most **net correct** weak labels:

``score(t) = kept(t) × agreement(t) − wrong_label_cost × kept(t) × (1 − agreement(t))``

where ``kept(t)`` counts the weak labels `combine_labels` would keep (records without a
manual label, confidence ``> t``) and ``agreement(t)`` is the share of records with both
labels and confidence ``> t`` on which they agree. ``kept × agreement`` is the expected
number of correct training labels; the second term charges each expected wrong label. With
``wrong_label_cost=0`` the score is plain coverage × agreement, which never prefers dropping
labels (a wrong label costs nothing), so it almost always picks the lowest threshold; with the
default ``1`` a band of weak labels is kept only when more than half of it is right.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from refinery_quaterion.data._tasklabels import TaskLabels, as_export, blank_texts, check_threshold, task_labels
from refinery_quaterion.data.refinery import RefineryExport
from refinery_quaterion.data.text import TextSpec

__all__ = [
    "AUTO_CANDIDATES",
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_THRESHOLDS",
    "AutoThreshold",
    "ThresholdChoice",
    "choose_threshold",
    "threshold_report",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
"""Thresholds `threshold_report` shows by default."""

DEFAULT_MIN_CONFIDENCE: float = 0.7
"""The fixed threshold of refinery's similarity-search sample project, and the fallback of ``"auto"``."""

AUTO_CANDIDATES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20))
"""Thresholds the automatic choice tries: 0.0, 0.05, …, 0.95."""


@dataclass(frozen=True)
class AutoThreshold:
    """Settings of the automatic threshold choice.

    Attributes:
        candidates: Thresholds tried (strict ``>``, each in 0..1).
        min_overlap: A candidate is eligible only when at least this many records have both a
            manual and a weak-supervision label above it (the agreement is measured on them).
            When no candidate is eligible, `fallback` is used and the choice says so.
        fallback: Threshold used when the manual labels cannot decide.
        wrong_label_cost: How many correct labels one wrong label cancels in the score (``0``:
            maximise coverage × agreement alone).

    Raises:
        ValueError: For an empty or out-of-range candidate list, a negative ``min_overlap``
            or ``wrong_label_cost``, or a ``fallback`` outside 0..1.
    """

    candidates: tuple[float, ...] = AUTO_CANDIDATES
    min_overlap: int = 30
    fallback: float = DEFAULT_MIN_CONFIDENCE
    wrong_label_cost: float = 1.0

    def __post_init__(self) -> None:
        values = tuple(sorted({check_threshold(c, "an auto-threshold candidate") for c in self.candidates}))
        if not values:
            raise ValueError("AutoThreshold.candidates is empty; pass e.g. (0.3, 0.5, 0.7)")
        object.__setattr__(self, "candidates", values)
        object.__setattr__(self, "fallback", check_threshold(self.fallback, "AutoThreshold.fallback"))
        if int(self.min_overlap) < 1:
            raise ValueError(f"AutoThreshold.min_overlap must be at least 1, got {self.min_overlap!r}")
        if not float(self.wrong_label_cost) >= 0:
            raise ValueError(f"AutoThreshold.wrong_label_cost must be >= 0, got {self.wrong_label_cost!r}")


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold picked by `choose_threshold`, and why.

    Attributes:
        value: The threshold (weak-supervision labels are kept when confidence ``> value``).
        reason: One sentence saying why, for reports and logs.
        fell_back: Whether the manual labels could not decide and ``settings.fallback`` was used.
        weak_kept: Weak-supervision labels kept at ``value`` (records without a manual label).
        weak_total: Records without a manual label that have a weak label with a confidence.
        agreement: Agreement of weak and manual labels above ``value`` (NaN when not measured).
        compared: Records with both labels above ``value``.
        expected_correct: ``weak_kept × agreement``.
        expected_wrong: ``weak_kept × (1 − agreement)``.
        settings: The settings used.
    """

    value: float
    reason: str
    fell_back: bool
    weak_kept: int
    weak_total: int
    agreement: float
    compared: int
    expected_correct: float
    expected_wrong: float
    settings: AutoThreshold = field(default_factory=AutoThreshold)

    @property
    def coverage(self) -> float:
        """Share of the usable weak-supervision labels that ``value`` keeps (NaN when there are none)."""
        return self.weak_kept / self.weak_total if self.weak_total else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (NaN becomes ``None``)."""
        data = asdict(self)
        data["settings"]["candidates"] = list(self.settings.candidates)
        data["coverage"] = self.coverage
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in data.items()}

    def __str__(self) -> str:
        return self.reason


def _table(labels: TaskLabels, thresholds: Iterable[float], usable: pd.Series) -> pd.DataFrame:
    has_manual = labels.manual.notna()
    single_manual = has_manual & ~labels.manual_multi
    total = len(labels.manual)
    rows = []
    for threshold in thresholds:
        confident = (labels.confidence > threshold) & labels.weak.notna() & ~labels.weak_multi
        weak_kept = int((~has_manual & confident & usable).sum())
        kept = int((single_manual & usable).sum()) + weak_kept
        both = single_manual & confident
        compared = int(both.sum())
        agreement = float((labels.manual[both] == labels.weak[both]).mean()) if compared else float("nan")
        rows.append(
            {
                "threshold": threshold,
                "kept": kept,
                "share": kept / total if total else float("nan"),
                "weak_supervision": weak_kept,
                "agreement": agreement,
                "compared": compared,
                "expected_correct": weak_kept * agreement,
                "expected_wrong": weak_kept * (1.0 - agreement),
            }
        )
    return pd.DataFrame(rows)


def _choose(labels: TaskLabels, usable: pd.Series, settings: AutoThreshold) -> ThresholdChoice:
    has_manual = labels.manual.notna()
    pool = ~has_manual & labels.weak.notna() & ~labels.weak_multi & labels.confidence.notna() & usable
    weak_total = int(pool.sum())
    table = _table(labels, settings.candidates, usable)
    eligible = table[table["compared"] >= settings.min_overlap]

    def result(row: pd.Series | None, value: float, reason: str, fell_back: bool) -> ThresholdChoice:
        if row is None:
            row = _table(labels, [value], usable).iloc[0]
        return ThresholdChoice(
            value=float(value), reason=reason, fell_back=fell_back, weak_kept=int(row["weak_supervision"]),
            weak_total=weak_total, agreement=float(row["agreement"]), compared=int(row["compared"]),
            expected_correct=float(row["expected_correct"]), expected_wrong=float(row["expected_wrong"]),
            settings=settings,
        )

    fallback = settings.fallback
    if weak_total == 0:
        return result(None, fallback, f"min_confidence={fallback:g} (the default): no record without a manual "
                      "label has a weak-supervision label with a confidence, so there is nothing to choose from",
                      True)
    if eligible.empty:
        most = int(table["compared"].max())
        return result(None, fallback, f"min_confidence={fallback:g} (the default): only {most} records have both "
                      f"a manual and a weak-supervision label, fewer than the {settings.min_overlap} needed to "
                      "estimate how often weak labels are right", True)
    score = eligible["expected_correct"] - settings.wrong_label_cost * eligible["expected_wrong"]
    best = float(score.max())
    if best <= 0 and settings.wrong_label_cost > 0:
        row = eligible.iloc[0]
        return result(None, 1.0, f"min_confidence=1 (no weak labels): at every threshold at most half of the "
                      f"weak labels agree with the manual ones (agreement {row['agreement']:.1%} on "
                      f"{int(row['compared'])} records above {row['threshold']:g})", False)
    winner = eligible[score >= best - 1e-9].iloc[-1]  # ties: the higher threshold (fewer wrong labels)
    cost = settings.wrong_label_cost
    objective = "correct" if cost == 0 else ("correct − wrong" if cost == 1 else f"correct − {cost:g}×wrong")
    reason = (
        f"min_confidence={winner['threshold']:g} chosen from the manual labels: it keeps "
        f"{int(winner['weak_supervision'])} of {weak_total} weak-supervision labels "
        f"({int(winner['weak_supervision']) / weak_total:.1%}), which agree with the manual label on "
        f"{winner['agreement']:.1%} of the {int(winner['compared'])} records having both: about "
        f"{winner['expected_correct']:.0f} correct and {winner['expected_wrong']:.0f} wrong labels, the best "
        f"{objective} among the {len(eligible)} of the {_candidates_text(settings.candidates)} with at least "
        f"{settings.min_overlap} such records"
    )
    return result(winner, float(winner["threshold"]), reason, False)


def _candidates_text(candidates: tuple[float, ...]) -> str:
    """``20 candidate thresholds (0, 0.05, …, 0.95)``: what the choice tried, as the reason names it."""
    values = [f"{c:g}" for c in candidates]
    shown = ", ".join(values) if len(values) <= 5 else f"{values[0]}, {values[1]}, …, {values[-1]}"
    return f"{len(values)} candidate threshold{'s' if len(values) != 1 else ''} ({shown})"


def choose_threshold(
    export: RefineryExport | Any,
    task: str | None = None,
    settings: AutoThreshold | None = None,
    *,
    template: TextSpec | None = None,
) -> ThresholdChoice:
    """Pick the weak-supervision threshold from the manual labels (see the module description).

    The same choice ``combine_labels(..., min_confidence="auto")`` makes. When fewer than
    ``settings.min_overlap`` records carry both labels, or no weak label has a confidence,
    ``settings.fallback`` (0.7) is returned with ``fell_back=True`` and a reason saying so.
    When at most half of the weak labels agree with the manual ones at every eligible
    threshold, ``1.0`` is returned: keep no weak label.

    Note that with the "manual labels as the test set" protocol
    (`refinery_quaterion.data.splits.split_by_source`) the manual labels also pick this one number;
    they do not choose any training label.

    Args:
        export: A `RefineryExport` or anything `load_export` accepts.
        task: Classification task name (may be omitted when there is one task).
        settings: Candidates, minimum overlap, fallback and wrong-label cost.
        template: Text template; records whose rendered text is blank are not counted as kept
            (as `combine_labels` drops them).

    Returns:
        The threshold, the numbers behind it and a one-sentence reason.

    Raises:
        RefineryFileError: Unknown task.
    """
    export = as_export(export)
    info = export.task(task)
    blank, _ = blank_texts(export, template, export.attributes)
    return _choose(task_labels(export, info), ~blank, settings or AutoThreshold())


def threshold_report(
    export: RefineryExport | Any,
    task: str | None = None,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    *,
    template: TextSpec | None = None,
    auto: AutoThreshold | None = AutoThreshold(),
) -> pd.DataFrame:
    """How the weak-supervision threshold trades data for label quality.

    For each threshold: the records `combine_labels` would keep, their share of the
    export, and the agreement of weak-supervision labels above the threshold with manual
    labels, on records that have both (an estimate of label quality that needs no ground
    truth). With ``auto`` (the default), the threshold `choose_threshold` picks is added as a
    row (when not already there) and marked in the ``chosen`` column; the full
    `ThresholdChoice` (with its reason) is in ``table.attrs["threshold_choice"]`` as a dict.

    Args:
        export: A ``RefineryExport`` or anything ``load_export`` accepts.
        task: Classification task name (may be omitted when there is one task).
        thresholds: Confidence thresholds (strict ``>``), each between 0 and 1.
        template: Text template; records whose rendered text is blank are not counted as kept.
        auto: Settings of the automatic choice; ``None`` leaves it out (no ``chosen`` column).

    Returns:
        A DataFrame with columns ``threshold``, ``kept``, ``share``, ``weak_supervision``
        (weak-supervision labels above the threshold, on records without a manual label),
        ``agreement`` (NaN when no record has both labels), ``compared``,
        ``expected_correct`` (``weak_supervision × agreement``), ``expected_wrong`` and,
        with ``auto``, ``chosen``.

    Raises:
        RefineryFileError: Unknown task.
        ValueError: A threshold outside 0..1, or no thresholds.
    """
    export = as_export(export)
    info = export.task(task)
    values = sorted({check_threshold(t, "threshold") for t in thresholds})
    if not values:
        raise ValueError("thresholds is empty; pass e.g. (0.5, 0.7, 0.9)")
    labels = task_labels(export, info)
    blank, _ = blank_texts(export, template, export.attributes)
    usable = ~blank
    if auto is None:
        return _table(labels, values, usable)
    choice = _choose(labels, usable, auto)
    table = _table(labels, sorted(set(values) | {choice.value}), usable)
    table["chosen"] = table["threshold"] == choice.value
    table.attrs["threshold_choice"] = choice.to_dict()
    return table
