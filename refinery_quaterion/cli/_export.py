"""``export``: a trained model as a sentence-transformers folder or an ONNX model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from refinery_quaterion.cli._common import CliError, add_model_command, family_help, model_folder, refuse_existing
from refinery_quaterion.exporters.formats import EXPORT_FORMATS


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``export`` to the subparsers ``sub``."""
    p = add_model_command(sub, "export", parents, help="export a model for use without this library",
                          description="Write MODEL_DIR as a folder that sentence-transformers loads, or as ONNX "
                          "(model.onnx + tokenizer.json, served with onnxruntime alone), with a model card. The "
                          "exported vectors are checked against the library's on probe texts.")
    p.add_argument("out", type=Path, metavar="OUT", help="output folder")
    p.add_argument("--format", choices=EXPORT_FORMATS.choices, default=EXPORT_FORMATS.default,
                   help=f"{family_help(EXPORT_FORMATS)} (default: %(default)s)")
    p.add_argument("--int8", action="store_true", help="with --format onnx: also write a dynamically quantised "
                   "model_int8.onnx")
    p.add_argument("--evaluation", type=Path, default=None, metavar="REPORT",
                   help="report folder written by `evaluate --report` (or a metrics CSV) for the model card")
    p.add_argument("--no-check", action="store_true", help="skip comparing the exported vectors with the library's")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    p.set_defaults(func=_cmd_export, on_interrupt=lambda a: f"{a.out} was not written")


def _cmd_export(args: argparse.Namespace) -> None:
    from refinery_quaterion.exporters import export_model

    if args.int8 and args.format != "onnx":
        raise CliError(f"--int8 quantises an ONNX model; add --format onnx (got --format {args.format})")
    model_folder(args.model)
    refuse_existing(args.out, args.overwrite, "OUT")
    result = export_model(args.model, args.out, args.format, quantize="int8" if args.int8 else None,
                          overwrite=args.overwrite, evaluation=args.evaluation, check=not args.no_check)
    print(result)
