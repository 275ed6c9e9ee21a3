"""Step 2: labeled records to a trained, saved model (`train_model`)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from refinery_quaterion.data.dataset import LabelMap, RefineryExportDataset
from refinery_quaterion.data.text import TextSpec
from refinery_quaterion.errors import MISSING, Fix, OutputExistsError, SettingError
from refinery_quaterion.model.cache import EmbeddingCache
from refinery_quaterion.model.config import FitConfig, ModelConfig
from refinery_quaterion.model.pretrained import MINILM_ALIAS
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training.fit import FitResult, fit
from refinery_quaterion.training.model_files import save

__all__ = ["CacheSpec", "TrainOutcome", "train_model"]

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
        raise OutputExistsError(out)
    model_changes = {k: v for k, v in (("text", text), ("pretrained", pretrained), ("seed", seed)) if v is not None}
    model_config = (model_config or ModelConfig(pretrained=MINILM_ALIAS)).replace(**model_changes)
    fit_changes = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("seed", seed),
                                     ("progress", progress)) if v is not None}
    fit_config = (fit_config or FitConfig()).replace(**fit_changes)
    if model_config.text is None:
        raise SettingError("train_model needs a text template, e.g. '{{Title}}. {{Description}}'",
                           fixes=(Fix("text", MISSING),))
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
