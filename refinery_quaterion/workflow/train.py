"""Step 2: labeled records to a trained, saved model (`train_model`)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from refinery_quaterion._io import refuse_output_over_inputs
from refinery_quaterion.data.dataset import LabelMap, RefineryExportDataset
from refinery_quaterion.errors import MISSING, Fix, OutputExistsError, SettingError
from refinery_quaterion.model.cache import EmbeddingCache
from refinery_quaterion.model.config import FitConfig, ModelConfig
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training._guards import check_trained_vectors
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
    model_config: ModelConfig | None = None,
    fit_config: FitConfig | None = None,
    label_column: str = "label",
    embedding_cache: CacheSpec = True,
    overwrite: bool = False,
) -> TrainOutcome:
    """Fine-tune a similarity model on labeled records and save it.

    What the model is (encoder, template, head, loss, seed) is ``model_config``; how it is
    trained (epochs, batch size, progress...) is ``fit_config``.

    Args:
        train: Training records with a label column (e.g. from `combine_labels`).
        val: Validation records (same columns), or ``None``.
        out: Folder to save the model to.
        model_config: The model; it needs a ``template`` (e.g.
            ``ModelConfig(template="{Title}. {Description}")``). ``None`` is ``ModelConfig()``
            (the bundled all-MiniLM-L6-v2), which has no template and is refused.
        fit_config: How to train (default: `FitConfig()`).
        label_column: Column holding the labels.
        embedding_cache: Disk cache of the frozen encoder's vectors: ``True`` (default) uses
            `default_cache_dir`; a folder or ``None`` (off). Ignored for a trainable encoder.
        overwrite: Replace an existing ``out``.

    Returns:
        A `TrainOutcome`.

    Raises:
        FileExistsError: If ``out`` exists and ``overwrite`` is false (checked before training).
        SettingError: If ``out`` is, contains or lies inside the pretrained model's folder or
            the embedding cache (checked first).
        ValueError: Without a text template, or for invalid settings.
        TrainingDiverged: If the loss became NaN or infinite (nothing is saved).
        TrainedModelError: If the trained model's vectors are non-finite or collapsed (nothing
            is saved).
    """
    started = time.perf_counter()
    out = Path(out)
    model_config = model_config or ModelConfig()
    cache = None if model_config.trainable_encoder else EmbeddingCache.coerce(embedding_cache)
    refuse_output_over_inputs(out, _input_paths(model_config, cache))
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    if model_config.template is None:
        raise SettingError("train_model needs a text template, e.g. '{{Title}}. {{Description}}'",
                           fixes=(Fix("template", MISSING),))
    train_ds = RefineryExportDataset(train, template=model_config.template, label_column=label_column)
    val_ds = (
        RefineryExportDataset(val, template=model_config.template, label_map=train_ds.label_map,
                              label_column=label_column)
        if val is not None and len(val)
        else None
    )
    model = DistilBertSimilarityModel(model_config, embedding_cache=cache)
    result = fit(model, train_ds, val_ds, fit_config or FitConfig())
    check_trained_vectors(model, train_ds.records, where=str(out))
    extra = {"train_records": len(train_ds), "val_records": len(val_ds) if val_ds is not None else 0}
    path = save(model, out, label_map=train_ds.label_map, overwrite=overwrite, extra=extra)
    return TrainOutcome(path=path, fit=result, label_map=train_ds.label_map, seconds=time.perf_counter() - started)


def _input_paths(model_config: ModelConfig, cache: EmbeddingCache | None) -> dict[str, str | os.PathLike | None]:
    """The folders `train_model` reads: the pretrained model (when a local folder) and the cache."""
    pretrained = model_config.pretrained
    local = pretrained if os.path.exists(os.path.expanduser(pretrained)) else None
    return {"the pretrained model": local, "the embedding cache": cache.folder if cache is not None else None}
