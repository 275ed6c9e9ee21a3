"""Quaterion datasets built from a labeled record table.

`train_val_split`, `split_by_source` (from `refinery_quaterion.data.splits`) and `load_records`
(from `refinery_quaterion.data.readers`) are re-exported here.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from refinery_quaterion._io import atomic_write_text
from refinery_quaterion._util import is_missing, plain
from refinery_quaterion.data.readers import load_records
from refinery_quaterion.data.splits import split_by_source, train_val_split
from refinery_quaterion.data.text import TextSpec, TextTemplate, is_blank
from refinery_quaterion.errors import MISSING, Fix, SettingError

if TYPE_CHECKING:  # pragma: no cover
    from quaterion.dataset import SimilarityGroupSample

__all__ = ["LabelMap", "RefineryExportDataset", "load_records", "split_by_source", "train_val_split"]


class LabelMap:
    """A stable two-way mapping between label names and integer group ids.

    Ids follow the sorted label names, so the same set of labels always gives the same
    ids, whatever order the records come in.

    Args:
        labels: Label names (duplicates are ignored).

    Raises:
        ValueError: If ``labels`` is empty or holds a missing value.

    Example:
        >>> LabelMap(["World", "Sports", "World"]).to_id("World")
        1
    """

    def __init__(self, labels: Iterable[str]):
        names = set()
        for label in labels:
            if label is None or (isinstance(label, float) and np.isnan(label)) or label == "":
                raise ValueError("a label map cannot hold a missing label (None/NaN/empty)")
            names.add(str(label))
        if not names:
            raise ValueError("a label map needs at least one label")
        self.names: list[str] = sorted(names)
        self._ids = {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, column: str = "label") -> LabelMap:
        """Build the map from the distinct values of ``frame[column]``."""
        if column not in frame.columns:
            raise ValueError(f"no label column {column!r}; columns: {list(frame.columns)}")
        return cls(frame[column].dropna().unique())

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, label: object) -> bool:
        return label in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and other.names == self.names

    def __repr__(self) -> str:
        return f"LabelMap({self.names!r})"

    def to_id(self, label: str) -> int:
        """Group id of ``label``.

        Raises:
            KeyError: Naming the unknown label and the known ones.
        """
        try:
            return self._ids[label]
        except KeyError:
            raise KeyError(f"label {label!r} is not in the label map {self.names}") from None

    def to_name(self, group: int) -> str:
        """Label name of group id ``group``."""
        if not 0 <= int(group) < len(self.names):
            raise KeyError(f"group id {group} out of range 0..{len(self.names) - 1}")
        return self.names[int(group)]

    def encode(self, labels: Iterable[str]) -> np.ndarray:
        """Group ids of ``labels`` as an int64 array."""
        return np.array([self.to_id(label) for label in labels], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"labels": [...]}`` (index = group id)."""
        return {"labels": list(self.names)}

    def save(self, path: str | os.PathLike) -> None:
        """Write the map as JSON (atomically)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelMap:
        """Read a map written by `save`.

        Raises:
            ValueError: If the file is not a label map.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            labels = data["labels"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a label map file (expected {{\"labels\": [...]}}): {err}") from err
        label_map = cls(labels)
        if label_map.names != list(labels):
            raise ValueError(f"{path}: labels are not sorted; was the file edited by hand?")
        return label_map


def _sample_type() -> type[SimilarityGroupSample]:
    """quaterion's ``SimilarityGroupSample``, imported with the compat shims applied first."""
    from refinery_quaterion import _compat  # noqa: F401

    return importlib.import_module("quaterion.dataset").SimilarityGroupSample


class RefineryExportDataset:
    """A map-style dataset of quaterion ``SimilarityGroupSample`` s from labeled records.

    Map-style (``len`` and indexing) is all torch's ``DataLoader`` and quaterion's
    ``GroupSimilarityDataLoader`` need; torch and quaterion are imported only when the first
    sample is taken, so building a dataset (or importing this module) stays light.

    Each item is ``SimilarityGroupSample(obj=record, group=group_id)`` where ``record`` is
    the row as a plain ``dict`` (all columns, so templates and payloads can use any field)
    and ``group_id`` comes from the `LabelMap`. Per-record training weights (the ``weight``
    column `refinery_quaterion.data.labels.combine_labels` writes: 1.0 for manual labels, the
    confidence for weak ones) are in `weights`; the samples themselves carry none.

    Args:
        frame: Labeled records, e.g. the output of
            `refinery_quaterion.data.labels.combine_labels`.
        template: Format string such as ``"{Title}. {Description}"`` or a callable
            ``record -> str``; checked against the columns now.
        label_map: Mapping to use (pass the training set's map for validation/test sets);
            built from ``frame`` when omitted.
        label_column: Column holding the label names.
        weight_column: Column holding per-record weights; when the frame has no such column
            (or it is ``None``) every record weighs 1.0.

    Raises:
        ValueError: If the template names the label column or a missing column, a label is missing, a label is not in
            ``label_map``, a rendered text is blank (empty or whitespace), or a weight is
            missing or negative; the message names the column or the first such row.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        template: TextSpec = "{text}",
        label_map: LabelMap | None = None,
        label_column: str = "label",
        weight_column: str | None = "weight",
    ):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
        if label_column not in frame.columns:
            raise SettingError(f"no label column {label_column!r}; columns: {list(frame.columns)}",
                               fixes=(Fix("label_column", MISSING),), alternative="run combine_labels() first")
        self.template = TextTemplate.coerce(template)
        self.template.validate(frame.columns, source="the dataset frame", label_column=label_column)
        labels = frame[label_column]
        missing = labels.isna() | (labels.astype(str) == "")
        if missing.any():
            row = frame.index[missing.to_numpy()][0]
            raise ValueError(
                f"{int(missing.sum())} record(s) have no {label_column!r} (first at row {plain(row)!r}); "
                "drop unlabeled records before building a dataset"
            )
        self.label_map = label_map if label_map is not None else LabelMap(labels.astype(str))
        unknown = sorted(set(labels.astype(str)) - set(self.label_map.names))
        if unknown:
            raise ValueError(f"labels {unknown} are not in the label map {self.label_map.names}")
        self.label_column = label_column
        self.records: list[dict[str, Any]] = frame.to_dict(orient="records")
        self.groups: np.ndarray = self.label_map.encode(labels.astype(str))
        self._check_texts(frame.index)
        self._weights = self._read_weights(frame, weight_column)

    def _check_texts(self, index: pd.Index) -> None:
        texts = self.template.render_many(self.records)
        blank = [i for i, text in enumerate(texts) if is_blank(text)]
        if blank:
            first = blank[0]
            raise ValueError(
                f"{len(blank)} record(s) have a blank text (first at row {plain(index[first])!r}: template "
                f"{self.template.spec!r} renders {texts[first]!r}); drop them with "
                "combine_labels(..., template=...) or fix the template"
            )

    @staticmethod
    def _read_weights(frame: pd.DataFrame, column: str | None) -> np.ndarray:
        if column is None or column not in frame.columns:
            return np.ones(len(frame), dtype=np.float64)
        values = frame[column].tolist()
        for row, value in zip(frame.index, values):
            bad = is_missing(value) or isinstance(value, bool) or not isinstance(value, (int, float, np.number))
            if bad or not math.isfinite(float(value)) or float(value) < 0:
                raise ValueError(
                    f"column {column!r}, row {plain(row)!r}: weight {plain(value)!r} is not a number >= 0 "
                    "(weights come from combine_labels: 1.0 for manual labels, the confidence for weak ones)"
                )
        return np.asarray(values, dtype=np.float64)

    @property
    def weights(self) -> np.ndarray:
        """Per-record training weight, in order (a copy; all 1.0 without a weight column)."""
        return self._weights.copy()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> SimilarityGroupSample:
        return _sample_type()(obj=self.records[index], group=int(self.groups[index]))

    @property
    def texts(self) -> list[str]:
        """The rendered text of every record, in order."""
        return self.template.render_many(self.records)

    @property
    def labels(self) -> list[str]:
        """The label name of every record, in order."""
        return [self.label_map.to_name(g) for g in self.groups]

    def class_counts(self) -> dict[str, int]:
        """Number of records per label name (every label of the map, zeros included)."""
        counts = np.bincount(self.groups, minlength=len(self.label_map))
        return {name: int(c) for name, c in zip(self.label_map.names, counts)}
