"""Quaterion datasets built from a labeled record table."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from quaterion.dataset import SimilarityGroupSample
from torch.utils.data import Dataset

from refinery_quaterion._io import atomic_write_text
from refinery_quaterion.text import TextSpec, TextTemplate

__all__ = ["LabelMap", "RefineryExportDataset", "train_val_split", "load_records"]


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


class RefineryExportDataset(Dataset):
    """A torch ``Dataset`` of quaterion ``SimilarityGroupSample`` s from labeled records.

    Each item is ``SimilarityGroupSample(obj=record, group=group_id)`` where ``record`` is
    the row as a plain ``dict`` (all columns, so templates and payloads can use any field)
    and ``group_id`` comes from the `LabelMap`.

    Args:
        frame: Labeled records, e.g. the output of
            `refinery_quaterion.labels.combine_labels`.
        text: Format string such as ``"{Title}. {Description}"`` or a callable
            ``record -> str``; checked against the columns now.
        label_map: Mapping to use (pass the training set's map for validation/test sets);
            built from ``frame`` when omitted.
        label_column: Column holding the label names.

    Raises:
        ValueError: If a column is missing, a label is missing, or a label is not in
            ``label_map``; the message names the column or row.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        text: TextSpec = "{text}",
        label_map: LabelMap | None = None,
        label_column: str = "label",
    ):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
        if label_column not in frame.columns:
            raise ValueError(
                f"no label column {label_column!r}; columns: {list(frame.columns)}. "
                "Run combine_labels() first or pass label_column=."
            )
        self.template = TextTemplate.coerce(text)
        self.template.validate(frame.columns, source="the dataset frame")
        labels = frame[label_column]
        missing = labels.isna() | (labels.astype(str) == "")
        if missing.any():
            row = frame.index[missing.to_numpy()][0]
            raise ValueError(
                f"{int(missing.sum())} record(s) have no {label_column!r} (first at row {row!r}); "
                "drop unlabeled records before building a dataset"
            )
        self.label_map = label_map if label_map is not None else LabelMap(labels.astype(str))
        unknown = sorted(set(labels.astype(str)) - set(self.label_map.names))
        if unknown:
            raise ValueError(f"labels {unknown} are not in the label map {self.label_map.names}")
        self.label_column = label_column
        self.records: list[dict[str, Any]] = frame.to_dict(orient="records")
        self.groups: np.ndarray = self.label_map.encode(labels.astype(str))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> SimilarityGroupSample:
        return SimilarityGroupSample(obj=self.records[index], group=int(self.groups[index]))

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


def train_val_split(
    frame: pd.DataFrame,
    val_size: float = 0.25,
    seed: int = 42,
    stratify: bool | str = True,
    label_column: str = "label",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split labeled records into train and validation frames.

    Uses ``sklearn.model_selection.train_test_split`` so that ``stratify=False`` with the
    seed's ``random_state=42`` reproduces the seed's split exactly.

    Args:
        frame: Labeled records.
        val_size: Share (0 < x < 1) or number of records for validation.
        seed: Random seed.
        stratify: ``True`` keeps class proportions using ``label_column``; a string names
            another column; ``False`` splits at random.
        label_column: Label column used when ``stratify is True``.

    Returns:
        ``(train, val)`` frames, each with a fresh 0..n-1 index.

    Raises:
        ValueError: If ``val_size`` is out of range or a class is too small to stratify.
    """
    from sklearn.model_selection import train_test_split

    if isinstance(val_size, float) and not 0.0 < val_size < 1.0:
        raise ValueError(f"val_size must be between 0 and 1 (a share) or a count, got {val_size}")
    column = label_column if stratify is True else (stratify or None)
    strata = None
    if column is not None:
        if column not in frame.columns:
            raise ValueError(f"cannot stratify on {column!r}: not a column ({list(frame.columns)})")
        strata = frame[column]
        counts = strata.value_counts()
        if (counts < 2).any():
            small = list(counts[counts < 2].index)
            raise ValueError(
                f"cannot stratify: class(es) {small} have a single record; "
                "pass stratify=False or label more records"
            )
    train, val = train_test_split(frame, test_size=val_size, random_state=seed, stratify=strata)
    return train.reset_index(drop=True), val.reset_index(drop=True)


def load_records(path: str | os.PathLike) -> pd.DataFrame:
    """Read a labeled record table written by ``prepare`` or shipped with the examples.

    Accepts JSON (a list of records, ``orient="records"``), JSON Lines (``.jsonl``) and CSV,
    each optionally gzip-compressed (``.gz``).

    Args:
        path: File to read.

    Returns:
        The records, one row each.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a table of records; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    name = path.name.lower().removesuffix(".gz")
    compression = "gzip" if path.name.lower().endswith(".gz") else None
    try:
        if name.endswith(".jsonl"):
            frame = pd.read_json(path, orient="records", lines=True, compression=compression)
        elif name.endswith(".json"):
            frame = pd.read_json(path, orient="records", compression=compression)
        elif name.endswith(".csv"):
            frame = pd.read_csv(path, compression=compression)
        else:
            raise ValueError(f"{path}: unsupported file type; expected .json, .jsonl or .csv (optionally .gz)")
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a table of records ({err})") from err
    return frame
