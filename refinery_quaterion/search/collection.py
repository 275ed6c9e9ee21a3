"""The Qdrant side of an index: the client, the index folder, the collection and its metadata.

The collection's metadata (under the key ``refinery_quaterion``) records how the index was
built: the vector size, the template, the label and id fields, and the fingerprints of the
model (`refinery_quaterion.search.protocol.model_fingerprint`) and of the records
(`refinery_quaterion.search.points.data_fingerprint`) it holds. `StaleIndexError` is raised
when they do not match what an index is opened with.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = ["LOCAL_MODE_MAX_POINTS", "IfStale", "StaleIndexError"]


LOCAL_MODE_MAX_POINTS = 20_000
"""Above this many points in local (embedded) mode, `SimilarityIndex` warns once and suggests a
Qdrant server (the same limit qdrant-client recommends for local mode)."""

IfStale = Literal["error", "rebuild"]
"""What opening an index does when it was built with another model or from other records:
``"error"`` raises `refinery_quaterion.search.collection.StaleIndexError` naming both
fingerprints, ``"rebuild"`` drops the stale points and re-embeds."""
INSTALL_HINT = 'pip install "refinery-quaterion[search]"'
"""How to install the optional Qdrant client."""

METADATA_KEY = "refinery_quaterion"
"""Key of this package's entry in the collection metadata."""

METADATA_FORMAT = 2
"""Version of that entry: 1 had no fingerprints, 2 adds ``model_fingerprint`` and ``data_fingerprint``."""

DISTANCES = {"cosine": "COSINE", "dot": "DOT", "euclid": "EUCLID", "manhattan": "MANHATTAN"}
"""Accepted ``distance`` values -> names of ``qdrant_client.http.models.Distance``."""


class StaleIndexError(ValueError):
    """An index was built with another model, or from other records, than it is opened with.

    Its vectors or points would give wrong results. The message names both fingerprints; pass
    ``if_stale="rebuild"`` to rebuild the index instead.
    """


def short_fingerprint(value: str | None) -> str:
    """A fingerprint for messages: its first 16 characters, or a phrase for ``None``."""
    return "none (unknown)" if value is None else value[:16]


def model_staleness(stored: Mapping[str, Any], current: str | None, where: str) -> str | None:
    """Why a collection's vectors do not come from the model of fingerprint ``current``, or ``None``.

    Args:
        stored: The collection's metadata (see `stored_metadata`).
        current: The fingerprint of the model opening the index.
        where: The collection and its location, for the message.

    Returns:
        ``None`` when the stored fingerprint is ``current`` (or neither is known), else the reason.
    """
    if "model_fingerprint" not in stored:
        if current is None:
            return None
        return (
            f"{where} was built by an older version that stored no model fingerprint, so its vectors cannot "
            f"be trusted to come from this model (fingerprint {short_fingerprint(current)})"
        )
    built = stored.get("model_fingerprint")
    if built == current:
        return None
    return (
        f"{where} was built with the model of fingerprint {short_fingerprint(built)}, but this model's "
        f"fingerprint is {short_fingerprint(current)}: its vectors come from another model (retrained, "
        "or another model folder)"
    )


def import_qdrant() -> Any:
    """The ``qdrant_client`` module, or an ``ImportError`` naming the extra to install."""
    try:
        import qdrant_client
    except ImportError as err:
        raise ImportError(
            f"SimilarityIndex needs qdrant-client, which is not installed; install it with: {INSTALL_HINT}"
        ) from err
    return qdrant_client


def check_index_folder(folder: Path) -> None:
    """Refuse an existing ``folder`` that holds other files than a Qdrant index.

    An empty or missing folder is fine (a new index goes there).

    Raises:
        ValueError: ``folder`` is a file, holds files but no Qdrant ``meta.json``, or its
            ``meta.json`` is not Qdrant's.
    """
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"path {str(folder)!r} is a file; expected a folder for the index (or ':memory:')")
    meta = folder / "meta.json"
    if not meta.exists():
        others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if others:
            listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise ValueError(
                f"{folder} is not a similarity index folder: it holds {listed} and no Qdrant meta.json; "
                "pass a new or empty folder for a new index"
            )
        return
    try:
        content = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder} is not a similarity index folder: {meta.name} is not Qdrant's ({err})") from None
    if not isinstance(content, dict) or not isinstance(content.get("collections"), dict):
        raise ValueError(
            f"{folder} is not a similarity index folder: {meta.name} has no 'collections' (not Qdrant's)"
        )


def open_local(qdrant_client: Any, location: str) -> QdrantClient:
    """A local-mode client on ``location`` (``":memory:"`` or a folder, see `check_index_folder`)."""
    try:
        if location == ":memory:":
            return qdrant_client.QdrantClient(location=":memory:")
        check_index_folder(Path(location))
        return qdrant_client.QdrantClient(path=location)
    except RuntimeError as err:
        if "already accessed" not in str(err):
            raise
        raise RuntimeError(
            f"the index folder {location} is already open in another client (local mode allows one client "
            "per folder, even within one process); close() the other SimilarityIndex first, or use a "
            "Qdrant server (url=) for concurrent access"
        ) from err


def is_local(client: Any) -> bool:
    """Whether ``client`` runs Qdrant in this process (local mode)."""
    try:
        from qdrant_client.local.qdrant_local import QdrantLocal
    except ImportError:  # pragma: no cover - layout of another qdrant-client version
        return False
    return isinstance(getattr(client, "_client", None), QdrantLocal)


def check_vectors(info: Any, collection: str, location: str, dim: int, distance: str) -> None:
    """Refuse an existing collection whose vectors do not fit the encoder (size, distance, naming)."""
    from qdrant_client.http import models as qm

    vectors = info.config.params.vectors
    if not isinstance(vectors, qm.VectorParams):
        raise ValueError(
            f"collection {collection!r} at {location} uses named vectors "
            f"({sorted(vectors or {})}); SimilarityIndex needs a collection with one unnamed vector"
        )
    if vectors.size != dim:
        raise ValueError(
            f"collection {collection!r} at {location} holds {vectors.size}-dimensional "
            f"vectors, but the encoder makes {dim}-dimensional ones; open it with the model it was "
            "built with, or use another collection name or path"
        )
    wanted = getattr(qm.Distance, DISTANCES[distance])
    if vectors.distance != wanted:
        found = str(vectors.distance.value).lower()
        raise ValueError(
            f"collection {collection!r} at {location} uses distance {found!r}, not {distance!r}; pass "
            f"distance={found!r} or use another collection name"
        )


def stored_metadata(info: Any) -> dict[str, Any] | None:
    """This package's metadata of a collection, or ``None`` when it has none."""
    stored = (getattr(info.config, "metadata", None) or {}).get(METADATA_KEY)
    return dict(stored) if isinstance(stored, Mapping) else None


def warn_on_changed_settings(
    stored: Mapping[str, Any], current: Mapping[str, Any], collection: str, location: str
) -> None:
    """Warn for each setting (template, id field, label field) that differs from the stored one."""
    notes = {
        "template": "records will be embedded from another text, and text-derived ids will differ",
        "id_field": "re-added records will get other point ids and be duplicated",
        "label_field": "filter_label looks at another payload field",
    }
    for key, consequence in notes.items():
        old, new = stored.get(key), current[key]
        if key == "template" and (old is None or new is None):
            continue
        if old != new:
            warnings.warn(
                f"collection {collection!r} at {location} was built with {key}={old!r}, "
                f"now {key}={new!r}: {consequence}",
                UserWarning,
                stacklevel=4,
            )


def create_collection(
    client: QdrantClient, collection: str, *, dim: int, distance: str, metadata: Mapping[str, Any],
    local: bool, label_field: str,
) -> None:
    """Create the collection with ``metadata`` (servers older than 1.16 get none) and a label index."""
    from qdrant_client.http import models as qm

    vectors_config = qm.VectorParams(size=dim, distance=getattr(qm.Distance, DISTANCES[distance]))
    try:
        client.create_collection(collection, vectors_config=vectors_config, metadata={METADATA_KEY: dict(metadata)})
    except Exception:
        # Servers older than 1.16 do not know collection metadata: create without it.
        if client.collection_exists(collection):
            raise
        client.create_collection(collection, vectors_config=vectors_config)
    if not local:
        try:
            client.create_payload_index(collection, label_field, field_schema=qm.PayloadSchemaType.KEYWORD)
        except Exception as err:  # an index only speeds filters up; search works without it
            warnings.warn(f"could not create a payload index on {label_field!r}: {err}", stacklevel=4)


def write_metadata(client: QdrantClient, collection: str, metadata: Mapping[str, Any]) -> None:
    """Replace this package's metadata of ``collection``."""
    client.update_collection(collection, metadata={METADATA_KEY: dict(metadata)})


def warn_missing_metadata(collection: str, location: str) -> None:
    """Warn that a collection carries no refinery-quaterion metadata, so its staleness cannot be checked."""
    warnings.warn(
        f"collection {collection!r} at {location} has no refinery-quaterion metadata "
        "(made by another program, or on a Qdrant server older than 1.16): whether its vectors "
        "come from this model cannot be checked",
        UserWarning,
        stacklevel=4,
    )


def require_index_folder(folder: Path) -> Path:
    """``folder`` if it holds a local index (a ``meta.json``).

    Raises:
        FileNotFoundError: Naming the folder and how to build an index.
    """
    if not (folder / "meta.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a similarity index folder (no meta.json); "
            "build one with SimilarityIndex(encoder, path=...) and add()"
        )
    return folder
