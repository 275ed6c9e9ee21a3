"""``train`` and ``evaluate``: fine-tune a model on a prepared folder, measure it on labeled records."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refinery_quaterion.cli._common import (
    LazyText,
    add_model_command,
    add_runtime_args,
    cache,
    family_help,
    input_suffixes,
    ints,
    is_quiet,
    load_model,
    model_folder,
    progress,
    records_file,
    refuse_existing,
    writable_output_folder,
)

if TYPE_CHECKING:  # pragma: no cover
    from refinery_quaterion.data.text import TextSpec
    from refinery_quaterion.evaluate.config import EvalConfig
    from refinery_quaterion.model.config import FitConfig, ModelConfig


def _default_ks() -> str:
    from refinery_quaterion.evaluate import DEFAULT_KS

    return ",".join(map(str, DEFAULT_KS))


def _fit_default(name: str) -> str:
    import dataclasses

    from refinery_quaterion.model.config import FitConfig

    return str(next(field.default for field in dataclasses.fields(FitConfig) if field.name == name))


def _model_default(name: str) -> str:
    import dataclasses

    from refinery_quaterion.model.config import ModelConfig

    return str(next(field.default for field in dataclasses.fields(ModelConfig) if field.name == name))


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``train`` and ``evaluate`` to the subparsers ``sub``."""
    from refinery_quaterion.evaluate.registry import METRICS
    from refinery_quaterion.model.components import HEADS, LOSSES
    from refinery_quaterion.model.config import SAMPLE_WEIGHTINGS

    p = sub.add_parser("train", parents=parents, help="fine-tune a model on a prepared folder",
                       description="Fine-tune a similarity model on DIR/train.json (validated on DIR/val.json) "
                       "as written by `prepare`, and save it to --out. Ctrl-C stops training and saves nothing.")
    p.add_argument("data", type=Path, metavar="DIR", help="folder written by `prepare`")
    p.add_argument("--out", type=Path, required=True, help="folder to save the model to")
    p.add_argument("--pretrained", "--model", dest="pretrained", default="minilm", metavar="NAME",
                   help="Hugging Face id or local folder to start from; 'minilm' = bundled all-MiniLM-L6-v2 "
                   "(default; --model is an older name of this option)")
    p.add_argument("--text", default=None, help="text template (default: the one given to `prepare`)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: auto: 10, more for a small "
                   "training set, so that training runs at least --min-steps batches)")
    p.add_argument("--min-steps", type=int, default=None, metavar="N",
                   help=f"without --epochs, train at least N batches (default: {_fit_default('min_steps')})")
    p.add_argument("--batch-size", type=int, default=128, help="records per batch (default: %(default)s)")
    p.add_argument("--head", default=HEADS.default, choices=HEADS.choices, metavar="HEAD",
                   help=f"head on top of the encoder. {family_help(HEADS)}")
    p.add_argument("--loss", default=LOSSES.default, choices=LOSSES.choices, metavar="LOSS",
                   help=f"similarity loss. {family_help(LOSSES)}")
    p.add_argument("--lr", type=float, default=None, help="learning rate of the head (default: the library default)")
    p.add_argument("--trainable-encoder", action="store_true", help="fine-tune the transformer too (slow on CPU)")
    p.add_argument("--sample-weighting", choices=SAMPLE_WEIGHTINGS, default=None,
                   help="'confidence': each record's loss term is scaled by its weight (1.0 for a manual label, the "
                   "confidence for a weak one; the weight column `prepare` writes); 'none': all count the same; "
                   "'auto': 'confidence' when some weight is not 1.0 and the loss takes weights "
                   f"(default: {_fit_default('sample_weighting')})")
    p.add_argument("--min-weight", type=float, default=None, metavar="W",
                   help=f"drop training records whose weight is below W (default: {_fit_default('min_weight')})")
    p.add_argument("--seed", type=int, default=42, help="seed (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    add_runtime_args(p)
    p.add_argument("--calibration-size", type=int, default=None, metavar="N",
                   help="with --backend openvino-int8: calibrate the int8 model on N training texts, spread evenly "
                   f"(default: {_model_default('calibration_size')})")
    p.set_defaults(func=_cmd_train, on_interrupt=lambda a: f"nothing was saved to {a.out}")

    p = add_model_command(sub, "evaluate", parents, help="raw vs fine-tuned retrieval metrics on labeled records",
                          description="Retrieval metrics over all queries of the raw encoder and the fine-tuned "
                          "model on labeled records; optional linear probe; writes a report folder. Metrics: "
                          f"{METRICS.help_text()}.")
    p.add_argument("test", type=Path, metavar="TEST", help=f"labeled records ({input_suffixes()}, optionally "
                   "compressed), e.g. PREPARED/test.json from `prepare --holdout manual`")
    p.add_argument("--report", type=Path, default=None, help="write metrics.json/.md/.csv and plots to this folder")
    p.add_argument("--probe-train", type=Path, action="append", default=None, metavar="FILE",
                   help="labeled records to train a linear probe on (repeatable, e.g. train.json and val.json)")
    p.add_argument("--label-column", default="label", help="column of the true labels (default: %(default)s)")
    p.add_argument("--ks", default=LazyText(_default_ks), help="k values of precision@k (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    add_runtime_args(p)
    p.set_defaults(func=_cmd_evaluate, on_interrupt=lambda a: "no report was written")


def fit_output_options(args: argparse.Namespace) -> dict[str, Any]:
    """`FitConfig` fields of the output options: ``--quiet`` turns progress off, ``-v`` shows Lightning's logs."""
    options: dict[str, Any] = {"progress": "off"} if is_quiet(args) else {}
    if getattr(args, "verbose", 0):
        options["verbose"] = True
    return options


def _fit_options(args: argparse.Namespace) -> dict[str, Any]:
    """`FitConfig` fields of the options that were given."""
    given = {"epochs": args.epochs, "min_steps": args.min_steps, "sample_weighting": args.sample_weighting,
             "min_weight": args.min_weight}
    return {**{k: v for k, v in given.items() if v is not None}, **fit_output_options(args)}


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    """`ModelConfig` fields of the options that may be given (``--lr``, ``--backend``, ``--calibration-size``)."""
    options: dict[str, Any] = {"lr": args.lr} if args.lr is not None else {}
    if args.backend is not None:
        options["encoder_backend"] = args.backend
    if args.calibration_size is not None:
        options["calibration_size"] = args.calibration_size
    return options


def train_configs(args: argparse.Namespace, template: TextSpec) -> tuple[ModelConfig, FitConfig]:
    """The `ModelConfig` and `FitConfig` of ``train``'s flags (``--seed`` is the model's one seed)."""
    from refinery_quaterion.model.config import FitConfig, ModelConfig

    model_config = ModelConfig(pretrained=args.pretrained, template=template, head=args.head, loss=args.loss,
                               trainable_encoder=args.trainable_encoder, seed=args.seed, **_model_options(args))
    return model_config, FitConfig(batch_size=args.batch_size, **_fit_options(args))


def eval_config(args: argparse.Namespace) -> EvalConfig:
    """The `EvalConfig` of ``evaluate``'s flags."""
    from refinery_quaterion.evaluate.config import EvalConfig

    return EvalConfig(ks=ints(str(args.ks), "--ks"), label_column=args.label_column, progress=progress(args))


def _cmd_train(args: argparse.Namespace) -> None:
    from refinery_quaterion._io import refuse_output_over_inputs
    from refinery_quaterion.workflow import load_prepared, train_model

    refuse_existing(args.out, args.overwrite)
    prepared = load_prepared(args.data, template=args.text)  # reads only: its errors come first
    pretrained = args.pretrained if Path(args.pretrained).expanduser().exists() else None
    refuse_output_over_inputs(args.out, {"the prepared data": args.data, "the pretrained model": pretrained})
    writable_output_folder(args.out, "--out")
    model_config, fit_config = train_configs(args, prepared.template)
    outcome = train_model(prepared.train, prepared.val, args.out, model_config=model_config, fit_config=fit_config,
                          embedding_cache=cache(args), overwrite=args.overwrite)
    print(outcome.fit)
    print(f"saved model to {outcome.path} ({outcome.seconds:.1f} s)")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from refinery_quaterion._io import refuse_output_over_inputs
    from refinery_quaterion.evaluate import format_table
    from refinery_quaterion.workflow import evaluate_model

    config = eval_config(args)
    model_folder(args.model)
    records_file(args.test, "TEST", hint="test.json,val.json")
    for path in args.probe_train or []:
        records_file(path, "--probe-train", hint="train.json")
    refuse_existing(args.report, args.overwrite, "--report")
    inputs = [("MODEL_DIR", args.model), ("TEST", args.test),
              *(("--probe-train", path) for path in args.probe_train or [])]
    refuse_output_over_inputs(args.report, inputs, setting="report_dir")
    writable_output_folder(args.report, "--report")
    outcome = evaluate_model(
        load_model(args), args.test, config, reference=args.probe_train, report_dir=args.report,
        overwrite=args.overwrite,
    )
    print(format_table(outcome.metrics, digits=3))
    for note in outcome.notes:
        print(f"note: {note}")
    if args.report is not None:
        print(f"report: {args.report}/metrics.md")
