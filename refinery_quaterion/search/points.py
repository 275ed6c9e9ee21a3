"""Records as Qdrant points: deterministic point ids, JSON-safe payloads, the data fingerprint.

A record becomes one point: its id comes from the record's own id (``id_field``) or from its
rendered text (`point_id_for`), its payload is the record made JSON-safe with the label under
``label_field``. `data_fingerprint` hashes a set of points, so an index can tell whether it
was built from the same records.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from refinery_quaterion._util import is_missing, to_jsonable
from refinery_quaterion.data.text import TextTemplate, strip_invisible
from refinery_quaterion.data.text import is_blank as text_is_blank

__all__ = ["PointId", "point_id_for"]

_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/code-kern-ai/refinery-quaterion")

PointId = int | str
"""A Qdrant point id: a non-negative int or a UUID string."""

Points = dict[PointId, tuple[str, dict[str, Any]]]
"""Point id -> (rendered text, payload), in record order."""


def point_id_for(*, text: str | None = None, record_id: Any = None) -> PointId:
    """The Qdrant point id `refinery_quaterion.search.SimilarityIndex` gives a record.

    Ids are deterministic, so adding the same record again replaces its point.

    Args:
        text: The record's rendered text; used when ``record_id`` is ``None``.
        record_id: The record's own id (``id_field`` value): a non-negative int is used as
            is, a string is mapped to a UUID5, a ``uuid.UUID`` is used as is.

    Returns:
        A non-negative int or a UUID string.

    Raises:
        ValueError: If neither is given, the text is empty, or the id is negative/empty.
        TypeError: If ``record_id`` has another type.
    """
    if record_id is not None:
        return _id_from_value(record_id)
    if text is None or text_is_blank(text):
        raise ValueError(f"cannot derive a point id from an empty text ({text!r})")
    return str(uuid.uuid5(_ID_NAMESPACE, "text:" + text))


def data_fingerprint(points: Points) -> str:
    """SHA-256 over the points' ids, texts and payloads, independent of their order.

    Two sets of records give the same fingerprint exactly when the index would hold the same
    points for them (same ids, same texts to embed, same payloads and labels).

    Args:
        points: Point id -> (text, payload), as `records_to_points` returns.

    Returns:
        64 hex digits.
    """
    digest = hashlib.sha256()
    for pid in sorted(points, key=lambda p: (isinstance(p, str), str(p))):
        text, payload = points[pid]
        line = json.dumps([pid, text, payload], sort_keys=True, ensure_ascii=False, allow_nan=False)
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def records_to_points(
    records: Any, template: TextTemplate, *, label_field: str, id_field: str | None
) -> tuple[Points, int]:
    """Render and check ``records``; the points to write and how many duplicates were merged.

    Records that share a point id are merged, the last one winning (and keeping the last
    position).

    Args:
        records: A DataFrame or an iterable of mappings.
        template: Renders a record as the text to embed.
        label_field: Record field holding the label.
        id_field: Record field holding the record id, or ``None`` for text-derived ids.

    Returns:
        ``(points, duplicates)``.

    Raises:
        TypeError: ``records`` is not a DataFrame or an iterable of mappings.
        ValueError: A record renders to an empty text or lacks its id; the template names
            fields no record has.
    """
    rows = _as_records(records)
    if rows and template.fields is not None:
        columns = records.columns if isinstance(records, pd.DataFrame) else _union_keys(rows)
        template.validate(columns, source="the records")
    points: Points = {}
    duplicates = 0
    for i, row in enumerate(rows):
        text = template(row)
        if is_blank(template, text):
            raise ValueError(
                f"record {i} renders to an empty text with template {template.spec!r}: {short(row)}; "
                "drop records without text before adding them"
            )
        pid = point_id_for(text=text, record_id=_record_id(row, i, id_field))
        if pid in points:
            duplicates += 1
            del points[pid]  # re-insert so the last occurrence keeps its position
        points[pid] = (text, _payload(row, label_field))
    return points, duplicates


def points_of(records: Any, template: TextTemplate, *, label_field: str, id_field: str | None) -> Points:
    """`records_to_points` without the count, warning when records sharing an id were merged."""
    points, duplicates = records_to_points(records, template, label_field=label_field, id_field=id_field)
    if duplicates:
        what = f"the same {id_field!r}" if id_field else "the same text"
        warnings.warn(
            f"{duplicates} record(s) have {what} as an earlier record in this call and replace it; "
            f"{len(points)} distinct point(s) are written"
            + ("" if id_field else " (pass id_field= to keep records with equal texts apart)"),
            UserWarning,
            stacklevel=4,
        )
    return points


def _record_id(row: Mapping[str, Any], i: int, id_field: str | None) -> Any:
    if id_field is None:
        return None
    value = row.get(id_field)
    if is_missing(value, empty_string=True):
        raise ValueError(
            f"record {i} has no {id_field!r} (id_field) value: {short(row)}; "
            "every record needs an id when id_field is set"
        )
    try:
        _id_from_value(value)
    except (TypeError, ValueError) as err:
        raise type(err)(f"record {i}: {err}") from None
    return value


def _payload(row: Mapping[str, Any], label_field: str) -> dict[str, Any]:
    payload = {str(key): to_jsonable(value) for key, value in row.items()}
    label = row.get(label_field)
    payload[label_field] = None if is_missing(label, empty_string=True) else str(to_jsonable(label))
    return payload


def _id_from_value(value: Any) -> PointId:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"record id {value!r} is a bool; expected an int or a string")
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)  # an int column with gaps comes out of pandas as floats
    if isinstance(value, int | np.integer):
        if value < 0:
            raise ValueError(f"record id {int(value)} is negative; Qdrant point ids are non-negative ints")
        return int(value)
    if isinstance(value, str):
        if not value:
            raise ValueError("record id is an empty string")
        return str(uuid.uuid5(_ID_NAMESPACE, "id:" + value))
    raise TypeError(f"record id {value!r} is a {type(value).__name__}; expected an int or a string")


def _as_records(records: Any) -> list[Mapping[str, Any]]:
    if isinstance(records, pd.DataFrame):
        return records.to_dict(orient="records")
    if isinstance(records, str | bytes | Mapping) or not isinstance(records, Iterable):
        raise TypeError(
            f"records must be a DataFrame or a list of mappings (dicts), got {type(records).__name__}"
            + ("; wrap a single record in a list" if isinstance(records, Mapping) else "")
        )
    rows = list(records)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"record {i} is a {type(row).__name__}; expected a mapping (dict) of fields")
    return rows


def _union_keys(rows: list[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(map(str, row)))
    return list(keys)


def is_blank(template: TextTemplate, text: str) -> bool:
    """Whether ``text`` holds nothing but the template's own literal text (all fields empty).

    Blank as everywhere in the library (`refinery_quaterion.data.text.is_blank`): white space and
    invisible characters (zero-width spaces, joiners, marks) do not count as text.
    """
    if text_is_blank(text):
        return True
    if template.fields is None:
        return False
    return strip_invisible(text).strip() == strip_invisible(template({})).strip()


def short(row: Mapping[str, Any], limit: int = 120) -> str:
    """``repr`` of a record, cut to ``limit`` characters for error messages."""
    text = repr(dict(row))
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------
# Point ids as text (added for streaming.load_vector_shards and the Ray Parquet shards)
# --------------------------------------------------------------------------------------


def point_id_text(pid: PointId) -> str:
    """A point id as the text stored in a vector shard's ``id`` column (a decimal int or a UUID).

    Args:
        pid: A point id, as `point_id_for` returns.

    Returns:
        ``"42"`` for an int id, the canonical UUID string otherwise.
    """
    return str(pid) if isinstance(pid, int) else str(uuid.UUID(str(pid)))


def point_id_from_text(text: str) -> PointId:
    """The point id a vector shard's ``id`` text stands for (the inverse of `point_id_text`).

    Args:
        text: A non-negative decimal int (``"42"``) or a UUID string.

    Returns:
        An int or a canonical UUID string.

    Raises:
        ValueError: If ``text`` is neither.
    """
    value = str(text).strip()
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"point id {text!r} is neither a non-negative int nor a UUID") from None
