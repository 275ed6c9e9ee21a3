"""The plumbing of `refinery_quaterion.search.index.SimilarityIndex` around its Qdrant client.

Checking the constructor's arguments, opening the client of ``path``/``url``/``client``,
embedding texts into checked vectors, uploading points and sending queries in batches.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from refinery_quaterion._bars import stage_bar
from refinery_quaterion.search.collection import DISTANCES, open_local
from refinery_quaterion.search.points import Points
from refinery_quaterion.search.protocol import SupportsEncode

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

IF_STALE = ("error", "rebuild")
"""The values of ``if_stale`` (`refinery_quaterion.search.index.IfStale`)."""


def check_options(
    *, collection: Any, label_field: Any, id_field: Any, distance: Any, if_stale: Any, path: Any, url: Any,
    api_key: Any, client: Any,
) -> None:
    """Raise ``ValueError`` for a bad name, distance or ``if_stale``, or conflicting places of the index."""
    check_name("collection", collection)
    check_name("label_field", label_field)
    if id_field is not None:
        check_name("id_field", id_field)
    if not isinstance(distance, str) or distance.lower() not in DISTANCES:
        raise ValueError(f"distance must be one of {sorted(DISTANCES)}, got {distance!r}")
    if if_stale not in IF_STALE:
        raise ValueError(f"if_stale must be one of {list(IF_STALE)}, got {if_stale!r}")
    given = [name for name, value in (("path", path), ("url", url), ("client", client)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"pass only one of path=, url= or client=, got {' and '.join(given)}")
    if api_key is not None and url is None:
        raise ValueError("api_key= is only used with url= (a Qdrant server)")


def connect(
    qdrant_client: Any, *, path: str | os.PathLike[str] | None, url: str | None, api_key: str | None,
    client: QdrantClient | None,
) -> tuple[str, QdrantClient]:
    """``(location, client)``: the given ``client``, a server client for ``url``, else a local one.

    The location is ``"client"``, the URL, or the folder (``":memory:"`` when ``path`` is ``None``).
    """
    if client is not None:
        return "client", client
    if url is not None:
        return url, qdrant_client.QdrantClient(url=url, api_key=api_key)
    location = ":memory:" if path is None else os.fspath(path)
    return location, open_local(qdrant_client, location)


def encode_checked(encoder: SupportsEncode, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """``encoder``'s float32 vectors of ``texts``; ``ValueError`` for a wrong shape or non-finite values."""
    vectors = np.asarray(encoder.encode(texts, batch_size=min(batch_size, 64), progress=False), dtype=np.float32)
    dim = int(encoder.dim)
    if vectors.shape != (len(texts), dim):
        raise ValueError(
            f"encoder returned an array of shape {vectors.shape} for {len(texts)} text(s); "
            f"expected ({len(texts)}, {dim})"
        )
    if not np.isfinite(vectors).all():
        raise ValueError("encoder returned NaN or infinite values; check the model")
    return vectors


def upsert(
    client: QdrantClient, collection: str, points: Points, encoder: SupportsEncode, *, batch_size: int,
    progress: bool,
) -> None:
    """Embed ``points`` and upsert them into ``collection``, ``batch_size`` per request.

    With ``progress``, an "Indexing" bar in a terminal, else one line when done (`stage_bar`).
    """
    from qdrant_client.http import models as qm

    items = list(points.items())
    with stage_bar(len(items), desc="Indexing", unit="record", enabled=progress, leave=True) as bar:
        for batch in chunks(items, batch_size):
            ids = [pid for pid, _ in batch]
            texts = [text for _, (text, _) in batch]
            vectors = encode_checked(encoder, texts, batch_size=batch_size)
            client.upsert(
                collection,
                points=qm.Batch(ids=ids, vectors=vectors.tolist(), payloads=[payload for _, (_, payload) in batch]),
                wait=True,
            )
            bar.update(len(batch))


def query_batches(
    client: QdrantClient, collection: str, encoder: SupportsEncode, texts: list[str], *, k: int,
    query_filter: Any, score_threshold: float | None, batch_size: int,
) -> list[list[Any]]:
    """The ``k`` nearest points of each text (best first), in order; one request per ``batch_size`` texts."""
    from qdrant_client.http import models as qm

    results: list[list[Any]] = []
    for chunk in chunks(texts, batch_size):
        vectors = encode_checked(encoder, chunk, batch_size=batch_size)
        requests = [
            qm.QueryRequest(
                query=vector.tolist(), filter=query_filter, limit=int(k), with_payload=True,
                score_threshold=score_threshold,
            )
            for vector in vectors
        ]
        responses = client.query_batch_points(collection, requests=requests)
        results.extend(list(response.points) for response in responses)
    return results


def check_name(what: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")


def check_positive_int(what: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what} must be a positive integer (>= 1), got {value!r}")


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of ``items`` of ``size`` items (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def warn_local_mode_size(location: str, count: int, limit: int) -> None:
    """Warn that a local (embedded) index holds more points than local mode is meant for."""
    warnings.warn(
        f"the local (embedded) index {location} holds {count:,} points, more than local mode is "
        f"meant for (~{limit:,}); for speed and scale, run a Qdrant server or use "
        "Qdrant Cloud and pass SimilarityIndex(..., url=..., api_key=...)",
        UserWarning,
        stacklevel=4,
    )
