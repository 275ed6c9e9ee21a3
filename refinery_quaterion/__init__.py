"""refinery-quaterion: fine-tuned text embeddings for similarity search from refinery labels.

The public API is re-exported here and loaded lazily (PEP 562): ``import refinery_quaterion``
imports no torch, Lightning or quaterion; it only installs the import hook of
``refinery_quaterion._compat``, which applies the quaterion compat shims when quaterion or
Lightning is first imported (by this package or by your own code). ``refinery_quaterion.fit``
imports the training stack (torch, transformers, Lightning, quaterion) on first use;
``load_export`` and ``combine_labels`` need none of it.

Data flows export → labels → dataset → model/train → evaluate/search:

>>> from refinery_quaterion import load_export, combine_labels  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from refinery_quaterion import _compat  # noqa: F401  (first: the quaterion import hook; imports nothing heavy)

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    "readers": ("DataFile", "ExportError", "load_records", "read_data_file"),
    "export": ("ClassificationTask", "RefineryExport", "SupportsRecordExport", "load_export"),
    "thresholds": ("AutoThreshold", "ThresholdChoice", "choose_threshold", "threshold_report"),
    "labels": ("DROP_REASONS", "LabelReport", "combine_labels"),
    "text": ("TextTemplate",),
    "splits": ("DuplicateReport", "DuplicateTextWarning", "HoldoutSplit", "duplicate_report", "split_by_source",
               "train_val_split"),
    "cleaning": ("CleaningReport", "clean_labels"),
    "dataset": ("LabelMap", "RefineryExportDataset"),
    "cache": ("EmbeddingCache", "default_cache_dir"),
    "components": ("HEADS", "LOSSES", "OPTIMIZERS"),
    "config": ("FitConfig", "ModelConfig"),
    "pretrained": ("MINILM_ALIAS", "ModelNotFoundError", "resolve_pretrained"),
    "encoder": ("TransformerEncoder",),
    "model": ("DistilBertSimilarityModel",),
    "inference": ("EmbeddingModel", "ModelFileError"),
    "train": ("FitResult", "TrainingInterrupted", "fit", "load", "save"),
    "exporters": ("EXPORT_FORMATS", "ExportResult", "ModelExportError", "OnnxEmbedder", "export_model"),
    "evaluate": (
        "DEFAULT_KS",
        "EvaluationReport",
        "LinearProbeReport",
        "RetrievalMetrics",
        "compare",
        "evaluation_report",
        "format_table",
        "linear_probe_report",
        "mean_average_precision",
        "mean_reciprocal_rank",
        "precision_at_k",
        "r_precision",
        "register_metric",
        "retrieval_metrics",
        "save_table",
        "to_markdown",
    ),
    "plots": (
        "plot_confusion_matrix",
        "plot_precision_distribution",
        "plot_threshold_curve",
        "plot_topk_curve",
    ),
    "search": ("SearchHit", "SimilarityIndex", "StaleIndexError", "model_fingerprint"),
    "workflow": ("EvaluationOutcome", "PreparedRecords", "TrainOutcome", "evaluate_model", "load_prepared",
                 "prepare_records", "train_model"),
}

_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *sorted(_MODULE_OF)]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'refinery_quaterion' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"refinery_quaterion.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from refinery_quaterion.cache import EmbeddingCache, default_cache_dir
    from refinery_quaterion.cleaning import CleaningReport, clean_labels
    from refinery_quaterion.components import HEADS, LOSSES, OPTIMIZERS
    from refinery_quaterion.config import FitConfig, ModelConfig
    from refinery_quaterion.dataset import LabelMap, RefineryExportDataset
    from refinery_quaterion.encoder import TransformerEncoder
    from refinery_quaterion.evaluate import (
        DEFAULT_KS,
        EvaluationReport,
        LinearProbeReport,
        RetrievalMetrics,
        compare,
        evaluation_report,
        format_table,
        linear_probe_report,
        mean_average_precision,
        mean_reciprocal_rank,
        precision_at_k,
        r_precision,
        register_metric,
        retrieval_metrics,
        save_table,
        to_markdown,
    )
    from refinery_quaterion.export import ClassificationTask, RefineryExport, SupportsRecordExport, load_export
    from refinery_quaterion.exporters import EXPORT_FORMATS, ExportResult, ModelExportError, OnnxEmbedder, export_model
    from refinery_quaterion.inference import EmbeddingModel, ModelFileError
    from refinery_quaterion.labels import DROP_REASONS, LabelReport, combine_labels
    from refinery_quaterion.model import DistilBertSimilarityModel
    from refinery_quaterion.plots import (
        plot_confusion_matrix,
        plot_precision_distribution,
        plot_threshold_curve,
        plot_topk_curve,
    )
    from refinery_quaterion.pretrained import MINILM_ALIAS, ModelNotFoundError, resolve_pretrained
    from refinery_quaterion.readers import DataFile, ExportError, load_records, read_data_file
    from refinery_quaterion.search import SearchHit, SimilarityIndex, StaleIndexError, model_fingerprint
    from refinery_quaterion.splits import (
        DuplicateReport,
        DuplicateTextWarning,
        HoldoutSplit,
        duplicate_report,
        split_by_source,
        train_val_split,
    )
    from refinery_quaterion.text import TextTemplate
    from refinery_quaterion.thresholds import AutoThreshold, ThresholdChoice, choose_threshold, threshold_report
    from refinery_quaterion.train import FitResult, TrainingInterrupted, fit, load, save
    from refinery_quaterion.workflow import (
        EvaluationOutcome,
        PreparedRecords,
        TrainOutcome,
        evaluate_model,
        load_prepared,
        prepare_records,
        train_model,
    )
