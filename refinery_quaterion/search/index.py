"""`SimilarityIndex`: records embedded by a model in a Qdrant collection, searchable by text or record."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from refinery_quaterion.search._client import (
    check_options,
    check_positive_int,
    connect,
    encode_checked,
    query_batches,
    upsert,
    warn_local_mode_size,
)
from refinery_quaterion.search.collection import (
    LOCAL_MODE_MAX_POINTS,
    METADATA_FORMAT,
    IfStale,
    StaleIndexError,
    check_vectors,
    create_collection,
    import_qdrant,
    is_local,
    model_staleness,
    require_index_folder,
    short_fingerprint,
    stored_metadata,
    warn_missing_metadata,
    warn_on_changed_settings,
    write_metadata,
)
from refinery_quaterion.search.points import Points, data_fingerprint, records_to_points
from refinery_quaterion.search.protocol import SupportsEncode, check_encoder, model_fingerprint
from refinery_quaterion.search.queries import (
    SearchHit,
    check_labels_known,
    filter_labels,
    label_filter,
    query_text,
    query_texts,
    to_hit,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as qmodels

__all__ = ["LOCAL_MODE_MAX_POINTS", "IfStale", "SimilarityIndex"]

class SimilarityIndex:
    """A Qdrant collection of embedded records, searchable by text or by record.

    The collection is created with the encoder's dimension if it does not exist; an existing
    collection is reused (that is how an on-disk index is reopened), after checking that its
    vector size and distance match and that it was built with the same model: the collection
    stores the model's fingerprint (`refinery_quaterion.search.protocol.model_fingerprint`),
    and a different one means its vectors are stale (see ``if_stale``). To make the index hold
    exactly some records, re-embedding only when they or the model changed, use `build`.

    Args:
        encoder: The trained model (anything satisfying `SupportsEncode`).
        collection: Qdrant collection name.
        path: Local (embedded) mode: a folder to persist the index in, or ``":memory:"``.
            The default when none of ``path``/``url``/``client`` is given is ``":memory:"``.
            Only one client can open a folder at a time; `close` releases it. An existing
            folder must be empty or an index folder.
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
        if_stale: When the existing collection was built with another model (another
            fingerprint, or none stored): ``"error"`` (default) raises `StaleIndexError`
            naming both fingerprints; ``"rebuild"`` empties the collection (records must be
            added again, e.g. with `build`) and sets `rebuilt` to the reason.

    Attributes:
        model_fingerprint: The fingerprint of ``encoder`` (``None`` when it cannot be told;
            then the model is not checked).
        rebuilt: Why the collection was emptied on opening (``if_stale="rebuild"``), else ``None``.

    Raises:
        ImportError: If ``qdrant-client`` is not installed.
        TypeError: If ``encoder`` lacks ``encode``/``dim``/``template`` or an argument has the
            wrong type.
        ValueError: If arguments conflict, ``path`` is a folder holding other files than an
            index, or the existing collection has another vector size or distance.
        StaleIndexError: If the collection was built with another model and ``if_stale`` is
            ``"error"``.
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
        if_stale: IfStale = "error",
    ) -> None:
        check_encoder(encoder)
        check_options(collection=collection, label_field=label_field, id_field=id_field, distance=distance,
                      if_stale=if_stale, path=path, url=url, api_key=api_key, client=client)
        qdrant_client = import_qdrant()
        self.encoder = encoder
        self.collection = collection
        self.label_field = label_field
        self.id_field = id_field
        self.distance = distance.lower()
        self.if_stale: IfStale = if_stale
        self.rebuilt: str | None = None
        self._stored: dict[str, Any] | None = None  # this package's collection metadata, if kept
        self._closed = False
        self._size_warned = False
        self._owns_client = client is None
        self.location, self._client = connect(qdrant_client, path=path, url=url, api_key=api_key, client=client)
        try:
            self.model_fingerprint = model_fingerprint(encoder)
            self.is_local = is_local(self._client)
            self._prepare_collection(create)
            if self.is_local:
                self._warn_if_large(self.count())
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_path(cls, encoder: SupportsEncode, path: str | os.PathLike[str], *, collection: str = "refinery",
                  data: Iterable[Mapping[str, Any]] | pd.DataFrame | None = None, if_stale: IfStale = "error",
                  **kwargs: Any) -> SimilarityIndex:
        """Reopen an index persisted to ``path`` (local mode), checking that it is up to date.

        Unlike the constructor, this never creates a missing index: the folder and the
        collection must exist. The index must have been built with ``encoder`` (same model
        fingerprint) and, when ``data`` is given, from exactly these records (same data
        fingerprint, see `build`); otherwise ``if_stale`` decides.

        Args:
            encoder: The model the index was built with.
            path: The index folder.
            collection: Collection name.
            data: The records the index should hold (a DataFrame or mappings); ``None`` skips
                the data check.
            if_stale: ``"error"`` raises `StaleIndexError` naming both fingerprints;
                ``"rebuild"`` re-embeds ``data`` (which it then needs).
            **kwargs: Other constructor arguments (``label_field``, ``id_field``, ...).

        Returns:
            The reopened index.

        Raises:
            FileNotFoundError: If ``path`` is not a Qdrant index folder.
            ValueError: If the folder holds no such collection, or ``if_stale="rebuild"``
                comes without ``data``.
            StaleIndexError: If the index is stale and ``if_stale`` is ``"error"``.
        """
        folder = require_index_folder(Path(path))
        if if_stale == "rebuild" and data is None:
            raise ValueError("from_path(if_stale='rebuild') needs data=, the records to rebuild the index from")
        index = cls(encoder, path=folder, collection=collection, create=False, if_stale=if_stale, **kwargs)
        if data is None:
            return index
        try:
            index._sync(data, if_stale=if_stale, batch_size=256, progress=False)
        except BaseException:
            index.close()
            raise
        return index


    def _settings(self) -> dict[str, Any]:
        return {
            "format": METADATA_FORMAT,
            "dim": int(self.encoder.dim),
            "template": self.encoder.template.to_config(),
            "label_field": self.label_field,
            "id_field": self.id_field,
        }

    def _metadata(self, data: str | None) -> dict[str, Any]:
        return {**self._settings(), "model_fingerprint": self.model_fingerprint, "data_fingerprint": data}

    def _prepare_collection(self, create: bool) -> None:
        if self._client.collection_exists(self.collection):
            info = self._client.get_collection(self.collection)
            check_vectors(info, self.collection, self.location, int(self.encoder.dim), self.distance)
            stored = stored_metadata(info)
            if stored is None:
                warn_missing_metadata(self.collection, self.location)
                return
            warn_on_changed_settings(stored, self._settings(), self.collection, self.location)
            self._stored = stored
            reason = model_staleness(
                stored, self.model_fingerprint, f"collection {self.collection!r} at {self.location}"
            )
            if reason is None:
                return
            if self.if_stale == "error":
                raise StaleIndexError(f"{reason}; pass if_stale='rebuild' to rebuild it (CLI: --rebuild), or use "
                                      "another path or collection")
            self._recreate()
            self.rebuilt = reason
            return
        if not create:
            existing = sorted(c.name for c in self._client.get_collections().collections)
            raise ValueError(f"no collection {self.collection!r} at {self.location}; existing collections: {existing}")
        self._create()

    def _create(self) -> None:
        create_collection(
            self._client, self.collection, dim=int(self.encoder.dim), distance=self.distance,
            metadata=self._metadata(None), local=self.is_local, label_field=self.label_field,
        )
        self._stored = stored_metadata(self._client.get_collection(self.collection))

    def _recreate(self) -> None:
        self._client.delete_collection(self.collection)
        self._create()

    @property
    def data_fingerprint(self) -> str | None:
        """Fingerprint of the records the index was built from by `build`; ``None`` after `add`."""
        return None if self._stored is None else self._stored.get("data_fingerprint")

    def _set_data_fingerprint(self, value: str | None) -> None:
        if self._stored is None:
            return  # the server keeps no collection metadata
        if self._stored.get("data_fingerprint") == value and self._stored.get("format") == METADATA_FORMAT:
            return
        metadata = {**self._stored, **self._metadata(value)}
        write_metadata(self._client, self.collection, metadata)
        self._stored = metadata

    def _holds(self, fingerprint: str, n_points: int) -> bool:
        """Whether the index holds exactly the points of ``fingerprint`` (built by `build`)."""
        return self.data_fingerprint == fingerprint and self.count() == n_points


    def build(self, records: Iterable[Mapping[str, Any]] | pd.DataFrame, *, batch_size: int = 256,
               progress: bool = True) -> int:
        """Make the index hold exactly ``records``, embedding them only when needed.

        The records' data fingerprint (ids, texts and payloads, see `add`) is stored with the
        collection. When the index already holds these records, embedded by this model, nothing
        is done; otherwise the collection is emptied and the records are embedded and written.
        An interrupted build is redone by the next one.

        Args:
            records: Records as mappings, or a DataFrame (one record per row).
            batch_size: Records embedded and uploaded per request.
            progress: Show progress: a bar in a terminal, else one line when done.

        Returns:
            The number of points written: 0 when the index was up to date.

        Raises:
            TypeError: As `add`.
            ValueError: As `add`.
            RuntimeError: If the index is closed.
        """
        self._require_open()
        check_positive_int("batch_size", batch_size)
        return self._sync(records, if_stale="rebuild", batch_size=batch_size, progress=progress)

    def _sync(self, records: Any, *, if_stale: IfStale, batch_size: int, progress: bool) -> int:
        points = self._points(records)
        fingerprint = data_fingerprint(points)
        if self._holds(fingerprint, len(points)):
            return 0
        count = self.count()
        if count and if_stale == "error":
            raise StaleIndexError(
                f"the index at {self.location} (collection {self.collection!r}) was built from other records "
                f"than data: stored data fingerprint {short_fingerprint(self.data_fingerprint)} ({count} points), "
                f"data's {short_fingerprint(fingerprint)} ({len(points)} points); pass if_stale='rebuild' to "
                "rebuild it from data"
            )
        self._rebuild(points, fingerprint, batch_size=batch_size, progress=progress)
        return len(points)

    def _rebuild(self, points: Points, fingerprint: str, *, batch_size: int, progress: bool) -> None:
        self._recreate()  # stored data fingerprint: None until every point is written
        self._upsert(points, batch_size=batch_size, progress=progress)
        self._set_data_fingerprint(fingerprint)
        if self.is_local:
            self._warn_if_large(self.count())

    def add(self, records: Iterable[Mapping[str, Any]] | pd.DataFrame, *, batch_size: int = 256,
             progress: bool = True) -> int:
        """Embed ``records`` and upsert them into the collection.

        Each record becomes one point: its vector is the encoding of the record's text
        (rendered with ``encoder.template``), its payload the record's fields made JSON-safe
        (NaN/NaT → ``None``, numpy scalars → Python numbers, dates → ISO strings) with the label
        under ``label_field``. Point ids are deterministic (see `point_id_for`), so adding
        the same records again replaces their points instead of duplicating them. Records in
        one call that share an id are merged (the last one wins, with a warning). The index no
        longer counts as built from a known set of records (`data_fingerprint` becomes ``None``).

        Args:
            records: Records as mappings, or a DataFrame (one record per row).
            batch_size: Records embedded and uploaded per request.
            progress: Show progress: a bar in a terminal, else one line when done.

        Returns:
            The number of points written (distinct ids).

        Raises:
            TypeError: If ``records`` is not a DataFrame or an iterable of mappings.
            ValueError: If a record renders to an empty text, lacks its ``id_field`` value, or
                the template names fields no record has; the message names the record.
            RuntimeError: If the index is closed.
        """
        self._require_open()
        check_positive_int("batch_size", batch_size)
        points = self._points(records)
        if not points:
            return 0
        self._set_data_fingerprint(None)
        self._upsert(points, batch_size=batch_size, progress=progress)
        if self.is_local:
            self._warn_if_large(self.count())
        return len(points)

    def _points(self, records: Any) -> Points:
        points, duplicates = records_to_points(
            records, self.encoder.template, label_field=self.label_field, id_field=self.id_field
        )
        if duplicates:
            what = f"the same {self.id_field!r}" if self.id_field else "the same text"
            warnings.warn(
                f"{duplicates} record(s) have {what} as an earlier record in this call and replace it; "
                f"{len(points)} distinct point(s) are written"
                + ("" if self.id_field else " (pass id_field= to keep records with equal texts apart)"),
                UserWarning,
                stacklevel=3,
            )
        return points

    def _upsert(self, points: Points, *, batch_size: int, progress: bool) -> None:
        upsert(self._client, self.collection, points, self.encoder, batch_size=batch_size, progress=progress)


    def search(self, query: str | Mapping[str, Any], k: int = 10, filter_label: str | Sequence[str] | None = None,
               *, score_threshold: float | None = None) -> list[SearchHit]:
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
        check_positive_int("k", k)
        text = query_text(query, self.encoder.template)
        query_filter = self._label_filter(filter_label)
        vector = encode_checked(self.encoder, [text])[0]
        response = self._client.query_points(
            self.collection,
            query=vector.tolist(),
            query_filter=query_filter,
            limit=int(k),
            with_payload=True,
            score_threshold=score_threshold,
        )
        return [self._hit(point) for point in response.points]

    def search_many(self, queries: Sequence[str | Mapping[str, Any]], k: int = 10,
                    filter_label: str | Sequence[str] | None = None, *, score_threshold: float | None = None,
                    batch_size: int = 64) -> list[list[SearchHit]]:
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
        check_positive_int("k", k)
        check_positive_int("batch_size", batch_size)
        if isinstance(queries, str | Mapping):
            raise TypeError("search_many() takes a sequence of queries; use search() for a single query")
        texts = query_texts(queries, self.encoder.template)
        query_filter = self._label_filter(filter_label)
        found = query_batches(self._client, self.collection, self.encoder, texts, k=k, query_filter=query_filter,
                              score_threshold=score_threshold, batch_size=batch_size)
        return [[self._hit(point) for point in points] for points in found]

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

    def _label_filter(
        self, filter_label: str | Sequence[str] | None, *, check_known: bool = True
    ) -> qmodels.Filter | None:
        labels = filter_labels(filter_label)
        if labels is not None and check_known:
            known = list(getattr(getattr(self.encoder, "label_map", None), "names", None) or [])
            check_labels_known(labels, known, lambda label: self.count(filter_label=label))
        return None if labels is None else label_filter(labels, self.label_field)

    def _hit(self, point: Any) -> SearchHit:
        return to_hit(point, id_field=self.id_field, label_field=self.label_field)

    def _warn_if_large(self, count: int) -> None:
        if not self._size_warned and count > LOCAL_MODE_MAX_POINTS:
            self._size_warned = True
            warn_local_mode_size(self.location, count, LOCAL_MODE_MAX_POINTS)

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
