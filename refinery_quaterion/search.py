"""Similarity search over records embedded by a fine-tuned model, stored in Qdrant.

`SimilarityIndex` embeds records with a trained encoder and keeps them in a Qdrant
collection, then answers nearest-neighbour queries, optionally restricted to some labels.

The same API works in two modes:

* **Embedded (local) mode**, the default: Qdrant runs inside this Python process, in memory
  (``path=":memory:"``, the default) or persisted to a folder (``path="my_index"``). No
  server is needed. Local mode suits up to about 20,000 points; a warning is raised above
  that. **Only one client may open a folder at a time** (Qdrant locks it): call
  `SimilarityIndex.close` (or use ``with``) before opening the folder again.
* **Server mode**: ``url="http://localhost:6333"`` (plus ``api_key=`` for Qdrant Cloud)
  for large collections and concurrent access. Any other client option can be set by
  passing a ready ``qdrant_client.QdrantClient`` as ``client=``.

Qdrant is an optional dependency: install it with ``pip install "refinery-quaterion[search]"``.
``qdrant_client`` is only imported when an index is created.

Example:
    >>> with SimilarityIndex(model, path="news_index") as index:  # doctest: +SKIP
    ...     index.add(frame)
    ...     for hit in index.search("Oil prices climb", k=3, filter_label="Business"):
    ...         print(f"{hit.score:.2f} {hit.label} {hit.record['Title']}")
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import math
import os
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from refinery_quaterion.text import TextTemplate

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as qmodels

    from refinery_quaterion.dataset import LabelMap

__all__ = [
    "LOCAL_MODE_MAX_POINTS",
    "PointId",
    "SearchHit",
    "SimilarityIndex",
    "SupportsEncode",
    "point_id_for",
]

#: Above this many points in local (embedded) mode, `SimilarityIndex` warns once and
#: suggests a Qdrant server (the same limit qdrant-client recommends for local mode).
LOCAL_MODE_MAX_POINTS = 20_000

_INSTALL_HINT = 'pip install "refinery-quaterion[search]"'
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/code-kern-ai/refinery-quaterion")
_METADATA_KEY = "refinery_quaterion"
_DISTANCES = {"cosine": "COSINE", "dot": "DOT", "euclid": "EUCLID", "manhattan": "MANHATTAN"}

PointId = int | str
"""A Qdrant point id: a non-negative int or a UUID string."""


@runtime_checkable
class SupportsEncode(Protocol):
    """What `SimilarityIndex` needs from a model: the trained encoder satisfies it.

    Any object with these members works, e.g. a thin wrapper around another embedding model.
    """

    @property
    def dim(self) -> int:
        """Size of the embeddings `encode` returns."""
        ...

    @property
    def template(self) -> TextTemplate:
        """Renders a record as the text to embed (also used to derive point ids)."""
        ...

    @property
    def label_map(self) -> LabelMap:
        """The labels the model was trained on (used to check ``filter_label`` values)."""
        ...

    def encode(
        self,
        items: Sequence[Mapping[str, Any] | str],
        batch_size: int = 64,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed ``items`` (records or texts) as a float32 array of shape ``(len(items), dim)``."""
        ...


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


def point_id_for(*, text: str | None = None, record_id: Any = None) -> PointId:
    """The Qdrant point id `SimilarityIndex` gives a record.

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
    if text is None or not text.strip():
        raise ValueError(f"cannot derive a point id from an empty text ({text!r})")
    return str(uuid.uuid5(_ID_NAMESPACE, "text:" + text))


class SimilarityIndex:
    """A Qdrant collection of embedded records, searchable by text or by record.

    The collection is created with the encoder's dimension if it does not exist; an existing
    collection is reused (that is how an on-disk index is reopened), after checking that its
    vector size and distance match.

    Args:
        encoder: The trained model (anything satisfying `SupportsEncode`).
        collection: Qdrant collection name.
        path: Local (embedded) mode: a folder to persist the index in, or ``":memory:"``.
            The default when none of ``path``/``url``/``client`` is given is ``":memory:"``.
            Only one client can open a folder at a time; `close` releases it.
        url: Server mode: URL of a Qdrant server or cluster, e.g. ``"http://localhost:6333"``.
        api_key: API key for ``url`` (Qdrant Cloud).
        label_field: Record field holding the label; stored in the payload under this name
            and used by ``filter_label``.
        id_field: Record field holding a unique record id. Ints are used as point ids, strings
            are mapped to UUID5s. When ``None``, the id is a UUID5 of the record's rendered
            text, so records with the same text share one point.
        distance: ``"cosine"`` (default), ``"dot"``, ``"euclid"`` or ``"manhattan"``.
        client: A ready ``qdrant_client.QdrantClient`` to use instead of ``path``/``url``; it
            is not closed by `close` (the caller owns it).
        create: Create the collection when it is missing; with ``False`` a missing
            collection is an error (see `from_path`).

    Raises:
        ImportError: If ``qdrant-client`` is not installed.
        TypeError: If ``encoder`` lacks ``encode``/``dim``/``template`` or an argument has the
            wrong type.
        ValueError: If arguments conflict, or the existing collection has another vector size
            or distance.
        RuntimeError: If the folder is already open in another client.

    Example:
        >>> index = SimilarityIndex(model, path="news_index")  # doctest: +SKIP
        >>> index.add(records)  # doctest: +SKIP
        10
        >>> index.search("Team wins the cup", k=1)[0].label  # doctest: +SKIP
        'Sports'
    """

    def __init__(
        self,
        encoder: SupportsEncode,
        *,
        collection: str = "refinery",
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        api_key: str | None = None,
        label_field: str = "label",
        id_field: str | None = None,
        distance: str = "cosine",
        client: QdrantClient | None = None,
        create: bool = True,
    ) -> None:
        _check_encoder(encoder)
        _check_name("collection", collection)
        _check_name("label_field", label_field)
        if id_field is not None:
            _check_name("id_field", id_field)
        if not isinstance(distance, str) or distance.lower() not in _DISTANCES:
            raise ValueError(f"distance must be one of {sorted(_DISTANCES)}, got {distance!r}")
        given = [
            name for name, value in (("path", path), ("url", url), ("client", client)) if value is not None
        ]
        if len(given) > 1:
            raise ValueError(f"pass only one of path=, url= or client=, got {' and '.join(given)}")
        if api_key is not None and url is None:
            raise ValueError("api_key= is only used with url= (a Qdrant server)")

        qdrant_client = _import_qdrant()
        self.encoder = encoder
        self.collection = collection
        self.label_field = label_field
        self.id_field = id_field
        self.distance = distance.lower()
        self._closed = False
        self._size_warned = False
        self._owns_client = client is None
        if client is not None:
            self.location = "client"
            self._client = client
        elif url is not None:
            self.location = url
            self._client = qdrant_client.QdrantClient(url=url, api_key=api_key)
        else:
            location = ":memory:" if path is None else os.fspath(path)
            self.location = location
            self._client = _open_local(qdrant_client, location)
        try:
            self.is_local = _is_local(self._client)
            self._prepare_collection(create)
            if self.is_local:
                self._warn_if_large(self.count())
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_path(
        cls,
        encoder: SupportsEncode,
        path: str | os.PathLike[str],
        *,
        collection: str = "refinery",
        **kwargs: Any,
    ) -> SimilarityIndex:
        """Reopen an index persisted to ``path`` (local mode).

        Unlike the constructor, this never creates anything: the folder and the collection
        must exist.

        Args:
            encoder: The model the index was built with.
            path: The index folder.
            collection: Collection name.
            **kwargs: Other constructor arguments (``label_field``, ``id_field``, ...).

        Returns:
            The reopened index.

        Raises:
            FileNotFoundError: If ``path`` is not a Qdrant index folder.
            ValueError: If the folder holds no such collection.
        """
        folder = Path(path)
        if not (folder / "meta.json").is_file():
            raise FileNotFoundError(
                f"{folder} is not a similarity index folder (no meta.json); "
                "build one with SimilarityIndex(encoder, path=...) and add()"
            )
        return cls(encoder, path=folder, collection=collection, create=False, **kwargs)

    # ------------------------------------------------------------------ collection

    def _prepare_collection(self, create: bool) -> None:
        from qdrant_client.http import models as qm

        dim = int(self.encoder.dim)
        distance = getattr(qm.Distance, _DISTANCES[self.distance])
        if self._client.collection_exists(self.collection):
            info = self._client.get_collection(self.collection)
            vectors = info.config.params.vectors
            if not isinstance(vectors, qm.VectorParams):
                raise ValueError(
                    f"collection {self.collection!r} at {self.location} uses named vectors "
                    f"({sorted(vectors or {})}); SimilarityIndex needs a collection with one unnamed vector"
                )
            if vectors.size != dim:
                raise ValueError(
                    f"collection {self.collection!r} at {self.location} holds {vectors.size}-dimensional "
                    f"vectors, but the encoder makes {dim}-dimensional ones; open it with the model it was "
                    "built with, or use another collection name or path"
                )
            if vectors.distance != distance:
                raise ValueError(
                    f"collection {self.collection!r} at {self.location} uses distance "
                    f"{str(vectors.distance.value).lower()!r}, not {self.distance!r}; pass "
                    f"distance={str(vectors.distance.value).lower()!r} or use another collection name"
                )
            self._check_metadata(getattr(info.config, "metadata", None))
            return
        if not create:
            raise ValueError(
                f"no collection {self.collection!r} at {self.location}; existing collections: "
                f"{sorted(c.name for c in self._client.get_collections().collections)}"
            )
        vectors_config = qm.VectorParams(size=dim, distance=distance)
        metadata = {_METADATA_KEY: self._metadata()}
        try:
            self._client.create_collection(self.collection, vectors_config=vectors_config, metadata=metadata)
        except Exception:
            # Servers older than 1.16 do not know collection metadata: create without it.
            if self._client.collection_exists(self.collection):
                raise
            self._client.create_collection(self.collection, vectors_config=vectors_config)
        if not self.is_local:
            try:
                self._client.create_payload_index(
                    self.collection, self.label_field, field_schema=qm.PayloadSchemaType.KEYWORD
                )
            except Exception as err:  # an index only speeds filters up; search works without it
                warnings.warn(
                    f"could not create a payload index on {self.label_field!r}: {err}", stacklevel=3
                )

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": 1,
            "dim": int(self.encoder.dim),
            "template": self.encoder.template.to_config(),
            "label_field": self.label_field,
            "id_field": self.id_field,
        }

    def _check_metadata(self, metadata: Mapping[str, Any] | None) -> None:
        stored = (metadata or {}).get(_METADATA_KEY)
        if not isinstance(stored, Mapping):
            return
        current = self._metadata()
        notes = {
            "template": "records will be embedded from another text, and text-derived ids will differ",
            "id_field": "re-added records will get other point ids and be duplicated",
            "label_field": "filter_label looks at another payload field",
        }
        for key, consequence in notes.items():
            old, new = stored.get(key), current[key]
            if key == "template" and (old is None or new is None):
                continue
            if old != new:
                warnings.warn(
                    f"collection {self.collection!r} at {self.location} was built with {key}={old!r}, "
                    f"now {key}={new!r}: {consequence}",
                    UserWarning,
                    stacklevel=4,
                )

    # ------------------------------------------------------------------ writing

    def add(
        self,
        records: Iterable[Mapping[str, Any]] | pd.DataFrame,
        *,
        batch_size: int = 256,
        progress: bool = True,
    ) -> int:
        """Embed ``records`` and upsert them into the collection.

        Each record becomes one point: its vector is the encoding of the record's text
        (rendered with ``encoder.template``), its payload the record's fields made JSON-safe
        (NaN/NaT → ``None``, numpy scalars → Python numbers, dates → ISO strings) with the label
        under ``label_field``. Point ids are deterministic (see `point_id_for`), so adding
        the same records again replaces their points instead of duplicating them. Records in
        one call that share an id are merged (the last one wins, with a warning).

        Args:
            records: Records as mappings, or a DataFrame (one record per row).
            batch_size: Records embedded and uploaded per request.
            progress: Show a progress bar.

        Returns:
            The number of points written (distinct ids).

        Raises:
            TypeError: If ``records`` is not a DataFrame or an iterable of mappings.
            ValueError: If a record renders to an empty text, lacks its ``id_field`` value, or
                the template names fields no record has; the message names the record.
            RuntimeError: If the index is closed.
        """
        self._require_open()
        _check_positive_int("batch_size", batch_size)
        rows = _as_records(records)
        if not rows:
            return 0
        template = self.encoder.template
        if template.fields is not None:
            columns = records.columns if isinstance(records, pd.DataFrame) else _union_keys(rows)
            template.validate(columns, source="the records")

        points: dict[PointId, tuple[str, dict[str, Any]]] = {}
        duplicates = 0
        for i, row in enumerate(rows):
            text = template(row)
            if _is_blank(template, text):
                raise ValueError(
                    f"record {i} renders to an empty text with template {template.spec!r}: {_short(row)}; "
                    "drop records without text before adding them"
                )
            pid = point_id_for(text=text, record_id=self._record_id(row, i))
            if pid in points:
                duplicates += 1
                del points[pid]  # re-insert so the last occurrence keeps its position
            points[pid] = (text, self._payload(row))
        if duplicates:
            what = f"the same {self.id_field!r}" if self.id_field else "the same text"
            warnings.warn(
                f"{duplicates} record(s) have {what} as an earlier record in this call and replace it; "
                f"{len(points)} distinct point(s) are written"
                + ("" if self.id_field else " (pass id_field= to keep records with equal texts apart)"),
                UserWarning,
                stacklevel=2,
            )

        from qdrant_client.http import models as qm

        items = list(points.items())
        with tqdm(total=len(items), desc="Indexing", unit="rec", disable=not progress) as bar:
            for batch in _chunks(items, batch_size):
                ids = [pid for pid, _ in batch]
                texts = [text for _, (text, _) in batch]
                vectors = self._encode(texts, batch_size=batch_size)
                self._client.upsert(
                    self.collection,
                    points=qm.Batch(
                        ids=ids, vectors=vectors.tolist(), payloads=[payload for _, (_, payload) in batch]
                    ),
                    wait=True,
                )
                bar.update(len(batch))
        if self.is_local:
            self._warn_if_large(self.count())
        return len(items)

    def _record_id(self, row: Mapping[str, Any], i: int) -> Any:
        if self.id_field is None:
            return None
        value = row.get(self.id_field)
        if _is_missing(value):
            raise ValueError(
                f"record {i} has no {self.id_field!r} (id_field) value: {_short(row)}; "
                "every record needs an id when id_field is set"
            )
        try:
            _id_from_value(value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"record {i}: {err}") from None
        return value

    def _payload(self, row: Mapping[str, Any]) -> dict[str, Any]:
        payload = {str(key): _json_safe(value) for key, value in row.items()}
        label = row.get(self.label_field)
        payload[self.label_field] = None if _is_missing(label) else str(_json_safe(label))
        return payload

    # ------------------------------------------------------------------ reading

    def search(
        self,
        query: str | Mapping[str, Any],
        k: int = 10,
        filter_label: str | Sequence[str] | None = None,
        *,
        score_threshold: float | None = None,
    ) -> list[SearchHit]:
        """The ``k`` records most similar to ``query``.

        Args:
            query: A text, or a record rendered with ``encoder.template``.
            k: Number of hits wanted (fewer come back if the index holds fewer).
            filter_label: Only return records with this label, or with one of these labels.
            score_threshold: Drop hits scoring worse than this.

        Returns:
            Hits, best first.

        Raises:
            ValueError: If the query is empty, ``k < 1``, or a filter label is empty or unknown
                (neither in the model's label map nor in the index).
            RuntimeError: If the index is closed.
        """
        self._require_open()
        _check_positive_int("k", k)
        text = self._query_text(query)
        query_filter = self._label_filter(filter_label)
        vector = self._encode([text])[0]
        response = self._client.query_points(
            self.collection,
            query=vector.tolist(),
            query_filter=query_filter,
            limit=int(k),
            with_payload=True,
            score_threshold=score_threshold,
        )
        return [self._hit(point) for point in response.points]

    def search_many(
        self,
        queries: Sequence[str | Mapping[str, Any]],
        k: int = 10,
        filter_label: str | Sequence[str] | None = None,
        *,
        score_threshold: float | None = None,
        batch_size: int = 64,
    ) -> list[list[SearchHit]]:
        """Run `search` for many queries, batched (one request per ``batch_size`` queries).

        Args:
            queries: Texts and/or records.
            k: Number of hits wanted per query.
            filter_label: As in `search`, applied to every query.
            score_threshold: As in `search`.
            batch_size: Queries embedded and sent per request.

        Returns:
            One list of hits (best first) per query, in input order.

        Raises:
            TypeError: If ``queries`` is a single string or record instead of a sequence.
            ValueError: As `search`; an empty query is named by its position.
            RuntimeError: If the index is closed.
        """
        self._require_open()
        _check_positive_int("k", k)
        _check_positive_int("batch_size", batch_size)
        if isinstance(queries, str | Mapping):
            raise TypeError("search_many() takes a sequence of queries; use search() for a single query")
        texts = []
        for i, query in enumerate(queries):
            try:
                texts.append(self._query_text(query))
            except (TypeError, ValueError) as err:
                raise type(err)(f"query {i}: {err}") from None
        query_filter = self._label_filter(filter_label)

        from qdrant_client.http import models as qm

        results: list[list[SearchHit]] = []
        for chunk in _chunks(texts, batch_size):
            vectors = self._encode(chunk, batch_size=batch_size)
            requests = [
                qm.QueryRequest(
                    query=vector.tolist(),
                    filter=query_filter,
                    limit=int(k),
                    with_payload=True,
                    score_threshold=score_threshold,
                )
                for vector in vectors
            ]
            responses = self._client.query_batch_points(self.collection, requests=requests)
            results.extend([self._hit(point) for point in response.points] for response in responses)
        return results

    def count(self, filter_label: str | Sequence[str] | None = None) -> int:
        """Number of points in the index, optionally only those with the given label(s).

        Args:
            filter_label: A label or labels to count; all points when ``None``.

        Returns:
            The exact count.
        """
        self._require_open()
        query_filter = self._label_filter(filter_label, check_known=False)
        return int(self._client.count(self.collection, count_filter=query_filter, exact=True).count)

    def __len__(self) -> int:
        return self.count()

    def _query_text(self, query: Any) -> str:
        if isinstance(query, str):
            text = query
        elif isinstance(query, Mapping):
            text = self.encoder.template(query)
        else:
            raise TypeError(f"a query must be a text (str) or a record (mapping), got {type(query).__name__}")
        if not text.strip() if isinstance(query, str) else _is_blank(self.encoder.template, text):
            what = "text" if isinstance(query, str) else f"record {_short(query)} renders to an empty text"
            raise ValueError(f"empty query {what!s}; expected some text to search for")
        return text

    def _label_filter(
        self, filter_label: str | Sequence[str] | None, *, check_known: bool = True
    ) -> qmodels.Filter | None:
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

        from qdrant_client.http import models as qm

        match: qm.MatchValue | qm.MatchAny = (
            qm.MatchValue(value=labels[0]) if len(labels) == 1 else qm.MatchAny(any=labels)
        )
        query_filter = qm.Filter(must=[qm.FieldCondition(key=self.label_field, match=match)])
        if check_known:
            self._check_labels_known(labels)
        return query_filter

    def _check_labels_known(self, labels: list[str]) -> None:
        label_map = getattr(self.encoder, "label_map", None)
        known = list(getattr(label_map, "names", None) or [])
        for label in labels:
            if label in known:
                continue
            if self.count(filter_label=label) == 0:
                raise ValueError(
                    f"unknown label {label!r}: no record in the index has it and the model was trained on "
                    f"{known}"
                )

    def _encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        vectors = np.asarray(
            self.encoder.encode(texts, batch_size=min(batch_size, 64), progress=False), dtype=np.float32
        )
        dim = int(self.encoder.dim)
        if vectors.shape != (len(texts), dim):
            raise ValueError(
                f"encoder returned an array of shape {vectors.shape} for {len(texts)} text(s); "
                f"expected ({len(texts)}, {dim})"
            )
        if not np.isfinite(vectors).all():
            raise ValueError("encoder returned NaN or infinite values; check the model")
        return vectors

    def _hit(self, point: Any) -> SearchHit:
        payload = dict(point.payload or {})
        record_id = point.id
        if self.id_field is not None and payload.get(self.id_field) is not None:
            record_id = payload[self.id_field]
        label = payload.get(self.label_field)
        return SearchHit(
            id=record_id,
            score=float(point.score),
            label=None if label is None else str(label),
            record=payload,
            point_id=point.id,
        )

    def _warn_if_large(self, count: int) -> None:
        if self._size_warned or count <= LOCAL_MODE_MAX_POINTS:
            return
        self._size_warned = True
        warnings.warn(
            f"the local (embedded) index {self.location} holds {count:,} points, more than local mode is "
            f"meant for (~{LOCAL_MODE_MAX_POINTS:,}); for speed and scale, run a Qdrant server or use "
            "Qdrant Cloud and pass SimilarityIndex(..., url=..., api_key=...)",
            UserWarning,
            stacklevel=3,
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the index and release its folder lock (local mode). Safe to call twice.

        A client passed as ``client=`` is left open: its owner closes it.
        """
        if self._closed:
            return
        self._closed = True
        client = getattr(self, "_client", None)
        if client is not None and self._owns_client:
            client.close()

    def __enter__(self) -> SimilarityIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"SimilarityIndex(collection={self.collection!r}, location={self.location!r}, {state})"

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the index {self.location} is closed; open it again to use it")


# ---------------------------------------------------------------------- helpers


def _import_qdrant() -> Any:
    try:
        import qdrant_client
    except ImportError as err:
        raise ImportError(
            f"SimilarityIndex needs qdrant-client, which is not installed; install it with: {_INSTALL_HINT}"
        ) from err
    return qdrant_client


def _open_local(qdrant_client: Any, location: str) -> QdrantClient:
    try:
        if location == ":memory:":
            return qdrant_client.QdrantClient(location=":memory:")
        if Path(location).exists() and not Path(location).is_dir():
            raise ValueError(f"path {location!r} is a file; expected a folder for the index (or ':memory:')")
        return qdrant_client.QdrantClient(path=location)
    except RuntimeError as err:
        if "already accessed" not in str(err):
            raise
        raise RuntimeError(
            f"the index folder {location} is already open in another client (local mode allows one client "
            "per folder, even within one process); close() the other SimilarityIndex first, or use a "
            "Qdrant server (url=) for concurrent access"
        ) from err


def _is_local(client: Any) -> bool:
    try:
        from qdrant_client.local.qdrant_local import QdrantLocal
    except ImportError:  # pragma: no cover - layout of another qdrant-client version
        return False
    return isinstance(getattr(client, "_client", None), QdrantLocal)


def _check_encoder(encoder: Any) -> None:
    missing = [name for name in ("encode", "dim", "template") if not hasattr(encoder, name)]
    if missing:
        raise TypeError(
            f"encoder must have encode(), dim and template (see SupportsEncode); "
            f"{type(encoder).__name__} lacks {', '.join(missing)}"
        )
    if not callable(encoder.encode):
        raise TypeError(f"encoder.encode must be callable, got {type(encoder.encode).__name__}")
    dim = encoder.dim
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise TypeError(f"encoder.dim must be a positive int, got {dim!r}")
    if not isinstance(encoder.template, TextTemplate):
        raise TypeError(f"encoder.template must be a TextTemplate, got {type(encoder.template).__name__}")


def _check_name(what: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")


def _check_positive_int(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what} must be a positive integer (>= 1), got {value!r}")


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


def _is_blank(template: TextTemplate, text: str) -> bool:
    """Whether ``text`` holds nothing but the template's own literal text (all fields empty)."""
    if not text.strip():
        return True
    if template.fields is None:
        return False
    return text.strip() == template({}).strip()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if isinstance(value, str):
        return value == ""
    return False


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


def _json_safe(value: Any) -> Any:
    """``value`` as a JSON-serialisable Python object (missing values become ``None``)."""
    if value is None or isinstance(value, bool | str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return _json_safe(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return _json_safe(float(value))
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta | pd.Timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return _json_safe(value.value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | list | tuple | set | frozenset | pd.Series):
        return [_json_safe(v) for v in value]
    return str(value)


def _short(row: Mapping[str, Any], limit: int = 120) -> str:
    text = repr(dict(row))
    return text if len(text) <= limit else text[: limit - 3] + "..."
