"""Similarity search over records embedded by a fine-tuned model, stored in Qdrant.

`SimilarityIndex` embeds records with a trained encoder and keeps them in a Qdrant
collection, then answers nearest-neighbour queries, optionally restricted to some labels.

The same API runs on two back ends (`INDEX_BACKENDS`):

* **Embedded** (``"edge"``), the default: Qdrant's own engine (``qdrant-edge-py``: HNSW,
  payload indexes, int8 quantization, a write-ahead log) runs inside this Python process, in
  memory (the default) or persisted to a folder (``SimilarityIndex(model, "my_index")``). No
  server is needed. **Only one `SimilarityIndex` may open a folder at a time** (in any
  process): call `SimilarityIndex.close` (or use ``with``) before opening it again.
* **Server** (``"qdrant-client"``): ``url="http://localhost:6333"`` (plus ``api_key=`` for
  Qdrant Cloud) for a Qdrant server or cluster and concurrent access. Any other client option
  can be set by passing a ready ``qdrant_client.QdrantClient`` as ``client=``.

`IndexConfig` holds the settings: collection, label and id fields, HNSW ``m`` and
``ef_construct``, search ``ef`` or exact search, int8 quantization with rescoring, vectors on
disk, upload batch size, parallel streams and retries.

**Freshness.** The collection stores the fingerprint of the model that embedded it
(`model_fingerprint`: encoder weights and head weights) and, after `SimilarityIndex.build`,
of the records it holds. Reopening it with another model raises `StaleIndexError` naming both
fingerprints, or empties it with ``if_stale="rebuild"``; `SimilarityIndex.build` re-embeds
only when the model or the records changed, and `SimilarityIndex.from_path` with ``data=``
checks the records too.

Qdrant is an optional dependency: install it with ``pip install "refinery-quaterion[search]"``.
``qdrant_edge`` and ``qdrant_client`` are only imported when an index is created.

The package has one module per concept: `refinery_quaterion.search.index` (the index),
`refinery_quaterion.search.config` (its settings), `refinery_quaterion.search.loading` (bulk
loading), `refinery_quaterion.search.store` (the back-end interface and registry),
`refinery_quaterion.search.edge` and `refinery_quaterion.search.server` (the back ends),
`refinery_quaterion.search.points` (records as points, their ids and fingerprint),
`refinery_quaterion.search.queries` (query texts, label filters, hits),
`refinery_quaterion.search.protocol` (what the index needs from a model, its fingerprint) and
`refinery_quaterion.search.collection` (the collection's metadata and staleness).

Example:
    >>> with SimilarityIndex(model, "news_index") as index:  # doctest: +SKIP
    ...     index.build(frame)
    ...     for hit in index.search("Oil prices climb", k=3, filter_label="Business"):
    ...         print(f"{hit.score:.2f} {hit.label} {hit.record['Title']}")
"""

from __future__ import annotations

from refinery_quaterion.search.collection import IfStale, StaleIndexError
from refinery_quaterion.search.config import IndexConfig
from refinery_quaterion.search.index import SimilarityIndex
from refinery_quaterion.search.points import PointId, point_id_for
from refinery_quaterion.search.protocol import SupportsEncode, model_fingerprint
from refinery_quaterion.search.queries import SearchHit
from refinery_quaterion.search.store import INDEX_BACKENDS
from refinery_quaterion.search.streaming import IndexingResult, index_records, load_vector_shards

__all__ = [
    "INDEX_BACKENDS",
    "IfStale",
    "IndexConfig",
    "IndexingResult",
    "PointId",
    "SearchHit",
    "SimilarityIndex",
    "StaleIndexError",
    "SupportsEncode",
    "index_records",
    "load_vector_shards",
    "model_fingerprint",
    "point_id_for",
]
