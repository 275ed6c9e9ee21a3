"""The ``"qdrant-client"`` index back end: a Qdrant server, cluster or Qdrant Cloud.

The collection is created with the index settings (HNSW ``m``/``ef_construct``, int8 scalar
quantization, vectors on disk), a keyword payload index on the label field and this
package's metadata (Qdrant >= 1.16 keeps collection metadata; older servers get none and the
staleness checks are skipped with a warning). Points are uploaded with ``upload_points``
(``parallel`` streams, ``max_retries``); a bulk load sets ``indexing_threshold=0`` (no HNSW
building while loading, Qdrant's bulk-upload practice) and restores it at the end.

A URL is checked once when the index is opened, with a short timeout: an unreachable server
is one ``ConnectionError`` naming it. qdrant-client's ``":memory:"`` client
(``client=QdrantClient(":memory:")``) speaks the same protocol and stands in for a server in
tests; it searches exactly, so it gets no search parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from refinery_quaterion.search.collection import DISTANCES, METADATA_KEY, import_qdrant
from refinery_quaterion.search.config import IndexConfig
from refinery_quaterion.search.points import PointId
from refinery_quaterion.search.store import INDEX_BACKENDS, ScoredRecord, StoreTarget

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = ["CONNECT_TIMEOUT_S", "ServerStore"]

CONNECT_TIMEOUT_S = 5
"""Seconds the connection check of a URL waits for the server."""

DEFAULT_INDEXING_THRESHOLD_KB = 10_000
"""Qdrant's default ``indexing_threshold``, restored after a bulk load when the server reports none."""


def connect(qdrant_client: Any, url: str, api_key: str | None, timeout: int) -> QdrantClient:
    """A client of the server at ``url``, after checking once (short timeout) that it answers.

    Raises:
        ConnectionError: The server cannot be reached or refuses the request, naming the URL.
    """
    probe = qdrant_client.QdrantClient(url=url, api_key=api_key, timeout=CONNECT_TIMEOUT_S, check_compatibility=False)
    try:
        probe.get_collections()
    except Exception as err:
        detail = " ".join(str(err).split()) or type(err).__name__
        raise ConnectionError(f"cannot reach the Qdrant server at {url}: {detail}") from err
    finally:
        probe.close()
    return qdrant_client.QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)


def is_local(client: Any) -> bool:
    """Whether ``client`` is qdrant-client's local mode (exact search, no search parameters)."""
    try:
        from qdrant_client.local.qdrant_local import QdrantLocal
    except ImportError:  # pragma: no cover - layout of another qdrant-client version
        return False
    return isinstance(getattr(client, "_client", None), QdrantLocal)


class ServerStore:
    """One collection on a Qdrant server (or any ``QdrantClient``).

    Args:
        target: ``target.url`` (with ``api_key``) or a ready ``target.client``.
        config: The index settings.
        dim: The vectors' dimension (for a new collection).
        distance: ``"cosine"``, ``"dot"``, ``"euclid"`` or ``"manhattan"``.

    Raises:
        ImportError: If ``qdrant-client`` is not installed.
        ConnectionError: If ``url`` cannot be reached.
    """

    def __init__(self, target: StoreTarget, config: IndexConfig, *, dim: int, distance: str) -> None:
        qdrant_client = import_qdrant()
        from qdrant_client.http import models

        self._qm = models
        self.config, self.dim, self.distance = config, dim, distance
        self.collection = config.collection
        self._owns_client = target.client is None
        if target.client is not None:
            self.location, self._client = "client", target.client
        else:
            assert target.url is not None
            self.location = target.url
            self._client = connect(qdrant_client, target.url, target.api_key, config.timeout)
        self._local = is_local(self._client)
        self._saved_threshold: int | None = None

    def exists(self) -> bool:
        """Whether the collection exists."""
        return bool(self._client.collection_exists(self.collection))

    def create(self, metadata: dict[str, Any]) -> None:
        """Create the collection with the settings, ``metadata`` and a keyword index on the label field."""
        qm, config = self._qm, self.config
        options: dict[str, Any] = {
            "vectors_config": qm.VectorParams(size=self.dim, distance=getattr(qm.Distance, DISTANCES[self.distance]),
                                              on_disk=config.on_disk or None),
            "hnsw_config": qm.HnswConfigDiff(m=config.hnsw_m, ef_construct=config.hnsw_ef_construct),
        }
        if config.quantization == "int8":
            options["quantization_config"] = qm.ScalarQuantization(
                scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, quantile=0.99, always_ram=True))
        try:
            self._client.create_collection(self.collection, metadata={METADATA_KEY: dict(metadata)}, **options)
        except Exception:
            # Servers older than 1.16 do not know collection metadata: create without it.
            if self._client.collection_exists(self.collection):
                raise
            self._client.create_collection(self.collection, **options)
        if not self._local:
            self._client.create_payload_index(self.collection, self.config.label_field,
                                              field_schema=qm.PayloadSchemaType.KEYWORD)

    def check_vectors(self, dim: int, distance: str) -> None:
        """Refuse an existing collection whose vectors do not fit (size, distance, naming)."""
        qm, collection = self._qm, self.collection
        vectors = self._client.get_collection(collection).config.params.vectors
        where = f"collection {collection!r} at {self.location}"
        if not isinstance(vectors, qm.VectorParams):
            raise ValueError(f"{where} uses named vectors ({sorted(vectors or {})}); SimilarityIndex needs a "
                             "collection with one unnamed vector")
        if vectors.size != dim:
            raise ValueError(
                f"{where} holds {vectors.size}-dimensional vectors, but the encoder makes {dim}-dimensional ones; "
                "open it with the model it was built with, or use another collection name or path"
            )
        if vectors.distance != getattr(qm.Distance, DISTANCES[distance]):
            found = str(vectors.distance.value).lower()
            raise ValueError(f"{where} uses distance {found!r}, not {distance!r}; pass distance={found!r} or use "
                             "another collection name")

    def reset(self, metadata: dict[str, Any]) -> None:
        """Delete the collection and create it anew."""
        self._client.delete_collection(self.collection)
        self.create(metadata)

    def read_metadata(self) -> dict[str, Any] | None:
        """This package's collection metadata, or ``None`` when it has none."""
        info = self._client.get_collection(self.collection)
        stored = (getattr(info.config, "metadata", None) or {}).get(METADATA_KEY)
        return dict(stored) if isinstance(stored, dict) else None

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace this package's collection metadata."""
        self._client.update_collection(self.collection, metadata={METADATA_KEY: dict(metadata)})

    def upsert(self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Upload the points: ``config.batch_size`` per request, ``config.parallel`` streams, retried."""
        points = [self._qm.PointStruct(id=pid, vector=vector.tolist(), payload=payload)
                  for pid, vector, payload in zip(ids, vectors, payloads, strict=True)]
        self._client.upload_points(self.collection, points=points, batch_size=self.config.batch_size,
                                   parallel=self.config.parallel, max_retries=self.config.max_retries, wait=True)

    def retrieve_payloads(self, ids: Sequence[PointId]) -> dict[PointId, dict[str, Any]]:
        """The payloads of those of ``ids`` in the collection."""
        found = self._client.retrieve(self.collection, ids=list(ids), with_payload=True, with_vectors=False)
        return {record.id: dict(record.payload or {}) for record in found}

    def _filter(self, labels: list[str] | None) -> Any:
        if labels is None:
            return None
        qm = self._qm
        match = qm.MatchValue(value=labels[0]) if len(labels) == 1 else qm.MatchAny(any=labels)
        return qm.Filter(must=[qm.FieldCondition(key=self.config.label_field, match=match)])

    def count(self, labels: list[str] | None) -> int:
        """Exact number of points (with one of ``labels``)."""
        return int(self._client.count(self.collection, count_filter=self._filter(labels), exact=True).count)

    def _params(self, k: int) -> Any:
        if self._local:
            return None  # local mode searches exactly and warns about search parameters
        qm, config = self._qm, self.config
        quantization = None
        if config.quantization is not None:
            quantization = qm.QuantizationSearchParams(rescore=True, oversampling=float(config.oversampling))
        return qm.SearchParams(hnsw_ef=max(config.search_ef, k), exact=config.exact, quantization=quantization)

    def query_batch(self, vectors: np.ndarray, *, k: int, labels: list[str] | None,
                    score_threshold: float | None) -> list[list[ScoredRecord]]:
        """The ``k`` nearest points of each vector, best first (one request)."""
        qm, flt, params = self._qm, self._filter(labels), self._params(k)
        requests = [qm.QueryRequest(query=vector.tolist(), filter=flt, limit=int(k), with_payload=True,
                                    score_threshold=score_threshold, params=params) for vector in vectors]
        responses = self._client.query_batch_points(self.collection, requests=requests)
        return [[ScoredRecord(p.id, float(p.score), dict(p.payload or {})) for p in response.points]
                for response in responses]

    def begin_bulk(self) -> None:
        """Stop HNSW building while loading (``indexing_threshold=0``), remembering the setting."""
        if self._local:
            return
        info = self._client.get_collection(self.collection)
        threshold = getattr(info.config.optimizer_config, "indexing_threshold", None)
        self._saved_threshold = DEFAULT_INDEXING_THRESHOLD_KB if threshold in (None, 0) else threshold
        self._client.update_collection(self.collection,
                                       optimizers_config=self._qm.OptimizersConfigDiff(indexing_threshold=0))

    def finish_bulk(self, *, complete: bool) -> None:
        """Restore the indexing threshold (also after an error), so the server builds the HNSW graph once."""
        if self._local or self._saved_threshold is None:
            return
        threshold, self._saved_threshold = self._saved_threshold, None
        self._client.update_collection(self.collection,
                                       optimizers_config=self._qm.OptimizersConfigDiff(indexing_threshold=threshold))

    def existing_collections(self) -> list[str]:
        """The collections on the server."""
        return sorted(c.name for c in self._client.get_collections().collections)

    def flush(self) -> None:
        """Nothing to do: uploads wait until the server has applied them."""

    def close(self) -> None:
        """Close the client unless the caller passed it."""
        if self._owns_client:
            self._client.close()


@INDEX_BACKENDS.register("qdrant-client", "A Qdrant server, cluster or Qdrant Cloud through qdrant-client "
                         "(parallel uploads with retries, deferred indexing during bulk loads); used with url= or "
                         "client=.", example='SimilarityIndex(model, url="http://localhost:6333")')
def _open_server(target: StoreTarget, config: IndexConfig, *, dim: int, distance: str) -> ServerStore:
    return ServerStore(target, config, dim=dim, distance=distance)
