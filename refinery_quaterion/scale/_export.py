"""What the encoder actors run: the model exported once by the driver, ONNX or OpenVINO IR.

`export_for_workers` writes the export (`refinery_quaterion.exporters.export_model`, checked
against the library's own vectors) to a temporary folder and reads back the files an actor
needs as bytes: the model file (``model.onnx`` / ``model_int8.onnx``, or ``model.xml`` +
``model.bin`` / ``model_int8.xml`` + ``model_int8.bin``) and ``tokenizer.json``. OpenVINO's int8
model is statically quantised: `calibration_sample` renders the records it is calibrated on.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refinery_quaterion.data.text import TextTemplate

__all__ = ["ExportedModel", "calibration_sample", "export_for_workers", "model_files", "model_template"]

MODEL_FILES: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("onnx", None): ("model.onnx",),
    ("onnx", "int8"): ("model_int8.onnx",),
    ("openvino", None): ("model.xml", "model.bin"),
    ("openvino", "int8"): ("model_int8.xml", "model_int8.bin"),
}
"""The files of the model an actor runs, by ``(runtime, quantize)``; the first is the one it loads."""


@dataclass(frozen=True)
class ExportedModel:
    """What the actors need of the model, exported once by the driver.

    Attributes:
        files: The model's files and ``tokenizer.json``, by name (bytes).
        model_file: The file the actors load (``model.onnx``, ``model_int8.xml``, ...).
        template: Renders a record as the text to embed (the model's template).
        dim: Size of the vectors.
        fingerprint: The model's fingerprint (`refinery_quaterion.search.protocol.model_fingerprint`).
        runtime: ``"onnx"`` or ``"openvino"``.
        calibration_texts: Texts OpenVINO's int8 model was calibrated on (0: not calibrated).
    """

    files: dict[str, bytes]
    model_file: str
    template: TextTemplate
    dim: int
    fingerprint: str | None
    runtime: str = "onnx"
    calibration_texts: int = 0


def model_files(runtime: str, quantize: str | None) -> tuple[str, ...]:
    """The files of the model the actors run (`MODEL_FILES`), the one they load first."""
    return MODEL_FILES[runtime, quantize]


def model_template(loaded: Any) -> TextTemplate:
    """The loaded model's text template: records are rendered with it, as `SimilarityIndex` does."""
    return TextTemplate.coerce(loaded.template)


def export_for_workers(loaded: Any, quantize: str | None, *, runtime: str = "onnx",
                       calibration_texts: Sequence[str] | None = None) -> ExportedModel:
    """Export the loaded model in a temporary folder and read what the actors need.

    Args:
        loaded: The model `refinery_quaterion.load` returns.
        quantize: ``None`` (fp32) or ``"int8"``.
        runtime: ``"onnx"`` or ``"openvino"`` (the export format).
        calibration_texts: Texts to calibrate OpenVINO's int8 model on (`calibration_sample`);
            ``None``: the export's probe texts.

    Raises:
        ImportError: If the format's extra is not installed (names it).
        ModelExportError: If the export differs from the library's vectors.
    """
    from refinery_quaterion.exporters.formats import export_model
    from refinery_quaterion.exporters.model_card import CALIBRATION_CHECK
    from refinery_quaterion.search.protocol import model_fingerprint

    names = model_files(runtime, quantize)
    with tempfile.TemporaryDirectory(prefix="refinery-quaterion-ray-") as tmp:
        result = export_model(loaded, Path(tmp) / runtime, format=runtime, quantize=quantize,
                              calibration_texts=calibration_texts)
        files = {name: (result.path / name).read_bytes() for name in (*names, "tokenizer.json")}
        settings = json.loads((result.path / "refinery_export.json").read_text(encoding="utf-8"))
    return ExportedModel(files=files, model_file=names[0], template=model_template(loaded),
                         dim=int(settings["dim"]), fingerprint=model_fingerprint(loaded), runtime=runtime,
                         calibration_texts=int(result.checks.get(CALIBRATION_CHECK, 0)))


def calibration_sample(records: Any, template: TextTemplate, size: int) -> list[str] | None:
    """The first ``size`` records of a Ray dataset rendered with ``template``, blank texts left out.

    ``None`` when there is no text (the export then calibrates on its probe texts; the actors
    refuse blank records with their own error).
    """
    from refinery_quaterion.search.points import is_blank

    texts = [text for text in template.render_many(records.take(size)) if not is_blank(template, text)]
    return texts or None
