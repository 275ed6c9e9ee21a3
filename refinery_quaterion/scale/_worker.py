"""What runs in the Ray workers: `EncoderActor` embeds batches of records with ONNX Runtime or OpenVINO.

Imports no torch and no quaterion: an actor needs numpy, pandas, pyarrow, tokenizers,
onnxruntime or openvino (and qdrant-client when it uploads to a server). The driver ships the
export's model files and ``tokenizer.json`` as bytes; each actor writes them to its own
temporary folder and loads them once (`OnnxEmbedder` or
`refinery_quaterion.exporters.openvino_serving.OpenVinoEmbedder`).

A batch becomes points exactly as `refinery_quaterion.search.SimilarityIndex` makes them
(`refinery_quaterion.search.points.records_to_points`): same ids, same payloads. The actor
either uploads them to the Qdrant server (qdrant-client's ``upload_points`` with retries) and
returns their ids, or returns them as a shard table (`SHARD_SCHEMA`) for the Parquet output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion.data.text import TextTemplate
from refinery_quaterion.exporters.onnx_serving import OnnxEmbedder
from refinery_quaterion.search.points import PointId, records_to_points

__all__ = ["EncoderActor", "QdrantTarget", "embedder", "shard_table", "upload_batch"]


FAULT_ENV = "REFINERY_QUATERION_RAY_FAULT"
"""Test hook: a file path; the first actor batch that finds the file removes it and kills its process."""


@dataclass(frozen=True)
class QdrantTarget:
    """Where an actor uploads its points: a Qdrant server's collection."""

    url: str
    collection: str
    api_key: str | None = None
    timeout: int = 60
    retries: int = 3


class EncoderActor:
    """A Ray Data actor (``map_batches``): records -> points, uploaded or returned as a shard table.

    Args:
        model_files: The model's files and ``tokenizer.json`` by name (bytes), or a Ray object
            reference to that mapping.
        model_file: Which file is the model: ``"model.onnx"`` or ``"model_int8.onnx"`` (ONNX),
            ``"model.xml"`` or ``"model_int8.xml"`` (OpenVINO).
        runtime: ``"onnx"`` or ``"openvino"``.
        template: Renders a record as the text to embed (the model's template).
        label_field: Record field holding the label.
        id_field: Record field holding the record id, or ``None``.
        threads: The runtime's inference threads.
        encode_batch_size: Texts per runtime call.
        target: Upload to this Qdrant collection; ``None`` returns shard tables instead.
    """

    def __init__(self, model_files: Any, model_file: str, template: TextTemplate, *, runtime: str,
                 label_field: str, id_field: str | None, threads: int, encode_batch_size: int,
                 target: QdrantTarget | None) -> None:
        if not isinstance(model_files, Mapping):
            import ray

            model_files = ray.get(model_files)
        self.folder = Path(tempfile.mkdtemp(prefix=f"refinery-quaterion-{runtime}-"))
        for name, data in model_files.items():
            (self.folder / name).write_bytes(data)
        self.encoder = embedder(self.folder, model_file, runtime=runtime, threads=threads)
        self.template = template
        self.label_field, self.id_field = label_field, id_field
        self.encode_batch_size = encode_batch_size
        self.target = target
        self.client = None if target is None else _qdrant_client(target)

    def __call__(self, batch: Any) -> Any:
        """Embed one batch of records (a DataFrame); the shard table, or the uploaded ids."""
        _fail_once_if_asked()
        points, _ = records_to_points(batch, self.template, label_field=self.label_field, id_field=self.id_field)
        ids = list(points)
        payloads = [payload for _, payload in points.values()]
        vectors = self.encoder.encode([text for text, _ in points.values()], self.encode_batch_size)
        if self.target is None:
            return shard_table(ids, vectors, payloads)
        upload_batch(self.client, self.target, ids, vectors, payloads)
        import pyarrow as pa

        return pa.table({"id": pa.array([str(pid) for pid in ids], pa.string())})

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "folder", ""), ignore_errors=True)


def embedder(folder: Path, model_file: str, *, runtime: str, threads: int | None) -> Any:
    """The embedder of ``runtime`` over an export folder: `OnnxEmbedder` or ``OpenVinoEmbedder``."""
    if runtime == "openvino":
        from refinery_quaterion.exporters.openvino_serving import OpenVinoEmbedder

        return OpenVinoEmbedder(folder, model_file, threads=threads)
    return OnnxEmbedder(folder, model_file, threads=threads)


def shard_table(ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> Any:
    """Points as a pyarrow table: ``id`` (string), ``vector`` (list<float32>), ``payload`` (JSON string).

    An int id is written in decimal, a UUID as its string.
    """
    import pyarrow as pa

    vectors = np.asarray(vectors, dtype=np.float32)
    dim = int(vectors.shape[1]) if vectors.ndim == 2 and len(ids) else 0
    offsets = np.arange(len(ids) + 1, dtype=np.int64) * dim
    column = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(vectors.ravel(), pa.float32()))
    texts = [json.dumps(payload, ensure_ascii=False, allow_nan=False) for payload in payloads]
    return pa.table({"id": pa.array([str(pid) for pid in ids], pa.string()), "vector": column,
                     "payload": pa.array(texts, pa.string())})


def upload_batch(client: Any, target: QdrantTarget, ids: Sequence[PointId], vectors: np.ndarray,
                 payloads: Sequence[Mapping[str, Any]]) -> None:
    """Upload one batch of points to ``target`` (retried by qdrant-client, waiting until applied)."""
    from qdrant_client.http import models as qm

    points = [qm.PointStruct(id=pid, vector=vector.tolist(), payload=dict(payload))
              for pid, vector, payload in zip(ids, vectors, payloads, strict=True)]
    client.upload_points(target.collection, points, batch_size=max(len(points), 1), max_retries=target.retries,
                         wait=True)


def _qdrant_client(target: QdrantTarget) -> Any:
    from qdrant_client import QdrantClient

    return QdrantClient(url=target.url, api_key=target.api_key, timeout=target.timeout)


def _fail_once_if_asked() -> None:
    """Kill this process once when `FAULT_ENV` names an existing file (for the retry tests)."""
    flag = os.environ.get(FAULT_ENV)
    if not flag:
        return
    try:
        os.remove(flag)  # only one actor removes it: the others go on
    except FileNotFoundError:
        return
    os._exit(1)
