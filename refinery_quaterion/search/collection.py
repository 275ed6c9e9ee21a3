"""A collection's metadata and its staleness: what an index was built with, and whether it still fits.

The collection's metadata (under the key ``refinery_quaterion``; the embedded engine keeps it in
a JSON file beside the shard, a Qdrant server in the collection's metadata) records how the index was
built: the vector size, the template, the label and id fields, and the fingerprints of the
model (`refinery_quaterion.search.protocol.model_fingerprint`) and of the records
(`refinery_quaterion.search.points.data_fingerprint`) it holds. `StaleIndexError` is raised
when they do not match what an index is opened with.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

from refinery_quaterion.errors import Fix, SettingError

__all__ = ["IfStale", "StaleIndexError"]


IfStale = Literal["error", "rebuild"]
"""What opening an index does when it was built with another model or from other records:
``"error"`` raises `refinery_quaterion.search.collection.StaleIndexError` naming both
fingerprints, ``"rebuild"`` drops the stale points and re-embeds."""
INSTALL_HINT = 'pip install "refinery-quaterion[search]"'
"""How to install the optional Qdrant packages (qdrant-edge-py, qdrant-client)."""

METADATA_KEY = "refinery_quaterion"
"""Key of this package's entry in the collection metadata."""

METADATA_FORMAT = 2
"""Version of that entry: 1 had no fingerprints, 2 adds ``model_fingerprint`` and ``data_fingerprint``."""

DISTANCES = {"cosine": "COSINE", "dot": "DOT", "euclid": "EUCLID", "manhattan": "MANHATTAN"}
"""Accepted ``distance`` values -> names of ``qdrant_client.http.models.Distance``."""


class StaleIndexError(SettingError):
    """An index was built with another model, or from other records, than it is opened with.

    Its vectors or points would give wrong results. The message names both fingerprints; pass
    ``if_stale="rebuild"`` to rebuild the index instead (the error's fix).

    Args:
        reason: Why the index is stale.
        purpose: What ``if_stale="rebuild"`` then does.
        alternative: Another way out, in plain words.
    """

    def __init__(self, reason: str, *, purpose: str = "to rebuild it", alternative: str | None = None) -> None:
        self.reason, self.purpose = reason, purpose
        super().__init__(reason.replace("{", "{{").replace("}", "}}"), fixes=(Fix("if_stale", "rebuild", purpose),),
                         alternative=alternative)

    def __reduce__(self) -> tuple[Any, ...]:
        return _stale, (self.reason, self.purpose, self.alternative)


def _stale(reason: str, purpose: str, alternative: str | None) -> StaleIndexError:
    return StaleIndexError(reason, purpose=purpose, alternative=alternative)


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




def warn_missing_metadata(collection: str, location: str) -> None:
    """Warn that a collection carries no refinery-quaterion metadata, so its staleness cannot be checked."""
    warnings.warn(
        f"collection {collection!r} at {location} has no refinery-quaterion metadata "
        "(made by another program, or on a Qdrant server older than 1.16): whether its vectors "
        "come from this model cannot be checked",
        UserWarning,
        stacklevel=4,
    )


def open_collection(store: Any, *, settings: Mapping[str, Any], fresh: dict[str, Any], collection: str,
                    model: str | None, if_stale: IfStale, create: bool) -> tuple[dict[str, Any] | None, str | None]:
    """Open (or create) the collection of ``store``, checking it fits; ``(stored metadata, rebuilt reason)``.

    An existing collection must hold vectors of the encoder's size and distance
    (``settings["dim"]``); it is stale when it was built with another model than ``model``.

    Args:
        store: The back end (`refinery_quaterion.search.store.IndexStore`).
        settings: The index's current settings (template, fields, dimension).
        fresh: The metadata of a new, empty collection.
        collection: The collection name, for messages.
        model: The fingerprint of the model opening the index.
        if_stale: ``"error"`` raises `StaleIndexError`; ``"rebuild"`` empties the collection.
        create: Create a missing collection; with ``False`` it is an error.

    Raises:
        StaleIndexError: The collection is stale and ``if_stale`` is ``"error"``.
        ValueError: The collection is missing and ``create`` is ``False``.
    """
    where = f"collection {collection!r} at {store.location}"
    if not store.exists():
        if not create:
            raise ValueError(f"no collection {collection!r} at {store.location}; existing collections: "
                             f"{store.existing_collections()}")
        store.create(fresh)
        return store.read_metadata(), None
    store.check_vectors(int(settings["dim"]), store.distance)
    stored = store.read_metadata()
    if stored is None:
        warn_missing_metadata(collection, store.location)
        return None, None
    warn_on_changed_settings(stored, settings, collection, store.location)
    reason = model_staleness(stored, model, where)
    if reason is None:
        return stored, None
    if if_stale == "error":
        raise StaleIndexError(reason, alternative="use another path or collection")
    store.reset(fresh)
    return store.read_metadata(), reason
