"""`RayIndexConfig`: the settings of `refinery_quaterion.scale.index_with_ray`, validated on creation."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCALE_EXTRA", "RayIndexConfig"]

SCALE_EXTRA = "refinery-quaterion[scale]"
"""The extra that installs Ray (``ray[data]``) and pyarrow."""

QUANTIZATIONS = (None, "int8")
"""What ``quantize`` takes: ``None`` runs the fp32 model, ``"int8"`` the int8 one."""
RUNTIMES = ("onnx", "openvino")
"""What ``runtime`` takes: the export the actors run (``model.onnx`` / ``model_int8.onnx`` with ONNX Runtime,
``model.xml`` / ``model_int8.xml`` with OpenVINO)."""


@dataclass(frozen=True)
class RayIndexConfig:
    """How `refinery_quaterion.scale.index_with_ray` encodes and writes (validated on creation).

    Attributes:
        address: Ray cluster to join (``"auto"``, ``"host:6379"`` or ``"ray://host:10001"``);
            ``None`` starts a local Ray on this machine (or uses the one this process already
            started with ``ray.init``).
        num_cpus: CPUs of the local Ray started when ``address`` is ``None``.
        workers: Encoder actors (each loads the exported model once and encodes its batches).
        cpus_per_worker: CPUs Ray reserves per actor; also the runtime's threads per actor.
        batch_size: Records per batch handed to an actor (and uploaded in one request).
        encode_batch_size: Texts per runtime call inside a batch.
        quantize: ``None`` (fp32, the library's own vectors) or ``"int8"``: with ONNX Runtime
            dynamically quantised weights (about 2x faster on CPUs, cosine to fp32 about 0.99);
            with OpenVINO static int8 calibrated on up to
            `refinery_quaterion.model.openvino_backend.DEFAULT_CALIBRATION_SIZE` of your records.
        runtime: ``"onnx"`` (the model's ONNX export run by ONNX Runtime; needs the
            ``refinery-quaterion[onnx]`` extra on the workers) or ``"openvino"`` (its OpenVINO
            export; faster on Intel CPUs; needs ``refinery-quaterion[openvino]`` on the driver
            and the workers).
        collection: Qdrant collection name (server output).
        label_field: Record field holding the label (payload key, as in `SimilarityIndex`).
        id_field: Record field holding the record id, or ``None`` for ids derived from the text
            (as in `SimilarityIndex`: the same records get the same point ids either way).
        max_restarts: How often Ray restarts an actor whose process died.
        max_task_retries: How often a batch of a died actor is run again (on the restarted actor).
        upload_retries: Attempts per batch upload to the Qdrant server before the batch fails.
        timeout: Seconds a Qdrant request may take.
        overwrite: Replace an existing Parquet output folder.
        progress: Show Ray Data's progress bars.

    Raises:
        ValueError: For a value out of range, naming it.
    """

    address: str | None = None
    num_cpus: int = 2
    workers: int = 2
    cpus_per_worker: int = 1
    batch_size: int = 256
    encode_batch_size: int = 64
    quantize: str | None = None
    runtime: str = "onnx"
    collection: str = "refinery"
    label_field: str = "label"
    id_field: str | None = None
    max_restarts: int = 3
    max_task_retries: int = 3
    upload_retries: int = 3
    timeout: int = 60
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("num_cpus", "workers", "cpus_per_worker", "batch_size", "encode_batch_size", "upload_retries",
                     "timeout"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("max_restarts", "max_task_retries"):
            _check_int(name, getattr(self, name), minimum=0)
        if self.quantize not in QUANTIZATIONS:
            raise ValueError(f"quantize must be None or 'int8', got {self.quantize!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(map(repr, RUNTIMES))}, got {self.runtime!r}")
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ValueError(f"address must be a Ray address such as 'auto' or 'host:6379', or None, "
                             f"got {self.address!r}")
        for name in ("collection", "label_field"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if self.id_field is not None and (not isinstance(self.id_field, str) or not self.id_field):
            raise ValueError(f"id_field must be a non-empty string or None, got {self.id_field!r}")
        if self.address is None and self.workers * self.cpus_per_worker > self.num_cpus:
            raise ValueError(f"workers ({self.workers}) x cpus_per_worker ({self.cpus_per_worker}) exceeds the "
                             f"local Ray's num_cpus ({self.num_cpus}); the actors could never all start")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
