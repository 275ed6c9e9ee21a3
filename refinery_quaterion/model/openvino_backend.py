"""OpenVINO for the encoder backends ``"openvino"`` and ``"openvino-int8"`` and the ``openvino`` export.

The encoder's ONNX graph (`refinery_quaterion.model.onnx_graph`) is converted to OpenVINO IR
(``model.xml`` + ``model.bin``, fp32 weights: never compressed to fp16) and compiled on the CPU
with as many inference threads as this process may use CPUs (`refinery_quaterion.model.runtime.usable_cpus`)
and fp32 inference precision (OpenVINO would otherwise run bf16 on CPUs that have it), so the
``"openvino"`` vectors are the torch vectors.

``"openvino-int8"`` is post-training *static* quantisation with NNCF
(``nncf.quantize(..., model_type=nncf.ModelType.TRANSFORMER)``): activations are quantised too,
with ranges calibrated on real texts -- the user's own. By default the calibration sample is
the texts the encoder is first asked to encode with this backend (in training, that is the
training records of the cache pass), evenly spread over that call's texts and capped at the
encoder's ``calibration_size`` texts (`refinery_quaterion.model.config.ModelConfig.calibration_size`,
`DEFAULT_CALIBRATION_SIZE` by default); `refinery_quaterion.model.backends.calibrate` builds it
from a sample the caller chooses instead. The quantised model is kept next to the encoder's
other graphs, so calibration runs once; later runs load it (and keep its vectors). NNCF's own
progress bars and log notes are silenced while it quantises.

Needs the ``refinery-quaterion[openvino]`` extra (openvino, nncf), imported only when used.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion.model.runtime import import_or_name_extra, usable_cpus

__all__ = [
    "DEFAULT_CALIBRATION_SIZE",
    "IR_FILE",
    "CompiledIR",
    "OPENVINO_EXTRA",
    "calibration_inputs",
    "compile_ir",
    "convert_onnx",
    "openvino_available",
    "require_openvino",
]

OPENVINO_EXTRA = "refinery-quaterion[openvino]"
"""The extra that installs openvino and nncf."""
IR_FILE = "model.xml"
"""The OpenVINO IR file (its weights are ``model.bin`` beside it)."""
DEFAULT_CALIBRATION_SIZE = 300
"""Texts the int8 model is calibrated on by default (NNCF's ``subset_size``; the encoder's and
`refinery_quaterion.model.config.ModelConfig`'s ``calibration_size``, the export's cap)."""


def openvino_available() -> bool:
    """Whether openvino is installed (checked without importing it)."""
    from importlib.util import find_spec

    try:
        return find_spec("openvino") is not None
    except ValueError:  # a module object without a spec (e.g. blocked in sys.modules)
        return False


def require_openvino(*modules: str) -> list[Any]:
    """Import ``openvino`` / ``nncf`` (as asked), or fail with one line naming the extra.

    Raises:
        ImportError: Naming ``refinery-quaterion[openvino]``.
    """
    return import_or_name_extra(modules or ("openvino",), needed_by="the OpenVINO backends and export",
                                extra=OPENVINO_EXTRA)


def calibration_inputs(token_ids: Sequence[Sequence[int]], size: int) -> list[dict[str, np.ndarray]]:
    """One model input per text for calibration: up to ``size`` texts spread evenly over ``token_ids``."""
    if not token_ids:
        raise ValueError("int8 calibration needs at least one text")
    picks = np.unique(np.linspace(0, len(token_ids) - 1, num=min(size, len(token_ids))).round().astype(int))
    inputs = []
    for i in picks:
        ids = np.asarray([token_ids[i]], dtype=np.int64)
        inputs.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return inputs


def convert_onnx(onnx_path: Path, target: Path, *, calibration: list[dict[str, np.ndarray]] | None = None) -> None:
    """Convert ``onnx_path`` to OpenVINO IR at ``target`` (``.xml``), fp32; int8 when ``calibration`` is given.

    Args:
        onnx_path: The encoder's ONNX graph.
        target: The ``.xml`` file to write (``.bin`` beside it).
        calibration: Model inputs to calibrate NNCF's static int8 quantisation on; ``None``
            keeps fp32 weights.

    Raises:
        ImportError: If openvino (or, to quantise, nncf) is not installed (names the extra).
    """
    (ov,) = require_openvino("openvino")
    model = ov.convert_model(str(onnx_path))
    if calibration is not None:
        model = _quantize(model, calibration)
    ov.save_model(model, str(target), compress_to_fp16=False)


def _quantize(model: Any, calibration: list[dict[str, np.ndarray]]) -> Any:
    """NNCF post-training static int8 quantisation of an OpenVINO model (transformer preset), quietly."""
    (nncf,) = require_openvino("nncf")
    with _nncf_quiet():
        return nncf.quantize(model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(calibration))


@contextlib.contextmanager
def _nncf_quiet() -> Iterator[None]:
    """Silence NNCF inside the block: its log notes and its progress bars; restored afterwards.

    NNCF draws its bars (``nncf.common.logging.track_progress.track``: statistics collection,
    bias correction, ...) with rich on rich's global console and offers no switch for them, so
    the console is made quiet (rich's own ``Console.quiet``) for the block; the library shows
    its own progress (the "Encoding" bar) around it.
    """
    import rich

    nncf_logger = logging.getLogger("nncf")
    console = rich.get_console()
    level, quiet = nncf_logger.level, console.quiet
    nncf_logger.setLevel(logging.ERROR)
    console.quiet = True
    try:
        yield
    finally:
        nncf_logger.setLevel(level)
        console.quiet = quiet


def compile_ir(path: Path, *, threads: int | None = None, exact: bool = True) -> CompiledIR:
    """Compile the IR at ``path`` on the CPU; a `CompiledIR`: ``run(input_ids, attention_mask) -> vectors``.

    Args:
        path: A ``model.xml``.
        threads: Inference threads (default: the CPUs this process may use, `usable_cpus`).
        exact: Run the non-quantised operations in fp32 (else OpenVINO's default, bf16 on CPUs
            that have it).

    Raises:
        ImportError: If openvino is not installed (names the extra).
    """
    return CompiledIR(path, threads=threads, exact=exact)


class CompiledIR:
    """An OpenVINO IR compiled on the CPU, in two modes that give the same vectors.

    Calling it runs one batch with every thread (OpenVINO's ``LATENCY`` hint: a single query is
    answered fastest). `run_all` runs a stream of batches with the ``THROUGHPUT`` hint: as many
    batches at once as OpenVINO has streams (on 2 CPUs: 2 batches of 1 thread each), which
    encodes a corpus 15-30 % faster than one batch at a time (`benchmarks/bench_export.py`).
    The throughput model is compiled on the first `run_all` of more than one batch.

    With fewer ``threads`` than the process may use CPUs, threads are not pinned to cores:
    OpenVINO pins each process's threads to the first cores, so two processes of one thread each
    (Ray's encoder actors) would share one core (measured: 88 texts/s each instead of 185).

    Args:
        path: A ``model.xml``.
        threads: Inference threads (default: the CPUs this process may use, `usable_cpus`).
        exact: Run the non-quantised operations in fp32.

    Raises:
        ImportError: If openvino is not installed (names the extra).
    """

    def __init__(self, path: Path, *, threads: int | None = None, exact: bool = True) -> None:
        self.path, self.threads, self.exact = Path(path), threads or usable_cpus(), exact
        compiled = self._compile("LATENCY")  # now: a damaged file fails here, not at the first batch
        self._request, self._output = compiled.create_infer_request(), compiled.output(0)
        self._streams: list[Any] | None = None

    def _compile(self, hint: str) -> Any:
        (ov,) = require_openvino("openvino")
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": hint}
        if self.threads < usable_cpus():  # others share the CPUs (e.g. Ray actors): OpenVINO would pin every
            config["ENABLE_CPU_PINNING"] = False  # process's threads to the same first cores
        if self.exact:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        return ov.Core().compile_model(str(self.path), "CPU", config)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Vectors of one padded batch (int64 ``(batch, sequence)`` arrays), float32 ``(batch, dim)``."""
        result = self._request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        return np.array(result[self._output], dtype=np.float32)  # a copy: the request reuses its buffer

    def run_all(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """Vectors of each ``(input_ids, attention_mask)`` batch, in order, several batches in flight."""
        batches = list(batches)
        if len(batches) < 2 or self.threads < 2:
            yield from (self(ids, mask) for ids, mask in batches)
            return
        requests = self._stream_requests()
        pending: deque[Any] = deque()
        for k, (ids, mask) in enumerate(batches):
            if len(pending) == len(requests):  # the oldest batch ran on the request needed now
                yield self._result(pending.popleft())
            request = requests[k % len(requests)]
            request.start_async({"input_ids": ids, "attention_mask": mask})
            pending.append(request)
        while pending:
            yield self._result(pending.popleft())

    def _stream_requests(self) -> list[Any]:
        if self._streams is None:
            compiled = self._compile("THROUGHPUT")
            count = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._streams = [compiled.create_infer_request() for _ in range(count)]
        return self._streams

    def _result(self, request: Any) -> np.ndarray:
        request.wait()
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)
