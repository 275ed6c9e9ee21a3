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

**Freshness.** The collection stores the fingerprint of the model that embedded it
(`model_fingerprint`: encoder weights and head weights) and, after `SimilarityIndex.build`,
of the records it holds. Reopening it with another model raises `StaleIndexError` naming both
fingerprints, or empties it with ``if_stale="rebuild"``; `SimilarityIndex.build` re-embeds
only when the model or the records changed, and `SimilarityIndex.from_path` with ``data=``
checks the records too.

Qdrant is an optional dependency: install it with ``pip install "refinery-quaterion[search]"``.
``qdrant_client`` is only imported when an index is created.

The package has one module per concept: `refinery_quaterion.search.index` (the index),
`refinery_quaterion.search.points` (records as points, their ids and fingerprint),
`refinery_quaterion.search.queries` (query texts, label filters, hits),
`refinery_quaterion.search.protocol` (what the index needs from a model, its fingerprint) and
`refinery_quaterion.search.collection` (the Qdrant collection and its metadata).

Example:
    >>> with SimilarityIndex(model, path="news_index") as index:  # doctest: +SKIP
    ...     index.build(frame)
    ...     for hit in index.search("Oil prices climb", k=3, filter_label="Business"):
    ...         print(f"{hit.score:.2f} {hit.label} {hit.record['Title']}")
"""

from __future__ import annotations

from refinery_quaterion.search.collection import LOCAL_MODE_MAX_POINTS, IfStale, StaleIndexError
from refinery_quaterion.search.index import SimilarityIndex
from refinery_quaterion.search.points import PointId, point_id_for
from refinery_quaterion.search.protocol import SupportsEncode, model_fingerprint
from refinery_quaterion.search.queries import SearchHit

__all__ = [
    "LOCAL_MODE_MAX_POINTS",
    "IfStale",
    "PointId",
    "SearchHit",
    "SimilarityIndex",
    "StaleIndexError",
    "SupportsEncode",
    "model_fingerprint",
    "point_id_for",
]
