"""Bulk loading of a `refinery_quaterion.search.index.SimilarityIndex`: precomputed vectors, resuming.

`BulkLoading` is the part of `SimilarityIndex` that loaders embedding records elsewhere (in
batches, in other processes) use: `BulkLoading.add_vectors` writes precomputed vectors,
`BulkLoading.existing_ids` tells which points an interrupted load already wrote, and
`BulkLoading.bulk_load` builds the search index once after many writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Self

import numpy as np

from refinery_quaterion.search._checks import check_vectors_array, chunks
from refinery_quaterion.search.points import PointId
from refinery_quaterion.search.protocol import SupportsEncode
from refinery_quaterion.search.store import IndexStore

__all__ = ["BulkLoading"]


class BulkLoading:
    """Writing precomputed points and bulk loads (mixed into `SimilarityIndex`).

    Attributes:
        encoder: The index's model (its ``dim`` is checked).
    """

    encoder: SupportsEncode
    _store: IndexStore
    _bulk_depth: int
    _closed: bool

    def _require_open(self) -> None:
        raise NotImplementedError

    def _set_data_fingerprint(self, value: str | None) -> None:
        raise NotImplementedError

    def mark_changed(self) -> None:
        """Record that the index no longer holds exactly the records of a `build` (clears its data fingerprint).

        `add` and `add_vectors` do this themselves; call it before points reach the collection
        another way (e.g. Ray's encoder actors uploading to the same server collection).

        Raises:
            RuntimeError: If the index is closed.
        """
        self._require_open()
        self._set_data_fingerprint(None)

    def add_vectors(self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Upsert precomputed vectors as points (for loaders that embed elsewhere).

        The vectors must come from this index's model (unit length for ``"cosine"``); the
        payloads should be made like `add` makes them (the label under ``label_field``). The
        index no longer counts as built from a known set of records. Outside a `bulk_load`,
        each call is one bulk load.

        Args:
            ids: Point ids (see `point_id_for`), one per row of ``vectors``.
            vectors: A ``(len(ids), dim)`` array.
            payloads: One payload (a JSON-safe dict) per id.

        Raises:
            ValueError: If the vectors' dimension is not the index's (naming both), their
                number is not that of the ids or payloads, or they hold NaN/infinite values.
            RuntimeError: If the index is closed.
        """
        self._require_open()
        ids, payloads = list(ids), list(payloads)
        if len(payloads) != len(ids):
            raise ValueError(f"add_vectors() got {len(ids)} ids but {len(payloads)} payloads; expected one per id")
        array = check_vectors_array(vectors, len(ids), int(self.encoder.dim))
        if not ids:
            return
        self._set_data_fingerprint(None)
        with self.bulk_load():
            self._store.upsert(ids, array, payloads)

    def existing_ids(self, ids: Sequence[PointId]) -> set[PointId]:
        """Those of ``ids`` that the index holds.

        Raises:
            RuntimeError: If the index is closed.
        """
        return set(self.existing_payloads(ids))

    def existing_payloads(self, ids: Sequence[PointId]) -> dict[PointId, dict[str, Any]]:
        """The stored payloads of those of ``ids`` that the index holds (to resume a load without re-embedding).

        Raises:
            RuntimeError: If the index is closed.
        """
        self._require_open()
        found: dict[PointId, dict[str, Any]] = {}
        for chunk in chunks(list(ids), 1024):
            found.update(self._store.retrieve_payloads(chunk))
        return found

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[Self]:
        """Context manager: write many points, building the search index once at the end.

        The embedded engine builds its HNSW graph (``optimize()``) once when the outermost
        ``bulk_load`` exits; a Qdrant server gets ``indexing_threshold=0`` during the load and
        its setting back at the end (Qdrant's bulk-upload practice). After an error or an
        interrupt the points written so far stay searchable (the graph is built by the next
        load). Nested loads join the outermost one.

        Raises:
            RuntimeError: If the index is closed.
        """
        self._require_open()
        self._bulk_depth += 1
        if self._bulk_depth == 1:
            self._store.begin_bulk()
        complete = False
        try:
            yield self
            complete = True
        finally:
            self._bulk_depth -= 1
            if self._bulk_depth == 0 and not self._closed:
                self._store.finish_bulk(complete=complete)

    def flush(self) -> None:
        """Make every point written so far durable (the embedded engine flushes to its folder)."""
        self._require_open()
        self._store.flush()
