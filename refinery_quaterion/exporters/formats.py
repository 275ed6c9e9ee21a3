"""The export formats registry and `export_model`, the one entry point (also of the CLI).

A format is one function ``write(source, folder, settings) -> checks`` registered with
`register_format` (`EXPORT_FORMATS` is a `refinery_quaterion.registry.Registry`): it fills an
empty folder (the exporter has already read the model into an `ExportSource`), and
`export_model` takes care of the rest -- reading the model, validating the settings, writing
atomically, timing. The built-in formats are registered at the end of this module; their
writers (`refinery_quaterion.exporters.st_folder`, `refinery_quaterion.exporters.onnx_model`)
are imported only when a model is exported.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinery_quaterion._io import atomic_dir, refuse_output_over_inputs
from refinery_quaterion.errors import OutputExistsError
from refinery_quaterion.exporters.model_card import write_card
from refinery_quaterion.exporters.source import ExportSource, read_model
from refinery_quaterion.model.openvino_backend import OPENVINO_EXTRA
from refinery_quaterion.model.runtime import ONNX_EXTRA
from refinery_quaterion.registry import Registry

__all__ = [
    "EXPORT_FORMATS",
    "ExportFormat",
    "ExportResult",
    "ExportSettings",
    "export_model",
    "register_format",
]

FormatWriter = Callable[[ExportSource, Path, "ExportSettings"], Mapping[str, float]]


@dataclass(frozen=True)
class ExportFormat:
    """A registered export format.

    Attributes:
        name: What ``format=`` (``--format``) takes, e.g. ``"onnx"``.
        write: ``write(source, folder, settings) -> checks``: fills the empty ``folder`` and
            returns named check values (e.g. ``{"min_cosine": 1.0}``).
        description: One line for help texts.
        quantizations: Values ``quantize=`` accepts for this format (besides ``None``).
        calibrated: Whether its quantised model is calibrated on texts (static quantisation), so
            `ExportSettings.calibration_texts` applies.
        extra: The ``refinery-quaterion[...]`` extra the format needs, if any.
        example: A usage example for the docs (``export_model(..., format="onnx")``).
    """

    name: str
    write: FormatWriter
    description: str
    quantizations: tuple[str, ...] = ()
    calibrated: bool = False
    extra: str | None = None
    example: str = ""


def _make_format(
    name: str,
    write: FormatWriter,
    *,
    description: str,
    example: str,
    quantizations: tuple[str, ...] = (),
    calibrated: bool = False,
    extra: str | None = None,
) -> ExportFormat:
    """An `ExportFormat` from a registration (the ``make_entry`` of `EXPORT_FORMATS`)."""
    return ExportFormat(name, write, description, tuple(quantizations), calibrated, extra, example)


def _needs(spec: ExportFormat) -> str:
    """What the format needs installed, and its quantisations (the docs table's last column)."""
    needs = f"`{spec.extra}`" if spec.extra else "the core install"
    return needs + "".join(f'; `quantize="{q}"`' for q in spec.quantizations)


EXPORT_FORMATS: Registry[ExportFormat] = Registry(
    "export format", "formats", _make_format, default="sentence-transformers",
    usage='export_model("my-model", "out", format="{name}")', details=("Needs", _needs),
)
"""Registered formats by name: ``"sentence-transformers"``, ``"onnx"`` and ``"openvino"``."""


def register_format(
    name: str, *, description: str, quantizations: tuple[str, ...] = (), calibrated: bool = False,
    extra: str | None = None,
) -> Callable[[FormatWriter], FormatWriter]:
    """Decorator: register a format writer under ``name`` (see `ExportFormat`).

    The writer imports what it needs (torch, onnx, ...) when called, or lives in a module that
    the registration does not import, so reading `EXPORT_FORMATS` (``--help``) stays light.

    Raises:
        ValueError: If ``name`` is already registered.
    """
    return EXPORT_FORMATS.register(name, description, quantizations=quantizations, calibrated=calibrated, extra=extra)


def _writer(module: str, function: str) -> FormatWriter:
    """The writer ``module.function``, imported when first called.

    The built-in writers import torch; naming them by module keeps the registry light and
    leaves no import arrow from here back to the writers (which import `ExportSettings`).
    """

    def write(source: ExportSource, folder: Path, settings: ExportSettings) -> Mapping[str, float]:
        return getattr(importlib.import_module(module), function)(source, folder, settings)

    write.__doc__ = f"`{module}.{function}`, imported on first use."
    return write


register_format("sentence-transformers", description="a folder that sentence_transformers.SentenceTransformer loads")(
    _writer("refinery_quaterion.exporters.st_folder", "write_sentence_transformers"))
register_format("onnx", description="model.onnx (+ model_int8.onnx) and tokenizer.json for ONNX Runtime",
                quantizations=("int8",), extra=ONNX_EXTRA)(
    _writer("refinery_quaterion.exporters.onnx_model", "write_onnx"))
register_format("openvino", description="OpenVINO IR model.xml (+ model_int8.xml, NNCF static int8), "
                "tokenizer.json and serve.py", quantizations=("int8",), calibrated=True, extra=OPENVINO_EXTRA)(
    _writer("refinery_quaterion.exporters.openvino_model", "write_openvino"))


@dataclass(frozen=True)
class ExportSettings:
    """How to export (validated on creation).

    Attributes:
        format: A key of `EXPORT_FORMATS`.
        quantize: ``None`` or one of the format's ``quantizations`` (``"int8"`` for ONNX).
        opset: ONNX opset version.
        check: After writing, embed a few probe texts with the exported model and compare them
            with the library's ``encode`` (raises `ModelExportError` below a cosine of 0.9999).
        overwrite: Replace an existing output folder.
        calibration_texts: Texts to calibrate a statically quantised model on (the ``openvino``
            format's ``model_int8.xml``): your own, e.g. a sample of your records rendered with
            the model's text template; up to
            `refinery_quaterion.model.openvino_backend.DEFAULT_CALIBRATION_SIZE` of them, spread
            evenly, are used. ``None``: the export's probe texts -- few, so the int8 model is
            less faithful.

    Raises:
        ValueError: For an unknown format, a quantisation the format does not offer, a bad opset,
            or calibration texts that are not texts or have no calibrated int8 model to go to.
    """

    format: str = "sentence-transformers"
    quantize: str | None = None
    opset: int = 17
    check: bool = True
    overwrite: bool = False
    calibration_texts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        spec = EXPORT_FORMATS.get(self.format)
        if spec is None:
            raise ValueError(f"unknown export format {self.format!r}; valid formats: {list(EXPORT_FORMATS)}")
        if self.quantize is not None and self.quantize not in spec.quantizations:
            offered = f"one of {list(spec.quantizations)} or None" if spec.quantizations else "only None"
            raise ValueError(f"quantize={self.quantize!r} is not available for format {self.format!r}; "
                             f"it takes {offered}")
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or not 14 <= self.opset <= 21:
            raise ValueError(f"opset must be an integer from 14 to 21, got {self.opset!r}")
        if self.calibration_texts is not None:
            object.__setattr__(self, "calibration_texts", _calibration_texts(self.calibration_texts, spec,
                                                                            self.quantize))


def _calibration_texts(texts: Any, spec: ExportFormat, quantize: str | None) -> tuple[str, ...]:
    """``texts`` as a tuple of strings, checked: some texts, for a format that calibrates its quantised model."""
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise ValueError(f"calibration_texts must be a list of texts, got {type(texts).__name__}")
    texts = tuple(texts)
    wrong = next((text for text in texts if not isinstance(text, str)), None)
    if wrong is not None or not texts:
        got = f"a {type(wrong).__name__}" if wrong is not None else "none"
        raise ValueError(f"calibration_texts must be one or more texts (str), got {got}")
    if quantize is None or not spec.calibrated:
        calibrating = [name for name, format in EXPORT_FORMATS.items() if format.calibrated]
        raise ValueError(f"calibration_texts calibrate a statically quantised model: they need quantize='int8' "
                         f"and a format that calibrates, {calibrating} (got format {spec.name!r}, "
                         f"quantize={quantize!r})")
    return texts


@dataclass
class ExportResult:
    """What `export_model` wrote; ``str(result)`` is the summary the CLI prints.

    Attributes:
        path: The output folder.
        format: The format name.
        files: Files in the folder (relative paths, sorted).
        dim: Size of the exported embeddings.
        seconds: Wall time of the export.
        checks: Named check values, e.g. ``min_cosine`` (exported vs the library's ``encode``
            on probe texts) and ``int8_min_cosine`` (int8 vs fp32); for a calibrated int8 model
            also ``int8_calibration_texts``, the number of texts it was calibrated on.
    """

    path: Path
    format: str
    files: list[str]
    dim: int
    seconds: float
    checks: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"exported {self.format} model to {self.path} ({self.dim}-dim vectors, {self.seconds:.1f} s)"]
        lines += [f"  {name}: {value if isinstance(value, int) else f'{value:.6f}'}"
                  for name, value in self.checks.items()]
        sizes = {name: (self.path / name).stat().st_size for name in self.files if (self.path / name).is_file()}
        lines += [f"  {name}  {size / 2**20:.1f} MiB" for name, size in sizes.items() if size >= 2**20]
        return "\n".join(lines)


def export_model(
    model_or_path: Any,
    out: str | os.PathLike,
    format: str = "sentence-transformers",
    *,
    quantize: str | None = None,
    overwrite: bool = False,
    label_map: Any = None,
    evaluation: Any = None,
    opset: int = 17,
    check: bool = True,
    calibration_texts: Iterable[str] | None = None,
) -> ExportResult:
    """Export a trained model for use without this library.

    ``"sentence-transformers"``: a folder ``SentenceTransformer(out)`` loads (Transformer ->
    Pooling -> Normalize -> the head as ``Dense`` modules -> Normalize). ``"onnx"``:
    ``model.onnx`` (encoder, pooling, head and normalisation in one graph; dynamic batch and
    sequence axes) with ``tokenizer.json``, served with only ``onnxruntime``, ``tokenizers`` and
    ``numpy``; ``quantize="int8"`` adds ``model_int8.onnx``. ``"openvino"``: ``model.xml`` (OpenVINO
    IR) with ``tokenizer.json`` and ``serve.py``, served with only ``openvino``, ``tokenizers`` and
    ``numpy``; ``quantize="int8"`` adds ``model_int8.xml`` (static quantisation, calibrated on
    ``calibration_texts``). Every folder holds a model card
    (``README.md``: base model, the text template the caller must render records with, labels,
    training data, evaluation), ``label_map.json`` and ``refinery_export.json``. The vectors are
    unit length; compare them by cosine (= dot product).

    Args:
        model_or_path: A folder written by `refinery_quaterion.save`, the model `load` returns,
            or a trained `DistilBertSimilarityModel`.
        out: Output folder (written atomically).
        format: A key of `EXPORT_FORMATS`: ``"sentence-transformers"``, ``"onnx"`` or ``"openvino"``.
        quantize: ``"int8"``: also write a quantised model (``model_int8.onnx``, dynamic;
            ``model_int8.xml``, static).
        calibration_texts: Your texts (e.g. a sample of your records rendered with the model's
            template) to calibrate ``model_int8.xml`` on (`ExportSettings.calibration_texts`);
            ``None``: the export's probe texts.
        overwrite: Replace an existing ``out``.
        label_map: Labels to record when the model has none (a `LabelMap` or list of names).
        evaluation: Evaluation table for the model card: a report folder written by
            `evaluate_model` (its ``metrics.csv``), a CSV file, or a DataFrame.
        opset: ONNX opset version.
        check: Compare the exported model with the library's ``encode`` on probe texts
            (ONNX always; sentence-transformers when that package is installed).

    Returns:
        An `ExportResult` (``print`` it for a summary).

    Raises:
        ValueError: For an unknown format or quantisation, calibration texts without a calibrated
            int8 model, or ``out`` being the model's folder.
        FileExistsError: If ``out`` exists and ``overwrite`` is false.
        FileNotFoundError: If ``model_or_path`` is not a saved model folder.
        ModelExportError: If a part of the model cannot be expressed in the format (names it), or the
            check finds different vectors.
        ImportError: If the format needs an extra that is not installed (names it).
    """
    started = time.perf_counter()
    settings = ExportSettings(format=format, quantize=quantize, opset=opset, check=check, overwrite=overwrite,
                              calibration_texts=calibration_texts)  # made a tuple there
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    if isinstance(model_or_path, str | os.PathLike):
        _refuse_source_folder(Path(model_or_path), out)
    source = read_model(model_or_path, label_map=label_map)
    if source.model_path is not None:
        _refuse_source_folder(source.model_path, out)
    spec = EXPORT_FORMATS[settings.format]
    table = _evaluation_table(evaluation)
    with atomic_dir(out, overwrite=overwrite) as tmp:  # files get the umask's modes before the swap
        checks = dict(spec.write(source, tmp, settings))
        write_card(source, tmp, format=settings.format, evaluation=table, checks=checks,
                   calibrated_on="your texts" if settings.calibration_texts else "the export's probe texts")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    dim = source.head.output_size if hasattr(source.head, "output_size") else source.raw_dim
    return ExportResult(path=out, format=settings.format, files=files, dim=int(dim),
                        seconds=round(time.perf_counter() - started, 3), checks=checks)


def _refuse_source_folder(model_path: Path, out: Path) -> None:
    """Refuse an ``out`` that is, contains or lies inside the model folder (writing it would destroy the model)."""
    refuse_output_over_inputs(out, {"the model folder": model_path}, setting="out")


def _evaluation_table(evaluation: Any) -> Any:
    """The evaluation as a DataFrame (or ``None``)."""
    if evaluation is None:
        return None
    import pandas as pd

    if isinstance(getattr(evaluation, "metrics", None), pd.DataFrame):  # an EvaluationReport
        return evaluation.metrics
    if isinstance(evaluation, pd.DataFrame):
        return evaluation
    if isinstance(evaluation, str | os.PathLike):
        path = Path(evaluation)
        csv = path / "metrics.csv" if path.is_dir() else path
        if not csv.is_file() or csv.suffix != ".csv":
            raise FileNotFoundError(f"evaluation {str(evaluation)!r} is neither a report folder with metrics.csv "
                                    "(written by evaluate_model) nor a CSV file")
        return pd.read_csv(csv, index_col=0)
    raise TypeError(f"evaluation must be a report folder, a CSV file or a DataFrame, got {type(evaluation).__name__}")

