"""How good are the embeddings for similarity search? Exact retrieval metrics and reports.

Every item is used once as a query against all the other items (leave-one-out retrieval
on one labelled set): a neighbour is *relevant* when it has the query's label. The metrics
are computed over **all** queries, exactly, in blocks of queries so that the memory stays
bounded whatever the number of items (no ``n × n`` matrix is ever built for large ``n``).

Definitions (``r`` = number of other items with the query's label, ``rel_p`` = 1 when the
neighbour at rank ``p`` is relevant, ``hits_p`` = relevant neighbours at ranks ``1..p``):

* ``P@k``: ``hits_k / k`` (can stay below 1 when ``k > r``).
* ``MRR``: mean of ``1 / rank`` of the first relevant neighbour.
* ``mAP@k``: mean of ``AP@k = sum(rel_p * hits_p / p for p <= k) / min(k, r)``.
* ``mAP``: mean of the full average precision ``sum(rel_p * hits_p / p) / r``.
* ``R-precision``: mean of ``hits_r / r``.

Similarity is the cosine similarity (rows are L2-normalised; an all-zero row has
similarity 0 to everything) computed in float32. Ranking and ties follow `TIE_RULE`.

Queries whose label occurs only once (``r = 0``) have no relevant neighbour: they are left
out of every mean (their per-query values are NaN) and counted in ``n_excluded``.

The package has one module per concept; every name below can be imported from
``refinery_quaterion.evaluate`` directly:

* `refinery_quaterion.evaluate.metrics`: the exact blocked engine (`retrieval_metrics`,
  `precision_at_k`, ...), `DEFAULT_KS`, `TIE_RULE`;
* `refinery_quaterion.evaluate.registry`: the metric registry (`register_metric`, `METRICS`);
  a registered metric appears in every table and report;
* `refinery_quaterion.evaluate.tables`: `compare` and the table writers;
* `refinery_quaterion.evaluate.probe`: the linear probe;
* `refinery_quaterion.evaluate.report`: the report folder (`evaluation_report`);
* `refinery_quaterion.evaluate.config`: how a model is evaluated (`EvalConfig`, `ProbeConfig`).

The figures are imported from their own modules (they load matplotlib):

* `refinery_quaterion.evaluate.plots`: retrieval figures (`plot_topk_curve`,
  `plot_precision_distribution`);
* `refinery_quaterion.evaluate.label_plots`: label-quality figures (`confusion_table`,
  `plot_confusion_matrix`, `plot_threshold_curve`).
"""

from __future__ import annotations

from refinery_quaterion.evaluate.config import EvalConfig, ProbeConfig
from refinery_quaterion.evaluate.metrics import (
    DEFAULT_KS,
    TIE_RULE,
    RetrievalMetrics,
    mean_average_precision,
    mean_reciprocal_rank,
    precision_at_k,
    r_precision,
    retrieval_metrics,
)
from refinery_quaterion.evaluate.probe import LinearProbeReport, ProbeSet, linear_probe_report
from refinery_quaterion.evaluate.registry import (
    METRICS,
    Metric,
    MetricFunction,
    RankedBlock,
    metric_names,
    register_metric,
)
from refinery_quaterion.evaluate.report import EvaluationReport, evaluation_report
from refinery_quaterion.evaluate.tables import compare, format_table, print_table, save_table, to_markdown

__all__ = [
    "compare",
    "DEFAULT_KS",
    "EvalConfig",
    "evaluation_report",
    "EvaluationReport",
    "format_table",
    "linear_probe_report",
    "LinearProbeReport",
    "mean_average_precision",
    "mean_reciprocal_rank",
    "Metric",
    "metric_names",
    "MetricFunction",
    "METRICS",
    "precision_at_k",
    "print_table",
    "ProbeConfig",
    "ProbeSet",
    "r_precision",
    "RankedBlock",
    "register_metric",
    "retrieval_metrics",
    "RetrievalMetrics",
    "save_table",
    "TIE_RULE",
    "to_markdown",
]
