"""Index back ends: the small store interface `SimilarityIndex` runs on, and their registry.

Two back ends are registered in `INDEX_BACKENDS`:

* ``"edge"`` -- Qdrant's own engine embedded in this process (``qdrant-edge-py``'s
  ``EdgeShard``: HNSW, payload indexes, quantization, a write-ahead log), in memory or in a
  folder (`refinery_quaterion.search.edge`);
* ``"qdrant-client"`` -- a Qdrant server, cluster or Qdrant Cloud through ``qdrant-client``
  (`refinery_quaterion.search.server`).

`refinery_quaterion.search.index.SimilarityIndex` picks ``"qdrant-client"`` when given ``url=``
or ``client=``, else ``"edge"``. Both implement `IndexStore`; everything else (records to
points, fingerprints, staleness, label checks, hits) lives above it, so the two behave alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from refinery_quaterion.registry import Registry
from refinery_quaterion.search.points import PointId

__all__ = ["INDEX_BACKENDS", "IndexBackend", "IndexStore", "ScoredRecord", "StoreTarget"]

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


class ScoredRecord(NamedTuple):
    """One point found by a query: its id (an int or a UUID string), score and payload."""

    id: PointId
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class StoreTarget:
    """Where an index lives: a folder or memory (embedded), or a Qdrant server.

    Attributes:
        path: The embedded index's folder, or ``None`` for memory.
        url: A Qdrant server's URL.
        api_key: Its API key.
        client: A ready ``qdrant_client.QdrantClient`` (its owner closes it).
    """

    path: str | os.PathLike[str] | None = None
    url: str | None = None
    api_key: str | None = None
    client: QdrantClient | None = None


class IndexStore(Protocol):
    """What `SimilarityIndex` needs of a back end: one collection of unit vectors with payloads.

    Attributes:
        location: Where it lives, for messages (a folder, ``":memory:"``, a URL, ``"client"``).
        distance: The vectors' distance (``"cosine"``, ...).
    """

    location: str
    distance: str

    def exists(self) -> bool:
        """Whether the collection exists."""
        ...

    def create(self, metadata: dict[str, Any]) -> None:
        """Create the empty collection (with a keyword payload index on the label field)."""
        ...

    def check_vectors(self, dim: int, distance: str) -> None:
        """Raise ``ValueError`` unless the existing collection holds ``dim``-d vectors of ``distance``."""
        ...

    def reset(self, metadata: dict[str, Any]) -> None:
        """Drop every point and make the collection anew with ``metadata``."""
        ...

    def read_metadata(self) -> dict[str, Any] | None:
        """This package's metadata of the collection, or ``None`` when it has none."""
        ...

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace this package's metadata of the collection."""
        ...

    def upsert(self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Insert or replace points (float32 vectors, one row per id)."""
        ...

    def retrieve_payloads(self, ids: Sequence[PointId]) -> dict[PointId, dict[str, Any]]:
        """The payloads of those of ``ids`` that exist (point id -> payload)."""
        ...

    def count(self, labels: list[str] | None) -> int:
        """Exact number of points, only those whose label is in ``labels`` unless ``None``."""
        ...

    def query_batch(self, vectors: np.ndarray, *, k: int, labels: list[str] | None,
                    score_threshold: float | None) -> list[list[ScoredRecord]]:
        """The ``k`` nearest points of each vector, best first."""
        ...

    def begin_bulk(self) -> None:
        """Start a bulk load: defer index building until `finish_bulk`."""
        ...

    def finish_bulk(self, *, complete: bool) -> None:
        """End a bulk load: build the index once over everything loaded.

        After an error or interrupt (not ``complete``) only what keeps the store usable is done.
        """
        ...

    def existing_collections(self) -> list[str]:
        """Names of the collections at this location (for messages)."""
        ...

    def flush(self) -> None:
        """Make every written point durable."""
        ...

    def close(self) -> None:
        """Release the store (its folder lock, its client when owned)."""
        ...


@dataclass(frozen=True)
class IndexBackend:
    """One registered index back end.

    Attributes:
        name: The back end's name, e.g. ``"edge"``.
        open: ``open(target, config, dim=..., distance=...) -> IndexStore``.
        description: One line for the docs.
        example: A usage example.
    """

    name: str
    open: Callable[..., IndexStore]
    description: str
    example: str = ""


def _make_backend(name: str, value: Callable[..., IndexStore], *, description: str, example: str) -> IndexBackend:
    """An `IndexBackend` from a registration (the ``make_entry`` of `INDEX_BACKENDS`)."""
    return IndexBackend(name=name, open=value, description=description, example=example)


INDEX_BACKENDS: Registry[IndexBackend] = Registry("index backend", "index backends", _make_backend, default="edge",
                                                  usage="SimilarityIndex(model)  # {name}")
"""The index back ends by name: ``"edge"`` (embedded, the default) and ``"qdrant-client"`` (servers)."""


def backend_for(target: StoreTarget) -> str:
    """The name of the back end serving ``target``: ``"qdrant-client"`` for a URL or a client, else ``"edge"``."""
    return "qdrant-client" if target.url is not None or target.client is not None else "edge"
