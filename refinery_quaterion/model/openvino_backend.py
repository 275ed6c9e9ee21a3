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
training records of the cache pass), evenly spread over that call's texts and capped at
`calibration_size` texts (`DEFAULT_CALIBRATION_SIZE`, or the environment variable
``REFINERY_QUATERION_CALIBRATION_SIZE``); `refinery_quaterion.model.backends.calibrate` builds it
from a sample the caller chooses instead. The quantised model is kept next to the encoder's
other graphs, so calibration runs once; later runs load it (and keep its vectors).

Needs the ``refinery-quaterion[openvino]`` extra (openvino, nncf), imported only when used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion.model.runtime import usable_cpus

__all__ = [
    "CALIBRATION_SIZE_VARIABLE",
    "DEFAULT_CALIBRATION_SIZE",
    "IR_FILE",
    "OPENVINO_EXTRA",
    "calibration_inputs",
    "calibration_size",
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
"""Texts the int8 model is calibrated on by default (NNCF's ``subset_size``)."""
CALIBRATION_SIZE_VARIABLE = "REFINERY_QUATERION_CALIBRATION_SIZE"
"""Environment variable that sets `calibration_size`."""


def calibration_size() -> int:
    """Texts to calibrate the int8 model on: ``$REFINERY_QUATERION_CALIBRATION_SIZE`` or `DEFAULT_CALIBRATION_SIZE`.

    Raises:
        ValueError: If the variable is set to anything but a positive integer.
    """
    value = os.environ.get(CALIBRATION_SIZE_VARIABLE, "").strip()
    if not value:
        return DEFAULT_CALIBRATION_SIZE
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{CALIBRATION_SIZE_VARIABLE} must be a positive integer, got {value!r}")
    return int(value)


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
    import importlib

    imported = []
    for name in modules or ("openvino",):
        try:
            imported.append(importlib.import_module(name))
        except ImportError as err:
            raise ImportError(f"the OpenVINO backends and export need {name}, which is not installed: "
                              f"pip install '{OPENVINO_EXTRA}'") from err
    return imported


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
    """NNCF post-training static int8 quantisation of an OpenVINO model (transformer preset)."""
    (nncf,) = require_openvino("nncf")
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)  # progress bars and notes about the statistics
    try:
        return nncf.quantize(model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(calibration))
    finally:
        nncf_logger.setLevel(level)


def compile_ir(path: Path, *, threads: int | None = None, exact: bool = True
               ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Compile the IR at ``path`` on the CPU; return ``run(input_ids, attention_mask) -> vectors``.

    Args:
        path: A ``model.xml``.
        threads: Inference threads (default: the CPUs this process may use, `usable_cpus`).
        exact: Run the non-quantised operations in fp32 (else OpenVINO's default, bf16 on CPUs
            that have it).

    Raises:
        ImportError: If openvino is not installed (names the extra).
    """
    (ov,) = require_openvino("openvino")
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads or usable_cpus(), "PERFORMANCE_HINT": "LATENCY"}
    if exact:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        result = request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        return np.array(result[output], dtype=np.float32)  # a copy: the request reuses its buffer

    return run
