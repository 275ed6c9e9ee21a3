"""refinery-quaterion: fine-tuned text embeddings for similarity search from refinery labels.

The public API is re-exported here and loaded lazily (PEP 562): ``import refinery_quaterion``
applies the quaterion compat shims and nothing else; ``refinery_quaterion.fit`` imports the
training stack (transformers, Lightning) on first use.

Data flows export → labels → dataset → model/train → evaluate/search:

>>> from refinery_quaterion import load_export, combine_labels  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from refinery_quaterion import _compat  # noqa: F401  (must stay the first import)

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    "export": ("ClassificationTask", "ExportError", "RefineryExport", "SupportsRecordExport", "load_export"),
    "labels": ("DROP_REASONS", "LabelReport", "combine_labels", "threshold_report"),
    "text": ("TextTemplate",),
    "dataset": ("LabelMap", "RefineryExportDataset", "load_records", "train_val_split"),
    "cache": ("EmbeddingCache", "default_cache_dir"),
    "model": (
        "DistilBertSimilarityModel",
        "EmbeddingModel",
        "HEADS",
        "LOSSES",
        "MINILM_ALIAS",
        "ModelNotFoundError",
        "TransformerEncoder",
        "resolve_pretrained",
    ),
    "train": ("FitResult", "fit", "load", "save"),
    "evaluate": (
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
    "search": ("SearchHit", "SimilarityIndex"),
    "workflow": ("TrainOutcome", "evaluate_model", "train_model"),
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
    from refinery_quaterion.dataset import LabelMap, RefineryExportDataset, load_records, train_val_split
    from refinery_quaterion.evaluate import (
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
        retrieval_metrics,
        save_table,
        to_markdown,
    )
    from refinery_quaterion.export import (
        ClassificationTask,
        ExportError,
        RefineryExport,
        SupportsRecordExport,
        load_export,
    )
    from refinery_quaterion.labels import DROP_REASONS, LabelReport, combine_labels, threshold_report
    from refinery_quaterion.model import (
        HEADS,
        LOSSES,
        MINILM_ALIAS,
        DistilBertSimilarityModel,
        EmbeddingModel,
        ModelNotFoundError,
        TransformerEncoder,
        resolve_pretrained,
    )
    from refinery_quaterion.plots import (
        plot_confusion_matrix,
        plot_precision_distribution,
        plot_threshold_curve,
        plot_topk_curve,
    )
    from refinery_quaterion.search import SearchHit, SimilarityIndex
    from refinery_quaterion.text import TextTemplate
    from refinery_quaterion.train import FitResult, fit, load, save
    from refinery_quaterion.workflow import TrainOutcome, evaluate_model, train_model
