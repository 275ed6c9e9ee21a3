"""Reading refinery data in every form it comes in.

* an SDK export DataFrame (``client.get_record_export(tokenize=False)``), or the client itself;
* the UI download: JSON (records) / CSV / XLSX, zipped or not, optionally password protected;
* a JSON file written by the SDK (``download_to=``), including the double-encoded JSON string;
* a project snapshot (``project_export_*.json.zip``), detected by its keys.

Everything becomes a `RefineryExport`: one row per record with its attributes, plus, for
each classification task, the columns ``__{task}__MANUAL``, ``__{task}__WEAK_SUPERVISION`` and
``__{task}__WEAK_SUPERVISION__confidence`` (the SDK layout), and the detected
`ClassificationTask` s.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

__all__ = [
    "ClassificationTask",
    "ExportError",
    "RefineryExport",
    "SupportsRecordExport",
    "load_export",
]


class ExportError(ValueError):
    """Raised when refinery data cannot be read; the message names the file, column or row."""


@runtime_checkable
class SupportsRecordExport(Protocol):
    """Anything with refinery SDK's ``get_record_export`` (e.g. ``refinery.Client``)."""

    def get_record_export(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        """Return the project's records as a DataFrame."""
        ...


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
    """

    records: pd.DataFrame
    tasks: dict[str, ClassificationTask]
    attributes: list[str]
    source: str = "<DataFrame>"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def task(self, name: str | None = None) -> ClassificationTask:
        """Return the task called ``name`` (or the only task when ``name`` is ``None``).

        Raises:
            ExportError: If there is no such task (listing the tasks that exist), or if
                ``name`` is omitted and there is not exactly one task.
        """
        if name is None:
            if len(self.tasks) == 1:
                return next(iter(self.tasks.values()))
            if not self.tasks:
                raise ExportError(f"{self.source}: no classification task found; {self._columns_hint()}")
            raise ExportError(
                f"{self.source}: several classification tasks ({', '.join(map(repr, self.tasks))}); "
                "name one with task="
            )
        if name not in self.tasks:
            known = ", ".join(map(repr, self.tasks)) or "none"
            raise ExportError(
                f"{self.source}: no classification task {name!r}; tasks found: {known}. "
                + ("" if self.tasks else self._columns_hint())
            )
        return self.tasks[name]

    def _columns_hint(self) -> str:
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
              a ``.csv`` or ``.xlsx`` file, or a ``.zip`` holding one of those (the UI
              download);
            * a path to a project snapshot (``*.json.zip`` or its JSON), detected by its keys.
        password: Password of a protected UI download zip.

    Returns:
        The records and the classification tasks found in them.

    Raises:
        ExportError: For anything that is not refinery data; the message names the file,
            column or row and says what was expected.
        FileNotFoundError: If a path does not exist.
    """
    if isinstance(source, pd.DataFrame):
        return _from_frame(source, "<DataFrame>")
    if isinstance(source, SupportsRecordExport) and not isinstance(source, (str, os.PathLike)):
        frame = source.get_record_export(tokenize=False)
        name = f"<{type(source).__name__}.get_record_export()>"
        if not isinstance(frame, pd.DataFrame):
            raise ExportError(f"{name} returned {type(frame).__name__}, expected a pandas DataFrame")
        return _from_frame(frame, name)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(Path(source), password)
    raise ExportError(
        f"cannot read refinery data from a {type(source).__name__}; expected a DataFrame, an object "
        "with get_record_export(), or a path to a .json/.csv/.xlsx/.zip file"
    )


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------

_TABLE_SUFFIXES = (".json", ".csv", ".xlsx")


def _from_path(path: Path, password: str | bytes | None) -> RefineryExport:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ExportError(f"{path}: is a folder; expected a .json, .csv, .xlsx or .zip file")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        member, data = _read_zip(path, password)
        return _from_bytes(data, Path(member).suffix.lower(), f"{path}!{member}")
    if suffix in _TABLE_SUFFIXES:
        return _from_bytes(path.read_bytes(), suffix, str(path))
    raise ExportError(f"{path}: unsupported file type {suffix!r}; expected .json, .csv, .xlsx or .zip")


def _read_zip(path: Path, password: str | bytes | None) -> tuple[str, bytes]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ExportError(f"{path}: not a valid zip file ({err})") from err
    with archive:
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir()
            and not info.filename.startswith("__MACOSX/")
            and not Path(info.filename).name.startswith("._")
        ]
        data_members = [m for m in members if Path(m.filename).suffix.lower() in _TABLE_SUFFIXES]
        if not data_members:
            names = [m.filename for m in members] or "nothing"
            raise ExportError(f"{path}: the zip holds no .json, .csv or .xlsx file (it holds {names})")
        if len(data_members) > 1:
            names = [m.filename for m in data_members]
            raise ExportError(f"{path}: the zip holds several data files {names}; expected exactly one")
        info = data_members[0]
        encrypted = bool(info.flag_bits & 0x1)
        if info.compress_type == 99:  # WinZip AES
            return info.filename, _read_aes(path, info.filename, password)
        if encrypted and password is None:
            raise ExportError(f"{path}: {info.filename} is password protected; pass password=")
        pwd = password.encode() if isinstance(password, str) else password
        try:
            return info.filename, archive.read(info, pwd=pwd if encrypted else None)
        except RuntimeError as err:
            if "password" in str(err).lower():
                raise ExportError(f"{path}: wrong password for {info.filename}") from err
            raise ExportError(f"{path}: cannot read {info.filename}: {err}") from err
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as err:  # zlib errors on wrong pwd
            msg = "wrong password" if encrypted else "corrupt entry"
            raise ExportError(f"{path}: {msg} for {info.filename} ({err})") from err
        except Exception as err:  # zlib.error when a wrong password slips past the check byte
            if encrypted:
                raise ExportError(f"{path}: wrong password for {info.filename}") from err
            raise


def _read_aes(path: Path, member: str, password: str | bytes | None) -> bytes:
    if password is None:
        raise ExportError(f"{path}: {member} is password protected (AES); pass password=")
    try:
        import pyzipper
    except ImportError as err:
        raise ExportError(
            f"{path}: {member} is AES-encrypted, which Python's zipfile cannot read; "
            "install pyzipper (`pip install pyzipper`) or re-download the file without a password"
        ) from err
    pwd = password.encode() if isinstance(password, str) else password
    with pyzipper.AESZipFile(path) as archive:
        try:
            return archive.read(member, pwd=pwd)
        except RuntimeError as err:
            raise ExportError(f"{path}: wrong password for {member}") from err


def _from_bytes(data: bytes, suffix: str, name: str) -> RefineryExport:
    if suffix == ".json":
        return _from_json(data, name)
    if suffix == ".csv":
        try:
            frame = pd.read_csv(io.BytesIO(data), keep_default_na=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ExportError(f"{name}: not a readable CSV file ({err})") from err
        return _from_frame(frame, name)
    if suffix == ".xlsx":
        try:
            frame = pd.read_excel(io.BytesIO(data))
        except ImportError as err:
            raise ExportError(f"{name}: reading .xlsx needs openpyxl (`pip install openpyxl`)") from err
        except Exception as err:  # openpyxl raises many types for a broken workbook
            raise ExportError(f"{name}: not a readable .xlsx workbook ({err})") from err
        return _from_frame(frame, name)
    raise ExportError(f"{name}: unsupported file type {suffix!r}; expected .json, .csv or .xlsx")


def _from_json(data: bytes, name: str) -> RefineryExport:
    try:
        payload = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ExportError(f"{name}: not UTF-8 text ({err})") from err
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise ExportError(f"{name}: invalid JSON at {where}: {err.msg}") from err
    if isinstance(payload, str):  # the SDK's double-encoded JSON string
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as err:
            raise ExportError(f"{name}: holds a JSON string that is not JSON itself ({err.msg})") from err
    if isinstance(payload, dict) and "records_data" in payload:
        return _from_snapshot(payload, name)
    if isinstance(payload, list):
        bad = next((i for i, row in enumerate(payload) if not isinstance(row, dict)), None)
        if bad is not None:
            raise ExportError(
                f"{name}: record {bad} is a {type(payload[bad]).__name__}; expected a list of objects "
                "(orient='records')"
            )
        return _from_frame(pd.DataFrame.from_records(payload), name)
    if isinstance(payload, dict) and payload and all(isinstance(v, dict) for v in payload.values()):
        # pandas' default orient="columns": {column: {row: value}}
        return _from_frame(pd.DataFrame(payload), name)
    raise ExportError(
        f"{name}: JSON is a {type(payload).__name__}; expected a list of records, a project snapshot "
        "(with 'records_data'), or the SDK's double-encoded JSON string"
    )


# --------------------------------------------------------------------------------------
# Tables (SDK export and UI download)
# --------------------------------------------------------------------------------------


def _from_frame(frame: pd.DataFrame, name: str) -> RefineryExport:
    if len(frame.columns) == 0:
        raise ExportError(f"{name}: the table has no columns")
    frame = frame.drop(columns=[c for c in frame.columns if str(c).endswith(_TOKENIZED_SUFFIX)])
    frame = frame.rename(columns=str)
    notes: list[str] = []
    found: dict[str, dict[str, Any]] = {}
    label_columns: set[str] = set()
    for column in frame.columns:
        match = _LABEL_COLUMN.match(column)
        if not match:
            continue
        label_columns.add(column)
        key = f"{match['attr']}__{match['task']}"
        entry = found.setdefault(key, {"attr": match["attr"], "task": match["task"], "heuristics": []})
        kind = match["kind"]
        if kind.startswith("INFORMATION_SOURCE__"):
            entry["heuristics"].append(column)
        elif kind in ("WEAK_SUPERVISION__confidence", "WEAK_SUPERVISION_CONFIDENCE"):
            entry["confidence"] = column
        else:
            entry[kind] = column

    attributes = [c for c in frame.columns if c not in label_columns]
    out = frame[attributes].copy()
    tasks: dict[str, ClassificationTask] = {}
    for out_key, entry in found.items():
        manual, weak, conf = entry.get("MANUAL"), entry.get("WEAK_SUPERVISION"), entry.get("confidence")
        if _is_extraction(frame, [manual, weak, conf]):
            notes.append(
                f"task {entry['task']!r} on attribute {entry['attr']!r} is an extraction (span) task; "
                "ignored for classification"
            )
            continue
        if manual is None and weak is None:
            notes.append(f"task {entry['task']!r} has only heuristic columns; ignored")
            continue
        task_name = entry["task"]
        if task_name in tasks:
            task_name = f"{entry['attr']}__{task_name}"
        task = ClassificationTask(
            name=task_name, attribute=entry["attr"], heuristic_columns=entry["heuristics"]
        )
        if manual is not None:
            task.manual_column = _manual(out_key)
            out[task.manual_column] = frame[manual].map(_clean_label)
        if weak is not None:
            task.weak_column = _weak(out_key)
            out[task.weak_column] = frame[weak].map(_clean_label)
            task.confidence_column = _confidence(out_key)
            if conf is None:
                notes.append(f"task {task_name!r}: no weak-supervision confidence column; treated as missing")
                out[task.confidence_column] = float("nan")
            else:
                out[task.confidence_column] = _parse_confidence(frame[conf], conf, name)
        for column in entry["heuristics"]:
            out[column] = frame[column]
        _describe_labels(task, out)
        if task.multi_label_records:
            notes.append(
                f"task {task_name!r}: {task.multi_label_records} records have several labels "
                "(joined with ', '); they are dropped when labels are combined"
            )
        tasks[task_name] = task
    return RefineryExport(records=out, tasks=tasks, attributes=attributes, source=name, notes=notes)


def _clean_label(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text if text and text != "None" else None


def _parse_confidence(column: pd.Series, column_name: str, name: str) -> pd.Series:
    def parse(item: tuple[Any, Any]) -> float:
        row, value = item
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return float("nan")
        if isinstance(value, bool):
            raise ExportError(f"{name}: column {column_name!r}, row {row!r}: confidence {value!r} is a bool")
        if isinstance(value, (int, float)):
            number = float(value)
        else:
            text = str(value).strip()
            if text in ("", "None", "nan", "NaN", "null"):
                return float("nan")
            try:
                number = float(text)
            except ValueError:
                raise ExportError(
                    f"{name}: column {column_name!r}, row {row!r}: confidence {value!r} is not a number "
                    "(expected a value between 0 and 1, a numeric string such as '0.6220', or empty)"
                ) from None
        if not 0.0 <= number <= 1.0:
            raise ExportError(
                f"{name}: column {column_name!r}, row {row!r}: confidence {number} is outside 0..1"
            )
        return number

    return pd.Series([parse(item) for item in column.items()], index=column.index, dtype="float64")


def _is_extraction(frame: pd.DataFrame, columns: list[str | None]) -> bool:
    for column in columns:
        if column is None:
            continue
        for value in frame[column].head(200):
            if isinstance(value, (list, tuple)):
                return True
            if hasattr(value, "tolist") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", 0):
                return True
            if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
                if re.search(r"['\"](OUTSIDE|[BI]-[^'\"]*)['\"]", value) or re.fullmatch(
                    r"\[\s*[-0-9.e,\s]*\]", value
                ):
                    return True
    return False


def _describe_labels(task: ClassificationTask, out: pd.DataFrame) -> None:
    """Find label names and count multi-label cells.

    A cell counts as multi-label when it contains ", " and every part is a label that also
    occurs alone somewhere in the task's columns (a label name may itself contain ", ").
    """
    columns = [c for c in (task.manual_column, task.weak_column) if c is not None]
    singles: set[str] = set(task.labels)
    for column in columns:
        singles.update(v for v in out[column].dropna().unique() if ", " not in v)
    multi = pd.Series(False, index=out.index)
    names = set(singles)
    for column in columns:
        values = out[column]
        for index, value in values[values.str.contains(", ", regex=False, na=False)].items():
            parts = value.split(", ")
            if all(p in singles for p in parts):
                multi[index] = True
            else:
                names.add(value)
    task.labels = sorted(names)
    task.multi_label_records = int(multi.sum())


# --------------------------------------------------------------------------------------
# Project snapshots
# --------------------------------------------------------------------------------------

_SNAPSHOT_KEYS = (
    "records_data",
    "attributes_data",
    "labeling_tasks_data",
    "labeling_task_labels_data",
    "record_label_associations_data",
)


def _missing_id(value: Any) -> bool:
    return value is None or value == "None" or value == ""


def _from_snapshot(payload: Mapping[str, Any], name: str) -> RefineryExport:
    missing = [key for key in _SNAPSHOT_KEYS if key not in payload]
    if missing:
        raise ExportError(f"{name}: project snapshot lacks {missing}; expected keys {list(_SNAPSHOT_KEYS)}")
    for key in _SNAPSHOT_KEYS:
        if not isinstance(payload[key], list):
            raise ExportError(f"{name}: {key!r} is a {type(payload[key]).__name__}, expected a list")

    attributes = sorted(payload["attributes_data"], key=lambda a: a.get("relative_position") or 0)
    attribute_names = {a["id"]: a["name"] for a in attributes}
    records = []
    record_ids = []
    for i, record in enumerate(payload["records_data"]):
        if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("data"), dict):
            raise ExportError(f"{name}: records_data[{i}] is not {{'id': ..., 'data': {{...}}}}")
        records.append(record["data"])
        record_ids.append(record["id"])
    columns = [a["name"] for a in attributes]
    frame = pd.DataFrame.from_records(records, columns=columns or None)
    for column in columns:
        if column in frame.columns:
            frame[column] = frame[column].map(lambda v: None if v == "None" else v)
    position = {rid: i for i, rid in enumerate(record_ids)}

    label_by_id: dict[str, tuple[str, str]] = {}
    for label in payload["labeling_task_labels_data"]:
        label_by_id[label["id"]] = (label["labeling_task_id"], label["name"])

    notes: list[str] = []
    tasks: dict[str, ClassificationTask] = {}
    task_keys: dict[str, str] = {}
    for task_data in payload["labeling_tasks_data"]:
        task_type = task_data.get("task_type", "MULTICLASS_CLASSIFICATION")
        attribute_id = task_data.get("attribute_id")
        attr = "" if _missing_id(attribute_id) else attribute_names.get(attribute_id, "")
        if task_type != "MULTICLASS_CLASSIFICATION":
            notes.append(f"task {task_data['name']!r} is {task_type}; ignored for classification")
            continue
        key = f"{attr}__{task_data['name']}"
        task = ClassificationTask(
            name=task_data["name"],
            attribute=attr,
            manual_column=_manual(key),
            weak_column=_weak(key),
            confidence_column=_confidence(key),
            labels=sorted(n for t, n in label_by_id.values() if t == task_data["id"]),
        )
        tasks[task.name] = task
        task_keys[task_data["id"]] = key

    manual: dict[str, list[list[str]]] = {k: [[] for _ in records] for k in task_keys.values()}
    weak: dict[str, list[tuple[str, float] | None]] = {k: [None] * len(records) for k in task_keys.values()}
    # Newest weak-supervision run per task: compare created_at of the associations' runs.
    newest_run: dict[str, tuple[str, Any]] = {}
    associations = payload["record_label_associations_data"]
    for assoc in associations:
        if assoc.get("source_type") != "WEAK_SUPERVISION" or assoc.get("return_type", "RETURN") != "RETURN":
            continue
        task_id = label_by_id.get(assoc.get("labeling_task_label_id"), (None, None))[0]
        if task_id not in task_keys:
            continue
        run = assoc.get("weak_supervision_id") or assoc.get("source_id") or ""
        stamp = str(assoc.get("created_at") or "")
        best = newest_run.get(task_id)
        if best is None or stamp > best[1]:
            newest_run[task_id] = (run, stamp)

    for assoc in associations:
        if assoc.get("return_type", "RETURN") != "RETURN":
            continue
        label = label_by_id.get(assoc.get("labeling_task_label_id"))
        row = position.get(assoc.get("record_id"))
        if label is None or row is None or label[0] not in task_keys:
            continue
        key = task_keys[label[0]]
        source_type = assoc.get("source_type")
        if source_type == "MANUAL":
            if assoc.get("is_valid_manual_label") is False:
                continue
            if label[1] not in manual[key][row]:
                manual[key][row].append(label[1])
        elif source_type == "WEAK_SUPERVISION":
            run = assoc.get("weak_supervision_id") or assoc.get("source_id") or ""
            if run != newest_run[label[0]][0]:
                continue
            confidence = assoc.get("confidence")
            confidence = float("nan") if _missing_id(confidence) else float(confidence)
            weak[key][row] = (label[1], confidence)

    for key in task_keys.values():
        frame[_manual(key)] = [", ".join(sorted(v)) if v else None for v in manual[key]]
        frame[_weak(key)] = [w[0] if w else None for w in weak[key]]
        frame[_confidence(key)] = pd.Series([w[1] if w else float("nan") for w in weak[key]], dtype="float64")
    for task in tasks.values():
        _describe_labels(task, frame)
        if task.multi_label_records:
            notes.append(f"task {task.name!r}: {task.multi_label_records} records have several manual labels")
    if not records:
        notes.append("the snapshot holds no records")
    return RefineryExport(records=frame, tasks=tasks, attributes=columns, source=name, notes=notes)
