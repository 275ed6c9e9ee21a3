"""Splitting labeled records: train/validation without leaks, and manual labels as the test set.

* `train_val_split` keeps records with identical texts on one side of the split (a group
  split), so a duplicated record cannot sit in training and validation at once and inflate
  the validation score; it warns (`DuplicateTextWarning`) about duplicates and about texts
  that carry conflicting labels.
* `duplicate_report` gives those numbers as a `DuplicateReport`, without splitting.
* `split_by_source` implements the "manual labels as the held-out truth" protocol: records
  with a manual label form the test set, training uses the weak-supervision labels of the
  other records.

* `split_leaks` counts the texts that two splits share, for every pair of splits (`SplitLeaks`).

Records are "identical" when their rendered texts are equal up to case, whitespace, Unicode
normalisation (NFC) and invisible characters (`refinery_quaterion.data.text.comparable_text`;
with ``template=``, the template you train with), or, without a template, when all their
non-label columns are equal in that sense. Torch-free: nothing here imports the training stack.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from refinery_quaterion._util import fields_dict, to_jsonable
from refinery_quaterion.data.text import TextSpec, TextTemplate, comparable_text
from refinery_quaterion.errors import Fix, SettingError

__all__ = [
    "DuplicateReport",
    "DuplicateTextWarning",
    "HoldoutSplit",
    "SplitLeaks",
    "duplicate_report",
    "split_by_source",
    "split_leaks",
    "train_val_split",
]

_LABEL_COLUMNS = ("label", "label_source", "confidence", "weight")


class DuplicateTextWarning(UserWarning):
    """Issued by `train_val_split` when records share a text, or one text carries several labels."""


@dataclass
class DuplicateReport:
    """Records that share their text with another record.

    Attributes:
        records: Records looked at.
        texts: Distinct texts among them.
        duplicated_records: Records whose text occurs more than once.
        duplicate_texts: Texts that occur more than once.
        conflicts: Texts with more than one label: ``{"text", "labels": {label: n}, "rows"}``
            each (rows are positions in the frame), most records first.
    """

    records: int
    texts: int
    duplicated_records: int
    duplicate_texts: int
    conflicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def conflicting_texts(self) -> int:
        """Texts carrying more than one label."""
        return len(self.conflicts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return fields_dict(self, "records", "texts", "duplicated_records", "duplicate_texts", "conflicting_texts",
                           "conflicts")

    def __str__(self) -> str:
        lines = [f"{self.duplicated_records} of {self.records} records share their text with another record "
                 f"({self.duplicate_texts} texts occur more than once)"]
        if self.conflicts:
            shown = "; ".join(
                f"{c['text'][:60]!r} ({', '.join(f'{k}×{v}' for k, v in c['labels'].items())})"
                for c in self.conflicts[:5]
            )
            more = f" and {len(self.conflicts) - 5} more" if len(self.conflicts) > 5 else ""
            lines.append(f"{len(self.conflicts)} texts carry different labels: {shown}{more}")
        return "\n".join(lines)


def _keys(frame: pd.DataFrame, template: TextSpec | None, label_column: str) -> pd.Series:
    """One grouping key per record: the `comparable_text` of its text, or of its non-label columns."""
    if template is not None:
        compiled = TextTemplate.coerce(template)
        compiled.validate(frame.columns, source="the records", label_column=label_column)
        rendered = compiled.render_many(frame.to_dict(orient="records"))
        return pd.Series([comparable_text(t) for t in rendered], index=frame.index)
    columns = [c for c in frame.columns if c != label_column and c not in _LABEL_COLUMNS]
    if not columns:
        return pd.Series([str(i) for i in range(len(frame))], index=frame.index)
    rows = [{k: comparable_text(v) if isinstance(v, str) else v for k, v in row.items()}
            for row in frame[columns].to_dict(orient="records")]
    return pd.Series([json.dumps(to_jsonable(r), sort_keys=True) for r in rows], index=frame.index)


def _report(frame: pd.DataFrame, keys: pd.Series, label_column: str, text_given: bool) -> DuplicateReport:
    sizes = keys.map(keys.value_counts())
    conflicts = []
    if label_column in frame.columns:
        labels = frame[label_column].astype(str).to_numpy()
        positions: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if sizes.iloc[i] > 1:
                positions.setdefault(key, []).append(i)
        for key, rows in positions.items():
            found = pd.Series(labels[rows]).value_counts()
            if len(found) > 1:
                shown = key if text_given else f"record {rows[0]}"
                conflicts.append({"text": shown, "labels": {str(k): int(v) for k, v in found.items()}, "rows": rows})
        conflicts.sort(key=lambda c: -len(c["rows"]))
    return DuplicateReport(
        records=len(frame),
        texts=int(keys.nunique()),
        duplicated_records=int((sizes > 1).sum()),
        duplicate_texts=int((keys.value_counts() > 1).sum()),
        conflicts=conflicts,
    )


def duplicate_report(
    frame: pd.DataFrame, template: TextSpec | None = None, label_column: str = "label"
) -> DuplicateReport:
    """Count records that share a text, and texts that carry conflicting labels.

    Args:
        frame: Labeled records.
        template: The template you train with; without it, records are compared on all their
            non-label columns.
        label_column: Column holding the label names.

    Returns:
        The counts and the conflicting texts.

    Raises:
        ValueError: If a template field is not a column.
    """
    keys = _keys(frame, template, label_column)
    return _report(frame, keys, label_column, template is not None)


@dataclass
class SplitLeaks:
    """Texts that two splits share (equal up to case, whitespace, NFC and invisible characters).

    Attributes:
        sizes: Records per split, by split name, in the order given.
        pairs: For every pair of splits ``"a/b"``, the records of ``b`` whose text is also a
            text of ``a`` (0 where none).
        examples: Up to 3 shared texts per pair with leaks, as rendered in the later split.
    """

    sizes: dict[str, int]
    pairs: dict[str, int]
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def leaked(self) -> int:
        """Leaked records over all pairs."""
        return sum(self.pairs.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return fields_dict(self, "sizes", "pairs", "leaked", "examples")

    def __str__(self) -> str:
        names = " / ".join(self.sizes)
        if not self.leaked:
            return f"no text is shared between the splits ({names})"
        parts = [f"{pair}: {n} record(s) (e.g. {', '.join(repr(t[:60]) for t in self.examples.get(pair, []))})"
                 for pair, n in self.pairs.items() if n]
        return f"texts shared between splits ({names}), equal up to case and whitespace: " + "; ".join(parts)


def split_leaks(
    splits: Mapping[str, pd.DataFrame], template: TextSpec | None = None, label_column: str = "label"
) -> SplitLeaks:
    """Count the records of each split whose text another split also holds, for every pair of splits.

    Texts are compared as `duplicate_report` compares them: up to case, whitespace, Unicode
    normalisation and invisible characters. `train_val_split` and `split_by_source` keep such
    texts on one side, so their splits show no leak; a folder made by hand may.

    Args:
        splits: The splits by name, e.g. ``{"train": train, "val": val, "test": test}``.
        template: The template you train with; without it, records are compared on all their
            non-label columns.
        label_column: Column holding the label names (never part of the comparison).

    Returns:
        The counts by pair ``"train/val"``, ``"train/test"``, ``"val/test"`` and examples.

    Raises:
        ValueError: If a template field is not a column of a split, or is the label column.
    """
    keys = {name: _keys(frame, template, label_column) for name, frame in splits.items()}
    names = list(splits)
    pairs: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            shared = keys[second].isin(set(keys[first])).to_numpy()
            pair = f"{first}/{second}"
            pairs[pair] = int(shared.sum())
            if shared.any():
                examples[pair] = list(dict.fromkeys(keys[second][shared]))[:3]
    return SplitLeaks(sizes={name: len(frame) for name, frame in splits.items()}, pairs=pairs, examples=examples)


def _check_val_size(val_size: float | int, n: int) -> float | int:
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise ValueError(f"val_size must be a share between 0 and 1 or a count of records, got {val_size!r}")
    if isinstance(val_size, float) and val_size >= 1 and val_size.is_integer():
        val_size = int(val_size)
    if isinstance(val_size, float):
        if not 0.0 < val_size < 1.0:
            raise ValueError(f"val_size must be between 0 and 1 (a share) or a count, got {val_size}")
        return val_size
    if not 1 <= val_size < n:
        raise SettingError(f"{{val_size}} records: must be at least 1 and fewer than the {n} records",
                           settings={"val_size": val_size})
    return val_size


def _check_split_sizes(val_size: float | int, n: int, n_classes: int | None, *, unit: str = "record") -> None:
    """Refuse a ``val_size`` that leaves a side of the split empty, or (stratified) without every class.

    ``n`` items (records, or distinct texts when texts repeat) are split; ``val_size`` is what
    sklearn's ``test_size`` gets. ``n_classes`` is ``None`` for an unstratified split. Checked
    here so that the message names ``val_size``, not sklearn's ``test_size``.
    """
    n_val = math.ceil(val_size * n) if isinstance(val_size, float) else int(val_size)
    n_train = n - n_val
    need = n_classes or 1
    if min(n_val, n_train) >= need:
        return
    sides = f"{n_val} validation and {n_train} training {unit}{'s' if n != 1 else ''} of {n}"
    if n_classes is None:
        problem = "a side of the split would be empty"
    else:
        problem = f"a stratified split needs each of the {n_classes} classes on both sides"
    raise SettingError(f"{{val_size}} leaves {sides}; {problem}", settings={"val_size": val_size},
                       alternative="choose a validation size that leaves enough records on both sides")


def _strata(frame: pd.DataFrame, stratify: bool | str, label_column: str) -> pd.Series | None:
    column = label_column if stratify is True else (stratify or None)
    if column is None:
        return None
    if column not in frame.columns:
        raise ValueError(f"cannot stratify on {column!r}: not a column ({list(frame.columns)})")
    return frame[column].astype(str)


def train_val_split(
    frame: pd.DataFrame,
    val_size: float | int = 0.25,
    seed: int = 42,
    stratify: bool | str = True,
    label_column: str = "label",
    *,
    template: TextSpec | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split labeled records into train and validation frames, identical texts on one side.

    Uses ``sklearn.model_selection.train_test_split``. When every record has its own text,
    the split is exactly sklearn's on the records, so ``stratify=False`` with the seed's
    ``random_state=42`` reproduces the seed's split. When texts repeat, the distinct texts
    are split instead (stratified by each text's most common label), so all copies of a text
    land on the same side; a `DuplicateTextWarning` gives the numbers of `duplicate_report`,
    including texts with conflicting labels. Texts are compared up to case, whitespace, Unicode
    normalisation and invisible characters, so near-duplicates stay together too.

    Args:
        frame: Labeled records.
        val_size: Share (0 < x < 1) or number of records for validation (with duplicates,
            approximately: whole texts move).
        seed: Random seed.
        stratify: ``True`` keeps class proportions using ``label_column``; a string names
            another column; ``False`` splits at random.
        label_column: Label column used when ``stratify is True``.
        template: The template you train with, to find identical texts; without it, records are
            identical when all their non-label columns are.

    Returns:
        ``(train, val)`` frames, each with a fresh 0..n-1 index.

    Raises:
        ValueError: If ``val_size`` is out of range, a class is too small to stratify, the
            template names ``label_column``, or the split leaves a class only in validation
            (a `refinery_quaterion.errors.SettingError` naming the class: training could not
            learn it and refuses such a ``val.json``).
    """
    from sklearn.model_selection import train_test_split

    val_size = _check_val_size(val_size, len(frame))
    strata = _strata(frame, stratify, label_column)
    keys = _keys(frame, template, label_column)
    report = _report(frame, keys, label_column, template is not None)
    if report.duplicated_records == 0:
        if strata is not None:
            counts = strata.value_counts()
            if (counts < 2).any():
                small = list(counts[counts < 2].index)
                raise SettingError(f"cannot stratify: class(es) {small} have a single record",
                                   fixes=(Fix("stratify", False),), alternative="label more records")
        _check_split_sizes(val_size, len(frame), None if strata is None else strata.nunique())
        train, val = train_test_split(frame, test_size=val_size, random_state=seed, stratify=strata)
        return _checked_sides(train.reset_index(drop=True), val.reset_index(drop=True), label_column, stratify)

    warnings.warn(f"{report}; each text is kept on one side of the split", DuplicateTextWarning, stacklevel=2)
    groups = pd.Series(range(len(frame)), index=frame.index).groupby(keys.to_numpy(), sort=False)
    first_rows = [rows.iloc[0] for _, rows in groups]
    group_of = keys.map({key: i for i, (key, _) in enumerate(groups)}).to_numpy()
    group_strata = None
    if strata is not None:
        values = strata.to_numpy()
        group_strata = [pd.Series(values[rows.to_numpy()]).mode().iloc[0] for _, rows in groups]
        counts = pd.Series(group_strata).value_counts()
        if (counts < 2).any():
            small = list(counts[counts < 2].index)
            raise SettingError(f"cannot stratify: class(es) {small} have a single distinct text (identical texts "
                               "stay together)", fixes=(Fix("stratify", False),), alternative="label more records")
    n_groups = len(first_rows)
    group_val: float | int = val_size
    if isinstance(val_size, int):
        group_val = min(max(1, round(val_size * n_groups / len(frame))), n_groups - 1)
    _check_split_sizes(group_val, n_groups, None if group_strata is None else len(set(group_strata)),
                       unit="distinct text")
    _, val_groups = train_test_split(list(range(n_groups)), test_size=group_val, random_state=seed,
                                     stratify=group_strata)
    in_val = pd.Series(group_of).isin(set(val_groups)).to_numpy()
    train, val = frame[~in_val].reset_index(drop=True), frame[in_val].reset_index(drop=True)
    return _checked_sides(train, val, label_column, stratify)


def _checked_sides(train: pd.DataFrame, val: pd.DataFrame, label_column: str,
                   stratify: bool | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, val)``, or a `SettingError` naming the classes the split put only in validation.

    A class with no training record cannot be learned, and training refuses a validation set
    (``val.json`` of a prepared folder) that holds it; so the split says so now.
    """
    if label_column not in train.columns:
        return train, val
    only_val = sorted(set(val[label_column].astype(str)) - set(train[label_column].astype(str)))
    if not only_val:
        return train, val
    counts = val[label_column].astype(str).value_counts()
    shown = ", ".join(f"{label!r} ({counts[label]} record{'s' if counts[label] != 1 else ''})" for label in only_val)
    can_stratify = not stratify and all(counts[label] >= 2 for label in only_val)
    fixes = (Fix("stratify", True, "to keep every class on both sides"),) if can_stratify else ()
    raise SettingError(f"the split puts class(es) {shown} only in the validation split (val.json) and none in the "
                       "training split (train.json): training cannot learn them and refuses such a validation set",
                       fixes=fixes, alternative="label more records of them, or leave them out of the export")


@dataclass
class HoldoutSplit:
    """Train / validation / test frames of `split_by_source`; unpacks as ``train, val, test``.

    Attributes:
        train: Weak-supervision labeled records to train on.
        val: Weak-supervision labeled records to validate on (empty when ``val_size=0``).
        test: Manually labeled records: the held-out truth.
        removed_overlap: Weak-supervision records left out of training because their text
            is also a test text (they would leak the answer).
        test_only_labels: Labels that occur in the test set but not in training.
        leaks: Texts the three splits share, pair by pair (`split_leaks`; none by construction,
            checked).
    """

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    removed_overlap: int = 0
    test_only_labels: list[str] = field(default_factory=list)
    leaks: SplitLeaks | None = None

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter((self.train, self.val, self.test))

    def __str__(self) -> str:
        text = (f"train {len(self.train)} (weak supervision), validation {len(self.val)} (weak supervision), "
                f"test {len(self.test)} (manual labels)")
        if self.removed_overlap:
            text += f"; {self.removed_overlap} weak-supervision records left out: their text is a test text"
        if self.test_only_labels:
            text += f"; labels only in the test set: {self.test_only_labels}"
        if self.leaks is not None and self.leaks.leaked:
            text += f"; {self.leaks}"
        return text


def split_by_source(
    records: pd.DataFrame,
    *,
    val_size: float | int = 0.0,
    seed: int = 42,
    stratify: bool | str = True,
    template: TextSpec | None = None,
    label_column: str = "label",
    source_column: str = "label_source",
) -> HoldoutSplit:
    """Hold out the manually labeled records as the test set; train on weak supervision.

    The evaluation protocol for a refinery project: the manual labels are the truth, so the
    records that carry one (``label_source == "manual"`` in the output of
    `refinery_quaterion.data.labels.combine_labels`, which also gives them their manual label)
    become the test set, and the model learns only from the weak-supervision labels of the
    other records. A weak-supervision record whose text equals a test text is left out of
    training (counted in ``removed_overlap``). The confidence threshold of
    ``combine_labels`` applies to the training records only.

    Example:
        >>> records, report = combine_labels(export, "intent", template="{text}")  # doctest: +SKIP
        >>> train, val, test = split_by_source(records, val_size=0.2, template="{text}")  # doctest: +SKIP

    Args:
        records: Output of ``combine_labels``.
        val_size: Share or count of the training records to hold out for validation (with
            `train_val_split`); ``0`` keeps them all for training.
        seed: Random seed of the validation split.
        stratify: As in `train_val_split`.
        template: The template you train with (to find identical texts); see `train_val_split`.
        label_column: Column holding the label names.
        source_column: Column saying where each label comes from.

    Returns:
        The three frames (each with a fresh index) and the counts.

    Raises:
        ValueError: If ``source_column`` is missing, or no record has a manual label or a
            weak-supervision label.
    """
    if source_column not in records.columns:
        raise ValueError(
            f"no column {source_column!r} (columns: {list(records.columns)}); split_by_source needs the output "
            "of combine_labels(), which says for each record whether its label is manual or weak supervision"
        )
    source = records[source_column].astype(str)
    test = records[source == "manual"]
    pool = records[source == "weak_supervision"]
    if test.empty:
        raise SettingError("no record has a manual label (label_source 'manual'): the manual labels are the test "
                           "set of this protocol", fixes=(Fix("holdout", None, "(a random split)"),),
                           alternative="label some records in refinery")
    if pool.empty:
        raise ValueError("no record is labeled by weak supervision (label_source 'weak_supervision'): nothing to "
                         "train on; run weak supervision in refinery or lower min_confidence")
    both = pd.concat([test, pool])
    keys = _keys(both, template, label_column)
    test_keys = set(keys.iloc[: len(test)])
    overlap = keys.iloc[len(test):].isin(test_keys).to_numpy()
    pool = pool[~overlap]
    if pool.empty:
        raise ValueError("every weak-supervision record has the text of a manually labeled one; nothing to train on")
    if val_size:
        train, val = train_val_split(pool, val_size=val_size, seed=seed, stratify=stratify,
                                     label_column=label_column, template=template)
    else:
        train, val = pool.reset_index(drop=True), pool.iloc[0:0].reset_index(drop=True)
    seen = set(train[label_column].astype(str))
    test_only = sorted(set(test[label_column].astype(str)) - seen)
    test = test.reset_index(drop=True)
    leaks = split_leaks({"train": train, "val": val, "test": test}, template, label_column)
    return HoldoutSplit(train=train, val=val, test=test, removed_overlap=int(overlap.sum()),
                        test_only_labels=test_only, leaks=leaks)
