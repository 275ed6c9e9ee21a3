"""`SimilarityIndex`: records embedded by a model in a Qdrant collection, searchable by text or record."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

import refinery_quaterion.search.edge as _edge  # registers the "edge" back end
import refinery_quaterion.search.server as _server  # registers the "qdrant-client" back end
from refinery_quaterion._bars import stage_bar
from refinery_quaterion.search._checks import (
    check_options,
    check_positive_int,
    chunks,
    encode_checked,
    refuse_index_over_inputs,
)
from refinery_quaterion.search.collection import (
    METADATA_FORMAT,
    IfStale,
    StaleIndexError,
    open_collection,
    short_fingerprint,
)
from refinery_quaterion.search.config import IndexConfig
from refinery_quaterion.search.loading import BulkLoading
from refinery_quaterion.search.points import Points, data_fingerprint, points_of
from refinery_quaterion.search.protocol import SupportsEncode, check_encoder, model_fingerprint
from refinery_quaterion.search.queries import (
    SearchHit,
    check_labels_known,
    filter_labels,
    query_text,
    query_texts,
    to_hit,
)
from refinery_quaterion.search.store import INDEX_BACKENDS, IndexStore, StoreTarget, backend_for

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = ["IfStale", "SimilarityIndex"]

_REGISTERED = (_edge, _server)

class SimilarityIndex(BulkLoading):
    """A Qdrant collection of embedded records, searchable by text or by record.

    Without ``url``/``client`` the index runs on Qdrant's own engine embedded in this process
    (the ``"edge"`` back end, see `refinery_quaterion.search.edge`): in memory, or persisted in
    the folder ``path``. With ``url`` (or a ready ``client``) it lives on a Qdrant server,
    cluster or Qdrant Cloud (the ``"qdrant-client"`` back end). Both behave alike.

    The collection is created with the encoder's dimension if it does not exist; an existing
    collection is reused (that is how a persisted index is reopened), after checking that its
    vector size and distance match and that it was built with the same model: the collection
    stores the model's fingerprint (`refinery_quaterion.search.protocol.model_fingerprint`),
    and a different one means its vectors are stale (see ``if_stale``). To make the index hold
    exactly some records, re-embedding only when they or the model changed, use `build`.

    Args:
        encoder: The trained model (anything satisfying `SupportsEncode`).
        path: The folder to persist the embedded index in; ``None`` (or ``":memory:"``) keeps
            it in memory (a temporary folder removed by `close`). Only one `SimilarityIndex`
            (in any process) can open a folder at a time; `close` releases it. An existing
            folder must be empty or an index folder.
        url: URL of a Qdrant server or cluster, e.g. ``"http://localhost:6333"``; checked once
            when opening.
        api_key: API key for ``url`` (Qdrant Cloud).
        client: A ready ``qdrant_client.QdrantClient`` to use instead of ``path``/``url``; it
            is not closed by `close` (the caller owns it).
        config: The index settings (`IndexConfig`: collection, label and id fields, HNSW,
            search, quantization, upload); the defaults when ``None``.
        distance: ``"cosine"`` (default), ``"dot"``, ``"euclid"`` or ``"manhattan"``.
        create: Create the collection when it is missing; with ``False`` a missing
            collection is an error (see `from_path`).
        if_stale: When the existing collection was built with another model (another
            fingerprint, or none stored): ``"error"`` (default) raises `StaleIndexError`
            naming both fingerprints; ``"rebuild"`` empties the collection (records must be
            added again, e.g. with `build`) and sets `rebuilt` to the reason.

    Attributes:
        config: The index settings.
        backend: The index back end's name: ``"edge"`` or ``"qdrant-client"``.
        location: Where the index lives: its folder, ``":memory:"``, the URL or ``"client"``.
        model_fingerprint: The fingerprint of ``encoder`` (``None`` when it cannot be told;
            then the model is not checked).
        rebuilt: Why the collection was emptied on opening (``if_stale="rebuild"``), else ``None``.

    Raises:
        ImportError: If ``qdrant-edge-py`` (embedded) or ``qdrant-client`` (``url``/``client``)
            is not installed.
        TypeError: If ``encoder`` lacks ``encode``/``dim``/``template`` or an argument has the
            wrong type.
        ValueError: If arguments conflict, ``path`` is a folder holding other files than an
            index or an index of the old engine, or the existing collection has another vector
            size or distance.
        SettingError: If ``path`` is, contains or lies inside the model's folder (``encoder.path``).
        StaleIndexError: If the collection was built with another model and ``if_stale`` is
            ``"error"``.
        RuntimeError: If the folder is open in another process or `SimilarityIndex`.
        ConnectionError: If the server at ``url`` cannot be reached.

    Example:
        >>> index = SimilarityIndex(model, "news_index", config=IndexConfig(id_field="id"))  # doctest: +SKIP
        >>> index.add(records)  # doctest: +SKIP
        10
        >>> index.search("Team wins the cup", k=1)[0].label  # doctest: +SKIP
        'Sports'
    """

    def __init__(
        self,
        encoder: SupportsEncode,
        path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        client: QdrantClient | None = None,
        config: IndexConfig | None = None,
        distance: str = "cosine",
        create: bool = True,
        if_stale: IfStale = "error",
    ) -> None:
        check_encoder(encoder)
        config = IndexConfig() if config is None else config
        check_options(config=config, distance=distance, if_stale=if_stale, path=path, url=url, api_key=api_key,
                      client=client)
        refuse_index_over_inputs(path, {"the model folder": getattr(encoder, "path", None)})
        self.encoder = encoder
        self.config = config
        self.distance = distance.lower()
        self.if_stale: IfStale = if_stale
        self.rebuilt: str | None = None
        self._stored: dict[str, Any] | None = None  # this package's collection metadata, if kept
        self._closed = False
        self._bulk_depth = 0
        target = StoreTarget(path=None if path == ":memory:" else path, url=url, api_key=api_key, client=client)
        self.backend = backend_for(target)
        self._store: IndexStore = INDEX_BACKENDS.lookup(self.backend).open(
            target, config, dim=int(encoder.dim), distance=self.distance)
        self.location = self._store.location
        try:
            self.model_fingerprint = model_fingerprint(encoder)
            self._prepare_collection(create)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_path(cls, encoder: SupportsEncode, path: str | os.PathLike[str], *,
                  data: Iterable[Mapping[str, Any]] | pd.DataFrame | None = None, if_stale: IfStale = "error",
                  config: IndexConfig | None = None, **kwargs: Any) -> SimilarityIndex:
        """Reopen an embedded index persisted to ``path``, checking that it is up to date.

        Unlike the constructor, this never creates a missing index: the folder and the
        collection (``config.collection``) must exist. The index must have been built with
        ``encoder`` (same model fingerprint) and, when ``data`` is given, from exactly these
        records (same data fingerprint, see `build`); otherwise ``if_stale`` decides.

        Args:
            encoder: The model the index was built with.
            path: The index folder.
            data: The records the index should hold (a DataFrame or mappings); ``None`` skips
                the data check.
            if_stale: ``"error"`` raises `StaleIndexError` naming both fingerprints;
                ``"rebuild"`` re-embeds ``data`` (which it then needs).
            config: The index settings (collection, fields, search); the defaults when ``None``.
            **kwargs: Other constructor arguments (``distance``).

        Returns:
            The reopened index.

        Raises:
            FileNotFoundError: If ``path`` holds no index.
            ValueError: If the folder was written by the old engine or holds no such collection,
                or ``if_stale="rebuild"`` comes without ``data``.
            StaleIndexError: If the index is stale and ``if_stale`` is ``"error"``.
        """
        folder = _edge.require_edge_folder(Path(path))
        if if_stale == "rebuild" and data is None:
            raise ValueError("from_path(if_stale='rebuild') needs data=, the records to rebuild the index from")
        index = cls(encoder, folder, config=config, create=False, if_stale=if_stale, **kwargs)
        if data is None:
            return index
        try:
            index._sync(data, if_stale=if_stale, batch_size=index.config.batch_size, progress=False)
        except BaseException:
            index.close()
            raise
        return index

    @property
    def collection(self) -> str:
        """The collection name (``config.collection``)."""
        return self.config.collection

    @property
    def label_field(self) -> str:
        """The record field holding the label (``config.label_field``)."""
        return self.config.label_field

    @property
    def id_field(self) -> str | None:
        """The record field holding the record id (``config.id_field``)."""
        return self.config.id_field

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
        self._stored, self.rebuilt = open_collection(
            self._store, settings=self._settings(), fresh=self._metadata(None), collection=self.collection,
            model=self.model_fingerprint, if_stale=self.if_stale, create=create)

    def _recreate(self) -> None:
        self._store.reset(self._metadata(None))
        self._stored = self._store.read_metadata()

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
        self._store.write_metadata(metadata)
        self._stored = metadata

    def _holds(self, fingerprint: str, n_points: int) -> bool:
        """Whether the index holds exactly the points of ``fingerprint`` (built by `build`)."""
        return self.data_fingerprint == fingerprint and self.count() == n_points

    def build(self, records: Iterable[Mapping[str, Any]] | pd.DataFrame, *, batch_size: int | None = None,
              progress: bool = True) -> int:
        """Make the index hold exactly ``records``, embedding them only when needed.

        The records' data fingerprint (ids, texts and payloads, see `add`) is stored with the
        collection. When the index already holds these records, embedded by this model, nothing
        is done; otherwise the collection is emptied and the records are embedded and written
        as one bulk load (`bulk_load`). An interrupted build is redone by the next one.

        Args:
            records: Records as mappings, or a DataFrame (one record per row).
            batch_size: Records embedded and uploaded per request (default: ``config.batch_size``).
            progress: Show progress: a bar in a terminal, else one line when done.

        Returns:
            The number of points written: 0 when the index was up to date.

        Raises:
            TypeError: As `add`.
            ValueError: As `add`.
            RuntimeError: If the index is closed.
        """
        self._require_open()
        batch_size = self.config.batch_size if batch_size is None else batch_size
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
                f"data's {short_fingerprint(fingerprint)} ({len(points)} points)", purpose="to rebuild it from data")
        self._rebuild(points, fingerprint, batch_size=batch_size, progress=progress)
        return len(points)

    def _rebuild(self, points: Points, fingerprint: str, *, batch_size: int, progress: bool) -> None:
        self._recreate()  # stored data fingerprint: None until every point is written
        self._upsert(points, batch_size=batch_size, progress=progress)
        self._set_data_fingerprint(fingerprint)

    def add(self, records: Iterable[Mapping[str, Any]] | pd.DataFrame, *, batch_size: int | None = None,
            progress: bool = True) -> int:
        """Embed ``records`` and upsert them into the collection.

        Each record becomes one point: its vector is the encoding of the record's text
        (rendered with ``encoder.template``), its payload the record's fields made JSON-safe
        (NaN/NaT → ``None``, numpy scalars → Python numbers, dates → ISO strings) with the label
        under ``label_field``. Point ids are deterministic (see `point_id_for`), so adding
        the same records again replaces their points instead of duplicating them. Records in
        one call that share an id are merged (the last one wins, with a warning). The index no
        longer counts as built from a known set of records (`data_fingerprint` becomes ``None``).
        The points are written as one bulk load (`bulk_load`).

        Args:
            records: Records as mappings, or a DataFrame (one record per row).
            batch_size: Records embedded and uploaded per request (default: ``config.batch_size``).
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
        batch_size = self.config.batch_size if batch_size is None else batch_size
        check_positive_int("batch_size", batch_size)
        points = self._points(records)
        if not points:
            return 0
        self._set_data_fingerprint(None)
        self._upsert(points, batch_size=batch_size, progress=progress)
        return len(points)

    def _points(self, records: Any) -> Points:
        return points_of(records, self.encoder.template, label_field=self.label_field, id_field=self.id_field)

    def _upsert(self, points: Points, *, batch_size: int, progress: bool) -> None:
        items = list(points.items())
        with self.bulk_load(), stage_bar(len(items), desc="Indexing", unit="record", enabled=progress,
                                         leave=True) as bar:
            for batch in chunks(items, batch_size):
                vectors = encode_checked(self.encoder, [text for _, (text, _) in batch], batch_size=batch_size)
                self._store.upsert([pid for pid, _ in batch], vectors, [payload for _, (_, payload) in batch])
                bar.update(len(batch))

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
        labels = self._labels(filter_label)
        vectors = encode_checked(self.encoder, [text])
        found = self._store.query_batch(vectors, k=int(k), labels=labels, score_threshold=score_threshold)
        return [self._hit(point) for point in found[0]]

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
        labels = self._labels(filter_label)
        results: list[list[SearchHit]] = []
        for chunk in chunks(texts, batch_size):
            vectors = encode_checked(self.encoder, chunk, batch_size=batch_size)
            found = self._store.query_batch(vectors, k=int(k), labels=labels, score_threshold=score_threshold)
            results.extend([self._hit(point) for point in points] for points in found)
        return results

    def count(self, filter_label: str | Sequence[str] | None = None) -> int:
        """Number of points in the index, optionally only those with the given label(s).

        Args:
            filter_label: A label or labels to count; all points when ``None``.

        Returns:
            The exact count.
        """
        self._require_open()
        return self._store.count(self._labels(filter_label, check_known=False))

    def __len__(self) -> int:
        return self.count()

    def _labels(self, filter_label: str | Sequence[str] | None, *, check_known: bool = True) -> list[str] | None:
        labels = filter_labels(filter_label)
        if labels is not None and check_known:
            known = list(getattr(getattr(self.encoder, "label_map", None), "names", None) or [])
            check_labels_known(labels, known, lambda label: self.count(filter_label=label))
        return labels

    def _hit(self, point: Any) -> SearchHit:
        return to_hit(point, id_field=self.id_field, label_field=self.label_field)

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def close(self) -> None:
        """Flush and close the index, releasing its folder (embedded). Safe to call twice.

        An in-memory index is gone afterwards. A client passed as ``client=`` is left open:
        its owner closes it.
        """
        if self._closed:
            return
        self._closed = True
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()

    def __enter__(self) -> SimilarityIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"SimilarityIndex(collection={self.collection!r}, backend={self.backend!r}, "
                f"location={self.location!r}, {state})")

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the index {self.location} is closed; open it again to use it")
