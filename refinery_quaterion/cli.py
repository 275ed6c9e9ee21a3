"""The ``refinery-quaterion`` command line (also ``python -m refinery_quaterion``).

Subcommands follow the data flow: ``prepare`` (export → labeled train/val files),
``thresholds`` (how the confidence threshold trades data for quality), ``train``,
``evaluate``, ``search`` and ``index`` (to a Qdrant server).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

PROG = "refinery-quaterion"
DEFAULT_TEXT = "{text}"


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


# --------------------------------------------------------------------------------------
# prepare / thresholds
# --------------------------------------------------------------------------------------


def _cmd_prepare(args: argparse.Namespace) -> None:
    from refinery_quaterion._io import atomic_dir
    from refinery_quaterion.dataset import LabelMap, train_val_split
    from refinery_quaterion.labels import combine_labels
    from refinery_quaterion.text import TextTemplate

    export = _load_export(args)
    records, report = combine_labels(export, args.task, min_confidence=args.min_confidence)
    template = TextTemplate(args.text)
    template.validate(records.columns, source=f"{args.export} (after combining labels)")
    train, val = train_val_split(records, val_size=args.val_size, seed=args.seed, stratify=not args.no_stratify)
    label_map = LabelMap.from_frame(records)
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        train.to_json(tmp / "train.json", orient="records", force_ascii=False, indent=1)
        val.to_json(tmp / "val.json", orient="records", force_ascii=False, indent=1)
        label_map.save(tmp / "labels.json")
        (tmp / "report.txt").write_text(str(report) + "\n", encoding="utf-8")
        config = {
            "export": str(args.export),
            "task": report.task,
            "min_confidence": args.min_confidence,
            "text": args.text,
            "val_size": args.val_size,
            "seed": args.seed,
            "train_records": len(train),
            "val_records": len(val),
            "report": report.to_dict(),
        }
        (tmp / "prepare.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    print(report)
    print(f"\nwrote {args.out}/: train.json ({len(train)}), val.json ({len(val)}), labels.json, "
          "report.txt, prepare.json")


def _cmd_thresholds(args: argparse.Namespace) -> None:
    from refinery_quaterion.labels import threshold_report

    thresholds = _floats(args.thresholds, "--thresholds")
    table = threshold_report(_load_export(args), args.task, thresholds=thresholds)
    from refinery_quaterion.evaluate import format_table

    print(format_table(table, digits=3, index=False))
    if args.plot:
        from refinery_quaterion.plots import plot_threshold_curve

        print(f"plot: {plot_threshold_curve(table, args.plot)}")


def _load_export(args: argparse.Namespace) -> Any:
    from refinery_quaterion.export import load_export

    return load_export(args.export, password=args.password)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"{option}: expected comma-separated numbers such as 0.5,0.7,0.9, got {text!r}") from None


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"{option}: expected comma-separated whole numbers such as 1,10,100, got {text!r}") from None
    if not values or min(values) < 1:
        raise CliError(f"{option}: values must be >= 1, got {text!r}")
    return values


def _add_export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export", type=Path, help="refinery data: UI download (.json/.csv/.xlsx, zipped or not), "
                        "SDK export JSON, or project snapshot (.json.zip)")
    parser.add_argument("--task", default=None, help="classification task name (default: the only task)")
    parser.add_argument("--password", default=None, help="password of a protected UI download zip")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fine-tune text embeddings for similarity search from refinery labels (Quaterion).",
        epilog="Typical flow: prepare → train → evaluate → search. `%(prog)s COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="combine labels of an export and write train/val files",
                       description="Load a refinery export, keep manual labels and confident weak-supervision "
                       "labels, split into train/val and write them with the label map and a report.")
    _add_export_args(p)
    p.add_argument("--min-confidence", type=float, default=0.7,
                   help="keep weak-supervision labels with confidence > this (default: 0.7)")
    p.add_argument("--text", default=DEFAULT_TEXT, help='text template, e.g. "{Title}. {Description}"')
    p.add_argument("--val-size", type=float, default=0.25, help="validation share (default: 0.25)")
    p.add_argument("--seed", type=int, default=42, help="split seed (default: 42)")
    p.add_argument("--no-stratify", action="store_true", help="split at random instead of by class")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("thresholds", help="print records kept and label agreement per confidence threshold",
                       description="For each threshold: records kept, their share, and how often weak-supervision "
                       "labels agree with manual labels where both exist.")
    _add_export_args(p)
    p.add_argument("--thresholds", default="0,0.5,0.6,0.7,0.75,0.8,0.85,0.9,0.95",
                   help="comma-separated thresholds (default: %(default)s)")
    p.add_argument("--plot", type=Path, default=None, help="also write the threshold curve to this PNG")
    p.set_defaults(func=_cmd_thresholds)

    _add_model_commands(sub)
    return parser


def _add_model_commands(sub: Any) -> None:
    from refinery_quaterion.workflow import DEFAULT_EVAL_KS

    p = sub.add_parser("train", help="fine-tune a model on a prepared folder",
                       description="Fine-tune a similarity model on DIR/train.json (validated on DIR/val.json) "
                       "as written by `prepare`, and save it to --out.")
    p.add_argument("data", type=Path, metavar="DIR", help="folder written by `prepare`")
    p.add_argument("--out", type=Path, required=True, help="folder to save the model to")
    p.add_argument("--model", default="minilm",
                   help="Hugging Face id or local folder; 'minilm' = bundled all-MiniLM-L6-v2 (default)")
    p.add_argument("--text", default=None, help="text template (default: the one given to `prepare`)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the library default)")
    p.add_argument("--batch-size", type=int, default=128, help="records per batch (default: 128)")
    p.add_argument("--head", default=None,
                   help="head: skip_connection (default), linear, gated, widening, stacked, empty")
    p.add_argument("--loss", default=None,
                   help="loss: arcface (default), triplet, softmax, online_contrastive, circle, fast_ap, "
                   "multiple_negatives_ranking")
    p.add_argument("--lr", type=float, default=None, help="learning rate of the head")
    p.add_argument("--trainable-encoder", action="store_true", help="fine-tune the transformer too (slow on CPU)")
    p.add_argument("--seed", type=int, default=42, help="seed (default: 42)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    _add_runtime_args(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="raw vs fine-tuned retrieval metrics on labeled records",
                       description="Precision@k over all queries, MRR, mAP and R-precision of the raw encoder "
                       "and the fine-tuned model on labeled records; optional linear probe; writes a report folder.")
    p.add_argument("model", type=Path, metavar="MODEL_DIR", help="folder written by `train`")
    p.add_argument("test", type=Path, metavar="TEST", help="labeled records (.json/.jsonl/.csv, optionally .gz)")
    p.add_argument("--report", type=Path, default=None, help="write metrics.json/.md/.csv and plots to this folder")
    p.add_argument("--probe-train", type=Path, action="append", default=None, metavar="FILE",
                   help="labeled records to train a linear probe on (repeatable, e.g. train.json and val.json)")
    p.add_argument("--label-column", default="label", help="column of the true labels (default: label)")
    p.add_argument("--ks", default=",".join(map(str, DEFAULT_EVAL_KS)),
                   help="k values of precision@k (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    _add_runtime_args(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("search", help="nearest records to a query (embedded Qdrant)",
                       description="Index DATA with the model in embedded Qdrant (in memory, or --index-path "
                       "to keep it) and print the k nearest records to each query.")
    p.add_argument("model", type=Path, metavar="MODEL_DIR", help="folder written by `train`")
    p.add_argument("data", type=Path, metavar="DATA", help="records to search (.json/.jsonl/.csv, optionally .gz)")
    p.add_argument("queries", nargs="+", metavar="QUERY", help="query text(s)")
    p.add_argument("-k", type=int, default=5, help="results per query (default: 5)")
    p.add_argument("--label", default=None, help="only return records with this label")
    p.add_argument("--index-path", type=Path, default=None, help="keep the index in this folder and reuse it")
    _add_runtime_args(p)
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("index", help="upload records to a Qdrant server or folder",
                       description="Embed DATA with the model and upload it to a Qdrant server/cluster (--url) "
                       "or an embedded index folder (--path). Re-uploading the same records replaces them.")
    p.add_argument("model", type=Path, metavar="MODEL_DIR", help="folder written by `train`")
    p.add_argument("data", type=Path, metavar="DATA", help="records to index (.json/.jsonl/.csv, optionally .gz)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", default=None, help="Qdrant server URL, e.g. http://localhost:6333")
    target.add_argument("--path", type=Path, default=None, help="embedded Qdrant folder")
    p.add_argument("--api-key", default=None, help="Qdrant API key (Qdrant Cloud)")
    p.add_argument("--collection", default="refinery", help="collection name (default: refinery)")
    p.add_argument("--id-field", default=None, help="record field with a unique id (default: derived from the text)")
    p.add_argument("--batch-size", type=int, default=256, help="points per upload batch (default: 256)")
    _add_runtime_args(p)
    p.set_defaults(func=_cmd_index)


def _add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """Options every model command shares: the embedding cache and progress bars."""
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding cache folder (default: ~/.cache/refinery-quaterion/embeddings)")
    parser.add_argument("--no-cache", action="store_true", help="do not cache encoder outputs on disk")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _cache(args: argparse.Namespace) -> Any:
    if args.no_cache:
        return None
    return args.cache_dir if args.cache_dir is not None else True


def _load_model(args: argparse.Namespace) -> Any:
    from refinery_quaterion.train import load

    return load(args.model, embedding_cache=_cache(args))


def _cmd_train(args: argparse.Namespace) -> None:
    from refinery_quaterion.dataset import load_records
    from refinery_quaterion.workflow import train_model

    text = args.text
    prepared = args.data / "prepare.json"
    if text is None:
        if not prepared.is_file():
            raise CliError(f"{args.data}: no prepare.json; pass --text or run `{PROG} prepare` first")
        text = json.loads(prepared.read_text(encoding="utf-8")).get("text") or DEFAULT_TEXT
    train = load_records(args.data / "train.json")
    val_path = args.data / "val.json"
    val = load_records(val_path) if val_path.is_file() else None
    options = {k: v for k, v in (("head", args.head), ("loss", args.loss), ("lr", args.lr)) if v is not None}
    if args.trainable_encoder:
        options["trainable_encoder"] = True
    if args.epochs is not None and args.epochs < 1:
        raise CliError(f"--epochs must be >= 1, got {args.epochs}")
    outcome = train_model(
        train, val, args.out, text=text, pretrained=args.model, epochs=args.epochs, batch_size=args.batch_size,
        embedding_cache=_cache(args), model_options=options, overwrite=args.overwrite,
        progress=not args.quiet, seed=args.seed,
    )
    print(outcome.fit)
    print(f"saved model to {outcome.path} ({outcome.seconds:.1f} s)")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from refinery_quaterion.dataset import load_records
    from refinery_quaterion.evaluate import format_table
    from refinery_quaterion.workflow import evaluate_model

    ks = _ints(args.ks, "--ks")
    test = load_records(args.test)
    reference = None
    if args.probe_train:
        import pandas as pd

        reference = pd.concat([load_records(p) for p in args.probe_train], ignore_index=True)
    result = evaluate_model(
        _load_model(args), test, reference=reference, label_column=args.label_column, ks=ks,
        report_dir=args.report, overwrite=args.overwrite, progress=not args.quiet,
    )
    if args.report is None:
        print(format_table(result, digits=3))
    else:
        print(format_table(result.metrics, digits=3))
        print(f"report: {args.report}/metrics.md")


def _cmd_search(args: argparse.Namespace) -> None:
    from refinery_quaterion.dataset import load_records
    from refinery_quaterion.search import SimilarityIndex

    if args.k < 1:
        raise CliError(f"-k must be >= 1, got {args.k}")
    model = _load_model(args)
    with SimilarityIndex(model, path=args.index_path) as index:
        if len(index) == 0:
            index.add(load_records(args.data), progress=not args.quiet)
        for query in args.queries:
            print(f"\n{query}")
            for rank, hit in enumerate(index.search(query, k=args.k, filter_label=args.label), 1):
                text = model.template(hit.record)
                print(f"  {rank}. {hit.score:.3f}  [{hit.label}]  {text[:110]}")


def _cmd_index(args: argparse.Namespace) -> None:
    from refinery_quaterion.dataset import load_records
    from refinery_quaterion.search import SimilarityIndex

    model = _load_model(args)
    records = load_records(args.data)
    with SimilarityIndex(model, path=args.path, url=args.url, api_key=args.api_key, collection=args.collection,
                         id_field=args.id_field) as index:
        added = index.add(records, batch_size=args.batch_size, progress=not args.quiet)
        print(f"indexed {added} records into {args.collection!r} at {args.url or args.path} ({len(index)} points)")


def _version() -> str:
    from refinery_quaterion import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except CliError as err:
        parser.exit(2, f"{PROG} {args.command}: error: {err}\n")
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, ImportError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        parser.exit(2, f"{PROG} {args.command}: error: {message}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
