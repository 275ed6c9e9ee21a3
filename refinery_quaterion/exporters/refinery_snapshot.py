"""The pieces `to_refinery` adds to a refinery project snapshot, built as refinery-gateway imports them.

refinery-gateway (``controller/transfer/project_transfer_manager.py``, v1.15 to v1.17) reads
the **first** entry of the snapshot zip as the project's JSON. For each item of
``embeddings_data`` it keeps the name when the item has a ``platform`` (an item without one
gets its old-style name ``{attribute}-{type}-{model}`` rewritten to
``{attribute}-{type}-{platform}-{model}``), files it under the attribute ``attribute_id``
names, and creates one tensor per row of ``embedding_tensors_data``. Refinery's active
learners find an embedding by that name. A static data slice is a ``data_slice_data`` item
whose ``filter_data`` lists record ids, with one ``data_slice_record_association_data`` row
per record (its ``outlier_score`` is kept only when it is not 0).
"""

from __future__ import annotations

import json
import re
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion._io import atomic_path

__all__ = [
    "PLATFORM",
    "embedding_item",
    "embedding_name",
    "reduce_dimension",
    "slice_items",
    "tensor_rows",
    "unique_name",
    "write_snapshot_file",
]

PLATFORM = "huggingface"
"""The ``platform`` of the added embedding: refinery's name for sentence-transformers models."""

_NAMESPACE = uuid.UUID("5b0c1f52-9b8e-4c1e-9d0b-6f1a2c7e3d41")  # ids are stable for the same input


def reduce_dimension(vectors: np.ndarray, dimension: int | str) -> np.ndarray:
    """Vectors as refinery would store them: PCA to ``dimension`` components, then unit length.

    Refinery's embedder fits a scikit-learn ``PCA(n_components=64)`` (no whitening) on the first
    640 records and keeps its output as is. Here the PCA is fitted on all records, each
    component's sign is fixed (its largest loading positive) so the result does not depend on
    the SVD routine, and the rows are scaled to unit length, which makes refinery's Euclidean
    neural search rank as cosine does.

    Args:
        vectors: One row per record, float.
        dimension: Components to keep, or ``"full"`` to keep the vectors as they are. With no
            more records or columns than ``dimension``, the vectors are kept as they are too
            (refinery skips its PCA below 64 records).

    Returns:
        float32 ``(records, dimension)`` (or the input's shape).
    """
    array = np.asarray(vectors, dtype=np.float64)
    if dimension == "full" or min(array.shape) <= int(dimension):
        return array.astype(np.float32)
    centered = array - array.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    components = components[: int(dimension)]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    reduced = centered @ (components * signs[:, None]).T
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    return (reduced / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def embedding_name(attribute: str, model_name: str) -> str:
    """The gateway's name of an attribute embedding: ``{attribute}-classification-huggingface-{model}``."""
    return f"{attribute}-classification-{PLATFORM}-{model_name}"


def default_model_name(folder: str | None) -> str:
    """``refinery-quaterion-{folder name}`` (characters other than letters, digits, ``._-`` become ``-``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", folder or "").strip("-")
    return f"refinery-quaterion-{slug}" if slug else "refinery-quaterion"


def unique_name(name: str, taken: Iterable[str]) -> str:
    """``name``, or ``name-2``, ``name-3``, ... when an existing name equals it."""
    used = set(taken)
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def existing_embedding_names(items: Iterable[Mapping[str, Any]]) -> list[str]:
    """The names the gateway gives the snapshot's embeddings: as stored, and rebuilt for old items without platform."""
    names = []
    for item in items:
        name = str(item.get("name") or "")
        names.append(name)
        parts = name.split("-")
        if not item.get("platform") and len(parts) > 2:
            model = "-".join(parts[2:])
            platform = "python" if model in ("bag-of-words", "bag-of-characters", "tf-idf") else PLATFORM
            names.append(f"{parts[0]}-{parts[1]}-{platform}-{model}")
    return names


def embedding_item(name: str, model_name: str, attribute_id: Any, project_id: Any) -> dict[str, Any]:
    """The ``embeddings_data`` item, with the keys refinery's own export writes."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "id": str(uuid.uuid5(_NAMESPACE, f"{project_id}/embedding/{name}")),
        "attribute_id": attribute_id,
        "name": name,
        "custom": True,
        "type": "ON_ATTRIBUTE",
        "started_at": now,
        "finished_at": now,
        "platform": PLATFORM,
        "model": model_name,
        "filter_attributes": None,
        "additional_data": None,
    }


def tensor_rows(embedding_id: str, record_ids: Sequence[Any], vectors: np.ndarray) -> list[dict[str, Any]]:
    """One ``embedding_tensors_data`` row per record (values rounded to 7 decimals, as JSON floats)."""
    values = np.round(np.asarray(vectors, dtype=np.float64), 7).tolist()
    return [{"embedding_id": embedding_id, "record_id": rid, "data": row, "sub_key": None}
            for rid, row in zip(record_ids, values, strict=True)]


def slice_items(name: str, project_id: Any, scores: Mapping[Any, float],
                info: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A static data slice of the records in ``scores`` and its association rows (``outlier_score`` = score).

    Built like refinery's own record-id slices (``filter_data`` with ``TARGET_COLUMN`` ``ID``
    and ``OPERATOR`` ``IN``); ``count_sql`` names the snapshot's project and record ids, which
    the gateway replaces by the new ones on import.
    """
    ids = list(scores)
    quoted = ", ".join(f"'{rid}'" for rid in ids)
    slice_id = str(uuid.uuid5(_NAMESPACE, f"{project_id}/slice/{name}"))
    item = {
        "id": slice_id,
        "created_at": None,
        "created_by": None,
        "name": name,
        "filter_data": [{"RELATION": "NONE", "NEGATION": False, "TARGET_TABLE": "RECORD", "TARGET_COLUMN": "ID",
                         "OPERATOR": "IN", "VALUES": ids}],
        "static": True,
        "filter_raw": None,
        "count": len(ids),
        "count_sql": f"SELECT COUNT(*) distinct_count FROM record WHERE project_id = '{project_id}' "
                     f"AND id IN ({quoted})",
        "slice_type": "STATIC_DEFAULT",
        "info": dict(info),
    }
    rows = [{"data_slice_id": slice_id, "record_id": rid, "outlier_score": float(score)}
            for rid, score in scores.items()]
    return item, rows


def write_snapshot_file(payload: Mapping[str, Any], out: Path, member: str) -> None:
    """Write ``payload`` atomically: a zip whose first (only) entry is ``member``, or plain JSON for a ``.json`` out."""
    text = json.dumps(payload, ensure_ascii=False)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".json":
            tmp.write_text(text, encoding="utf-8")
            return
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(member, text)
