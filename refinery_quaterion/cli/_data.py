"""``prepare`` and ``thresholds``: from a refinery export to labeled records."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refinery_quaterion.cli._common import (
    DEFAULT_TEXT,
    CliError,
    LazyText,
    add_export_args,
    confidence_threshold,
    floats,
    refuse_existing,
    share_or_count,
    writable_output_file,
    writable_output_folder,
)

if TYPE_CHECKING:  # pragma: no cover
    from refinery_quaterion.data.config import LabelConfig

DEFAULT_THRESHOLDS = ",".join(f"{t:g}" for t in (0.05 * i for i in range(20)))
"""Thresholds ``thresholds`` shows unless ``--thresholds`` is given: the candidates of the automatic choice
(`refinery_quaterion.data.thresholds.AUTO_CANDIDATES`, 0, 0.05, …, 0.95), so that the table and the plot show
every threshold the chosen one was picked among."""


def _default_min_confidence() -> str:
    import inspect

    from refinery_quaterion.data.labels import combine_labels

    return str(inspect.signature(combine_labels).parameters["min_confidence"].default)


def _min_confidence(args: argparse.Namespace) -> float | str | None:
    """The value given with ``--min-confidence``, or ``None`` for the library's default."""
    return None if isinstance(args.min_confidence, LazyText) else args.min_confidence


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``prepare`` and ``thresholds`` to the subparsers ``sub``."""
    p = sub.add_parser("prepare", parents=parents, help="combine labels of an export and write train/val files",
                       description="Load a refinery export, keep manual labels and confident weak-supervision "
                       "labels, drop records with a blank text, split into train/val (identical texts on one "
                       "side) and write them with the label map and a report.")
    add_export_args(p)
    p.add_argument("--min-confidence", type=confidence_threshold, default=LazyText(_default_min_confidence),
                   metavar="auto|X", help="keep weak-supervision labels with confidence > X; 'auto' chooses X "
                   "from the manual labels (the value used is written to prepare.json) (default: %(default)s)")
    p.add_argument("--text", default=DEFAULT_TEXT, help='text template, e.g. "{Title}. {Description}" '
                   "(default: %(default)s)")
    p.add_argument("--val-size", type=share_or_count, default=0.25, metavar="SHARE|COUNT",
                   help="validation share (0 < x < 1) or number of validation records; 0: no validation set "
                   "(default: %(default)s)")
    p.add_argument("--holdout", choices=["manual"], default=None,
                   help="'manual': the manually labeled records become test.json (the held-out truth), "
                   "training and validation use the weak-supervision labels only (default: no test set)")
    p.add_argument("--seed", type=int, default=42, help="split seed (default: %(default)s)")
    p.add_argument("--no-stratify", action="store_true", help="split at random instead of by class")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_cmd_prepare, on_interrupt=lambda a: f"{a.out} was not written")

    p = sub.add_parser("thresholds", parents=parents,
                       help="print records kept and label agreement per confidence threshold",
                       description="For each threshold: records kept, their share, how often weak-supervision "
                       "labels agree with manual labels where both exist, and the expected number of correct and "
                       "wrong training labels; then the threshold `prepare --min-confidence auto` chooses, and "
                       "why.")
    add_export_args(p)
    p.add_argument("--thresholds", default=DEFAULT_THRESHOLDS,
                   help="comma-separated thresholds (default: 0,0.05,...,0.95, the thresholds the automatic "
                   "choice tries)")
    p.add_argument("--min-confidence", type=confidence_threshold, default="auto", metavar="auto|X",
                   help="the threshold to mark: 'auto' (the automatic choice) or a number (default: %(default)s)")
    p.add_argument("--text", default=None, help="text template; records whose text is blank are not counted "
                   "(default: not checked)")
    p.add_argument("--plot", type=Path, default=None, help="also write the threshold curve to this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    p.set_defaults(func=_cmd_thresholds, on_interrupt=lambda a: "nothing was written")


def label_config(args: argparse.Namespace) -> LabelConfig:
    """The `LabelConfig` of ``prepare``'s flags (``--text`` is its ``template``, ``--seed`` its ``split_seed``)."""
    from refinery_quaterion.data.config import LabelConfig

    return LabelConfig(task=args.task, min_confidence=_min_confidence(args), template=args.text,
                       val_size=args.val_size, stratify=not args.no_stratify, holdout=args.holdout,
                       split_seed=args.seed)


def _cmd_prepare(args: argparse.Namespace) -> None:
    from refinery_quaterion._io import refuse_output_over_inputs
    from refinery_quaterion.workflow import prepare_records

    if args.export.is_dir():
        raise CliError(f"{args.export}: is a folder; expected a refinery export file")
    refuse_existing(args.out, args.overwrite)
    refuse_output_over_inputs(args.out, {"the export": args.export})
    writable_output_folder(args.out, "--out")
    prepared = prepare_records(args.export, label_config(args), out=args.out, password=args.password,
                               overwrite=args.overwrite)
    print(prepared.report)
    if prepared.holdout is not None:
        print(f"\n{prepared.holdout}")
    test = f", test.json ({len(prepared.test)})" if prepared.test is not None else ""
    print(f"\nwrote {args.out}/: train.json ({len(prepared.train)}), val.json ({len(prepared.val)}){test}, "
          "labels.json, report.txt, prepare.json")


def _cmd_thresholds(args: argparse.Namespace) -> None:
    from refinery_quaterion.data.refinery import load_export
    from refinery_quaterion.data.thresholds import threshold_report
    from refinery_quaterion.evaluate import format_table

    values = floats(args.thresholds, "--thresholds")
    if not values:
        raise CliError(f"--thresholds: expected comma-separated numbers such as 0.5,0.7,0.9, got {args.thresholds!r}")
    fixed = args.min_confidence if args.min_confidence != "auto" else None
    if args.plot is not None:
        writable_output_file(args.plot, "--plot", overwrite=args.overwrite)
    export = load_export(args.export, password=args.password)
    table = threshold_report(export, args.task, thresholds=sorted(set(values) | ({fixed} if fixed is not None
                                                                                   else set())), template=args.text)
    choice = table.attrs.get("threshold_choice") or {}
    if fixed is not None:
        table["chosen"] = table["threshold"] == fixed
    shown = table.assign(chosen=table["chosen"].map({True: "yes", False: ""}))
    print(format_table(shown, digits=3, index=False))
    print()
    if fixed is None:
        print(f"chosen threshold: {choice.get('value'):g} ({choice.get('reason')})")
    else:
        print(f"chosen threshold: {fixed:g} (given with --min-confidence); the automatic choice would be "
              f"{choice.get('value'):g} ({choice.get('reason')})")
    if args.plot:
        from refinery_quaterion.evaluate.label_plots import plot_threshold_curve

        print(f"plot: {plot_threshold_curve(table, args.plot)}")
