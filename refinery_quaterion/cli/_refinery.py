"""``to-refinery``: a trained model's vectors as one more embedding of a refinery project snapshot."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from refinery_quaterion.cli._common import add_model_command, is_quiet, model_folder, refuse_existing


def dimension(text: str) -> int | str:
    """``--dimension``: ``full`` or a whole number of PCA components (at least 2).

    Raises:
        argparse.ArgumentTypeError: For anything else.
    """
    if text.strip().lower() == "full":
        return "full"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected 'full' or a whole number >= 2 such as 64, got {text!r}")
    return value


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``to-refinery`` to the subparsers ``sub``."""
    p = add_model_command(
        sub, "to-refinery", parents, help="add the model's vectors to a refinery project snapshot",
        description="Write a copy of a refinery project snapshot with one more embedding: the model's vectors of "
        "every record (custom, named {attribute}-classification-huggingface-{model}, so refinery's active learners "
        "can use it), optionally with a data slice of suspected label errors. Import it on refinery's start screen. "
        "A UI download or SDK export cannot carry embeddings: write its vectors as Parquet (--out NAME.parquet).")
    p.add_argument("snapshot", type=Path, metavar="SNAPSHOT",
                   help="refinery project snapshot (.json.zip); with --out *.parquet also a UI download or SDK export")
    p.add_argument("--out", type=Path, required=True, metavar="NEW_SNAPSHOT",
                   help="file to write: .zip (a snapshot to import, the JSON as its only entry), .json, or .parquet "
                   "(record_id, vector)")
    p.add_argument("--attribute", default=None, help="attribute the embedding is filed under (default: the only "
                   "field of the model's text template)")
    p.add_argument("--dimension", type=dimension, default=64, help="64 (default, what refinery stores: PCA over "
                   "the project's records, unit length), another number of PCA components, or full")
    p.add_argument("--model-name", default=None, help="model part of the embedding's name (default: "
                   "refinery-quaterion-MODEL_DIR's name); give the Hub id after pushing the model")
    p.add_argument("--suspects", action="store_true", help="also add a static data slice of the labeled records "
                   "whose label the model's neighbourhood contradicts")
    p.add_argument("--task", default=None, help="with --suspects: classification task to check (default: the only one)")
    p.add_argument("--suspects-k", type=int, default=10, metavar="K", help="neighbours per record (default: 10)")
    p.add_argument("--suspects-majority", type=float, default=0.7, metavar="SHARE",
                   help="share of the neighbours that must agree on another label (default: 0.7)")
    p.add_argument("--suspects-limit", type=int, default=10_000, metavar="N",
                   help="most records in the slice, highest disagreement first (default: 10000)")
    p.add_argument("--id-column", default=None, help="with a UI/SDK export: the column of record ids (default: "
                   "id or record_id, else the row number)")
    p.add_argument("--password", default=None, help="password of a protected zip")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_cmd_to_refinery, on_interrupt=lambda a: f"{a.out} was not written")


def _cmd_to_refinery(args: argparse.Namespace) -> None:
    from refinery_quaterion.exporters.refinery_config import ToRefineryConfig
    from refinery_quaterion.exporters.refinery_project import to_refinery

    model_folder(args.model)
    refuse_existing(args.out, args.overwrite)
    config = ToRefineryConfig(attribute=args.attribute, dimension=args.dimension, model_name=args.model_name,
                              suspects=args.suspects, task=args.task, suspects_k=args.suspects_k,
                              suspects_majority=args.suspects_majority, suspects_limit=args.suspects_limit,
                              id_column=args.id_column)
    result = to_refinery(args.model, args.snapshot, args.out, config, overwrite=args.overwrite,
                         password=args.password, progress=False if is_quiet(args) else None)
    print(result)
