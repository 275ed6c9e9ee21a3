"""Argument checks of `refinery_quaterion.search.index.SimilarityIndex`, and embedding texts into checked vectors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from refinery_quaterion._io import refuse_output_over_inputs
from refinery_quaterion.search.collection import DISTANCES
from refinery_quaterion.search.config import IndexConfig
from refinery_quaterion.search.protocol import SupportsEncode

IF_STALE = ("error", "rebuild")
"""The values of ``if_stale`` (`refinery_quaterion.search.collection.IfStale`)."""


def check_options(*, config: Any, distance: Any, if_stale: Any, path: Any, url: Any, api_key: Any,
                  client: Any) -> None:
    """Raise for a bad config, distance or ``if_stale``, or conflicting places of the index.

    Raises:
        TypeError: ``config`` is not an `IndexConfig`.
        ValueError: A bad distance or ``if_stale``, or more than one of ``path``/``url``/``client``.
    """
    if not isinstance(config, IndexConfig):
        raise TypeError(f"config must be an IndexConfig, got {type(config).__name__}")
    if not isinstance(distance, str) or distance.lower() not in DISTANCES:
        raise ValueError(f"distance must be one of {sorted(DISTANCES)}, got {distance!r}")
    if if_stale not in IF_STALE:
        raise ValueError(f"if_stale must be one of {list(IF_STALE)}, got {if_stale!r}")
    given = [name for name, value in (("path", path), ("url", url), ("client", client)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"pass only one of path=, url= or client=, got {' and '.join(given)}")
    if api_key is not None and url is None:
        raise ValueError("api_key= is only used with url= (a Qdrant server)")


def refuse_index_over_inputs(path: Any, inputs: dict[str, Any]) -> None:
    """Refuse an index folder ``path`` that is, contains or lies inside an input (the model folder, the data file).

    ``None``, ``":memory:"`` and inputs that are not paths (a model or records given as objects)
    are skipped.

    Raises:
        SettingError: Naming ``path``, the input and the setting.
    """
    if path is None or path == ":memory:" or not isinstance(path, str | os.PathLike):
        return
    paths = {name: value for name, value in inputs.items() if isinstance(value, str | os.PathLike)}
    refuse_output_over_inputs(path, paths, setting="path")


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


def check_vectors_array(vectors: Any, n: int, dim: int) -> np.ndarray:
    """``vectors`` as a float32 ``(n, dim)`` array of finite values.

    Raises:
        ValueError: Another shape (naming both dimensions) or non-finite values.
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != n:
        raise ValueError(f"vectors must be an array of shape ({n}, {dim}) (one row per id), got {array.shape}")
    if array.shape[1] != dim:
        raise ValueError(f"vectors have dimension {array.shape[1]}, but the index holds {dim}-dimensional vectors")
    if not np.isfinite(array).all():
        raise ValueError("vectors hold NaN or infinite values")
    return array


def check_positive_int(what: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what} must be a positive integer (>= 1), got {value!r}")


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of ``items`` of ``size`` items (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
