"""Records to index, read in chunks of bounded size from a DataFrame, an iterable or a file of any size.

`record_chunks` yields lists of at most ``chunk_size`` records (dicts), so memory does not
grow with the corpus: JSON Lines is read line by line, CSV/TSV with pandas' ``chunksize``,
Parquet with pyarrow's ``iter_batches``. Other formats the library reads (a ``.json`` array,
``.xlsx``, compressed or zipped files; see `refinery_quaterion.data.load_records`) are read
whole and then chunked, so they suit small files only.

Missing values are explicit: an empty CSV cell and a JSON ``null`` are missing (``None``);
the strings ``"NA"``, ``"null"``, ``"None"``, ``"NaN"`` are kept as strings (pandas'
``keep_default_na=False, na_values=[""]``), so a record whose text is ``"NA"`` is not lost.
`count_records` tells the number of records up front where that is cheap (for a progress bar).
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["RecordSource", "count_records", "parquet_file", "record_chunks"]

RecordSource = pd.DataFrame | str | os.PathLike | Iterable[Mapping[str, Any]]
"""What `record_chunks` reads: a DataFrame, a file path, or an iterable of mappings."""

Chunk = list[dict[str, Any]]

_JSON_LINES = (".jsonl", ".ndjson")
_TABLES = {".csv": ",", ".tsv": "\t"}


def record_chunks(source: RecordSource, chunk_size: int = 10_000) -> Iterator[Chunk]:
    """The records of ``source``, ``chunk_size`` at a time, in order.

    Args:
        source: A DataFrame; an iterable of mappings (read lazily); or a path to a JSON Lines
            (``.jsonl``/``.ndjson``), CSV/TSV, Parquet file (each optionally ``.gz``, Parquet
            not), or any other file `refinery_quaterion.data.load_records` reads (read whole).
        chunk_size: Records per chunk (the last one may be shorter).

    Yields:
        Lists of records, each a ``dict`` of field -> value; missing values are ``None``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If ``chunk_size`` is not a positive int, or a JSON Lines line is not a JSON
            object (naming the file and line).
        TypeError: If ``source`` is none of the above, or an item of an iterable is not a mapping.
        ImportError: If a Parquet file is given and pyarrow is not installed.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if isinstance(source, pd.DataFrame):
        return _frame_chunks(source, chunk_size)
    if isinstance(source, str | os.PathLike):
        return _file_chunks(_existing(source), chunk_size)
    if isinstance(source, bytes | Mapping) or not isinstance(source, Iterable):
        raise TypeError(f"records must be a DataFrame, a file path or an iterable of mappings, "
                        f"got {type(source).__name__}")
    return _iterable_chunks(source, chunk_size)


def count_records(source: RecordSource) -> int | None:
    """How many records ``source`` holds, where that is cheap to tell; else ``None``.

    A DataFrame and a sized collection know it, a Parquet file stores it, a JSON Lines file
    is counted by its non-blank lines (one pass over the bytes, bounded memory). For CSV/TSV
    the count is the number of lines after the header: exact unless quoted cells span
    lines. Other sources (a generator, a whole-file format) give ``None``.

    Args:
        source: As for `record_chunks`.

    Returns:
        The number of records, or ``None``.
    """
    if isinstance(source, pd.DataFrame):
        return len(source)
    if not isinstance(source, str | os.PathLike):
        return len(source) if hasattr(source, "__len__") and not isinstance(source, Mapping) else None
    path = Path(source)
    suffix, gz = _suffix(path)
    if suffix == ".parquet" and not gz:
        return int(parquet_file(path).metadata.num_rows)
    if suffix in _JSON_LINES:
        with _open_binary(path, gz) as handle:
            return sum(1 for line in handle if line.strip())
    if suffix in _TABLES:
        with _open_binary(path, gz) as handle:
            return max(0, sum(1 for line in handle if line.strip()) - 1)
    return None


def _existing(source: str | os.PathLike) -> Path:
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def _suffix(path: Path) -> tuple[str, bool]:
    """The data suffix (lower case) and whether the file is gzip-compressed."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    rest = suffixes[:-1] if gz else suffixes
    return (rest[-1] if rest else ""), gz


def _open_binary(path: Path, gz: bool) -> Any:
    return gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115 - the caller closes it


def _file_chunks(path: Path, chunk_size: int) -> Iterator[Chunk]:
    suffix, gz = _suffix(path)
    if suffix in _JSON_LINES:
        return _json_lines_chunks(path, gz, chunk_size)
    if suffix in _TABLES:
        return _table_chunks(path, _TABLES[suffix], chunk_size)
    if suffix == ".parquet" and not gz:
        return _parquet_chunks(path, chunk_size)
    from refinery_quaterion.data.readers import load_records

    return _frame_chunks(load_records(path), chunk_size)


def _frame_chunks(frame: pd.DataFrame, chunk_size: int) -> Iterator[Chunk]:
    for start in range(0, len(frame), chunk_size):
        yield [_clean(row) for row in frame.iloc[start:start + chunk_size].to_dict(orient="records")]


def _iterable_chunks(records: Iterable[Any], chunk_size: int) -> Iterator[Chunk]:
    iterator, seen = iter(records), 0
    while chunk := list(itertools.islice(iterator, chunk_size)):
        for i, row in enumerate(chunk):
            if not isinstance(row, Mapping):
                raise TypeError(f"record {seen + i} is a {type(row).__name__}; expected a mapping (dict) of fields")
        seen += len(chunk)
        yield [dict(row) for row in chunk]


def _json_lines_chunks(path: Path, gz: bool, chunk_size: int) -> Iterator[Chunk]:
    with _open_binary(path, gz) as raw, io.TextIOWrapper(raw, encoding="utf-8") as handle:
        chunk: Chunk = []
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            chunk.append(_json_object(line, path, number))
            if len(chunk) == chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _json_object(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg}); expected one JSON object "
                         "per line") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: line {number} is a JSON {type(value).__name__}; expected a JSON object "
                         "(one record per line)")
    return value


def _table_chunks(path: Path, sep: str, chunk_size: int) -> Iterator[Chunk]:
    reader = pd.read_csv(path, sep=sep, chunksize=chunk_size, keep_default_na=False, na_values=[""],
                         compression="infer")
    with reader:
        for frame in reader:
            yield [_clean(row) for row in frame.to_dict(orient="records")]


def parquet_file(path: str | os.PathLike[str]) -> Any:
    """``pyarrow.parquet.ParquetFile`` of ``path`` (close it when done).

    Raises:
        ImportError: If pyarrow is not installed, naming the extra that brings it.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError("reading Parquet needs pyarrow: pip install 'refinery-quaterion[search]'") from err
    return pq.ParquetFile(path)


def _parquet_chunks(path: Path, chunk_size: int) -> Iterator[Chunk]:
    parquet = parquet_file(path)
    try:
        for batch in parquet.iter_batches(batch_size=chunk_size):
            yield batch.to_pylist()
    finally:
        parquet.close()


def _clean(row: dict[Any, Any]) -> dict[str, Any]:
    """Field names as strings and pandas' missing values (NaN, NA, NaT) as ``None``."""
    return {str(key): (None if _is_na(value) else value) for key, value in row.items()}


def _is_na(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)
