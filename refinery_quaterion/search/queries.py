"""Queries and their results: the text to search for, label filters, hits from Qdrant points."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from refinery_quaterion.data.text import TextTemplate
from refinery_quaterion.data.text import is_blank as text_is_blank
from refinery_quaterion.search.points import PointId, is_blank, short

__all__ = ["SearchHit"]


@dataclasses.dataclass(frozen=True)
class SearchHit:
    """One search result.

    Attributes:
        id: The record's id: its ``id_field`` value when the index has an ``id_field``,
            otherwise the Qdrant point id (a UUID string derived from the record's text).
        score: Similarity to the query, as Qdrant reports it for the collection's distance:
            cosine similarity (1.0 = same direction) for ``"cosine"``, the dot product for
            ``"dot"``, the distance (lower is closer) for ``"euclid"``/``"manhattan"``.
        label: The record's label (``label_field`` of the payload), ``None`` if it had none.
        record: The stored payload: the record's fields (JSON-safe) and its label.
        point_id: The Qdrant point id.
    """

    id: PointId
    score: float
    label: str | None
    record: dict[str, Any]
    point_id: PointId

    @property
    def payload(self) -> dict[str, Any]:
        """Alias of `record` (Qdrant's name for it)."""
        return self.record


def query_text(query: Any, template: TextTemplate) -> str:
    """The text to embed for ``query`` (a text, or a record rendered with ``template``).

    Raises:
        TypeError: ``query`` is neither a string nor a mapping.
        ValueError: The query is empty (or the record renders to the template's literal text only).
    """
    if isinstance(query, str):
        text = query
    elif isinstance(query, Mapping):
        text = template(query)
    else:
        raise TypeError(f"a query must be a text (str) or a record (mapping), got {type(query).__name__}")
    if text_is_blank(text) if isinstance(query, str) else is_blank(template, text):
        what = "text" if isinstance(query, str) else f"record {short(query)} renders to an empty text"
        raise ValueError(f"empty query {what!s}; expected some text to search for")
    return text


def query_texts(queries: Sequence[Any], template: TextTemplate) -> list[str]:
    """`query_text` of each query; an empty or invalid one is named by its position (``query 3: ...``)."""
    texts = []
    for i, query in enumerate(queries):
        try:
            texts.append(query_text(query, template))
        except (TypeError, ValueError) as err:
            raise type(err)(f"query {i}: {err}") from None
    return texts


def check_labels_known(labels: list[str], known: list[str], count: Callable[[str], int]) -> None:
    """Refuse a filter label that is neither in ``known`` (the model's labels) nor on any point.

    Raises:
        ValueError: Naming the label and the model's labels.
    """
    for label in labels:
        if label not in known and count(label) == 0:
            raise ValueError(
                f"unknown label {label!r}: no record in the index has it and the model was trained on {known}"
            )


def filter_labels(filter_label: str | Sequence[str] | None) -> list[str] | None:
    """The labels of a ``filter_label`` argument, checked; ``None`` for no filter.

    Raises:
        TypeError: Not a string, a sequence of strings or ``None``.
        ValueError: An empty list or an empty/non-string label.
    """
    if filter_label is None:
        return None
    if isinstance(filter_label, str):
        labels = [filter_label]
    elif isinstance(filter_label, Iterable) and not isinstance(filter_label, Mapping | bytes):
        labels = list(filter_label)
        if not labels:
            raise ValueError("filter_label is an empty list; pass None to search all labels")
    else:
        raise TypeError(
            "filter_label must be a label (str), a list of labels or None, "
            f"got {type(filter_label).__name__}"
        )
    for label in labels:
        if not isinstance(label, str) or not label:
            raise ValueError(f"filter_label holds {label!r}; expected non-empty label names (str)")
    return labels


def to_hit(point: Any, *, id_field: str | None, label_field: str) -> SearchHit:
    """A `SearchHit` from a scored point (anything with ``id``, ``score`` and ``payload``)."""
    payload = dict(point.payload or {})
    record_id = point.id
    if id_field is not None and payload.get(id_field) is not None:
        record_id = payload[id_field]
    label = payload.get(label_field)
    return SearchHit(
        id=record_id,
        score=float(point.score),
        label=None if label is None else str(label),
        record=payload,
        point_id=point.id,
    )
