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

from typing import TYPE_CHECKING

from refinery_quaterion import _compat  # noqa: F401  (first: the quaterion import hook; imports nothing heavy)
from refinery_quaterion._lazy import lazy_exports
from refinery_quaterion._version import __version__

_EXPORTS: dict[str, tuple[str, ...]] = {
    "data.readers": ("DataFile", "RefineryFileError", "load_records", "read_data_file"),
    "data.refinery": ("ClassificationTask", "RefineryExport", "SupportsRecordExport", "load_export"),
    "data.thresholds": ("AutoThreshold", "ThresholdChoice", "choose_threshold", "threshold_report"),
    "data.labels": ("DROP_REASONS", "LabelReport", "combine_labels"),
    "data.text": ("TextTemplate",),
    "data.splits": ("DuplicateReport", "DuplicateTextWarning", "HoldoutSplit", "duplicate_report", "split_by_source",
               "train_val_split"),
    "data.cleaning": ("CleaningReport", "clean_labels"),
    "data.dataset": ("LabelMap", "RefineryExportDataset"),
    "data.config": ("LabelConfig",),
    "model.cache": ("EmbeddingCache", "default_cache_dir"),
    "model.components": ("HEADS", "LOSSES", "OPTIMIZERS"),
    "model.config": ("FitConfig", "ModelConfig"),
    "model.pretrained": ("MINILM_ALIAS", "ModelNotFoundError", "resolve_pretrained"),
    "model.encoder": ("TransformerEncoder",),
    "model.trainable": ("DistilBertSimilarityModel",),
    "model.inference": ("EmbeddingModel", "ModelFileError"),
    "training.fit": ("FitResult", "TrainingInterrupted", "fit"),
    "training.model_files": ("load", "save"),
    "exporters": ("EXPORT_FORMATS", "ExportResult", "ModelExportError", "OnnxEmbedder", "OpenVinoEmbedder",
                  "export_model", "to_refinery"),
    "evaluate": (
        "DEFAULT_KS",
        "EvalConfig",
        "EvaluationReport",
        "LinearProbeReport",
        "ProbeConfig",
        "ProbeSet",
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
    "evaluate.plots": ("plot_precision_distribution", "plot_topk_curve"),
    "evaluate.label_plots": ("plot_confusion_matrix", "plot_threshold_curve"),
    "search": ("IndexConfig", "IndexingResult", "SearchHit", "SimilarityIndex", "StaleIndexError", "index_records",
               "load_vector_shards", "model_fingerprint"),
    "workflow.prepare": ("PreparedRecords", "load_prepared", "prepare_records"),
    "workflow.train": ("TrainOutcome", "train_model"),
    "workflow.evaluate": ("EvaluationOutcome", "evaluate_model"),
}

_names, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = ["__version__", *_names]


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from refinery_quaterion.data.cleaning import CleaningReport, clean_labels
    from refinery_quaterion.data.config import LabelConfig
    from refinery_quaterion.data.dataset import LabelMap, RefineryExportDataset
    from refinery_quaterion.data.labels import DROP_REASONS, LabelReport, combine_labels
    from refinery_quaterion.data.readers import DataFile, RefineryFileError, load_records, read_data_file
    from refinery_quaterion.data.refinery import ClassificationTask, RefineryExport, SupportsRecordExport, load_export
    from refinery_quaterion.data.splits import (
        DuplicateReport,
        DuplicateTextWarning,
        HoldoutSplit,
        duplicate_report,
        split_by_source,
        train_val_split,
    )
    from refinery_quaterion.data.text import TextTemplate
    from refinery_quaterion.data.thresholds import AutoThreshold, ThresholdChoice, choose_threshold, threshold_report
    from refinery_quaterion.evaluate import (
        DEFAULT_KS,
        EvalConfig,
        EvaluationReport,
        LinearProbeReport,
        ProbeConfig,
        ProbeSet,
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
    from refinery_quaterion.evaluate.label_plots import plot_confusion_matrix, plot_threshold_curve
    from refinery_quaterion.evaluate.plots import plot_precision_distribution, plot_topk_curve
    from refinery_quaterion.exporters import (
        EXPORT_FORMATS,
        ExportResult,
        ModelExportError,
        OnnxEmbedder,
        OpenVinoEmbedder,
        export_model,
        to_refinery,
    )
    from refinery_quaterion.model.cache import EmbeddingCache, default_cache_dir
    from refinery_quaterion.model.components import HEADS, LOSSES, OPTIMIZERS
    from refinery_quaterion.model.config import FitConfig, ModelConfig
    from refinery_quaterion.model.encoder import TransformerEncoder
    from refinery_quaterion.model.inference import EmbeddingModel, ModelFileError
    from refinery_quaterion.model.pretrained import MINILM_ALIAS, ModelNotFoundError, resolve_pretrained
    from refinery_quaterion.model.trainable import DistilBertSimilarityModel
    from refinery_quaterion.search import (
        IndexConfig,
        IndexingResult,
        SearchHit,
        SimilarityIndex,
        StaleIndexError,
        index_records,
        load_vector_shards,
        model_fingerprint,
    )
    from refinery_quaterion.training.fit import FitResult, TrainingInterrupted, fit
    from refinery_quaterion.training.model_files import load, save
    from refinery_quaterion.workflow.evaluate import EvaluationOutcome, evaluate_model
    from refinery_quaterion.workflow.prepare import PreparedRecords, load_prepared, prepare_records
    from refinery_quaterion.workflow.train import TrainOutcome, train_model
