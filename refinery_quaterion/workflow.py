"""End-to-end steps shared by the command line and the examples.

Each step is a thin composition of the library's building blocks, so a script (or the CLI)
needs no logic of its own:

* `prepare_records` — a refinery export → one label per record (fixed or ``"auto"``
  confidence threshold, blank texts dropped) → train/validation split with identical texts
  on one side, or with ``holdout="manual"`` the manual labels as the test set; optionally
  written to a folder (what ``refinery-quaterion prepare`` does); `load_prepared` reads such
  a folder back;
* `train_model` — labeled records → datasets → `DistilBertSimilarityModel` → `fit` → `save`,
  as a `ModelConfig` and a `FitConfig` say;
* `evaluate_model` — a saved model and labeled test records (checked against the model's
  text template first) → raw vs fine-tuned retrieval metrics (+ linear probe) → optionally
  a report folder.

The frozen encoder's vectors go through one disk `EmbeddingCache`
(by default `default_cache_dir`), so each text is encoded once
across training, raw evaluation and fine-tuned evaluation, and a re-run is fast.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from refinery_quaterion._io import atomic_dir
from refinery_quaterion.data.dataset import LabelMap, RefineryExportDataset, load_records
from refinery_quaterion.data.labels import LabelReport, combine_labels
from refinery_quaterion.data.splits import HoldoutSplit, split_by_source, train_val_split
from refinery_quaterion.data.text import TextSpec, TextTemplate
from refinery_quaterion.evaluate import DEFAULT_KS, EvaluationReport, compare, evaluation_report, format_table
from refinery_quaterion.model.cache import EmbeddingCache
from refinery_quaterion.model.config import FitConfig, ModelConfig
from refinery_quaterion.model.inference import EmbeddingModel
from refinery_quaterion.model.pretrained import MINILM_ALIAS
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training.fit import FitResult, fit
from refinery_quaterion.training.model_files import load, save

__all__ = [
    "HOLDOUTS",
    "EvaluationOutcome",
    "PreparedRecords",
    "TrainOutcome",
    "evaluate_model",
    "load_prepared",
    "prepare_records",
    "train_model",
]

CacheSpec = EmbeddingCache | str | os.PathLike | bool | None
"""A cache argument: an `EmbeddingCache`, a folder, ``True`` (the default folder) or ``None``."""

_DEFAULT_TEXT = "{text}"


# --------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------

HOLDOUTS = ("manual",)
"""Values of ``prepare_records(holdout=...)``: ``"manual"`` holds the manually labeled records out as the test set."""


@dataclass
class PreparedRecords:
    """Labeled records split for training, as `prepare_records` made them or `load_prepared` read them.

    Attributes:
        train: Training records (attributes + ``label``, ``label_source``, ``confidence``).
        val: Validation records (same columns); empty when there are none.
        label_map: Labels of all records.
        text: Text template the records are meant to be rendered with.
        report: What `combine_labels` kept and dropped (``None`` when read from a folder).
        path: The folder written or read, or ``None``.
        test: Held-out test records (with ``holdout="manual"``: the manually labeled ones), or
            ``None`` without a holdout.
        holdout: What `split_by_source` did with ``holdout="manual"`` (counts of the split),
            else ``None``.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    label_map: LabelMap
    text: TextSpec
    report: LabelReport | None = None
    path: Path | None = None
    test: pd.DataFrame | None = None
    holdout: HoldoutSplit | None = None

    def __str__(self) -> str:
        where = f" in {self.path}" if self.path is not None else ""
        test = f", {len(self.test)} test records" if self.test is not None else ""
        return (f"{len(self.train)} training and {len(self.val)} validation records{test}, "
                f"{len(self.label_map)} labels{where}")


def prepare_records(
    export: Any,
    out: str | os.PathLike | None = None,
    *,
    task: str | None = None,
    text: TextSpec = _DEFAULT_TEXT,
    min_confidence: float | Literal["auto"] | None = None,
    val_size: float | int = 0.25,
    seed: int = 42,
    stratify: bool = True,
    holdout: Literal["manual"] | None = None,
    password: str | None = None,
    overwrite: bool = False,
) -> PreparedRecords:
    """Keep manual and confident weak-supervision labels of an export and split them.

    Records whose rendered text is blank are dropped (and counted in the report), and
    records with identical texts stay on one side of the split (`train_val_split` with the
    template). With ``holdout="manual"`` the manually labeled records become the test set and
    training uses the weak-supervision labels only (`split_by_source`).

    With ``out`` the folder gets (atomically) ``train.json``, ``val.json``, ``test.json``
    (with a holdout), ``labels.json`` (the label map), ``report.txt`` (the `LabelReport`) and
    ``prepare.json`` (these settings, the threshold actually used and the report), which
    `load_prepared` and ``refinery-quaterion train`` read.

    Args:
        export: A refinery export file (anything `load_export` reads) or a loaded export.
        out: Folder to write, or ``None`` to only return the records.
        task: Classification task name (may be omitted when the export has one task).
        text: Text template, e.g. ``"{Title}. {Description}"``; checked against the columns.
        min_confidence: Keep weak-supervision labels with a confidence above this; ``"auto"``
            chooses it from the manual labels (see `combine_labels`); ``None`` takes
            `combine_labels`' default.
        val_size: Validation share (0 < x < 1) or number of records; ``0``: no validation records.
        seed: Split seed.
        stratify: Split by class (otherwise at random).
        holdout: ``"manual"``: hold the manually labeled records out as the test set.
        password: Password of a protected UI download zip.
        overwrite: Replace an existing ``out``.

    Returns:
        The `PreparedRecords`.

    Raises:
        FileExistsError: If ``out`` exists and ``overwrite`` is false (checked first).
        ValueError: If the template names a column the records do not have, for an unknown
            ``holdout``, or for the errors of `combine_labels`, `train_val_split` and
            `split_by_source`.
    """
    if holdout is not None and holdout not in HOLDOUTS:
        raise ValueError(f"holdout must be one of {list(HOLDOUTS)} or None, got {holdout!r}")
    if out is not None and os.path.lexists(out) and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    source = export
    if isinstance(export, str | os.PathLike):
        from refinery_quaterion.data.refinery import load_export

        export = load_export(export, password=password)
    template = TextTemplate(text) if not isinstance(text, TextTemplate) else text
    where = source if isinstance(source, str | os.PathLike) else getattr(export, "source", "the export")
    options = {} if min_confidence is None else {"min_confidence": min_confidence}
    records, report = combine_labels(export, task, text=template.spec, **options)
    template.validate(records.columns, source=f"{where} (after combining labels)")
    split: HoldoutSplit | None = None
    if holdout == "manual":
        split = split_by_source(records, val_size=val_size, seed=seed, stratify=stratify, text=template.spec)
        train, val, test = split
    elif val_size == 0:
        train, val, test = records.reset_index(drop=True), records.iloc[0:0].reset_index(drop=True), None
    else:
        train, val = train_val_split(records, val_size=val_size, seed=seed, stratify=stratify, text=template.spec)
        test = None
    label_map = LabelMap.from_frame(records)
    prepared = PreparedRecords(train=train, val=val, label_map=label_map, text=template.spec, report=report,
                               test=test, holdout=split)
    if out is None:
        return prepared
    settings: dict[str, Any] = {
        "export": str(where),
        "task": report.task,
        "min_confidence": report.min_confidence,
        "min_confidence_requested": "default" if min_confidence is None else min_confidence,
        "text": template.to_config(),
        "val_size": val_size,
        "seed": seed,
        "stratify": stratify,
        "holdout": holdout,
        "train_records": len(train),
        "val_records": len(val),
        "report": report.to_dict(),
    }
    if split is not None:
        settings.update(test_records=len(split.test), removed_overlap=split.removed_overlap,
                        test_only_labels=list(split.test_only_labels))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        frames = {"train": train, "val": val, **({"test": test} if test is not None else {})}
        for name, frame in frames.items():
            frame.to_json(tmp / f"{name}.json", orient="records", force_ascii=False, indent=1)
        label_map.save(tmp / "labels.json")
        (tmp / "report.txt").write_text(str(report) + "\n", encoding="utf-8")
        (tmp / "prepare.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    prepared.path = Path(out)
    return prepared


def load_prepared(folder: str | os.PathLike, *, text: TextSpec | None = None,
                  label_column: str = "label") -> PreparedRecords:
    """Read a folder written by `prepare_records` (or by hand: ``train.json`` [+ ``val.json``]).

    ``test.json``, when there (``holdout="manual"``), is read into ``test``.

    Args:
        folder: The folder.
        text: Text template; ``None`` takes the one in ``prepare.json``.
        label_column: Column holding the labels.

    Returns:
        The `PreparedRecords` (``report`` and ``holdout`` are ``None``).

    Raises:
        FileNotFoundError: If the folder does not exist or has no ``train.json``.
        NotADirectoryError: If ``folder`` is a file.
        ValueError: If ``text`` is ``None`` and the folder has no ``prepare.json``, or
            ``prepare.json`` is not valid JSON.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder; expected the folder written by prepare_records "
                                f"(`refinery-quaterion prepare EXPORT --out {folder}`)")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: is a file; expected the folder written by prepare_records "
                                 "(with train.json, val.json and prepare.json)")
    settings_file = folder / "prepare.json"
    if text is None:
        if not settings_file.is_file():
            raise ValueError(f"{folder}: no prepare.json; pass --text (text=) or run `refinery-quaterion prepare` "
                             "first")
        try:
            settings = json.loads(settings_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{settings_file}: not valid JSON ({err}); write it again with prepare") from None
        text = (settings.get("text") if isinstance(settings, dict) else None) or _DEFAULT_TEXT
    train_file = folder / "train.json"
    if not train_file.is_file():
        raise FileNotFoundError(f"{folder}: no train.json; expected the folder written by prepare_records")
    train = load_records(train_file)
    val_file, test_file = folder / "val.json", folder / "test.json"
    val = load_records(val_file) if val_file.is_file() else train.iloc[0:0]
    test = load_records(test_file) if test_file.is_file() else None
    labels_file = folder / "labels.json"
    label_map = (LabelMap.load(labels_file) if labels_file.is_file()
                 else LabelMap.from_frame(pd.concat([train, val]), column=label_column))
    return PreparedRecords(train=train, val=val, label_map=label_map, text=text, path=folder, test=test)


# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------


@dataclass
class TrainOutcome:
    """What `train_model` produced.

    Attributes:
        path: Folder of the saved model.
        fit: Training summary from `fit`.
        label_map: Labels the model was trained on.
        seconds: Wall time of the whole step (encoding included).
    """

    path: Path
    fit: FitResult
    label_map: LabelMap
    seconds: float


def train_model(
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    out: str | os.PathLike,
    *,
    text: TextSpec | None = None,
    model_config: ModelConfig | None = None,
    fit_config: FitConfig | None = None,
    pretrained: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    label_column: str = "label",
    embedding_cache: CacheSpec = True,
    overwrite: bool = False,
) -> TrainOutcome:
    """Fine-tune a similarity model on labeled records and save it.

    The keyword shortcuts (``text``, ``pretrained``, ``epochs``, ``batch_size``, ``seed``,
    ``progress``) override the matching fields of the configs when given.

    Args:
        train: Training records with a label column (e.g. from `combine_labels`).
        val: Validation records (same columns), or ``None``.
        out: Folder to save the model to.
        text: Text template, e.g. ``"{Title}. {Description}"`` (or set ``model_config.text``).
        model_config: The model (default: `ModelConfig` with ``pretrained="minilm"``, the
            bundled all-MiniLM-L6-v2).
        fit_config: How to train (default: `FitConfig()`).
        pretrained: Hugging Face id or folder; ``"minilm"`` is the bundled all-MiniLM-L6-v2.
        epochs: Maximum epochs.
        batch_size: Records per training batch.
        seed: Seed of the model and of training.
        progress: Show progress bars.
        label_column: Column holding the labels.
        embedding_cache: Disk cache of the frozen encoder's vectors: ``True`` (default) uses
            `default_cache_dir`; a folder or ``None`` (off). Ignored for a trainable encoder.
        overwrite: Replace an existing ``out``.

    Returns:
        A `TrainOutcome`.

    Raises:
        FileExistsError: If ``out`` exists and ``overwrite`` is false (checked before training).
        ValueError: Without a text template, or for invalid settings.
    """
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    model_changes = {k: v for k, v in (("text", text), ("pretrained", pretrained), ("seed", seed)) if v is not None}
    model_config = (model_config or ModelConfig(pretrained=MINILM_ALIAS)).replace(**model_changes)
    fit_changes = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("seed", seed),
                                     ("progress", progress)) if v is not None}
    fit_config = (fit_config or FitConfig()).replace(**fit_changes)
    if model_config.text is None:
        raise ValueError("train_model needs a text template: pass text= (e.g. '{Title}. {Description}') "
                         "or ModelConfig(text=...)")
    train_ds = RefineryExportDataset(train, text=model_config.text, label_column=label_column)
    val_ds = (
        RefineryExportDataset(val, text=model_config.text, label_map=train_ds.label_map, label_column=label_column)
        if val is not None and len(val)
        else None
    )
    cache = None if model_config.trainable_encoder else EmbeddingCache.coerce(embedding_cache)
    model = DistilBertSimilarityModel(model_config, embedding_cache=cache)
    result = fit(model, train_ds, val_ds, fit_config)
    extra = {"train_records": len(train_ds), "val_records": len(val_ds) if val_ds is not None else 0}
    path = save(model, out, label_map=train_ds.label_map, overwrite=overwrite, extra=extra)
    return TrainOutcome(path=path, fit=result, label_map=train_ds.label_map, seconds=time.perf_counter() - started)


# --------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------


@dataclass
class EvaluationOutcome:
    """What `evaluate_model` produced.

    Attributes:
        metrics: One row per model (``raw``, ``fine-tuned``): ``P@k``..., ``MRR``, ``mAP@k``,
            ``mAP``, ``R-precision`` (and the probe's accuracy and macro-F1 with a report).
        report: The `EvaluationReport` of the report folder, or ``None`` without one.
        seconds: Wall time of the whole step (encoding included).
    """

    metrics: pd.DataFrame
    report: EvaluationReport | None
    seconds: float

    @property
    def probe(self) -> dict[str, Any]:
        """Model name -> `LinearProbeReport` (empty without a report or reference records)."""
        return dict(self.report.probe) if self.report is not None else {}

    def __str__(self) -> str:
        where = f"\nreport: {self.report.out_dir}" if self.report is not None else ""
        return format_table(self.metrics, digits=3) + where


RecordsSpec = pd.DataFrame | str | os.PathLike
"""Labeled records: a DataFrame, or a file `load_records` reads (named in error messages)."""


def _records(data: RecordsSpec, name: str) -> tuple[pd.DataFrame, str]:
    """``(frame, how to name it in messages)`` of records given as a frame or a file."""
    if isinstance(data, pd.DataFrame):
        return data, f"the {name} records"
    if isinstance(data, str | os.PathLike):
        return load_records(data), os.fspath(data)
    raise TypeError(f"{name} must be a DataFrame or a file of records, got {type(data).__name__}")


def _check_records(frame: pd.DataFrame, where: str, template: TextTemplate, label_column: str) -> None:
    template.validate(frame.columns, source=where)
    if label_column not in frame.columns:
        raise ValueError(f"{where} has no label column {label_column!r}; columns: {list(frame.columns)}")


def evaluate_model(
    model: EmbeddingModel | str | os.PathLike,
    test: RecordsSpec,
    *,
    reference: RecordsSpec | Sequence[str | os.PathLike] | None = None,
    label_column: str = "label",
    ks: Sequence[int] = DEFAULT_KS,
    report_dir: str | os.PathLike | None = None,
    compare_raw: bool = True,
    embedding_cache: CacheSpec = True,
    overwrite: bool = False,
    progress: bool = True,
    batch_size: int = 64,
) -> EvaluationOutcome:
    """Compare the raw encoder with the fine-tuned model on labeled test records.

    Precision@k (over all queries), MRR, mAP and R-precision for ``"raw"`` (the encoder
    alone) and ``"fine-tuned"`` (encoder + trained head); with ``report_dir`` and
    ``reference`` records, also a linear probe trained on ``reference`` and tested on
    ``test`` for each. The raw vectors are computed once (and cached); the fine-tuned ones
    apply the head to them.

    The records are checked before anything is encoded: every field of the model's text
    template and ``label_column`` must be a column (a missing one would embed empty texts and
    give plausible but meaningless metrics).

    Args:
        model: A loaded model or the folder of a saved one.
        test: Test records with the model's text fields and ``label_column``: a DataFrame
            or a file (``.json``/``.jsonl``/``.csv``..., see `load_records`).
        reference: Records to train the linear probe on (e.g. train + validation): a
            DataFrame, a file, or a list of files (concatenated).
        label_column: Column holding the true labels.
        ks: k values of precision@k (those above ``len(test) - 1`` are dropped).
        report_dir: Write the report folder (metrics.json/.md/.csv + PNG plots) there;
            ``None`` only computes the metrics table.
        compare_raw: Also evaluate the raw encoder.
        embedding_cache: As in `train_model`; used when ``model`` is a folder.
        overwrite: Replace an existing ``report_dir``.
        progress: Show encoding progress.
        batch_size: Texts per encoder forward pass.

    Returns:
        An `EvaluationOutcome` (its ``report`` is set when ``report_dir`` is given).

    Raises:
        ValueError: If the records lack a field of the model's template or the label
            column (naming the column and the file), or ``test`` has fewer than 2 records.
        FileExistsError: If ``report_dir`` exists and ``overwrite`` is false (checked first).
    """
    started = time.perf_counter()
    if report_dir is not None and os.path.lexists(report_dir) and not overwrite:
        raise FileExistsError(f"{report_dir} already exists; pass overwrite=True (--overwrite) to replace it")
    if not isinstance(model, EmbeddingModel):
        model = load(model, embedding_cache=embedding_cache)
    template = TextTemplate.coerce(model.template)
    test, test_name = _records(test, "test")
    _check_records(test, test_name, template, label_column)
    if reference is not None and not isinstance(reference, pd.DataFrame | str | os.PathLike):
        parts = [_records(part, "reference") for part in reference]
        for frame, where in parts:
            _check_records(frame, where, template, label_column)
        reference = pd.concat([frame for frame, _ in parts], ignore_index=True) if parts else None
    elif reference is not None:
        reference, where = _records(reference, "reference")
        _check_records(reference, where, template, label_column)
    if len(test) < 2:
        raise ValueError(f"need at least 2 test records, got {len(test)} in {test_name}")
    usable_ks = sorted({int(k) for k in ks if 1 <= int(k) <= len(test) - 1})
    if not usable_ks:
        raise ValueError(f"no k in {list(ks)} fits {len(test)} test records")

    labels = test[label_column].astype(str).to_numpy()
    raw = model.encode_raw(test, batch_size=batch_size, progress=progress)
    embeddings = {"fine-tuned": model.apply_head(raw)}
    if compare_raw:
        embeddings = {"raw": raw, **embeddings}
    if report_dir is None:
        table = compare(embeddings, labels, ks=usable_ks)
        return EvaluationOutcome(metrics=table, report=None, seconds=time.perf_counter() - started)

    probe = None
    if reference is not None and len(reference):
        ref_raw = model.encode_raw(reference, batch_size=batch_size, progress=progress)
        ref_labels = reference[label_column].astype(str).to_numpy()
        ref_embeddings = {"raw": ref_raw, "fine-tuned": model.apply_head(ref_raw)}
        probe = {name: (ref_embeddings[name], ref_labels, emb, labels) for name, emb in embeddings.items()}
    report = evaluation_report(
        report_dir,
        embeddings,
        labels,
        ks=usable_ks,
        probe=probe,
        title=f"Retrieval evaluation: {len(test)} queries",
        overwrite=overwrite,
    )
    return EvaluationOutcome(metrics=report.metrics, report=report, seconds=time.perf_counter() - started)
