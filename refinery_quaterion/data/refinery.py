"""Reading refinery data in every form it comes in.

* an SDK export DataFrame (``client.get_record_export(tokenize=False)``), or the client itself;
* the UI download: JSON (records) / CSV / XLSX, zipped or not, optionally password protected,
  optionally compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``; see `refinery_quaterion.data.readers`);
* a JSON file written by the SDK (``download_to=``), including the double-encoded JSON string;
* a project snapshot (``project_export_*.json.zip``), detected by its keys (read by
  `refinery_quaterion.data.snapshot`).

Everything becomes a `RefineryExport`: one row per record with its attributes, plus, for
each classification task, the columns ``__{task}__MANUAL``, ``__{task}__WEAK_SUPERVISION`` and
``__{task}__WEAK_SUPERVISION__confidence`` (the SDK layout), and the detected
`ClassificationTask` s. `RefineryFileError` is defined in `refinery_quaterion.data.readers` and
re-exported here.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from refinery_quaterion._util import is_missing, plain
from refinery_quaterion.data._labelnames import clean_label_column, describe_label_cells, normalised_note
from refinery_quaterion.data.readers import RefineryFileError, read_data_file, records_frame
from refinery_quaterion.data.snapshot import read_snapshot
from refinery_quaterion.errors import MISSING, Fix, SettingError

__all__ = ["ClassificationTask", "RefineryExport", "RefineryFileError", "SupportsRecordExport", "load_export"]


@runtime_checkable
class SupportsRecordExport(Protocol):
    """Anything with refinery SDK's ``get_record_export`` (e.g. ``refinery.Client``)."""

    def get_record_export(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        """Return the project's records as a DataFrame."""
        ...


class TaskNeededError(SettingError, RefineryFileError):
    """The data holds several classification tasks and none was named (``task=`` fixes it)."""

    def __init__(self, problem: str):
        SettingError.__init__(self, problem, fixes=(Fix("task", MISSING, "to name one"),))

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.template,)


@dataclass
class ClassificationTask:
    """A classification labeling task found in an export.

    Attributes:
        name: Task name as shown in refinery (e.g. ``"Topic"``).
        attribute: Attribute the task labels; ``""`` for a whole-record task.
        manual_column: Column with manual labels, if exported.
        weak_column: Column with weak-supervision labels, if exported.
        confidence_column: Column with weak-supervision confidences (floats), if exported.
        labels: Label names seen in the data (or defined in a snapshot), sorted.
        multi_label_records: Records whose manual or weak-supervision cell holds several
            labels joined with ``", "``.
        heuristic_columns: ``INFORMATION_SOURCE`` columns of the UI download (ignored for
            training, kept for reference).
    """

    name: str
    attribute: str = ""
    manual_column: str | None = None
    weak_column: str | None = None
    confidence_column: str | None = None
    labels: list[str] = field(default_factory=list)
    multi_label_records: int = 0
    heuristic_columns: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The column prefix ``"{attribute}__{name}"`` that identifies the task."""
        return f"{self.attribute}__{self.name}"


@dataclass
class RefineryExport:
    """Records plus the classification tasks detected in them.

    Attributes:
        records: One row per record; attribute columns first, then label columns.
        tasks: Classification tasks by name.
        attributes: Names of the record attribute columns (no label columns).
        source: Where the data came from (file path or object type), for messages.
        notes: Things noticed while reading (ignored extraction tasks, multi-label cells...).
        snapshot: Whether the data is a project snapshot (not a table), for messages.
    """

    records: pd.DataFrame
    tasks: dict[str, ClassificationTask]
    attributes: list[str]
    source: str = "<DataFrame>"
    notes: list[str] = field(default_factory=list)
    snapshot: bool = False

    def __len__(self) -> int:
        return len(self.records)

    def task(self, name: str | None = None) -> ClassificationTask:
        """Return the task called ``name`` (or the only task when ``name`` is ``None``).

        Raises:
            RefineryFileError: If there is no such task (listing the tasks that exist), or if
                ``name`` is omitted and there is not exactly one task.
        """
        if name is None:
            if len(self.tasks) == 1:
                return next(iter(self.tasks.values()))
            if not self.tasks:
                raise RefineryFileError(f"{self.source}: no classification task found; {self._columns_hint()}")
            raise TaskNeededError(f"{self.source}: several classification tasks ({', '.join(map(repr, self.tasks))})")
        if name not in self.tasks:
            known = ", ".join(map(repr, self.tasks)) or "none"
            raise RefineryFileError(
                f"{self.source}: no classification task {name!r}; tasks found: {known}. "
                + ("" if self.tasks else self._columns_hint())
            )
        return self.tasks[name]

    def _columns_hint(self) -> str:
        if self.snapshot:
            ignored = [note for note in self.notes if note.endswith("ignored for classification")]
            return ("the project snapshot's labeling_tasks_data defines no MULTICLASS_CLASSIFICATION task"
                    + (f" ({'; '.join(ignored)})" if ignored else "")
                    + "; create a classification task in refinery and export the snapshot again")
        return (
            "expected columns like '__Topic__MANUAL', '__Topic__WEAK_SUPERVISION' and "
            f"'__Topic__WEAK_SUPERVISION__confidence'; columns are {list(self.records.columns)}"
        )

    def summary(self) -> str:
        """A short human-readable description of the export."""
        lines = [f"{self.source}: {len(self.records)} records, attributes {self.attributes}"]
        for task in self.tasks.values():
            lines.append(
                f"  task {task.name!r}: labels {task.labels}"
                + (f", {task.multi_label_records} multi-label records" if task.multi_label_records else "")
            )
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Column names
# --------------------------------------------------------------------------------------

_LABEL_COLUMN = re.compile(
    r"^(?P<attr>.*?)__(?P<task>.+?)__(?P<kind>MANUAL|WEAK_SUPERVISION__confidence"
    r"|WEAK_SUPERVISION_CONFIDENCE|WEAK_SUPERVISION|INFORMATION_SOURCE__(?P<heuristic>.+))$"
)
_TOKENIZED_SUFFIX = "__tokenized"


def _manual(key: str) -> str:
    return f"{key}__MANUAL"


def _weak(key: str) -> str:
    return f"{key}__WEAK_SUPERVISION"


def _confidence(key: str) -> str:
    return f"{key}__WEAK_SUPERVISION__confidence"


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------


def load_export(source: Any, *, password: str | bytes | None = None) -> RefineryExport:
    """Read refinery data from any of the forms refinery produces.

    Args:
        source: One of

            * a ``pandas.DataFrame`` from ``client.get_record_export(tokenize=False)``;
            * an object with a ``get_record_export`` method (e.g. ``refinery.Client``), which
              is called with ``tokenize=False``;
            * a path to a ``.json`` file (records, or the SDK's double-encoded JSON string),
              a ``.jsonl``, ``.csv`` (comma, semicolon or tab separated) or ``.xlsx`` file,
              each optionally compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``), or a ``.zip``
              holding one of those (the UI download);
            * a path to a project snapshot (``*.json.zip`` or its JSON), detected by its keys.
        password: Password of a protected UI download zip.

    Returns:
        The records and the classification tasks found in them.

    Raises:
        RefineryFileError: For anything that is not refinery data; the message names the file,
            column or row and says what was expected.
        FileNotFoundError: If a path does not exist.
    """
    if isinstance(source, pd.DataFrame):
        return _from_frame(source, "<DataFrame>")
    if isinstance(source, SupportsRecordExport) and not isinstance(source, (str, os.PathLike)):
        frame = source.get_record_export(tokenize=False)
        name = f"<{type(source).__name__}.get_record_export()>"
        if not isinstance(frame, pd.DataFrame):
            raise RefineryFileError(f"{name} returned {type(frame).__name__}, expected a pandas DataFrame")
        return _from_frame(frame, name)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(Path(source), password)
    raise RefineryFileError(
        f"cannot read refinery data from a {type(source).__name__}; expected a DataFrame, an object "
        "with get_record_export(), or a path to a .json/.csv/.xlsx/.zip file (optionally compressed)"
    )


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def _from_path(path: Path, password: str | bytes | None) -> RefineryExport:
    file = read_data_file(path, password=password)
    if file.suffix in (".json", ".jsonl"):
        payload = file.json()
        if isinstance(payload, dict) and "records_data" in payload:
            return _from_snapshot(payload, file.name)
        return _from_frame(records_frame(payload, file.name), file.name)
    return _from_frame(file.frame(), file.name)


# --------------------------------------------------------------------------------------
# Tables (SDK export and UI download)
# --------------------------------------------------------------------------------------


@dataclass
class _TaskColumns:
    """The columns of one task (one ``{attribute}__{task}`` prefix) found in a table."""

    attribute: str
    task: str
    manual: str | None = None
    weak: str | None = None
    confidences: list[str] = field(default_factory=list)
    heuristics: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The column prefix ``"{attribute}__{task}"``."""
        return f"{self.attribute}__{self.task}"

    @property
    def where(self) -> str:
        """The task (and its attribute) for notes."""
        return f"task {self.task!r} on attribute {self.attribute!r}" if self.attribute else f"task {self.task!r}"


def _from_frame(frame: pd.DataFrame, name: str) -> RefineryExport:
    if len(frame.columns) == 0:
        raise RefineryFileError(f"{name}: the table has no columns")
    frame = frame.drop(columns=[c for c in frame.columns if str(c).endswith(_TOKENIZED_SUFFIX)])
    frame = frame.rename(columns=str)
    notes: list[str] = []
    found = _task_columns(frame.columns)
    attributes = [c for c in frame.columns if not _LABEL_COLUMN.match(c)]
    out = frame[attributes].copy()
    tasks: dict[str, ClassificationTask] = {}
    for columns in found.values():
        confidences = _usable_confidences(frame, columns, notes)
        if confidences is None:
            continue
        task_name = columns.task
        if task_name in tasks:
            task_name = f"{columns.attribute}__{task_name}"
        task = ClassificationTask(name=task_name, attribute=columns.attribute, heuristic_columns=columns.heuristics)
        _copy_task_columns(frame, out, task, columns, confidences, name, notes)
        _describe_labels(task, out)
        if task.multi_label_records:
            notes.append(
                f"task {task_name!r}: {task.multi_label_records} records have several labels "
                "(joined with ', '); they are dropped when labels are combined"
            )
        tasks[task_name] = task
    return RefineryExport(records=out, tasks=tasks, attributes=attributes, source=name, notes=notes)


def _task_columns(columns: pd.Index) -> dict[str, _TaskColumns]:
    """The label columns of a table, grouped by task key (``"{attribute}__{task}"``), in column order."""
    found: dict[str, _TaskColumns] = {}
    for column in columns:
        match = _LABEL_COLUMN.match(column)
        if not match:
            continue
        entry = found.setdefault(f"{match['attr']}__{match['task']}", _TaskColumns(match["attr"], match["task"]))
        kind = match["kind"]
        if kind.startswith("INFORMATION_SOURCE__"):
            entry.heuristics.append(column)
        elif kind in ("WEAK_SUPERVISION__confidence", "WEAK_SUPERVISION_CONFIDENCE"):
            entry.confidences.append(column)
        elif kind == "MANUAL":
            entry.manual = column
        else:
            entry.weak = column
    return found


def _usable_confidences(frame: pd.DataFrame, columns: _TaskColumns, notes: list[str]) -> list[str] | None:
    """The task's confidence columns that hold one value per record, or ``None`` to skip the task.

    A task is skipped (with a note) when it is an extraction task (its label columns hold
    token lists) or has no manual and no weak-supervision label column.
    """
    manual, weak, where = columns.manual, columns.weak, columns.where
    list_valued = [c for c in (manual, weak, *columns.confidences) if c is not None and _is_list_column(frame[c])]
    if list_valued and (manual in list_valued or weak in list_valued or (manual is None and weak is None)):
        notes.append(
            f"{where} is an extraction (span) task (column {list_valued[0]!r} holds token lists); "
            "ignored for classification"
        )
        return None
    confidences = [c for c in columns.confidences if c not in list_valued]
    for column in list_valued:
        notes.append(f"{where}: column {column!r} holds lists, not one confidence per record; ignored")
    if manual is None and weak is None:
        if confidences:
            notes.append(f"{where}: confidence column {confidences[0]!r} without its weak-supervision label "
                         f"column {_weak(columns.key)!r}; task ignored")
        else:
            notes.append(f"{where} has only heuristic columns; ignored")
        return None
    return confidences


def _copy_task_columns(
    frame: pd.DataFrame,
    out: pd.DataFrame,
    task: ClassificationTask,
    columns: _TaskColumns,
    confidences: list[str],
    name: str,
    notes: list[str],
) -> None:
    """Copy the task's columns into ``out`` under the SDK's names and set them on ``task`` (in place)."""
    out_key = columns.key
    changed: dict[str, str] = {}
    if columns.manual is not None:
        task.manual_column = _manual(out_key)
        out[task.manual_column], changed = clean_label_column(frame[columns.manual])
    if columns.weak is not None:
        task.weak_column = _weak(out_key)
        out[task.weak_column], weak_changed = clean_label_column(frame[columns.weak])
        changed.update(weak_changed)
        task.confidence_column = _confidence(out_key)
        if not confidences:
            notes.append(f"task {task.name!r}: no weak-supervision confidence column; treated as missing")
            out[task.confidence_column] = float("nan")
        else:
            out[task.confidence_column] = _task_confidence(frame, confidences, name, task.name, notes)
    elif confidences:
        notes.append(f"task {task.name!r}: confidence column {confidences[0]!r} without its weak-supervision "
                     f"label column {_weak(out_key)!r}; ignored (manual labels only)")
    for column in columns.heuristics:
        out[column] = frame[column]
    if changed:
        notes.append(normalised_note(task.name, changed))



def _task_confidence(
    frame: pd.DataFrame, columns: list[str], name: str, task: str, notes: list[str]
) -> pd.Series:
    """One confidence per record from the task's confidence column(s).

    When both spellings are present, the UI's ``__WEAK_SUPERVISION_CONFIDENCE`` (a float) is
    used, gaps filled from the SDK's ``__WEAK_SUPERVISION__confidence``; values given in both
    must agree to the 4 places the SDK rounds to.
    """
    parsed = {column: _parse_confidence(frame[column], column, name) for column in columns}
    if len(columns) == 1:
        return parsed[columns[0]]
    sdk = next(c for c in columns if c.endswith("__confidence"))
    ui = next(c for c in columns if c.endswith("_CONFIDENCE"))
    both = parsed[sdk].notna() & parsed[ui].notna()
    differ = both & ((parsed[sdk] - parsed[ui]).abs() > 5e-5)
    if differ.any():
        row = differ.index[differ.to_numpy()][0]
        raise RefineryFileError(
            f"{name}: task {task!r} has both confidence columns {ui!r} and {sdk!r}, and they disagree "
            f"(row {plain(row)!r}: {plain(parsed[ui][row])!r} vs {plain(parsed[sdk][row])!r}); keep one of them"
        )
    notes.append(f"task {task!r}: both confidence columns {ui!r} and {sdk!r} are present and agree; "
                 f"using {ui!r} (gaps filled from {sdk!r})")
    return parsed[ui].fillna(parsed[sdk])


def _parse_confidence(column: pd.Series, column_name: str, name: str) -> pd.Series:
    def parse(item: tuple[Any, Any]) -> float:
        row, value = plain(item[0]), plain(item[1])
        if is_missing(value):
            return float("nan")
        if isinstance(value, bool):
            raise RefineryFileError(f"{name}: column {column_name!r}, row {row!r}: confidence {value!r} is a bool")
        if isinstance(value, (int, float)):
            number = float(value)
        else:
            text = str(value).strip()
            if text in ("", "None", "nan", "NaN", "null"):
                return float("nan")
            try:
                number = float(text)
            except ValueError:
                raise RefineryFileError(
                    f"{name}: column {column_name!r}, row {row!r}: confidence {value!r} is not a number "
                    "(expected a value between 0 and 1, a numeric string such as '0.6220', or empty)"
                ) from None
        if not 0.0 <= number <= 1.0:
            raise RefineryFileError(
                f"{name}: column {column_name!r}, row {row!r}: confidence {number} is outside 0..1"
            )
        return number

    return pd.Series([parse(item) for item in column.items()], index=column.index, dtype="float64")


# A Python-repr or JSON list, as old SDK CSV exports write extraction columns:
# "['O', 'B-x', 'I-x']", "[Decimal('0'), Decimal('0.93')]", '["OUTSIDE", "B-ORG"]', "[0.0, 0.93]".
_LIST_ITEM = (
    r"""(?:'[^']*'|"[^"]*"|Decimal\(\s*['"][^'"]*['"]\s*\)|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"""
    r"|None|null|nan|NaN|True|False)"
)
_LIST_TEXT = re.compile(rf"^\[\s*(?:{_LIST_ITEM}(?:\s*,\s*{_LIST_ITEM})*\s*,?)?\s*\]$", re.DOTALL)


def _is_list_value(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return True
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", 0):
        return True
    return isinstance(value, str) and bool(_LIST_TEXT.match(value.strip()))


def _is_list_column(column: pd.Series) -> bool:
    """Whether a task column holds token-level lists (an extraction task), judged on 200 values."""
    values = itertools.islice((v for v in column if not _is_scalar_missing(v)), 200)
    return any(_is_list_value(v) for v in values)


def _is_scalar_missing(value: Any) -> bool:
    return not isinstance(value, (list, tuple)) and not hasattr(value, "ndim") and is_missing(value)


def _describe_labels(task: ClassificationTask, out: pd.DataFrame) -> None:
    """Set the task's label names and its count of multi-label cells (see `describe_label_cells`)."""
    columns = [c for c in (task.manual_column, task.weak_column) if c is not None]
    task.labels, task.multi_label_records = describe_label_cells(out, columns, task.labels)


# --------------------------------------------------------------------------------------
# Project snapshots
# --------------------------------------------------------------------------------------


def _from_snapshot(payload: Mapping[str, Any], name: str) -> RefineryExport:
    snapshot = read_snapshot(payload, name)
    frame, notes = snapshot.records, snapshot.notes
    tasks: dict[str, ClassificationTask] = {}
    for found in snapshot.tasks:
        key = found.key
        frame[_manual(key)] = found.manual
        frame[_weak(key)] = found.weak
        frame[_confidence(key)] = pd.Series(found.confidence, dtype="float64")
        tasks[found.name] = ClassificationTask(
            name=found.name, attribute=found.attribute, manual_column=_manual(key), weak_column=_weak(key),
            confidence_column=_confidence(key), labels=list(found.labels),
        )
    for task in tasks.values():
        _describe_labels(task, frame)
        if task.multi_label_records:
            notes.append(f"task {task.name!r}: {task.multi_label_records} records have several manual labels")
    return RefineryExport(records=frame, tasks=tasks, attributes=snapshot.attributes, source=name, notes=notes,
                          snapshot=True)
