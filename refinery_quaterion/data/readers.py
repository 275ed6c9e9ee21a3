"""Reading data files: compression, zips and the JSON / JSON Lines / CSV / XLSX formats.

Each format is one reader function registered by suffix in `READERS` (a
`refinery_quaterion.registry.Registry`); adding a format is one function plus one
`register_reader` line.

One reader serves both `refinery_quaterion.data.refinery.load_export` (refinery data in any form)
and `load_records` (the labeled record tables that ``prepare`` writes and the examples ship):

* a file may be compressed: ``.gz``, ``.bz2``, ``.xz``, or ``.zst`` (needs the `zstandard`
  package);
* a ``.zip`` (the UI download, a project snapshot) holds one data file, itself optionally
  compressed; ``__MACOSX/`` entries are ignored; ZipCrypto and (with `pyzipper`) AES
  passwords are supported;
* JSON is parsed with the standard library, so every value keeps the type it was written
  with: ``"2021-03-04"`` stays that string (no date conversion), ``"007"`` stays a string,
  and a column of integers with gaps stays integers (pandas' nullable ``Int64``);
* a CSV file's delimiter (comma, semicolon, tab or ``|``) is taken from its header line;
* in CSV and XLSX only an empty cell is missing: ``"NA"``, ``"N/A"``, ``"#N/A"``, ``"None"``,
  ``"null"`` and ``"nan"`` are strings like any other (pandas' default NA list is not used), as
  they are in JSON and JSON Lines, where only ``null`` is missing.

Every problem raises `RefineryFileError` naming the file (and zip member, line, or column).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from refinery_quaterion.errors import MISSING, Fix, SettingError
from refinery_quaterion.registry import Registry

__all__ = [
    "COMPRESSIONS",
    "DataFile",
    "PasswordNeededError",
    "RefineryFileError",
    "InputFormat",
    "READERS",
    "load_records",
    "read_data_file",
    "records_frame",
    "register_reader",
]

COMPRESSIONS: dict[str, str] = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstandard"}
"""Compression suffixes understood, and the format each one means."""

_CSV_DELIMITERS = (",", ";", "\t", "|")

_NA_HANDLING: dict[str, Any] = {"keep_default_na": False, "na_values": [""]}
"""How tables are read: only an empty cell is missing; ``"NA"``, ``"N/A"``, ``"None"``, ``"null"`` stay strings."""


class RefineryFileError(ValueError):
    """Raised when refinery data (an input) cannot be read; the message names the file, column or row.

    The output side has its own error: `refinery_quaterion.exporters.ModelExportError`.
    """


class PasswordNeededError(SettingError, RefineryFileError):
    """A zip member is password protected and no password was given (``password=`` fixes it).

    Args:
        problem: What is protected (file and member).
    """

    def __init__(self, problem: str):
        SettingError.__init__(self, problem, fixes=(Fix("password", MISSING),))

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.template,)


@dataclass(frozen=True)
class DataFile:
    """The decompressed bytes of one data file, with the name to use in messages.

    Attributes:
        name: The file for messages: ``"path"``, or ``"path!member"`` for a zip member.
        suffix: The data format: a key of `READERS`.
        data: The file's bytes, decompressed.
    """

    name: str
    suffix: str
    data: bytes

    def content(self) -> Any:
        """The file read by its format's reader (see `READERS`): parsed JSON, or a DataFrame for a table.

        Raises:
            RefineryFileError: If the file cannot be read as its format, naming the file.
        """
        return READERS[self.suffix].read(self)

    def json(self) -> Any:
        """The parsed JSON (a ``.jsonl`` file gives the list of its lines' objects).

        The SDK's double-encoded JSON (a JSON string holding the JSON) is unwrapped.

        Raises:
            RefineryFileError: For text that is not UTF-8 or not JSON (naming the line and column),
                or a file whose format is a table.
        """
        content = self.content()
        if isinstance(content, pd.DataFrame):
            raise RefineryFileError(f"{self.name}: is a table ({self.suffix}), not JSON")
        return content

    def frame(self) -> pd.DataFrame:
        """The file as a table: CSV / TSV / XLSX, or JSON holding a list of records.

        Raises:
            RefineryFileError: If the file is not a table, naming the file and what was expected.
        """
        content = self.content()
        return content if isinstance(content, pd.DataFrame) else records_frame(content, self.name)


@dataclass(frozen=True)
class InputFormat:
    """A registered input format (a data file suffix and its reader).

    Attributes:
        name: The suffix, e.g. ``".csv"`` (after any compression suffix is removed).
        read: ``read(file) -> content``: parsed JSON (``records_frame`` makes it a table) or a
            DataFrame; raises `RefineryFileError` naming ``file.name``.
        description: One line for the docs and ``--help``.
        example: A file name of the format.
    """

    name: str
    read: Callable[[DataFile], Any]
    description: str
    example: str = ""


def _make_input_format(name: str, read: Callable[[DataFile], Any], *, description: str, example: str) -> InputFormat:
    """An `InputFormat` from a registration (the ``make_entry`` of `READERS`)."""
    return InputFormat(name, read, description, example)


READERS: Registry[InputFormat] = Registry("input format", "input formats", _make_input_format,
                                          usage="load_records(\"records{name}\")")
"""Input formats by suffix: ``.json``, ``.jsonl``, ``.csv``, ``.tsv``, ``.xlsx`` (fill it with `register_reader`)."""


def register_reader(
    suffix: str, *, description: str
) -> Callable[[Callable[[DataFile], Any]], Callable[[DataFile], Any]]:
    """Decorator: register ``read(file) -> content`` for files ending in ``suffix`` (see `InputFormat`).

    From then on `read_data_file`, `load_records` and ``load_export`` accept such files, also
    compressed or zipped.

    Raises:
        ValueError: If ``suffix`` is already registered or does not start with a dot.
    """
    if not suffix.startswith(".") or suffix != suffix.lower():
        raise ValueError(f"an input format is a lower-case suffix starting with '.', got {suffix!r}")
    return READERS.register(suffix, description)


def read_data_file(path: str | os.PathLike, *, password: str | bytes | None = None) -> DataFile:
    """Read one data file, unzipping and decompressing it as its name says.

    Args:
        path: A ``.json``, ``.jsonl``, ``.csv``, ``.tsv`` or ``.xlsx`` file, optionally
            compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``), or a ``.zip`` holding exactly
            one such file.
        password: Password of a protected zip.

    Returns:
        The data file's bytes and format.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        RefineryFileError: For a folder, an unsupported name, a corrupt archive or member, a missing
            or wrong password; the message names the file and the zip member.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise RefineryFileError(f"{path}: is a folder; expected {_expected()}")
    suffix, compression = _split_name(path.name)
    if suffix == ".zip" and compression is None:
        member, data = _read_zip(path, password)
        inner, inner_compression = _split_name(member)
        name = f"{path}!{member}"
        return DataFile(name, inner, _decompress(data, inner_compression, name))
    if suffix not in READERS:
        shown = path.suffix.lower() if compression is None else suffix + path.suffix.lower()
        raise RefineryFileError(f"{path}: unsupported file type {shown!r}; expected {_expected()}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RefineryFileError(f"{path}: cannot read the file ({err})") from err
    return DataFile(str(path), suffix, _decompress(data, compression, str(path)))


def load_records(path: str | os.PathLike) -> pd.DataFrame:
    """Read a labeled record table written by ``prepare`` or shipped with the examples.

    Uses the same reader as `refinery_quaterion.data.refinery.load_export`: JSON (a list of records,
    ``orient="records"``), JSON Lines, CSV/TSV or XLSX, each optionally compressed or zipped.
    Values keep the types they were written with (see the module description), so a table
    written by ``prepare`` reads back unchanged.

    Args:
        path: File to read.

    Returns:
        The records, one row each.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        RefineryFileError: If the file is not a table of records (a `ValueError`); the message
            names the file.
    """
    return read_data_file(path).frame()


def records_frame(payload: Any, name: str) -> pd.DataFrame:
    """A DataFrame from parsed JSON records, keeping every value's type.

    Integer columns with gaps become pandas' nullable ``Int64`` (not floats), so a record
    written as ``{"id": 7}`` reads back as ``7``, not ``7.0``. pandas' ``orient="columns"``
    layout (``{column: {row: value}}``) is accepted too.

    Args:
        payload: Parsed JSON: a list of objects, or ``{column: {row: value}}``.
        name: The file, for messages.

    Returns:
        One row per record.

    Raises:
        RefineryFileError: If ``payload`` is not a table (e.g. a project snapshot, a number, a list
            holding a non-object), naming the file and the first offending record.
    """
    if isinstance(payload, dict) and "records_data" in payload:
        raise RefineryFileError(f"{name}: is a refinery project snapshot, not a table of records; "
                          "read it with load_export() and combine_labels()")
    if isinstance(payload, dict) and payload and all(isinstance(v, dict) for v in payload.values()):
        columns = list(payload)
        index = list(dict.fromkeys(key for values in payload.values() for key in values))
        payload = [{c: payload[c].get(i) for c in columns if i in payload[c]} for i in index]
    if not isinstance(payload, list):
        raise RefineryFileError(
            f"{name}: JSON is a {type(payload).__name__}; expected a list of records, a project snapshot "
            "(with 'records_data'), or the SDK's double-encoded JSON string"
        )
    bad = next((i for i, row in enumerate(payload) if not isinstance(row, dict)), None)
    if bad is not None:
        raise RefineryFileError(
            f"{name}: record {bad} is a {type(payload[bad]).__name__}; expected a list of objects "
            "(orient='records')"
        )
    frame = pd.DataFrame.from_records(payload)
    for column in frame.columns:
        if frame[column].dtype.kind == "f" and frame[column].isna().any():
            values = [row.get(column) for row in payload]
            present = [v for v in values if v is not None]
            if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
                frame[column] = pd.array(values, dtype="Int64")
    return frame


# --------------------------------------------------------------------------------------
# Names, compression, zips
# --------------------------------------------------------------------------------------


def _expected() -> str:
    suffixes = list(READERS)
    kinds = ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}"
    return f"a {kinds} file or a .zip, optionally compressed ({', '.join(COMPRESSIONS)})"


def _split_name(name: str) -> tuple[str, str | None]:
    """``(data suffix, compression suffix or None)`` of a file name: ``x.json.gz`` → ``(".json", ".gz")``."""
    path = Path(name.lower())
    if path.suffix in COMPRESSIONS:
        return Path(path.stem).suffix, path.suffix
    return path.suffix, None


def _decompress(data: bytes, compression: str | None, name: str) -> bytes:
    if compression is None:
        return data
    openers: dict[str, Callable[[bytes], bytes]] = {
        ".gz": gzip.decompress,
        ".bz2": bz2.decompress,
        ".xz": lzma.decompress,
        ".zst": _zstd_decompress,
    }
    try:
        return openers[compression](data)
    except RefineryFileError as err:
        raise RefineryFileError(f"{name}: {err}") from err
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as err:
        raise RefineryFileError(f"{name}: not a valid {COMPRESSIONS[compression]} file ({err})") from err
    except Exception as err:  # zstandard.ZstdError and the like
        if type(err).__module__.split(".")[0] in ("zstandard", "_zstd", "pyzstd"):
            raise RefineryFileError(f"{name}: not a valid zstandard file ({err})") from err
        raise


def _zstd_decompress(data: bytes) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise RefineryFileError(
            "reading .zst files needs the zstandard package (`pip install zstandard`); "
            "or decompress the file first (`zstd -d FILE`)"
        ) from None
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
        return reader.read()


def _read_zip(path: Path, password: str | bytes | None) -> tuple[str, bytes]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise RefineryFileError(f"{path}: not a valid zip file ({err})") from err
    with archive:
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir()
            and not info.filename.startswith("__MACOSX/")
            and not Path(info.filename).name.startswith("._")
        ]
        data_members = [m for m in members if _split_name(m.filename)[0] in READERS]
        if not data_members:
            names = [m.filename for m in members] or "nothing"
            raise RefineryFileError(f"{path}: the zip holds no .json, .csv or .xlsx file (it holds {names})")
        if len(data_members) > 1:
            names = [m.filename for m in data_members]
            raise RefineryFileError(f"{path}: the zip holds several data files {names}; expected exactly one")
        info = data_members[0]
        encrypted = bool(info.flag_bits & 0x1)
        if info.compress_type == 99:  # WinZip AES
            return info.filename, _read_aes(path, info.filename, password)
        if encrypted and password is None:
            raise PasswordNeededError(f"{path}: {info.filename} is password protected")
        pwd = password.encode() if isinstance(password, str) else password
        try:
            return info.filename, archive.read(info, pwd=pwd if encrypted else None)
        except RuntimeError as err:
            if "password" in str(err).lower():
                raise RefineryFileError(f"{path}: wrong password for {info.filename}") from err
            raise RefineryFileError(f"{path}: cannot read zip member {info.filename} ({err})") from err
        except NotImplementedError as err:
            message = f"{path}: zip member {info.filename} uses an unsupported compression ({err})"
            raise RefineryFileError(message) from err
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error) as err:
            if encrypted:  # a wrong password can slip past the check byte and garble the stream
                raise RefineryFileError(f"{path}: wrong password for {info.filename} ({err})") from err
            raise RefineryFileError(f"{path}: zip member {info.filename} is corrupt ({err})") from err


def _read_aes(path: Path, member: str, password: str | bytes | None) -> bytes:
    if password is None:
        raise PasswordNeededError(f"{path}: {member} is password protected (AES)")
    try:
        import pyzipper
    except ImportError as err:
        raise RefineryFileError(
            f"{path}: {member} is AES-encrypted, which Python's zipfile cannot read; "
            "install pyzipper (`pip install pyzipper`) or re-download the file without a password"
        ) from err
    pwd = password.encode() if isinstance(password, str) else password
    with pyzipper.AESZipFile(path) as archive:
        try:
            return archive.read(member, pwd=pwd)
        except RuntimeError as err:
            raise RefineryFileError(f"{path}: wrong password for {member}") from err
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
            raise RefineryFileError(f"{path}: zip member {member} is corrupt ({err})") from err


# --------------------------------------------------------------------------------------
# The readers: one function per format, registered by suffix
# --------------------------------------------------------------------------------------


def _text(file: DataFile) -> str:
    """The file's bytes as UTF-8 text (a byte-order mark is dropped)."""
    try:
        return file.data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RefineryFileError(f"{file.name}: not UTF-8 text ({err})") from err


@register_reader(".json", description="JSON: a list of records, a refinery project snapshot, or the SDK's "
                 "double-encoded JSON string")
def _read_json(file: DataFile) -> Any:
    try:
        payload = json.loads(_text(file))
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise RefineryFileError(f"{file.name}: invalid JSON at {where}: {err.msg}") from err
    if isinstance(payload, str):  # the SDK's download_to= writes a JSON string holding the JSON
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as err:
            raise RefineryFileError(f"{file.name}: holds a JSON string that is not JSON itself ({err.msg})") from err
    return payload


@register_reader(".jsonl", description="JSON Lines: one record (a JSON object) per line")
def _read_jsonl(file: DataFile) -> list[Any]:
    rows = []
    for number, line in enumerate(_text(file).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            message = f"{file.name}: invalid JSON on line {number}, column {err.colno}: {err.msg}"
            raise RefineryFileError(message) from err
    return rows


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def _sniff_delimiter(text: str, default: str) -> str:
    """The delimiter that splits the header line into the most fields (``default`` on a tie)."""
    header = next(iter(text.splitlines()), "")
    counts = {d: len(next(csv.reader([header], delimiter=d), [])) for d in _CSV_DELIMITERS}
    best = max(counts.values())
    if best <= 1 or counts[default] == best:
        return default
    return next(d for d in _CSV_DELIMITERS if counts[d] == best)


@register_reader(".tsv", description="tab-separated values (the delimiter is taken from the header as for .csv)")
@register_reader(".csv", description="CSV: a header line, then one record per line; the delimiter (comma, "
                 "semicolon, tab or |) is taken from the header")
def _read_csv(file: DataFile) -> pd.DataFrame:
    text = _text(file)
    delimiter = _sniff_delimiter(text, "\t" if file.suffix == ".tsv" else ",")
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, **_NA_HANDLING)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        shown = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "'|'"}[delimiter]
        raise RefineryFileError(f"{file.name}: not a readable CSV file (delimiter: {shown}; {err})") from err


@register_reader(".xlsx", description="Excel workbook: its first sheet, a header row, then one record per row "
                 "(needs openpyxl)")
def _read_xlsx(file: DataFile) -> pd.DataFrame:
    try:
        return pd.read_excel(io.BytesIO(file.data), **_NA_HANDLING)
    except ImportError as err:
        raise RefineryFileError(f"{file.name}: reading .xlsx needs openpyxl (`pip install openpyxl`)") from err
    except Exception as err:  # openpyxl raises many types for a broken workbook
        raise RefineryFileError(f"{file.name}: not a readable .xlsx workbook ({err})") from err
