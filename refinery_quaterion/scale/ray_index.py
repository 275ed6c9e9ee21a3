"""`index_with_ray`: encode a corpus with a trained model on Ray and index it (Qdrant server or Parquet shards).

Ray Data reads the records; the driver checks their columns, exports the model once to ONNX or
OpenVINO IR (`refinery_quaterion.scale._export`; OpenVINO's int8 model calibrated on the first
records) and ships the model files and tokenizer to encoder actors
(`refinery_quaterion.scale._worker`), which run no torch. The actors embed the records batch by
batch and either upload their own batches to a Qdrant server, or hand them to Ray Data, which
writes Parquet shards of ``(id, vector, payload)``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinery_quaterion._io import atomic_dir
from refinery_quaterion.data.text import TextTemplate
from refinery_quaterion.scale._export import ExportedModel, calibration_sample, export_for_workers, model_template
from refinery_quaterion.scale._worker import EncoderActor, QdrantTarget
from refinery_quaterion.scale.config import RayIndexConfig
from refinery_quaterion.scale.qdrant import check_server, open_server_index
from refinery_quaterion.scale.session import (
    IO_CPUS,
    check_ray_address,
    import_ray,
    ray_session,
    read_records,
    source_files,
)

__all__ = ["RayIndexResult", "index_with_ray"]

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

_REMOTE_ERROR = re.compile(r"^\s*(ValueError|TypeError): (.+)$", re.MULTILINE)
"""A refusal in a remote traceback's text, e.g. ``ValueError: record 5 renders to an empty text ...``."""


RUNTIME_NAMES = {"onnx": "ONNX", "openvino": "OpenVINO"}
"""How `RayIndexResult` names a runtime."""


@dataclass(frozen=True)
class RayIndexResult:
    """What `index_with_ray` wrote; ``str(result)`` is a summary.

    Attributes:
        points: Points written (records, less those sharing an id within one batch).
        dim: Size of the vectors.
        seconds: Wall time: export, Ray start, reading, encoding and writing.
        target: The Parquet folder, or ``"collection 'name' at URL"``.
        files: Parquet shards in the folder (names, sorted); empty for a server.
        quantize: ``None`` (fp32) or ``"int8"``.
        workers: Encoder actors.
        runtime: ``"onnx"`` or ``"openvino"``.
        calibration_texts: Records OpenVINO's int8 model was calibrated on (0: not calibrated).
    """

    points: int
    dim: int
    seconds: float
    target: str
    files: list[str] = field(default_factory=list)
    quantize: str | None = None
    workers: int = 1
    runtime: str = "onnx"
    calibration_texts: int = 0

    @property
    def points_per_second(self) -> float:
        """Throughput over the whole run."""
        return self.points / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        model = "int8" if self.quantize else "fp32"
        calibrated = f" calibrated on {self.calibration_texts} records" if self.calibration_texts else ""
        shards = f" in {len(self.files)} shard(s)" if self.files else ""
        return (f"indexed {self.points} points ({self.dim}-dim, {RUNTIME_NAMES[self.runtime]} {model}{calibrated}, "
                f"{self.workers} worker(s)) into "
                f"{self.target}{shards} in {self.seconds:.1f} s ({self.points_per_second:.0f} points/s)")


def index_with_ray(model: Any, source: Source, *, out: str | os.PathLike[str] | None = None, url: str | None = None,
                   api_key: str | None = None, config: RayIndexConfig | None = None) -> RayIndexResult:
    """Embed the records of ``source`` with ``model`` on Ray and write them as points.

    Ray Data reads the records (JSON Lines, CSV or Parquet; a file, a folder of shards or a
    list), encoder actors embed them with the model's ONNX or OpenVINO export
    (``config.runtime``; ``config.quantize``: fp32 or int8, OpenVINO's int8 calibrated on up to
    `refinery_quaterion.model.openvino_backend.DEFAULT_CALIBRATION_SIZE` of the first records),
    and the points go either to a Qdrant server (``url``: each actor uploads its own
    batches) or to Parquet shards in the folder ``out`` (columns ``id``: string, ``vector``:
    list<float32>, ``payload``: JSON string; written atomically). Point ids and payloads are the
    ones `refinery_quaterion.search.SimilarityIndex` gives the same records with the same
    ``label_field``/``id_field``, so a run that is repeated, or a batch that Ray retries,
    replaces points instead of duplicating them.

    With ``config.address`` ``None`` a local Ray with ``config.num_cpus`` CPUs is started (and
    shut down at the end), unless this process already runs one; an address joins that cluster,
    whose workers need this library (``refinery-quaterion[scale]`` with ``[onnx]`` or
    ``[openvino]``, no torch needed) and, for Parquet output, a folder they all see.

    Args:
        model: A folder written by `refinery_quaterion.save`, or the model `load` returns.
        source: Record files (see above), all of one format.
        out: Folder for the Parquet shards (needs ``config.overwrite`` when it exists).
        url: URL of a Qdrant server or cluster, e.g. ``"http://localhost:6333"``.
        api_key: API key for ``url`` (Qdrant Cloud).
        config: Workers, batch sizes, runtime and quantisation, fields, retries (`RayIndexConfig`).

    Returns:
        A `RayIndexResult`.

    Raises:
        ImportError: If Ray (``refinery-quaterion[scale]``), qdrant-client or, for
            ``config.runtime="openvino"``, OpenVINO (``refinery-quaterion[openvino]``) is not
            installed.
        ValueError: If neither or both of ``out`` and ``url`` are given, a file has an unknown
            format, the template names a column the records lack, or a record is refused (as
            in `SimilarityIndex.add`).
        FileNotFoundError: If a record file or the model folder does not exist.
        FileExistsError: If ``out`` exists and ``config.overwrite`` is false.
        ConnectionError: If nothing answers at ``url`` or ``config.address``.
        StaleIndexError: If the collection at ``url`` was built with another model.
    """
    config = config or RayIndexConfig()
    ray = import_ray()
    _require_runtime(config)
    _check_output(out, url, config)
    paths, reader = source_files(source)
    started = time.perf_counter()
    check_ray_address(config.address)
    if url is not None:
        check_server(url)
    loaded = load_model(model)
    index = None if url is None else open_server_index(loaded, config, url=url, api_key=api_key)
    try:
        with ray_session(ray, config):
            ray.data.DataContext.get_current().enable_progress_bars = config.progress
            records = read_records(ray, paths, reader)
            _check_columns(records, model_template(loaded), config, paths)
            exported = _export(loaded, records, config)
            if index is None:
                points, files = _write_shards(ray, records, exported, config, Path(out))  # type: ignore[arg-type]
            else:
                points, files = _upload(ray, records, exported, config, index, url, api_key), []  # type: ignore[arg-type]
    finally:
        if index is not None:
            index.close()
    target = str(out) if url is None else f"collection {config.collection!r} at {url}"
    return RayIndexResult(points=points, dim=exported.dim, seconds=round(time.perf_counter() - started, 3),
                          target=target, files=files, quantize=config.quantize, workers=config.workers,
                          runtime=config.runtime, calibration_texts=exported.calibration_texts)


def _require_runtime(config: RayIndexConfig) -> None:
    """Fail before Ray starts when OpenVINO (and, for int8, NNCF) is missing: one line naming the extra."""
    if config.runtime == "openvino":
        from refinery_quaterion.model.openvino_backend import require_openvino

        require_openvino("openvino", *(("nncf",) if config.quantize else ()))


def _check_output(out: Any, url: str | None, config: RayIndexConfig) -> None:
    if (out is None) == (url is None):
        raise ValueError("index_with_ray needs exactly one output: out (a folder for Parquet shards) or url "
                         "(a Qdrant server)")
    if out is not None and os.path.lexists(out) and not config.overwrite:
        raise FileExistsError(f"{out} already exists; pass RayIndexConfig(overwrite=True) to replace it")


def load_model(model: Any) -> Any:
    """The model of a saved folder (`refinery_quaterion.load`), or ``model`` itself when already loaded.

    Raises:
        FileNotFoundError: If ``model`` is not a saved model folder.
    """
    from refinery_quaterion.training.model_files import load

    return load(model) if isinstance(model, str | os.PathLike) else model


def _export(loaded: Any, records: Any, config: RayIndexConfig) -> ExportedModel:
    """Export the model for the actors; OpenVINO's int8 model is calibrated on the first records (rendered)."""
    texts = None
    if config.runtime == "openvino" and config.quantize == "int8":
        from refinery_quaterion.model.openvino_backend import DEFAULT_CALIBRATION_SIZE

        texts = calibration_sample(records, model_template(loaded), DEFAULT_CALIBRATION_SIZE)
    return export_for_workers(loaded, config.quantize, runtime=config.runtime, calibration_texts=texts)


def _check_columns(records: Any, template: TextTemplate, config: RayIndexConfig, paths: list[str]) -> None:
    """Refuse records that lack a column the template or ``id_field`` names (before any encoding)."""
    schema = records.schema()
    if schema is None:
        return  # no records
    where = paths[0] if len(paths) == 1 else f"the records ({paths[0]} and {len(paths) - 1} more file(s))"
    template.validate(schema.names, source=where)
    if config.id_field is not None and config.id_field not in schema.names:
        raise ValueError(f"id_field {config.id_field!r} is not a column of {where}; "
                         f"available columns: {', '.join(map(repr, schema.names))}")


def _encoded(ray: Any, records: Any, exported: ExportedModel, config: RayIndexConfig,
             target: QdrantTarget | None) -> Any:
    """``records`` mapped by the encoder actors (restarted and retried on failure)."""
    kwargs = {"model_files": ray.put(exported.files), "model_file": exported.model_file,
              "runtime": exported.runtime, "template": exported.template, "label_field": config.label_field,
              "id_field": config.id_field, "threads": config.cpus_per_worker,
              "encode_batch_size": config.encode_batch_size, "target": target}
    return records.map_batches(
        EncoderActor, fn_constructor_kwargs=kwargs, batch_size=config.batch_size, batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=config.workers), num_cpus=config.cpus_per_worker,
        max_restarts=config.max_restarts, max_task_retries=config.max_task_retries,
    )


def _write_shards(ray: Any, records: Any, exported: ExportedModel, config: RayIndexConfig,
                  out: Path) -> tuple[int, list[str]]:
    """Write the points as Parquet shards into ``out`` (atomically); ``(points, shard names)``."""
    import pyarrow.parquet as pq

    encoded = _encoded(ray, records, exported, config, None)
    with atomic_dir(out, overwrite=config.overwrite) as tmp:
        _run(lambda: encoded.write_parquet(str(tmp), ray_remote_args={"num_cpus": IO_CPUS}))
        files = sorted(p.name for p in tmp.iterdir() if p.suffix == ".parquet")
        points = sum(pq.ParquetFile(tmp / name).metadata.num_rows for name in files)
    return points, files


def _upload(ray: Any, records: Any, exported: ExportedModel, config: RayIndexConfig, index: Any, url: str,
            api_key: str | None) -> int:
    """Let the actors upload into the opened collection, indexing deferred; the points written."""
    target = QdrantTarget(url=url, collection=config.collection, api_key=api_key, timeout=config.timeout,
                          retries=config.upload_retries)
    encoded = _encoded(ray, records, exported, config, target)
    with index.bulk_load():
        return _run(lambda: sum(len(batch["id"]) for batch in encoded.iter_batches(batch_format="pyarrow",
                                                                                    batch_size=None)))


def _run(step: Any) -> Any:
    """Run a Ray Data ``step``; a refused record comes out as its own ``ValueError``/``TypeError``."""
    try:
        return step()
    except Exception as err:
        cause = _user_error(err)
        if cause is None:
            raise
        raise cause from None


def _user_error(err: BaseException) -> BaseException | None:
    """The ``ValueError``/``TypeError`` the actors' code raised inside a Ray error, if that is what failed.

    Ray wraps it (``RayTaskError``, keeping it as ``cause``; Ray Data chains a ``UserCodeException``).
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if type(current) in (ValueError, TypeError):
            return current
        pending += [getattr(current, "cause", None), current.__cause__, current.__context__]
    found = _REMOTE_ERROR.findall(str(err))  # pickling dropped the chain: the remote traceback's text has it
    if found:
        kind, message = found[-1]
        return (ValueError if kind == "ValueError" else TypeError)(message)
    return None
