"""Combining manual and weak-supervision labels into one training label per record.

`combine_labels` keeps a record's manual label, else its weak-supervision label when the
confidence is above a threshold — fixed, or chosen from the manual labels with
``min_confidence="auto"`` (see `refinery_quaterion.data.thresholds`). Each kept record gets a
``weight`` (1.0 for a manual label, the confidence for a weak one) that training can use,
and every dropped record is counted in the `LabelReport` with its reason and class.
`threshold_report` is re-exported from `refinery_quaterion.data.thresholds`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from refinery_quaterion._util import fields_dict
from refinery_quaterion.data._labelnames import case_variants
from refinery_quaterion.data._tasklabels import TaskLabels, as_export, blank_texts, check_threshold, task_labels
from refinery_quaterion.data.refinery import ClassificationTask, RefineryExport, RefineryFileError
from refinery_quaterion.data.text import TextSpec
from refinery_quaterion.data.thresholds import (
    AutoThreshold,
    ThresholdChoice,
    _choose,
    threshold_report,
)
from refinery_quaterion.errors import MISSING, Fix, SettingError

__all__ = ["DROP_REASONS", "LabelCleaning", "LabelReport", "LabelVariantWarning", "combine_labels", "threshold_report"]


class LabelVariantWarning(UserWarning):
    """Issued by `combine_labels` when kept label names differ only in case (``Sports`` / ``sports``)."""


class LabelCleaning(Protocol):
    """What `LabelReport.add_cleaning` takes: a `refinery_quaterion.data.cleaning.CleaningReport`.

    (Cleaning runs after labels are combined, so this module names the report by what it offers.)
    """

    dropped_by_class: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-serialisable data."""
        ...

DROP_REASONS: dict[str, str] = {
    "no_label": "neither a manual nor a weak-supervision label",
    "low_confidence": "weak-supervision confidence not above the threshold",
    "no_confidence": "weak-supervision label without a confidence",
    "multi_label": "several labels on one record",
    "blank_text": "the text to embed is empty or whitespace",
    "neighbour_disagreement": "weak label contradicted by a clear majority of its nearest neighbours",
}
"""Why `combine_labels` (or `refinery_quaterion.data.cleaning.clean_labels`) can drop a record (the keys of
``LabelReport.dropped``), described."""

_WEAK_REASONS = ("low_confidence", "no_confidence")


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
        dropped_by_class: ``{reason: {label: n}}`` for every reason where the record had one
            label (all but ``no_label`` and ``multi_label``).
        threshold_choice: How ``min_confidence="auto"`` chose the threshold (``None`` for a
            fixed threshold).
        notes: Things worth knowing (the export's notes, how blank texts were detected...).
        cleaning: What `refinery_quaterion.data.cleaning.clean_labels` changed, once added with
            `add_cleaning`.
        case_variants: Kept label names that differ only in case, one sorted group each
            (``[["Sports", "sports"]]``): they are separate classes, which is rarely meant.
    """

    task: str
    min_confidence: float
    total: int
    kept_manual: int
    kept_weak: int
    dropped: dict[str, int] = field(default_factory=dict)
    kept_by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped_weak_by_class: dict[str, int] = field(default_factory=dict)
    dropped_by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    threshold_choice: ThresholdChoice | None = None
    notes: list[str] = field(default_factory=list)
    cleaning: LabelCleaning | None = None
    case_variants: list[list[str]] = field(default_factory=list)

    @property
    def kept(self) -> int:
        """Records kept in all."""
        return self.kept_manual + self.kept_weak

    @property
    def dropped_total(self) -> int:
        """Records dropped in all."""
        return sum(self.dropped.values())

    def _extra_reasons(self) -> list[str]:
        return [r for r in DROP_REASONS if r in self.dropped_by_class and r not in _WEAK_REASONS]

    def by_class(self) -> pd.DataFrame:
        """One row per label: kept manual, kept weak supervision, total kept, dropped WS.

        A ``dropped_{reason}`` column is added for each other reason that dropped labeled
        records (e.g. ``dropped_blank_text``).
        """
        extra = self._extra_reasons()
        labels = set(self.kept_by_class) | set(self.dropped_weak_by_class)
        for reason in extra:
            labels |= set(self.dropped_by_class[reason])
        rows = []
        for label in sorted(labels):
            kept = self.kept_by_class.get(label, {})
            manual, weak = kept.get("manual", 0), kept.get("weak_supervision", 0)
            row = {
                "label": label,
                "manual": manual,
                "weak_supervision": weak,
                "kept": manual + weak,
                "dropped_weak_supervision": self.dropped_weak_by_class.get(label, 0),
            }
            row.update({f"dropped_{r}": self.dropped_by_class[r].get(label, 0) for r in extra})
            rows.append(row)
        columns = ["label", "manual", "weak_supervision", "kept", "dropped_weak_supervision"]
        return pd.DataFrame(rows, columns=columns + [f"dropped_{r}" for r in extra])

    def add_cleaning(self, cleaning: LabelCleaning) -> None:
        """Count the weak labels `refinery_quaterion.data.cleaning.clean_labels` dropped (in place).

        Dropped labels move from ``kept_weak`` / ``kept_by_class`` to the reason
        ``neighbour_disagreement``; down-weighted ones stay kept and are listed in the report.

        Args:
            cleaning: The report `clean_labels` returned for records combined by this report.
        """
        self.cleaning = cleaning
        if not cleaning.dropped_by_class:
            return
        counts = self.dropped_by_class.setdefault("neighbour_disagreement", {})
        for label, n in cleaning.dropped_by_class.items():
            counts[label] = counts.get(label, 0) + n
            self.kept_by_class[label]["weak_supervision"] -= n
        dropped = sum(cleaning.dropped_by_class.values())
        self.kept_weak -= dropped
        self.dropped["neighbour_disagreement"] = self.dropped.get("neighbour_disagreement", 0) + dropped

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            **fields_dict(self, "task", "min_confidence", "total", "kept", "kept_manual", "dropped", "kept_by_class",
                          "dropped_by_class", kept_weak_supervision="kept_weak",
                          dropped_weak_supervision_by_class="dropped_weak_by_class"),
            "threshold_choice": None if self.threshold_choice is None else self.threshold_choice.to_dict(),
            "notes": list(self.notes),
            "cleaning": None if self.cleaning is None else self.cleaning.to_dict(),
            "case_variants": [list(group) for group in self.case_variants],
        }

    def __str__(self) -> str:
        share = self.kept / self.total if self.total else 0.0
        lines = [
            f"Task {self.task!r}: kept {self.kept} of {self.total} records ({share:.1%}); "
            f"weak-supervision labels kept when confidence > {self.min_confidence:g}",
        ]
        if self.threshold_choice is not None:
            lines.append(f"  threshold: {self.threshold_choice.reason}")
        lines += [
            f"  kept   manual            {self.kept_manual:>8}",
            f"  kept   weak supervision  {self.kept_weak:>8}",
        ]
        for reason, count in self.dropped.items():
            lines.append(f"  dropped {reason:<17}{count:>8}  ({DROP_REASONS[reason]})")
        table = self.by_class()
        extra = [c for c in table.columns if c.startswith("dropped_") and c != "dropped_weak_supervision"]
        if len(table):
            width = max(5, *(len(str(x)) for x in table["label"]))
            lines.append("")
            header = f"  {'label':<{width}}  {'manual':>7}  {'weak':>7}  {'kept':>7}  {'dropped':>7}"
            lines.append(header + "".join(f"  {c.removeprefix('dropped_'):>{len(c) - 8}}" for c in extra))
            for row in table.to_dict(orient="records"):
                line = (f"  {row['label']:<{width}}  {row['manual']:>7}  {row['weak_supervision']:>7}  "
                        f"{row['kept']:>7}  {row['dropped_weak_supervision']:>7}")
                lines.append(line + "".join(f"  {row[c]:>{len(c) - 8}}" for c in extra))
        if self.cleaning is not None:
            lines += ["", str(self.cleaning)]
        if self.case_variants:
            lines.append(f"  warning: {_case_variants_text(self.case_variants)}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _case_variants_text(groups: list[list[str]]) -> str:
    """The warning about label names that differ only in case."""
    shown = "; ".join(" / ".join(map(repr, group)) for group in groups)
    return (f"label names that differ only in case are separate classes: {shown}; "
            "rename them in refinery if they mean the same class")


def combine_labels(
    export: RefineryExport | Any,
    task: str | None = None,
    min_confidence: float | Literal["auto"] = "auto",
    *,
    use_weak_supervision: bool = True,
    attributes: Sequence[str] | None = None,
    template: TextSpec | None = None,
    auto: AutoThreshold | None = None,
) -> tuple[pd.DataFrame, LabelReport]:
    """Give each record one label: manual first, else a confident weak-supervision label.

    The seed's rule: a record is kept when it has a manual label, or a weak-supervision
    label whose confidence is strictly greater than ``min_confidence``; the manual label
    wins when both exist. Records with several labels (multi-label cells) are dropped, and
    so are records whose text is blank (reason ``blank_text``, counted by class).

    Blank texts: with ``template=`` (the template you will train with) a record is dropped when
    its rendered text is empty or whitespace. Without a template the library cannot know
    what will be embedded, so only records whose kept attributes are *all* missing or blank
    are dropped (a note in the report says so); `RefineryExportDataset` refuses any blank
    text later, naming the row. Pass the template.

    Args:
        export: A `RefineryExport`, or anything
            `load_export` accepts.
        task: Classification task name; may be omitted when the export has one task.
        min_confidence: ``"auto"`` (default) chooses the threshold from the records that
            carry both a manual and a weak-supervision label
            (`refinery_quaterion.data.thresholds.choose_threshold`); with fewer than
            ``auto.min_overlap`` such records it falls back to 0.7 (`DEFAULT_MIN_CONFIDENCE`,
            v0.1's fixed default). The report says which value was used and why. Or a fixed
            threshold (strict ``>``) between 0 and 1.
        use_weak_supervision: ``False`` keeps manual labels only.
        attributes: Record attributes to keep (default: all).
        template: The text template (format string or callable) used to detect blank texts; its
            fields must be attributes of the export.
        auto: Settings of ``min_confidence="auto"`` (default `AutoThreshold()`).

    Returns:
        ``(frame, report)``: the kept records with their attributes plus ``label``,
        ``label_source`` (``"manual"`` or ``"weak_supervision"``), ``confidence``
        (the weak-supervision confidence; NaN for manual labels without one) and ``weight``
        (1.0 for a manual label, the confidence for a weak-supervision label), and a
        `LabelReport`.

    Raises:
        RefineryFileError: Unknown task name (listing the tasks that exist), unknown attributes.
        ValueError: ``min_confidence`` out of range, a template that names the ``label`` column
            or a field that is not an attribute (naming the field and the file), an export
            without records, no record left after filtering, or only one class left
            (similarity learning needs at least two).

    Warns:
        LabelVariantWarning: When kept label names differ only in case (also in
            `LabelReport.case_variants`). Names are already in Unicode NFC without invisible
            characters (cleaned when the export is read), so ``"Business\u200b"`` is ``"Business"``.
    """
    export = as_export(export)
    info = export.task(task)
    if export.records.empty:
        raise RefineryFileError(f"{export.source}: holds no records; nothing to combine labels of "
                                f"(task {info.name!r})")
    if not (isinstance(min_confidence, str) and min_confidence == "auto"):
        min_confidence = _fixed_threshold(min_confidence)
    keep_attributes = _kept_attributes(export, attributes)
    notes = list(export.notes)
    blank, _ = blank_texts(export, template, keep_attributes)
    if template is None:
        notes.append("no text template given (template=): only records whose attributes are all empty were "
                     "checked for blank texts; pass the template you train with")

    labels = task_labels(export, info)
    choice: ThresholdChoice | None = None
    if min_confidence == "auto":
        choice = _choose(labels, ~blank, auto or AutoThreshold())
        min_confidence = choice.value
    threshold = float(min_confidence)
    selection = _select(labels, blank, threshold, use_weak_supervision)
    out = _kept_records(export.records, keep_attributes, labels, selection)
    dropped = selection.dropped()
    kept_by_class, dropped_by_class, dropped_weak_by_class = _counts_by_class(out, labels, selection)
    report = LabelReport(
        task=info.name,
        min_confidence=threshold,
        total=len(export.records),
        kept_manual=int(selection.take_manual.sum()),
        kept_weak=int(selection.take_weak.sum()),
        dropped={k: v for k, v in dropped.items() if v},
        kept_by_class=kept_by_class,
        dropped_weak_by_class=dropped_weak_by_class,
        dropped_by_class=dropped_by_class,
        threshold_choice=choice,
        notes=notes,
        case_variants=case_variants(out["label"].unique()),
    )
    _check_enough_left(out, export, info, threshold, labels, selection)
    if report.case_variants:
        warnings.warn(f"task {info.name!r}: {_case_variants_text(report.case_variants)}", LabelVariantWarning,
                      stacklevel=2)
    return out, report


def _fixed_threshold(min_confidence: float | str) -> float:
    """A fixed ``min_confidence`` (a number or a numeric string) as a float in 0..1."""
    if isinstance(min_confidence, str):
        try:
            min_confidence = float(min_confidence)
        except ValueError:
            raise ValueError(f"min_confidence must be a number between 0 and 1 or 'auto', "
                             f"got {min_confidence!r}") from None
    return check_threshold(min_confidence)


def _kept_attributes(export: RefineryExport, attributes: Sequence[str] | None) -> list[str]:
    """The attributes `combine_labels` keeps (all by default); an `RefineryFileError` for unknown ones."""
    keep_attributes = list(export.attributes if attributes is None else attributes)
    unknown = [a for a in keep_attributes if a not in export.attributes]
    if unknown:
        raise RefineryFileError(
            f"{export.source}: unknown attribute(s) {unknown}; attributes are {export.attributes}"
        )
    return keep_attributes


@dataclass
class _Selection:
    """Which records `combine_labels` keeps and why it drops the others (boolean Series by record)."""

    has_manual: pd.Series
    has_weak: pd.Series
    confident: pd.Series
    take_manual: pd.Series
    take_weak: pd.Series
    blank_drop: pd.Series
    multi: pd.Series
    low: pd.Series
    no_conf: pd.Series

    @property
    def kept(self) -> pd.Series:
        """Records kept, with their manual or their weak-supervision label."""
        return self.take_manual | self.take_weak

    def dropped(self) -> dict[str, int]:
        """Dropped records by reason, zeros included."""
        return {
            "no_label": int((~self.has_manual & ~self.has_weak).sum()),
            "multi_label": int(self.multi.sum()),
            "low_confidence": int(self.low.sum()),
            "no_confidence": int(self.no_conf.sum()),
            "blank_text": int(self.blank_drop.sum()),
        }


def _select(labels: TaskLabels, blank: pd.Series, threshold: float, use_weak_supervision: bool) -> _Selection:
    """The seed's rule, record by record: manual first, else a weak label with confidence > ``threshold``."""
    has_manual = labels.manual.notna()
    has_weak = labels.weak.notna() & use_weak_supervision
    confident = labels.confidence > threshold  # NaN compares False
    take_manual = has_manual & ~labels.manual_multi
    take_weak = ~has_manual & has_weak & confident & ~labels.weak_multi
    return _Selection(
        has_manual=has_manual,
        has_weak=has_weak,
        confident=confident,
        take_manual=take_manual & ~blank,
        take_weak=take_weak & ~blank,
        blank_drop=(take_manual | take_weak) & blank,
        multi=(has_manual & labels.manual_multi) | (~has_manual & has_weak & labels.weak_multi & confident),
        low=~has_manual & has_weak & labels.confidence.notna() & ~confident,
        no_conf=~has_manual & has_weak & labels.confidence.isna(),
    )


def _chosen_label(labels: TaskLabels, selection: _Selection) -> pd.Series:
    """Each record's manual label, else its weak-supervision label."""
    return labels.manual.where(selection.has_manual, labels.weak)


def _kept_records(
    records: pd.DataFrame, keep_attributes: list[str], labels: TaskLabels, selection: _Selection
) -> pd.DataFrame:
    """The kept records: their attributes plus ``label``, ``label_source``, ``confidence`` and ``weight``."""
    kept, confidence = selection.kept, labels.confidence
    source = pd.Series(np.where(selection.take_manual, "manual", "weak_supervision"), index=labels.manual.index)
    out = records.loc[kept, keep_attributes].copy()
    out["label"] = _chosen_label(labels, selection)[kept].astype(str)
    out["label_source"] = source[kept]
    out["confidence"] = confidence[kept]
    out["weight"] = np.where(selection.take_manual[kept], 1.0, confidence[kept]).astype("float64")
    return out.reset_index(drop=True)


def _counts_by_class(
    out: pd.DataFrame, labels: TaskLabels, selection: _Selection
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]], dict[str, int]]:
    """``(kept_by_class, dropped_by_class, dropped_weak_by_class)`` of the `LabelReport`."""
    kept_by_class: dict[str, dict[str, int]] = {}
    for (label, src), count in out.groupby(["label", "label_source"]).size().items():
        kept_by_class.setdefault(str(label), {"manual": 0, "weak_supervision": 0})[str(src)] = int(count)
    chosen = _chosen_label(labels, selection)
    by_reason = {"low_confidence": selection.low & ~labels.weak_multi,
                 "no_confidence": selection.no_conf & ~labels.weak_multi,
                 "blank_text": selection.blank_drop}
    dropped_by_class = {
        reason: {str(k): int(v) for k, v in chosen[mask].value_counts().sort_index().items()}
        for reason, mask in by_reason.items()
        if mask.any()
    }
    weak_dropped = ~selection.has_manual & selection.has_weak & ~selection.confident & ~labels.weak_multi
    dropped_weak_by_class = {
        str(k): int(v) for k, v in labels.weak[weak_dropped].value_counts().sort_index().items()
    }
    return dict(sorted(kept_by_class.items())), dropped_by_class, dropped_weak_by_class


def _check_enough_left(
    out: pd.DataFrame,
    export: RefineryExport,
    info: ClassificationTask,
    threshold: float,
    labels: TaskLabels,
    selection: _Selection,
) -> None:
    """A `ValueError` when no record, or only one class, is left after combining labels."""
    if out.empty:
        confidence, blank_dropped = labels.confidence, int(selection.blank_drop.sum())
        raise SettingError(
            f"{export.source}: no record of task {info.name!r} is left after combining labels "
            f"({{min_confidence}}): {len(export.records)} records, "
            f"{int(selection.has_manual.sum())} with a manual label, {int(selection.has_weak.sum())} with a "
            f"weak-supervision label (max confidence {confidence.max() if confidence.notna().any() else 'n/a'})"
            + (f", {blank_dropped} with a blank text" if blank_dropped else ""),
            settings={"min_confidence": float(f"{threshold:g}")},
            fixes=(Fix("min_confidence", MISSING, "with a lower value"),), alternative="label more records")
    classes = sorted(out["label"].unique())
    if len(classes) < 2:
        raise ValueError(
            f"{export.source}: after combining labels of task {info.name!r} only the class {classes[0]!r} "
            f"is left ({len(out)} records); similarity learning needs at least two classes. "
            f"Labels in the task: {info.labels}"
        )
