"""Reading a refinery project snapshot (``project_export_*.json.zip``) into records and per-task labels.

A snapshot stores records, attributes, labeling tasks, their labels and the record-label
associations as separate tables. `read_snapshot` joins them: one row per record with its
attributes, and for each classification task its manual labels, plus the label and
confidence of the newest weak-supervision run. `refinery_quaterion.data.refinery.load_export`
turns the result into a `RefineryExport` with the SDK's column layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from refinery_quaterion.data._labelnames import clean_label, normalised_note
from refinery_quaterion.data.readers import RefineryFileError

__all__ = ["SNAPSHOT_KEYS", "Snapshot", "SnapshotTask", "read_snapshot"]

SNAPSHOT_KEYS: tuple[str, ...] = (
    "records_data",
    "attributes_data",
    "labeling_tasks_data",
    "labeling_task_labels_data",
    "record_label_associations_data",
)
"""The tables (keys) a project snapshot must hold, each a list."""


@dataclass
class SnapshotTask:
    """One classification task of a snapshot, with its labels record by record.

    Attributes:
        name: Task name as shown in refinery.
        attribute: Attribute the task labels; ``""`` for a whole-record task.
        labels: Label names the snapshot defines for the task, sorted.
        manual: Per record, its valid manual labels joined with ``", "`` (sorted), or ``None``.
        weak: Per record, the label of the newest weak-supervision run, or ``None``.
        confidence: Per record, that label's confidence (NaN where there is none).
    """

    name: str
    attribute: str
    labels: list[str] = field(default_factory=list)
    manual: list[str | None] = field(default_factory=list)
    weak: list[str | None] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The column prefix ``"{attribute}__{name}"`` that identifies the task."""
        return f"{self.attribute}__{self.name}"


@dataclass
class Snapshot:
    """A project snapshot read into records and classification tasks.

    Attributes:
        records: One row per record, one column per attribute (in the snapshot's order).
        attributes: Names of the attribute columns.
        tasks: The classification tasks, in the snapshot's order (one per task key).
        notes: Things noticed while reading (ignored non-classification tasks, no records,
            dangling label associations, normalised label names).
        dangling: Label associations that were skipped because they point to something the
            snapshot does not hold, by what: ``"unknown_record"``, ``"unknown_label"`` (a label
            id not in ``labeling_task_labels_data``), ``"unknown_task"`` (a label of a task not in
            ``labeling_tasks_data``); zeros left out.
    """

    records: pd.DataFrame
    attributes: list[str]
    tasks: list[SnapshotTask]
    notes: list[str] = field(default_factory=list)
    dangling: dict[str, int] = field(default_factory=dict)


def read_snapshot(payload: Mapping[str, Any], name: str) -> Snapshot:
    """Join the tables of a project snapshot into records and per-task labels.

    Manual labels marked invalid and associations that are not ``RETURN`` are skipped; of
    the weak-supervision labels, only those of each task's newest run (by ``created_at``)
    are used. Associations that point to an unknown record, label or task are skipped too,
    but counted (`Snapshot.dangling`) and named in a note. Label names are cleaned as in
    tables (`refinery_quaterion.data._labelnames.clean_label`).

    Args:
        payload: The snapshot's JSON (the keys of `SNAPSHOT_KEYS`, each a list).
        name: Where the snapshot came from, for messages.

    Returns:
        The records and the classification tasks with their labels.

    Raises:
        RefineryFileError: If a table is missing or not a list, or a record is not
            ``{'id': ..., 'data': {...}}``.
    """
    _check_tables(payload, name)
    attributes = sorted(payload["attributes_data"], key=lambda a: a.get("relative_position") or 0)
    columns = [a["name"] for a in attributes]
    frame, record_ids = _records(payload["records_data"], columns, name)
    notes: list[str] = []
    label_by_id = _labels_by_id(payload["labeling_task_labels_data"], payload["labeling_tasks_data"], notes)
    tasks, task_keys = _classification_tasks(
        payload["labeling_tasks_data"], {a["id"]: a["name"] for a in attributes}, label_by_id, notes
    )
    associations = payload["record_label_associations_data"]
    _add_labels(tasks, task_keys, associations, label_by_id, record_ids)
    dangling = _dangling(associations, label_by_id, {t.get("id") for t in payload["labeling_tasks_data"]},
                         set(record_ids))
    if dangling:
        notes.append(_dangling_note(dangling))
    if not record_ids:
        notes.append("the snapshot holds no records")
    return Snapshot(records=frame, attributes=columns, tasks=list(tasks.values()), notes=notes, dangling=dangling)


def _labels_by_id(rows: list[dict[str, Any]], task_rows: list[dict[str, Any]],
                  notes: list[str]) -> dict[str, tuple[str, str]]:
    """``{label id: (task id, clean label name)}``; a note per task whose label names normalisation changed."""
    label_by_id: dict[str, tuple[str, str]] = {}
    changed: dict[str, dict[str, str]] = {}
    for label in rows:
        name = clean_label(label["name"]) or str(label["name"])
        if name != str(label["name"]).strip():
            changed.setdefault(label["labeling_task_id"], {})[str(label["name"]).strip()] = name
        label_by_id[label["id"]] = (label["labeling_task_id"], name)
    task_names = {t.get("id"): t.get("name") for t in task_rows}
    for task_id, names in changed.items():
        notes.append(normalised_note(str(task_names.get(task_id, task_id)), names))
    return label_by_id


def _dangling(associations: list[dict[str, Any]], label_by_id: dict[str, tuple[str, str]], task_ids: set[Any],
              record_ids: set[Any]) -> dict[str, int]:
    """Associations that point to an unknown record, label or task, counted by what is unknown."""
    counts = {"unknown_record": 0, "unknown_label": 0, "unknown_task": 0}
    for assoc in associations:
        label = label_by_id.get(assoc.get("labeling_task_label_id"))
        if assoc.get("record_id") not in record_ids:
            counts["unknown_record"] += 1
        elif label is None:
            counts["unknown_label"] += 1
        elif label[0] not in task_ids:
            counts["unknown_task"] += 1
    return {what: n for what, n in counts.items() if n}


def _dangling_note(dangling: dict[str, int]) -> str:
    """The note on skipped associations (`_dangling`)."""
    what = {"unknown_record": "an unknown record", "unknown_label": "an unknown label",
            "unknown_task": "a label of an unknown task"}
    parts = [f"{n} to {what[kind]}" for kind, n in dangling.items()]
    return (f"{sum(dangling.values())} record-label association(s) point to something the snapshot does not hold "
            f"and were skipped: {', '.join(parts)}")


def _missing_id(value: Any) -> bool:
    return value is None or value == "None" or value == ""


def _check_tables(payload: Mapping[str, Any], name: str) -> None:
    """An `RefineryFileError` unless ``payload`` holds every table of `SNAPSHOT_KEYS` as a list."""
    missing = [key for key in SNAPSHOT_KEYS if key not in payload]
    if missing:
        raise RefineryFileError(f"{name}: project snapshot lacks {missing}; expected keys {list(SNAPSHOT_KEYS)}")
    for key in SNAPSHOT_KEYS:
        if not isinstance(payload[key], list):
            raise RefineryFileError(f"{name}: {key!r} is a {type(payload[key]).__name__}, expected a list")


def _records(rows: list[Any], columns: list[str], name: str) -> tuple[pd.DataFrame, list[Any]]:
    """The records' attributes as a frame (``"None"`` read as missing), and the record ids in row order."""
    records = []
    record_ids = []
    for i, record in enumerate(rows):
        if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("data"), dict):
            raise RefineryFileError(f"{name}: records_data[{i}] is not {{'id': ..., 'data': {{...}}}}")
        records.append(record["data"])
        record_ids.append(record["id"])
    frame = pd.DataFrame.from_records(records, columns=columns or None)
    for column in columns:
        if column in frame.columns:
            frame[column] = frame[column].map(lambda v: None if v == "None" else v)
    return frame, record_ids


def _classification_tasks(
    task_rows: list[dict[str, Any]],
    attribute_names: dict[Any, str],
    label_by_id: dict[str, tuple[str, str]],
    notes: list[str],
) -> tuple[dict[str, SnapshotTask], dict[str, str]]:
    """The classification tasks by key, and the key of each task id (other task types noted and skipped)."""
    tasks: dict[str, SnapshotTask] = {}
    task_keys: dict[str, str] = {}
    for task_data in task_rows:
        task_type = task_data.get("task_type", "MULTICLASS_CLASSIFICATION")
        attribute_id = task_data.get("attribute_id")
        attr = "" if _missing_id(attribute_id) else attribute_names.get(attribute_id, "")
        if task_type != "MULTICLASS_CLASSIFICATION":
            notes.append(f"task {task_data['name']!r} is {task_type}; ignored for classification")
            continue
        task = SnapshotTask(
            name=task_data["name"],
            attribute=attr,
            labels=sorted(n for t, n in label_by_id.values() if t == task_data["id"]),
        )
        tasks[task.key] = task
        task_keys[task_data["id"]] = task.key
    return tasks, task_keys


def _run_id(assoc: Mapping[str, Any]) -> Any:
    return assoc.get("weak_supervision_id") or assoc.get("source_id") or ""


def _newest_runs(
    associations: list[dict[str, Any]], label_by_id: dict[str, tuple[str, str]], task_keys: dict[str, str]
) -> dict[str, tuple[Any, str]]:
    """The newest weak-supervision run of each task (by the ``created_at`` of its associations): ``(run, stamp)``."""
    newest_run: dict[str, tuple[Any, str]] = {}
    for assoc in associations:
        if assoc.get("source_type") != "WEAK_SUPERVISION" or assoc.get("return_type", "RETURN") != "RETURN":
            continue
        task_id = label_by_id.get(assoc.get("labeling_task_label_id"), (None, None))[0]
        if task_id not in task_keys:
            continue
        run = _run_id(assoc)
        stamp = str(assoc.get("created_at") or "")
        best = newest_run.get(task_id)
        if best is None or stamp > best[1]:
            newest_run[task_id] = (run, stamp)
    return newest_run


def _add_labels(
    tasks: dict[str, SnapshotTask],
    task_keys: dict[str, str],
    associations: list[dict[str, Any]],
    label_by_id: dict[str, tuple[str, str]],
    record_ids: list[Any],
) -> None:
    """Fill each task's manual and weak-supervision labels from the record-label associations (in place)."""
    position = {rid: i for i, rid in enumerate(record_ids)}
    manual: dict[str, list[list[str]]] = {k: [[] for _ in record_ids] for k in task_keys.values()}
    weak: dict[str, list[tuple[str, float] | None]] = {k: [None] * len(record_ids) for k in task_keys.values()}
    newest_run = _newest_runs(associations, label_by_id, task_keys)
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
            if _run_id(assoc) != newest_run[label[0]][0]:
                continue
            confidence = assoc.get("confidence")
            confidence = float("nan") if _missing_id(confidence) else float(confidence)
            weak[key][row] = (label[1], confidence)
    for key, task in tasks.items():
        task.manual = [", ".join(sorted(v)) if v else None for v in manual[key]]
        task.weak = [w[0] if w else None for w in weak[key]]
        task.confidence = [w[1] if w else float("nan") for w in weak[key]]
