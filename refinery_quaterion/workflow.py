"""End-to-end steps shared by the command line and the examples.

Each step is a thin composition of the library's building blocks, so a script (or the CLI)
needs no logic of its own:

* `train_model` — labeled records → datasets → `DistilBertSimilarityModel` →
  `fit` → `save`;
* `evaluate_model` — a saved model and labeled test records → raw vs fine-tuned
  retrieval metrics (+ linear probe) → a report folder.

The frozen encoder's vectors go through one disk `EmbeddingCache`
(by default `default_cache_dir`), so each text is encoded once
across training, raw evaluation and fine-tuned evaluation, and a re-run is fast.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from refinery_quaterion.cache import EmbeddingCache
from refinery_quaterion.dataset import LabelMap, RefineryExportDataset
from refinery_quaterion.evaluate import EvaluationReport, compare, evaluation_report
from refinery_quaterion.model import DistilBertSimilarityModel, EmbeddingModel
from refinery_quaterion.text import TextSpec
from refinery_quaterion.train import FitResult, fit, load, save

__all__ = [
    "DEFAULT_EVAL_KS",
    "TrainOutcome",
    "evaluate_model",
    "train_model",
]

#: The k values of the AG News case (the seed's top-k figure).
DEFAULT_EVAL_KS: tuple[int, ...] = (1, 5, 10, 25, 50, 100, 250, 1000)

CacheSpec = EmbeddingCache | str | os.PathLike | bool | None
"""A cache argument: an `EmbeddingCache`, a folder, ``True`` (the default folder) or ``None``."""


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
    text: TextSpec,
    pretrained: str = "minilm",
    epochs: int | None = None,
    batch_size: int = 128,
    label_column: str = "label",
    embedding_cache: CacheSpec = True,
    model_options: Mapping[str, Any] | None = None,
    fit_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    seed: int = 42,
) -> TrainOutcome:
    """Fine-tune a similarity model on labeled records and save it.

    Args:
        train: Training records with a label column (e.g. from
            `combine_labels`).
        val: Validation records (same columns), or ``None``.
        out: Folder to save the model to.
        text: Text template, e.g. ``"{Title}. {Description}"``.
        pretrained: Hugging Face id or folder; ``"minilm"`` is the bundled all-MiniLM-L6-v2.
        epochs: Maximum epochs (``None``: the `fit` default).
        batch_size: Records per training batch.
        label_column: Column holding the labels.
        embedding_cache: Disk cache of the frozen encoder's vectors: ``True`` (default) uses
            `default_cache_dir`; a folder or ``None`` (off).
            Ignored for a trainable encoder.
        model_options: More keyword arguments of `DistilBertSimilarityModel`
            (``head``, ``loss``, ``trainable_encoder``, ``lr`` ...).
        fit_options: More keyword arguments of `fit`.
        overwrite: Replace an existing ``out``.
        progress: Show progress bars.
        seed: Seed of the model and of training.

    Returns:
        A `TrainOutcome`.

    Raises:
        FileExistsError: If ``out`` exists and ``overwrite`` is false (checked before training).
    """
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    options = dict(model_options or {})
    train_ds = RefineryExportDataset(train, text=text, label_column=label_column)
    val_ds = (
        RefineryExportDataset(val, text=text, label_map=train_ds.label_map, label_column=label_column)
        if val is not None and len(val)
        else None
    )
    cache = None if options.get("trainable_encoder") else EmbeddingCache.coerce(embedding_cache)
    model = DistilBertSimilarityModel(pretrained=pretrained, text=text, embedding_cache=cache, seed=seed, **options)
    fit_kwargs: dict[str, Any] = {"batch_size": batch_size, "seed": seed, "progress": progress}
    if epochs is not None:
        fit_kwargs["epochs"] = epochs
    fit_kwargs.update(fit_options or {})
    result = fit(model, train_ds, val_ds, **fit_kwargs)
    extra = {"train_records": len(train_ds), "val_records": len(val_ds) if val_ds is not None else 0}
    path = save(model, out, label_map=train_ds.label_map, overwrite=overwrite, extra=extra)
    return TrainOutcome(path=path, fit=result, label_map=train_ds.label_map, seconds=time.perf_counter() - started)


def evaluate_model(
    model: EmbeddingModel | str | os.PathLike,
    test: pd.DataFrame,
    *,
    reference: pd.DataFrame | None = None,
    label_column: str = "label",
    ks: Sequence[int] = DEFAULT_EVAL_KS,
    report_dir: str | os.PathLike | None = None,
    compare_raw: bool = True,
    embedding_cache: CacheSpec = True,
    overwrite: bool = False,
    progress: bool = True,
    batch_size: int = 64,
) -> EvaluationReport | pd.DataFrame:
    """Compare the raw encoder with the fine-tuned model on labeled test records.

    Precision@k (over all queries), MRR, mAP and R-precision for ``"raw"`` (the encoder
    alone) and ``"fine-tuned"`` (encoder + trained head); with ``reference`` records, also a
    linear probe trained on ``reference`` and tested on ``test`` for each. The raw vectors
    are computed once (and cached); the fine-tuned ones apply the head to them.

    Args:
        model: A loaded model or the folder of a saved one.
        test: Test records with the model's text fields and ``label_column``.
        reference: Records to train the linear probe on (e.g. train + validation).
        label_column: Column holding the true labels.
        ks: k values of precision@k (those above ``len(test) - 1`` are dropped).
        report_dir: Write the report folder (metrics.json/.md/.csv + PNG plots) there;
            ``None`` only returns the metrics table.
        compare_raw: Also evaluate the raw encoder.
        embedding_cache: As in `train_model`; used when ``model`` is a folder.
        overwrite: Replace an existing ``report_dir``.
        progress: Show encoding progress.
        batch_size: Texts per encoder forward pass.

    Returns:
        The `EvaluationReport` when ``report_dir`` is
        given, else the metrics DataFrame (one row per model).

    Raises:
        ValueError: If a label column is missing or ``test`` has fewer than 2 records.
    """
    if not isinstance(model, EmbeddingModel):
        model = load(model, embedding_cache=embedding_cache)
    for name, frame in (("test", test), ("reference", reference)):
        if frame is not None and label_column not in frame.columns:
            raise ValueError(f"{name} records have no label column {label_column!r}; columns: {list(frame.columns)}")
    if len(test) < 2:
        raise ValueError(f"need at least 2 test records, got {len(test)}")
    usable_ks = sorted({int(k) for k in ks if 1 <= int(k) <= len(test) - 1})
    if not usable_ks:
        raise ValueError(f"no k in {list(ks)} fits {len(test)} test records")

    labels = test[label_column].astype(str).to_numpy()
    raw = model.encode_raw(test, batch_size=batch_size, progress=progress)
    embeddings = {"fine-tuned": model.apply_head(raw)}
    if compare_raw:
        embeddings = {"raw": raw, **embeddings}
    if report_dir is None:
        return compare(embeddings, labels, ks=usable_ks)

    probe = None
    if reference is not None and len(reference):
        ref_raw = model.encode_raw(reference, batch_size=batch_size, progress=progress)
        ref_labels = reference[label_column].astype(str).to_numpy()
        ref_embeddings = {"raw": ref_raw, "fine-tuned": model.apply_head(ref_raw)}
        probe = {name: (ref_embeddings[name], ref_labels, emb, labels) for name, emb in embeddings.items()}
    return evaluation_report(
        report_dir,
        embeddings,
        labels,
        ks=usable_ks,
        probe=probe,
        title=f"Retrieval evaluation: {len(test)} queries",
        overwrite=overwrite,
    )
