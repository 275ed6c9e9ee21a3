"""``export``: a trained model as a sentence-transformers folder, an ONNX model or an OpenVINO model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from refinery_quaterion.cli._common import (
    CliError,
    add_model_command,
    family_help,
    model_folder,
    records_file,
    refuse_existing,
)
from refinery_quaterion.exporters.formats import EXPORT_FORMATS


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``export`` to the subparsers ``sub``."""
    p = add_model_command(sub, "export", parents, help="export a model for use without this library",
                          description="Write MODEL_DIR as a folder that sentence-transformers loads, as ONNX "
                          "(model.onnx + tokenizer.json, served with onnxruntime alone) or as OpenVINO IR (model.xml "
                          "+ tokenizer.json + serve.py, served with openvino alone), with a model card. The "
                          "exported vectors are checked against the library's on probe texts.")
    p.add_argument("out", type=Path, metavar="OUT", help="output folder")
    p.add_argument("--format", choices=EXPORT_FORMATS.choices, default=EXPORT_FORMATS.default,
                   help=f"{family_help(EXPORT_FORMATS)} (default: %(default)s)")
    p.add_argument("--int8", action="store_true", help="with --format onnx: also write a dynamically quantised "
                   "model_int8.onnx; with --format openvino: a statically quantised model_int8.xml")
    p.add_argument("--calibration-data", type=Path, default=None, metavar="FILE",
                   help="with --format openvino --int8: records (.json/.jsonl/.csv, optionally compressed) to "
                   "calibrate model_int8.xml on, rendered with the model's text template, e.g. PREPARED/train.json "
                   "(default: the export's few probe texts, a less faithful int8 model)")
    p.add_argument("--evaluation", type=Path, default=None, metavar="REPORT",
                   help="report folder written by `evaluate --report` (or a metrics CSV) for the model card")
    p.add_argument("--no-check", action="store_true", help="skip comparing the exported vectors with the library's")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    p.set_defaults(func=_cmd_export, on_interrupt=lambda a: f"{a.out} was not written")


def _check_quantization(args: argparse.Namespace) -> None:
    """Refuse ``--int8`` for a format without int8, and ``--calibration-data`` without a calibrated int8 model."""
    spec = EXPORT_FORMATS[args.format]
    if args.int8 and "int8" not in spec.quantizations:
        offering = " or ".join(f"--format {name}" for name, f in EXPORT_FORMATS.items() if "int8" in f.quantizations)
        raise CliError(f"--int8 quantises an ONNX or OpenVINO model; add {offering} (got --format {args.format})")
    if args.calibration_data is not None and not (args.int8 and spec.calibrated):
        calibrating = " or ".join(f"--format {name}" for name, f in EXPORT_FORMATS.items() if f.calibrated)
        raise CliError(f"--calibration-data calibrates a statically quantised int8 model; add {calibrating} --int8")


def _calibration_texts(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The model (loaded) and the ``--calibration-data`` records rendered with its text template."""
    from refinery_quaterion._io import refuse_output_over_inputs
    from refinery_quaterion.data.readers import load_records
    from refinery_quaterion.training.model_files import load

    records_file(args.calibration_data, "--calibration-data", hint="train.json")
    refuse_output_over_inputs(args.out, {"--calibration-data": args.calibration_data})
    records = load_records(args.calibration_data)  # before the model: its errors come first
    if records.empty:
        raise CliError(f"--calibration-data {args.calibration_data} holds no records")
    model = load(args.model)
    model.template.validate(records.columns, source=f"--calibration-data {args.calibration_data}")
    return model, model.encoder.texts_of(records)


def _cmd_export(args: argparse.Namespace) -> None:
    from refinery_quaterion.exporters import export_model

    _check_quantization(args)
    model_folder(args.model)
    refuse_existing(args.out, args.overwrite, "OUT")
    model, texts = (args.model, None) if args.calibration_data is None else _calibration_texts(args)
    result = export_model(model, args.out, args.format, quantize="int8" if args.int8 else None,
                          overwrite=args.overwrite, evaluation=args.evaluation, check=not args.no_check,
                          calibration_texts=texts)
    print(result)
