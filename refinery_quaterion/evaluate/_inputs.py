"""Input checks shared by the metric engine, the linear probe and the report: embeddings and labels."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from refinery_quaterion._util import is_missing

EmbeddingsLike = Any
"""A 2-D numpy array, torch tensor or nested sequence of numbers (items x dimensions)."""


def _is_torch(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def as_matrix(embeddings: EmbeddingsLike, name: str = "embeddings") -> np.ndarray:
    """Return ``embeddings`` as a finite 2-D float array (not yet normalised)."""
    if _is_torch(embeddings):
        tensor = embeddings.detach().cpu()
        if tensor.is_complex():
            raise TypeError(f"{name} must be real numbers; got a complex tensor")
        embeddings = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
    try:
        array = np.asarray(embeddings)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 2-D array of numbers (items x dimensions): {exc}") from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating)
        or np.issubdtype(array.dtype, np.integer)
        or array.dtype == np.bool_
    ):
        raise TypeError(f"{name} must hold real numbers; got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (items x dimensions); got {array.ndim}-D with shape {array.shape}"
            + (" (use embeddings.reshape(1, -1) for a single vector)" if array.ndim == 1 else "")
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 items); at least 2 items are needed")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has 0 dimensions; shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise ValueError(f"{name} holds NaN or infinite values (first in row {bad})")
    return array


def normalize_rows(array: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """L2-normalise the rows into a new C-contiguous float32 array; all-zero rows stay zero."""
    out = np.empty(array.shape, dtype=np.float32)
    for start in range(0, array.shape[0], chunk):
        rows = np.asarray(array[start : start + chunk], dtype=np.float64)
        scale = np.abs(rows).max(axis=1)  # guards against overflow of the squares
        scale[scale == 0] = 1.0
        rows = rows / scale[:, None]
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        norms[norms == 0] = 1.0
        out[start : start + chunk] = rows / norms[:, None]
    return out


def label_list(labels: Any, name: str) -> list[Any]:
    """``labels`` (sequence, array, tensor, Series) as a list, checked to be one label per item."""
    if _is_torch(labels):
        labels = labels.detach().cpu().numpy()
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one label per item); got shape {labels.shape}")
        return labels.tolist()
    if isinstance(labels, pd.Series | pd.Index | pd.Categorical):
        return list(labels)
    if isinstance(labels, str | bytes) or not isinstance(labels, Iterable):
        raise TypeError(f"{name} must be a sequence of labels (one per item); got {type(labels).__name__}")
    return list(labels)


def label_codes(labels: Any, n: int, name: str = "labels") -> tuple[np.ndarray, list[Hashable]]:
    """Integer codes (by first appearance) and the distinct labels, checked against ``n`` items."""
    values = label_list(labels, name)
    if len(values) != n:
        raise ValueError(
            f"{name} has {len(values)} entries but the embeddings have {n} rows; "
            "one label per row is expected"
        )
    codes = np.empty(n, dtype=np.int64)
    mapping: dict[Hashable, int] = {}
    for i, value in enumerate(values):
        if is_missing(value):
            raise ValueError(f"{name}[{i}] is missing ({value!r}); every item needs a label")
        try:
            codes[i] = mapping.setdefault(value, len(mapping))
        except TypeError:
            raise TypeError(
                f"{name}[{i}] = {value!r} is not hashable; labels must be hashable (str, int, ...)"
            ) from None
    return codes, list(mapping)
