"""`to_refinery`: a fine-tuned model's vectors back into a refinery project.

Given a refinery project snapshot, `to_refinery` writes a new snapshot that equals it except
for one added attribute embedding (``custom``, one tensor per record) and, when asked, one
static data slice of suspected label errors. Import it on refinery's start screen; refinery's
active learners then fit on the new embedding by its name, and its neural search finds similar
records with it. A UI download or SDK export holds records only and cannot carry embeddings:
for those, `to_refinery` writes ``record_id -> vector`` as Parquet.

Example:
    ```python
    from refinery_quaterion.exporters import to_refinery

    result = to_refinery("my-model", "snapshot_data.json.zip", "with_embedding.json.zip", suspects=True)
    print(result)          # the embedding's name, e.g. text-classification-huggingface-refinery-quaterion-my-model
    ```
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion._io import atomic_path
from refinery_quaterion.data.readers import RefineryFileError, read_data_file
from refinery_quaterion.data.snapshot import Snapshot, read_snapshot
from refinery_quaterion.errors import MISSING, Fix, OutputExistsError, SettingError
from refinery_quaterion.exporters.refinery_config import ToRefineryConfig
from refinery_quaterion.exporters.refinery_snapshot import (
    default_model_name,
    embedding_item,
    embedding_name,
    existing_embedding_names,
    reduce_dimension,
    slice_items,
    tensor_rows,
    unique_name,
    write_snapshot_file,
)
from refinery_quaterion.exporters.refinery_suspects import record_labels, suspected_label_errors

__all__ = ["ToRefineryResult", "to_refinery"]

PARQUET_EXTRA = "refinery-quaterion[search]"
"""The extra that installs pyarrow, which writes Parquet."""


@dataclass
class ToRefineryResult:
    """What `to_refinery` wrote; ``str(result)`` is the summary the command line prints.

    Attributes:
        path: The file written.
        format: ``"snapshot"`` (a project snapshot to import) or ``"parquet"`` (record id -> vector).
        embedding: The added embedding's name (the name active learners use); ``None`` for Parquet.
        dim: Length of each vector written.
        records: Vectors written (one per record).
        slice: Name of the added data slice, or ``None``.
        slice_records: Records in that slice.
        notes: What the user should know (e.g. embeddings refinery will not compute on import).
        seconds: Wall time.
    """

    path: Path
    format: str
    embedding: str | None
    dim: int
    records: int
    slice: str | None = None
    slice_records: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.format == "parquet":
            lines = [f"wrote {self.records} vectors ({self.dim}-dim) to {self.path} as Parquet (record_id, vector)"]
        else:
            lines = [f"wrote {self.path}: embedding {self.embedding!r} ({self.records} tensors, {self.dim}-dim)"]
        if self.slice is not None:
            lines.append(f"  data slice {self.slice!r}: {self.slice_records} records")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class _Input:
    """The records to embed: from a snapshot (``payload`` set) or a UI/SDK export (``payload`` None)."""

    source: Path
    frame: Any
    attributes: dict[str, Any]
    record_ids: list[Any]
    payload: dict[str, Any] | None = None
    member: str = ""
    snapshot: Snapshot | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Vectors:
    """The embedding to add: its attribute and model name, the fine-tuned vectors and the ones stored."""

    attribute: str
    model_name: str
    full: np.ndarray
    stored: np.ndarray


def to_refinery(model: Any, snapshot: str | os.PathLike, out: str | os.PathLike,
                config: ToRefineryConfig | None = None, *, overwrite: bool = False,
                password: str | bytes | None = None, progress: bool | None = None,
                **settings: Any) -> ToRefineryResult:
    """Write a refinery project snapshot holding the model's vectors as one more embedding.

    The new snapshot equals ``snapshot`` except for one item added to ``embeddings_data``
    (``custom``, ``ON_ATTRIBUTE``, named ``{attribute}-classification-huggingface-{model_name}``,
    never the name of an existing embedding), one ``embedding_tensors_data`` row per record
    and, with ``suspects=True``, one static data slice and its record associations. It is a
    zip whose first (and only) entry is the JSON, as refinery reads it; an ``out`` ending in
    ``.json`` gets the plain JSON. An ``out`` ending in ``.parquet`` gets ``record_id`` and
    ``vector`` columns instead; that is the only output for a UI download or SDK export, which
    cannot carry embeddings.

    Args:
        model: A folder written by `refinery_quaterion.save`, or the model `load` returns.
        snapshot: A refinery project snapshot (``.json.zip`` or its JSON); for Parquet also a
            UI download or SDK export file.
        out: The file to write (``.zip``, ``.json`` or ``.parquet``); written atomically. It
            must not be, contain or lie inside the input or the model folder.
        config: The settings (`ToRefineryConfig`); ``settings`` override its fields.
        overwrite: Replace an existing ``out``.
        password: Password of a protected zip.
        progress: Progress bar while encoding (``None``: from 1000 records).
        **settings: Fields of `ToRefineryConfig` (``attribute=``, ``dimension=``, ``suspects=`` ...).

    Returns:
        A `ToRefineryResult`.

    Raises:
        OutputExistsError: If ``out`` exists and ``overwrite`` is false.
        SettingError: For an attribute the input lacks (or a template of several fields with
            no ``attribute``), several tasks with no ``task``, a UI/SDK export written anywhere
            but Parquet, or ``suspects`` for a UI/SDK export.
        RefineryFileError: If the input is no refinery data, or the model's text template
            names a field the input's records lack.
        ValueError: If ``out`` is, contains or lies inside the input or the model folder.
        ImportError: If Parquet is asked for and pyarrow is missing.
    """
    started = time.perf_counter()
    config = (config or ToRefineryConfig()).replace(**settings)
    source, out = Path(snapshot), Path(out)
    model_path = Path(model) if isinstance(model, str | os.PathLike) else getattr(model, "path", None)
    _check_output(out, overwrite, [source, *([Path(model_path)] if model_path is not None else [])])
    parquet = out.suffix.lower() == ".parquet"
    data = _read_input(source, password, config, parquet=parquet)
    model = _load_model(model)
    attribute = _attribute(config, model.template, data)
    full = model.encode(data.frame, batch_size=config.batch_size, progress=progress)
    stored = reduce_dimension(full, config.dimension)
    if parquet:
        _write_parquet(out, data.record_ids, stored)
        result = ToRefineryResult(out, "parquet", None, stored.shape[1], len(stored), notes=data.notes)
    else:
        folder = Path(model_path).name if model_path is not None else None
        model_name = config.model_name or default_model_name(folder)
        result = _write_snapshot(out, data, _Vectors(attribute, model_name, full, stored), config)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _check_output(out: Path, overwrite: bool, inputs: list[Path]) -> None:
    """Refuse an existing ``out`` (without ``overwrite``), a folder, or one that is, holds or lies in an input."""
    if os.path.lexists(out) and not overwrite:
        raise OutputExistsError(out)
    if out.is_dir():
        raise ValueError(f"out {str(out)!r} is a folder; expected a file (.zip, .json or .parquet)")
    target = out.resolve()
    for path in inputs:
        given = path.resolve()
        if target == given or given.is_relative_to(target) or target.is_relative_to(given):
            raise ValueError(f"out {str(out)!r} is, contains or lies inside the input {str(path)!r}; "
                             "write to another path")


def _read_input(source: Path, password: str | bytes | None, config: ToRefineryConfig, *, parquet: bool) -> _Input:
    """The records of a snapshot, or of a UI/SDK export (refused unless Parquet is written)."""
    file = read_data_file(source, password=password)
    payload = file.json() if file.suffix in (".json", ".jsonl") else None
    if isinstance(payload, dict) and "records_data" in payload:
        return _snapshot_input(source, payload, file.name)
    if not parquet:
        stem = source.name.split(".")[0] or "vectors"
        raise SettingError(
            f"{_braces(source)} is a UI download or SDK export: it holds records only and cannot carry "
            "embeddings (only a project snapshot can, downloaded in refinery's project settings)",
            fixes=(Fix("out", f"{stem}.parquet", "to write record_id -> vector as Parquet"),))
    if config.suspects:
        raise SettingError(f"{_braces(source)} is a UI download or SDK export, and a data slice needs a project "
                           "snapshot", fixes=(Fix("suspects", False),))
    return _export_input(source, password, config)


def _snapshot_input(source: Path, payload: dict[str, Any], name: str) -> _Input:
    snapshot = read_snapshot(payload, name)
    member = name[len(str(source)) + 1:] if name.startswith(f"{source}!") else source.name
    attributes = {a["name"]: a.get("id") for a in payload["attributes_data"]}
    record_ids = [record["id"] for record in payload["records_data"]]
    return _Input(source, snapshot.records, attributes, record_ids, payload, member, snapshot)


def _export_input(source: Path, password: str | bytes | None, config: ToRefineryConfig) -> _Input:
    from refinery_quaterion.data.refinery import load_export

    export = load_export(source, password=password)
    frame = export.records
    id_column = config.id_column or next((c for c in ("id", "record_id") if c in frame.columns), None)
    notes = []
    if id_column is None:
        record_ids = [str(i) for i in range(len(frame))]
        notes.append(f"{source} has no 'id' or 'record_id' column; record_id is the row number (from 0)")
    elif id_column not in frame.columns:
        raise SettingError(f"{_braces(source)} has no column {{id_column}} (columns: {list(frame.columns)})",
                           settings={"id_column": id_column}, fixes=(Fix("id_column", MISSING, "to name one"),))
    else:
        record_ids = [str(v) for v in frame[id_column]]
    return _Input(source, frame, {name: None for name in export.attributes}, record_ids, notes=notes)


def _load_model(model: Any) -> Any:
    if isinstance(model, str | os.PathLike):
        from refinery_quaterion.training.model_files import load

        return load(model)
    return model


def _attribute(config: ToRefineryConfig, template: Any, data: _Input) -> str:
    """The attribute the embedding is filed under, after checking the template's fields against the input."""
    fields = getattr(template, "fields", None)
    spec = getattr(template, "spec", template)
    columns = list(data.attributes)
    missing = [name for name in fields or () if name not in columns]
    if missing:
        raise RefineryFileError(f"the model renders records with the text template {spec!r}, but {data.source} has "
                                f"no attribute {missing[0]!r} (attributes: {columns}); use a model trained on "
                                "this project's attributes")
    attribute = config.attribute
    if attribute is None:
        if not fields or len(fields) != 1:
            raise SettingError(f"the model's text template {_braces(repr(spec))} does not name exactly one "
                               "attribute to file the embedding under",
                               fixes=(Fix("attribute", MISSING, f"to name one of {_braces(columns)}"),))
        attribute = fields[0]
    if attribute not in columns:
        raise SettingError(f"{_braces(data.source)} has no attribute {{attribute}} (attributes: {_braces(columns)})",
                           settings={"attribute": attribute}, fixes=(Fix("attribute", MISSING, "to name one"),))
    return attribute


def _braces(value: Any) -> str:
    """``value`` as text safe inside a `SettingError` template."""
    return str(value).replace("{", "{{").replace("}", "}}")


def _write_parquet(out: Path, record_ids: list[Any], vectors: np.ndarray) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError(f"writing Parquet needs pyarrow: pip install '{PARQUET_EXTRA}'") from err
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
    table = pa.table({"record_id": pa.array([str(rid) for rid in record_ids], type=pa.string()),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def _write_snapshot(out: Path, data: _Input, vectors: _Vectors, config: ToRefineryConfig) -> ToRefineryResult:
    """Add the embedding (and the slice) to a copy of the snapshot and write it."""
    payload = dict(data.payload or {})
    project_id = (payload.get("project_details_data") or {}).get("id")
    embeddings = list(payload.get("embeddings_data") or [])
    tensors = list(payload.get("embedding_tensors_data") or [])
    name = unique_name(embedding_name(vectors.attribute, vectors.model_name), existing_embedding_names(embeddings))
    item = embedding_item(name, vectors.model_name, data.attributes[vectors.attribute], project_id)
    payload["embeddings_data"] = [*embeddings, item]
    payload["embedding_tensors_data"] = [*tensors, *tensor_rows(item["id"], data.record_ids, vectors.stored)]
    notes = _untensored_notes(embeddings, tensors)
    slice_name, slice_records = None, 0
    if config.suspects:
        slice_name, slice_records = _add_suspects(payload, data, name, vectors.full, config, notes)
    write_snapshot_file(payload, out, data.member)
    return ToRefineryResult(out, "snapshot", name, int(vectors.stored.shape[1]), len(vectors.stored), slice_name,
                            slice_records, notes)


def _untensored_notes(embeddings: list[dict[str, Any]], tensors: list[dict[str, Any]]) -> list[str]:
    """A note for each embedding of the input that has no tensors (refinery will leave it empty)."""
    with_tensors = {row.get("embedding_id") for row in tensors}
    return [f"embedding {item.get('name')!r} has no tensors in the snapshot; refinery computes embeddings on "
            "import only when a snapshot holds no tensors at all, so recompute it in refinery after the import"
            for item in embeddings if item.get("id") not in with_tensors]


def _add_suspects(payload: dict[str, Any], data: _Input, embedding: str, vectors: np.ndarray,
                  config: ToRefineryConfig, notes: list[str]) -> tuple[str | None, int]:
    """Add the static slice of suspected label errors (in place); its name and size, or ``(None, 0)``."""
    task = _task(data, config)
    scores = suspected_label_errors(record_labels(task), data.record_ids, vectors, k=config.suspects_k,
                                    majority=config.suspects_majority, limit=config.suspects_limit)
    if not scores:
        notes.append(f"no suspected label errors in task {task.name!r}; no data slice added")
        return None, 0
    slices = list(payload.get("data_slice_data") or [])
    name = unique_name(f"suspected label errors: {task.name}", [str(s.get("name")) for s in slices])
    project_id = (payload.get("project_details_data") or {}).get("id")
    info = {"created_by_tool": "refinery-quaterion", "embedding": embedding, "task": task.name,
            "k": config.suspects_k, "majority": config.suspects_majority}
    item, rows = slice_items(name, project_id, scores, info)
    payload["data_slice_data"] = [*slices, item]
    payload["data_slice_record_association_data"] = [*(payload.get("data_slice_record_association_data") or []),
                                                     *rows]
    return name, len(rows)


def _task(data: _Input, config: ToRefineryConfig) -> Any:
    """The classification task whose labels the slice checks."""
    tasks = data.snapshot.tasks if data.snapshot is not None else []
    names = [task.name for task in tasks]
    if not tasks:
        raise RefineryFileError(f"{data.source} has no classification task; a slice of suspected label errors "
                                "needs labels")
    if config.task is None and len(tasks) > 1:
        raise SettingError(f"{_braces(data.source)} has several classification tasks ({names})",
                           fixes=(Fix("task", MISSING, "to name one"),))
    if config.task is not None and config.task not in names:
        raise SettingError(f"{_braces(data.source)} has no classification task {{task}} (tasks: {names})",
                           settings={"task": config.task}, fixes=(Fix("task", MISSING, "to name one"),))
    return next(task for task in tasks if config.task in (None, task.name))
