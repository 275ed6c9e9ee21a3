"""The ``"edge"`` index back end: Qdrant's own engine embedded in this process (``qdrant-edge-py``).

An index folder (``path=``) holds one ``EdgeShard`` folder per collection and, beside it, the
collection's metadata in ``<collection>.json`` (written atomically)::

    news_index/
        refinery/            # the EdgeShard: edge_config.json, segments/, wal/
        refinery.json        # this package's metadata: fingerprints, template, fields

Without ``path`` the index lives in a temporary folder removed by `EdgeStore.close`. Points
are written to a plain segment and the HNSW graph is built once, by ``optimize()``, when a
bulk load ends (`EdgeStore.finish_bulk`), never per batch. The label field gets a keyword
payload index, so filtered searches stay fast. The shard's write-ahead log locks the folder:
a second opening, in this process or another, is refused with a clear error.

A folder written by the old engine (qdrant-client's local mode: ``meta.json`` and a
``collection/`` folder) is refused with the way to rebuild it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion._io import atomic_write_text
from refinery_quaterion.search.collection import INSTALL_HINT, METADATA_KEY
from refinery_quaterion.search.config import IndexConfig
from refinery_quaterion.search.points import PointId
from refinery_quaterion.search.store import INDEX_BACKENDS, ScoredRecord, StoreTarget

__all__ = ["EdgeStore", "check_edge_folder", "require_edge_folder"]

EDGE_DISTANCES = {"cosine": "Cosine", "dot": "Dot", "euclid": "Euclid", "manhattan": "Manhattan"}
"""``distance`` values -> names of ``qdrant_edge.Distance``."""

FULL_SCAN_THRESHOLD_KB = 10_000
"""Below this many KB of vectors (after a filter) a search scans exactly (Qdrant's default)."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def import_edge() -> Any:
    """The ``qdrant_edge`` module, or an ``ImportError`` naming the extra to install."""
    try:
        import qdrant_edge
    except ImportError as err:
        raise ImportError(
            "SimilarityIndex needs qdrant-edge-py (Qdrant's embedded engine), which is not installed; "
            f"install it with: {INSTALL_HINT}"
        ) from err
    return qdrant_edge


def _shards(folder: Path) -> list[str]:
    """Names of the collections (EdgeShard folders) in ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "edge_config.json").is_file())


def check_edge_folder(folder: Path) -> None:
    """Refuse an existing ``folder`` that is not an embedded index folder (a new or empty one is fine).

    Raises:
        ValueError: ``folder`` is a file, was written by the old engine (qdrant-client's local
            mode), or holds other files.
    """
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"path {str(folder)!r} is a file; expected a folder for the index (or None for memory)")
    if (folder / "meta.json").is_file() and (folder / "collection").is_dir():
        raise ValueError(
            f"{folder} is an index written by the old engine (qdrant-client's local mode), which this version "
            "no longer reads; rebuild it from the records with SimilarityIndex(model, path=...).build(records) "
            "into a new folder, or delete the folder and build again"
        )
    if _shards(folder):
        return
    others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ValueError(
            f"{folder} is not a similarity index folder: it holds {listed} and no index; "
            "pass a new or empty folder for a new index"
        )


def require_edge_folder(folder: Path) -> Path:
    """``folder`` if it holds an embedded index.

    Raises:
        ValueError: As `check_edge_folder`.
        FileNotFoundError: Naming the folder and how to build an index.
    """
    check_edge_folder(folder)
    if not _shards(folder):
        raise FileNotFoundError(
            f"{folder} is not a similarity index folder (no index in it); "
            "build one with SimilarityIndex(encoder, path=...).build(records)"
        )
    return folder


def _open_error(err: Exception, location: str) -> Exception:
    """The error to raise for an engine error while opening ``location``: a clear one for a locked folder."""
    if "WouldBlock" in str(err):
        return RuntimeError(
            f"the index folder {location} is open in another process (or by another SimilarityIndex in this one); "
            "close() that one first, or use a Qdrant server (url=) for concurrent access"
        )
    return err


class EdgeStore:
    """One collection in an ``EdgeShard`` (see the module notes for the folder layout).

    Args:
        target: ``target.path`` is the index folder, ``None`` for a temporary one.
        config: The index settings.
        dim: The vectors' dimension (for a new collection).
        distance: ``"cosine"``, ``"dot"``, ``"euclid"`` or ``"manhattan"``.

    Raises:
        ImportError: If ``qdrant-edge-py`` is not installed.
        ValueError: As `check_edge_folder`, or a collection name that is no plain folder name.
        RuntimeError: If the folder is open elsewhere.
    """

    def __init__(self, target: StoreTarget, config: IndexConfig, *, dim: int, distance: str) -> None:
        self._edge = import_edge()
        if not _SAFE_NAME.match(config.collection):
            raise ValueError(f"collection {config.collection!r} cannot name an embedded index: use letters, "
                             "digits, '_', '-' and '.' only")
        self.config, self.dim, self.distance = config, dim, distance
        self._temp: str | None = None
        if target.path is None:
            self._temp = tempfile.mkdtemp(prefix="refinery-index-")
            root, self.location = Path(self._temp), ":memory:"
        else:
            root, self.location = Path(target.path), os.fspath(target.path)
            check_edge_folder(root)
        self.root = root
        self._folder = root / config.collection
        self._metadata_file = root / f"{config.collection}.json"
        self._shard: Any = None
        if self.exists():
            self._shard = self._open(lambda: self._edge.EdgeShard.load(str(self._folder)))

    def _open(self, make: Any) -> Any:
        try:
            return make()
        except Exception as err:
            raise _open_error(err, self.location) from err

    def exists(self) -> bool:
        """Whether the collection's shard exists."""
        return (self._folder / "edge_config.json").is_file()

    def _edge_config(self) -> Any:
        e, config = self._edge, self.config
        quantization = None
        if config.quantization == "int8":
            quantization = e.ScalarQuantizationConfig(type=e.ScalarType.Int8, quantile=0.99, always_ram=True)
        return e.EdgeConfig(
            vectors=e.EdgeVectorParams(size=self.dim, distance=getattr(e.Distance, EDGE_DISTANCES[self.distance]),
                                       on_disk=config.on_disk or None),
            hnsw_config=e.HnswIndexConfig(m=config.hnsw_m, ef_construct=config.hnsw_ef_construct,
                                          full_scan_threshold=FULL_SCAN_THRESHOLD_KB),
            quantization_config=quantization,
        )

    def create(self, metadata: dict[str, Any]) -> None:
        """Create the shard with a keyword index on the label field, then write ``metadata``."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._shard = self._open(lambda: self._edge.EdgeShard.create(str(self._folder), self._edge_config()))
        e = self._edge
        self._shard.update(e.UpdateOperation.create_field_index(self.config.label_field, e.PayloadSchemaType.Keyword))
        self.write_metadata(metadata)

    def check_vectors(self, dim: int, distance: str) -> None:
        """Raise ``ValueError`` unless the shard holds ``dim``-dimensional vectors of ``distance``."""
        stored = json.loads((self._folder / "edge_config.json").read_text(encoding="utf-8"))
        vectors = (stored.get("vectors") or {}).get("") or {}
        where = f"collection {self.config.collection!r} at {self.location}"
        if vectors.get("size") != dim:
            raise ValueError(
                f"{where} holds {vectors.get('size')}-dimensional vectors, but the encoder makes {dim}-dimensional "
                "ones; open it with the model it was built with, or use another collection name or path"
            )
        found = str(vectors.get("distance", "")).lower()
        if found != distance:
            raise ValueError(f"{where} uses distance {found!r}, not {distance!r}; pass distance={found!r} or use "
                             "another collection name")

    def reset(self, metadata: dict[str, Any]) -> None:
        """Write ``metadata``, then drop the shard and create it anew (with the current settings)."""
        self.write_metadata(metadata)
        if self._shard is not None:
            self._shard.close()
            self._shard = None
        shutil.rmtree(self._folder, ignore_errors=True)
        self.create(metadata)

    def read_metadata(self) -> dict[str, Any] | None:
        """The collection's metadata file, or ``None`` when there is none (or it is unreadable)."""
        try:
            stored = json.loads(self._metadata_file.read_text(encoding="utf-8")).get(METADATA_KEY)
        except (OSError, ValueError, AttributeError):
            return None
        return dict(stored) if isinstance(stored, dict) else None

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace the metadata file (atomically)."""
        atomic_write_text(self._metadata_file, json.dumps({METADATA_KEY: dict(metadata)}, indent=1) + "\n")

    def upsert(self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Upsert the points, ``config.batch_size`` per update."""
        point, step = self._edge.Point, self.config.batch_size
        for start in range(0, len(ids), step):
            stop = min(start + step, len(ids))
            points = [point(ids[i], vectors[i], payloads[i]) for i in range(start, stop)]
            self._shard.update(self._edge.UpdateOperation.upsert_points(points))

    def retrieve_payloads(self, ids: Sequence[PointId]) -> dict[PointId, dict[str, Any]]:
        """The payloads of those of ``ids`` in the shard (UUIDs as strings)."""
        records = self._shard.retrieve(list(ids), True, False)
        return {_point_id(record.id): dict(record.payload or {}) for record in records}

    def _filter(self, labels: list[str] | None) -> Any:
        if labels is None:
            return None
        e = self._edge
        match = e.MatchValue(labels[0]) if len(labels) == 1 else e.MatchAny(any=labels)
        return e.Filter(must=[e.FieldCondition(key=self.config.label_field, match=match)])

    def count(self, labels: list[str] | None) -> int:
        """Exact number of points (with one of ``labels``)."""
        return int(self._shard.count(self._edge.CountRequest(exact=True, filter=self._filter(labels))))

    def _params(self, k: int) -> Any:
        e, config = self._edge, self.config
        quantization = None
        if config.quantization is not None:
            quantization = e.QuantizationSearchParams(rescore=True, oversampling=float(config.oversampling))
        return e.SearchParams(hnsw_ef=max(config.search_ef, k), exact=config.exact, quantization=quantization)

    def query_batch(self, vectors: np.ndarray, *, k: int, labels: list[str] | None,
                    score_threshold: float | None) -> list[list[ScoredRecord]]:
        """The ``k`` nearest points of each vector, best first."""
        e, flt, params = self._edge, self._filter(labels), self._params(k)
        requests = [e.QueryRequest(query=e.Query.Nearest(vector), limit=int(k), filter=flt, with_payload=True,
                                   with_vector=False, score_threshold=score_threshold, params=params)
                    for vector in vectors]
        if len(requests) == 1:
            found = [self._shard.query(requests[0])]
        else:
            found = self._shard.query_batch(e.QueryBatchRequest(queries=requests))
        return [[ScoredRecord(_point_id(p.id), float(p.score), dict(p.payload or {})) for p in points]
                for points in found]

    def begin_bulk(self) -> None:
        """Nothing to do: the engine never builds its index while points are upserted."""

    def finish_bulk(self, *, complete: bool) -> None:
        """Build the HNSW graph (and the quantized vectors) once over the loaded points, then flush.

        After an error or interrupt (not ``complete``) only flush: the points stay searchable
        (exactly) and the next bulk load builds the graph.
        """
        if self._shard is None:
            return
        if complete:
            self._shard.optimize()
        self.flush()

    def existing_collections(self) -> list[str]:
        """The collections in the index folder."""
        return _shards(self.root)

    def flush(self) -> None:
        """Flush written points to disk (an in-memory index has nothing to keep)."""
        if self._shard is not None and self._temp is None:
            self._shard.flush()

    def close(self) -> None:
        """Flush and close the shard (releasing the folder); remove a temporary folder."""
        try:
            if self._shard is not None:
                self.flush()
                shard, self._shard = self._shard, None
                shard.close()
        finally:
            if self._temp is not None:
                shutil.rmtree(self._temp, ignore_errors=True)
                self._temp = None


def _point_id(value: Any) -> PointId:
    """A point id as this package spells it: an int, or a UUID as a string."""
    return value if isinstance(value, int) else str(value)


@INDEX_BACKENDS.register("edge", "Qdrant's own engine (HNSW, payload index, int8 quantization) embedded in this "
                         "process, in memory or in a folder; the default without url=/client=.",
                         example='SimilarityIndex(model, path="news_index")')
def _open_edge(target: StoreTarget, config: IndexConfig, *, dim: int, distance: str) -> EdgeStore:
    return EdgeStore(target, config, dim=dim, distance=distance)
