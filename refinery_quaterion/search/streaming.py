"""Streaming bulk indexing: records -> vectors -> points in bounded memory, resumable after an interrupt.

`index_records` reads a source (a DataFrame, an iterable of records, or a JSON Lines, CSV or
Parquet file of any size; see `refinery_quaterion.search.sources`) one chunk at a time; for each
chunk it derives the deterministic point ids, asks the index which of them it already holds,
embeds only the others and upserts them. Memory therefore depends on the chunk size, not on the
corpus; a run that was interrupted continues, when started again, where it stopped, without
re-embedding what is there and without duplicating a record. The whole load runs inside
`SimilarityIndex.bulk_load`, so the search index (HNSW) is built once at the end.

`load_vector_shards` loads vectors computed elsewhere (e.g. by ``index_with_ray``): Parquet
files with the columns ``id`` (a decimal int or UUID string), ``vector`` (list of float32) and
``payload`` (a JSON object as text).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refinery_quaterion._bars import stage_bar
from refinery_quaterion.search._checks import encode_checked, refuse_index_over_inputs
from refinery_quaterion.search.points import PointId, point_id_from_text, records_to_points
from refinery_quaterion.search.sources import RecordSource, count_records, parquet_file, record_chunks

if TYPE_CHECKING:
    from refinery_quaterion.search.index import SimilarityIndex

__all__ = ["IndexingResult", "index_records", "load_vector_shards"]

SHARD_COLUMNS = ("id", "vector", "payload")
"""The columns of a vector shard (see `load_vector_shards`)."""


@dataclasses.dataclass(frozen=True)
class IndexingResult:
    """What one `index_records` or `load_vector_shards` run did.

    Attributes:
        read: Records (or shard rows) read from the source.
        written: Points embedded (for shards: loaded) and written by this run.
        skipped: Records whose points the index already held (from an earlier, interrupted
            run, or an earlier record with the same id); not embedded again.
        duplicates: Records that shared a point id with a later record of the same chunk
            (the later one is written).
        seconds: Wall time of the run.
    """

    read: int
    written: int
    skipped: int
    duplicates: int
    seconds: float

    @property
    def points_per_s(self) -> float:
        """Records processed per second (read / seconds)."""
        return self.read / self.seconds if self.seconds > 0 else 0.0


@dataclasses.dataclass
class _Tally:
    read: int = 0
    written: int = 0
    skipped: int = 0
    duplicates: int = 0

    def result(self, started: float) -> IndexingResult:
        return IndexingResult(self.read, self.written, self.skipped, self.duplicates, time.perf_counter() - started)


def index_records(index: SimilarityIndex, source: RecordSource, *, chunk_size: int = 4096,
                  progress: bool | None = None) -> IndexingResult:
    """Embed and index the records of ``source`` in bounded memory, skipping those already indexed.

    Each record's point id is derived as `SimilarityIndex.add` derives it (from
    ``config.id_field``, else from the rendered text), so running this again after an
    interrupt (or on a grown file) embeds only the records the index does not hold yet. A
    record whose point is there with the same payload is skipped; one whose payload differs
    (its label or another field changed since) is embedded again and replaces the point, so the
    index never keeps a stale label. Within one chunk, the last of several records with one id
    wins, as in ``add``.

    On Ctrl-C (or any error) the points written so far are flushed and stay searchable, and
    the exception is raised again (so a command line exits non-zero); the next run continues.

    Args:
        index: An open `SimilarityIndex`.
        source: A DataFrame, an iterable of records, or a path (JSON Lines, CSV/TSV, Parquet,
            or a smaller file of any format `refinery_quaterion.data.load_records` reads).
        chunk_size: Records read, embedded and written at a time; bounds the memory used.
        progress: Show one "Indexing" progress bar with points/s and ETA (a line when stderr is
            not a terminal); ``None`` means yes.

    Returns:
        What the run did (`IndexingResult`).

    Raises:
        ValueError: A record renders to an empty text or lacks its id (the message names the
            record's position in the source), or a file cannot be parsed.
        FileNotFoundError: If ``source`` is a path that does not exist.
        SettingError: If the index folder is, contains or lies inside ``source``.
        RuntimeError: If the index is closed.
        KeyboardInterrupt: Re-raised after flushing what was written.
    """
    started = time.perf_counter()
    if index.backend == "edge":
        refuse_index_over_inputs(index.location, {"the data file": source})
    chunks = record_chunks(source, chunk_size)  # checks chunk_size and the source before any work
    tally = _Tally()
    bar = stage_bar(count_records(source) or 0, desc="Indexing", unit="point", enabled=progress is not False,
                    leave=True)
    try:
        with bar, index.bulk_load():
            for chunk in chunks:
                _index_chunk(index, chunk, tally)
                bar.update(len(chunk))
    finally:
        if not index.closed:
            index.flush()
    return tally.result(started)


def _index_chunk(index: SimilarityIndex, chunk: list[dict[str, Any]], tally: _Tally) -> None:
    """Embed and write the records of one chunk that the index does not hold yet."""
    try:
        points, duplicates = records_to_points(chunk, index.encoder.template, label_field=index.label_field,
                                               id_field=index.id_field)
    except (TypeError, ValueError) as err:
        raise type(err)(f"in the chunk of records {tally.read} to {tally.read + len(chunk) - 1} "
                        f"(counting from 0): {err}") from None
    stored = index.existing_payloads(list(points))
    todo = [pid for pid in points if stored.get(pid) != points[pid][1]]  # new, or its record changed
    if todo:
        vectors = encode_checked(index.encoder, [points[pid][0] for pid in todo], batch_size=index.config.batch_size)
        index.add_vectors(todo, vectors, [points[pid][1] for pid in todo])
    tally.read += len(chunk)
    tally.written += len(todo)
    tally.skipped += len(points) - len(todo)
    tally.duplicates += duplicates


def load_vector_shards(index: SimilarityIndex, folder: str | os.PathLike[str], *, chunk_size: int = 8192,
                       progress: bool | None = None) -> IndexingResult:
    """Upsert precomputed vectors from Parquet shards into ``index``, in bounded memory.

    Every ``*.parquet`` file under ``folder`` (sorted by path) must have the columns ``id``
    (string: a decimal int or a UUID, see `refinery_quaterion.search.points.point_id_text`),
    ``vector`` (list of float32, the index's dimension) and ``payload`` (string: a JSON object,
    made like `SimilarityIndex.add` makes payloads). Rows are read ``chunk_size`` at a time and
    upserted inside one `SimilarityIndex.bulk_load`; loading a shard twice replaces its points
    (nothing is duplicated). On Ctrl-C what was written is flushed and the exception re-raised.

    Args:
        index: An open `SimilarityIndex` (built with the model that made the vectors).
        folder: The folder of shards (or a single ``.parquet`` file).
        chunk_size: Rows read and written at a time.
        progress: Show a progress bar (a line when not in a terminal); ``None`` means yes.

    Returns:
        What the run did (`IndexingResult`; ``written`` counts the rows upserted).

    Raises:
        FileNotFoundError: If ``folder`` holds no ``.parquet`` file.
        ValueError: A shard lacks a column, or a row has a bad id, vector or payload; the
            message names the file, the column and the row.
        ImportError: If pyarrow is not installed.
    """
    started = time.perf_counter()
    files = _shard_files(Path(folder))
    tally = _Tally()
    try:
        with stage_bar(_shard_rows(files), desc="Loading vectors", unit="point", enabled=progress is not False,
                       leave=True) as bar, index.bulk_load():
            for path in files:
                for first, ids, vectors, payloads in _shard_batches(path, chunk_size):
                    _add_shard_rows(index, path, first, ids, vectors, payloads)
                    tally.read += len(ids)
                    tally.written += len(ids)
                    bar.update(len(ids))
    finally:
        if not index.closed:
            index.flush()
    return tally.result(started)


def _shard_files(folder: Path) -> list[Path]:
    if folder.is_file() and folder.suffix.lower() == ".parquet":
        return [folder]
    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{folder}: holds no .parquet vector shards")
    return files


def _shard_rows(files: list[Path]) -> int:
    """Rows in all ``files`` (from their metadata)."""
    total = 0
    for path in files:
        shard = parquet_file(path)
        total += int(shard.metadata.num_rows)
        shard.close()
    return total


def _shard_batches(path: Path, chunk_size: int) -> Iterator[tuple[int, list[PointId], np.ndarray,
                                                                   list[dict[str, Any]]]]:
    """``(first row, ids, vectors, payloads)`` of one shard, ``chunk_size`` rows at a time."""
    shard = parquet_file(path)
    try:
        yield from _read_shard(path, shard, chunk_size)
    finally:
        shard.close()


def _read_shard(path: Path, shard: Any, chunk_size: int) -> Iterator[tuple[int, list[PointId], np.ndarray,
                                                                             list[dict[str, Any]]]]:
    missing = [c for c in SHARD_COLUMNS if c not in shard.schema_arrow.names]
    if missing:
        raise ValueError(f"{path}: vector shard lacks the column(s) {', '.join(map(repr, missing))}; expected "
                         f"the columns {', '.join(map(repr, SHARD_COLUMNS))}")
    first = 0
    for batch in shard.iter_batches(batch_size=chunk_size, columns=list(SHARD_COLUMNS)):
        ids = [_shard_id(value, path, first + i) for i, value in enumerate(batch.column("id").to_pylist())]
        vectors = _shard_vectors(batch.column("vector"), path, first)
        texts = batch.column("payload").to_pylist()
        payloads = [_shard_payload(value, path, first + i) for i, value in enumerate(texts)]
        yield first, ids, vectors, payloads
        first += batch.num_rows


def _shard_id(value: Any, path: Path, row: int) -> PointId:
    try:
        return point_id_from_text(value) if isinstance(value, str) else point_id_from_text("")
    except ValueError as err:
        raise ValueError(f"{path}: column 'id', row {row}: {err if isinstance(value, str) else f'got {value!r}'}; "
                         "expected a decimal int or a UUID string") from None


def _shard_vectors(column: Any, path: Path, first: int) -> np.ndarray:
    """A list<float> column as a ``(rows, dim)`` float32 array; every row must have one length."""
    import pyarrow.compute as pc

    if column.null_count:
        row = first + pc.index(pc.is_null(column), True).as_py()
        raise ValueError(f"{path}: column 'vector', row {row} is null; expected a list of floats")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise ValueError(f"{path}: column 'vector', row {first + row} has {int(lengths[row])} values, "
                         f"row {first} has {int(lengths[0])}; every vector needs the same dimension")
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(len(lengths), int(lengths[0]) if len(lengths) else 0)


def _shard_payload(value: Any, path: Path, row: int) -> dict[str, Any]:
    try:
        payload = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: column 'payload', row {row} is not valid JSON ({err.msg})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: column 'payload', row {row} is {value!r}; expected a JSON object as text")
    return payload


def _add_shard_rows(index: SimilarityIndex, path: Path, first: int, ids: list[PointId], vectors: np.ndarray,
                    payloads: list[dict[str, Any]]) -> None:
    try:
        index.add_vectors(ids, vectors, payloads)
    except ValueError as err:
        raise ValueError(f"{path}: rows {first} to {first + len(ids) - 1}: {err}") from None
