"""The driver's side of a Qdrant server load: check the URL, open the collection as a `SimilarityIndex`.

The driver opens the collection through `refinery_quaterion.search.SimilarityIndex` itself, so
it is created (the model's dimension, cosine distance, a keyword payload index on the label
field, this package's metadata with the model fingerprint) and checked (vector size, staleness)
exactly as the index does it, and opens with ``SimilarityIndex(model, url=...)`` afterwards.
The actors upload into it while the driver holds a `SimilarityIndex.bulk_load` (no HNSW
building during the load, Qdrant's bulk-load practice; restored at the end, also on failure).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from refinery_quaterion.scale.config import RayIndexConfig
from refinery_quaterion.scale.session import probe
from refinery_quaterion.search.config import IndexConfig
from refinery_quaterion.search.index import SimilarityIndex

__all__ = ["check_server", "forget_records", "open_server_index"]

QDRANT_PORT = 6333
"""Qdrant's REST port: qdrant-client's default when a URL names none."""


def check_server(url: str) -> None:
    """Raise a ``ConnectionError`` naming ``url`` when nothing answers there (within seconds).

    Raises:
        ValueError: If ``url`` names no host.
        ConnectionError: If no TCP connection can be opened.
    """
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise ValueError(f"Qdrant URL {url!r} names no host; expected e.g. 'http://localhost:6333'")
    try:
        port = parts.port or QDRANT_PORT
    except ValueError:
        raise ValueError(f"Qdrant URL {url!r} has an invalid port") from None
    probe(parts.hostname, port, what=f"the Qdrant server at {url}")


def open_server_index(encoder: Any, config: RayIndexConfig, *, url: str | None = None, api_key: str | None = None,
                      client: Any = None) -> SimilarityIndex:
    """The collection ``config.collection`` on the server, opened (or created) for ``encoder``'s vectors.

    Args:
        encoder: The loaded model.
        config: Collection, label and id fields, retries and timeout.
        url: The server's URL (or pass ``client``).
        api_key: API key for ``url``.
        client: A ready ``QdrantClient`` instead of ``url``.

    Raises:
        ConnectionError: If the server cannot be reached.
        ValueError: If the collection holds vectors of another size or distance.
        StaleIndexError: If the collection was built with another model.
    """
    settings = IndexConfig(collection=config.collection, label_field=config.label_field, id_field=config.id_field,
                           max_retries=min(config.upload_retries, 100), timeout=config.timeout)
    index = SimilarityIndex(encoder, url=url, api_key=api_key, client=client, config=settings)
    forget_records(index)
    return index


def forget_records(index: SimilarityIndex) -> None:
    """Clear the index's data fingerprint: it no longer holds exactly the records of a `SimilarityIndex.build`."""
    if index.data_fingerprint is not None:
        index.mark_changed()  # what add() and add_vectors() do before writing
