"""The metric registry: each retrieval metric is one function plus one `register_metric` call.

`METRICS` is a `refinery_quaterion.registry.Registry` (the one type of every family of plug-ins).

A metric function reads one `RankedBlock` (a block of queries with the relevance of their
ranked neighbours) and returns one value per query of the block. The engine
(`refinery_quaterion.evaluate.metrics`) calls every registered metric for every block, so a
registered metric appears in `retrieval_metrics`, `compare`, the tables and the report folder
without further edits. The order of registration is the column order.

To add a metric, write the function and register it (here, below the built-ins, or in your
own code before computing the metrics):

```python
def recall_values(block: RankedBlock, k: int | None) -> np.ndarray:
    return block.hits[:, k - 1] / np.maximum(block.n_relevant, 1)

register_metric("Recall@k", recall_values, k_values="ks",
                description="share of the query's other same-label items among its k nearest neighbours")
```

A name ending in ``@k`` makes a *cut-off* metric, computed for each ``k`` of ``ks`` (or of
``map_ks``); it may read only the top ``max(ks + map_ks)`` ranks. Any other name makes a
*full-ranking* metric, computed only with ``full=True`` (the whole ranking of each query is
sorted).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from refinery_quaterion.registry import Registry

__all__ = ["METRICS", "Metric", "MetricFunction", "RankedBlock", "metric_names", "register_metric"]


class RankedBlock:
    """A block of queries and the relevance of their ranked neighbours: what a metric function reads.

    Ranks follow `refinery_quaterion.evaluate.metrics.TIE_RULE`; a neighbour is relevant when it
    has the query's label. The derived arrays are computed on first use and shared by all
    metrics of the block.

    Args:
        relevant: Boolean ``(b, m)`` array: ``relevant[i, p]`` is whether the neighbour at rank
            ``p + 1`` of query ``i`` is relevant. ``m = n - 1`` (the whole ranking) when
            ``full``, else ``m = kmax``.
        n_relevant: Integer ``(b,)`` array: ``r``, the other items with the query's label.
        kmax: The largest cut-off of the computation.
        full: Whether ``relevant`` covers the whole ranking.

    Attributes:
        relevant: As given.
        n_relevant: As given.
        kmax: As given.
        full: As given.
    """

    def __init__(self, relevant: np.ndarray, n_relevant: np.ndarray, kmax: int, full: bool) -> None:
        self.relevant = relevant
        self.n_relevant = n_relevant
        self.kmax = kmax
        self.full = full

    @property
    def size(self) -> int:
        """Number of queries in the block."""
        return int(self.relevant.shape[0])

    @functools.cached_property
    def top(self) -> np.ndarray:
        """``relevant[:, :kmax]``: relevance of the top ``kmax`` ranks."""
        return self.relevant[:, : self.kmax]

    @functools.cached_property
    def hits(self) -> np.ndarray:
        """Integer ``(b, kmax)``: ``hits[i, p]`` relevant neighbours at ranks ``1..p+1``."""
        return np.cumsum(self.top, axis=1, dtype=np.int64)

    @functools.cached_property
    def precision_sums(self) -> np.ndarray:
        """Float ``(b, kmax)``: running sum of ``rel_p * hits_p / p`` (the numerator of AP@k)."""
        pos = np.arange(1, self.kmax + 1, dtype=np.float64)
        return np.cumsum(np.where(self.top, self.hits / pos, 0.0), axis=1)

    @functools.cached_property
    def full_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reciprocal rank, average precision and R-precision per query (needs ``full``)."""
        if not self.full:
            raise ValueError("full-ranking statistics need the whole ranking (full=True)")
        return _full_stats(self.relevant, self.n_relevant)


def _full_stats(rel: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reciprocal rank, average precision and R-precision per row of a full relevance ranking."""
    b = rel.shape[0]
    rows, cols = np.nonzero(rel)
    if rows.size != int(r.sum()):  # pragma: no cover - internal invariant
        raise AssertionError("relevance count mismatch in the full ranking")
    starts = np.cumsum(r) - r
    hits = np.arange(1, rows.size + 1, dtype=np.float64) - starts[rows]
    safe = np.maximum(r, 1).astype(np.float64)
    ap = np.bincount(rows, weights=hits / (cols + 1.0), minlength=b) / safe
    rp = np.bincount(rows[cols < r[rows]], minlength=b) / safe
    rr = np.full(b, np.nan)
    has = r > 0
    rr[has] = 1.0 / (cols[starts[has]] + 1.0)
    return rr, ap, rp


MetricFunction = Callable[[RankedBlock, "int | None"], np.ndarray]
"""``(block, k) -> values``: one float per query of ``block``; ``k`` is ``None`` for a full-ranking metric."""


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    Attributes:
        name: Registry key: ``"P@k"`` for a cut-off metric (columns ``P@1``, ``P@10``, ...),
            ``"MRR"`` for a full-ranking metric (one column).
        compute: The `MetricFunction`.
        description: One line for readers (shown in the report).
        k_values: For a cut-off metric, which ``k`` list of `retrieval_metrics` it uses
            (``"ks"`` or ``"map_ks"``); ``None`` for a full-ranking metric.
        example: A column it makes, for the docs (``"P@10"``).
    """

    name: str
    compute: MetricFunction
    description: str
    k_values: Literal["ks", "map_ks"] | None = None
    example: str = ""

    @property
    def prefix(self) -> str:
        """The name without its ``@k`` suffix (``"P"`` for ``"P@k"``)."""
        return self.name.removesuffix("@k")

    def cutoffs(self, ks: Iterable[int], map_ks: Iterable[int] = (), *, full: bool = True) -> list[int | None]:
        """The ``k`` values this metric is computed for (``[None]`` for a full-ranking metric).

        Args:
            ks: The precision@k cut-offs.
            map_ks: The mAP@k cut-offs.
            full: Whether full-ranking metrics are computed (else they give ``[]``).

        Returns:
            Ascending, distinct ``k`` values; ``[None]`` or ``[]`` for a full-ranking metric.
        """
        if self.k_values is None:
            return [None] if full else []
        return sorted(set(ks if self.k_values == "ks" else map_ks))

    def column(self, k: int | None) -> str:
        """The column name for cut-off ``k`` (``"P@10"``), or the name of a full-ranking metric."""
        return self.name if k is None else f"{self.prefix}@{k}"


def _make_metric(
    name: str,
    compute: MetricFunction,
    *,
    description: str,
    example: str = "",
    k_values: Literal["ks", "map_ks"] | None = None,
) -> Metric:
    """A checked `Metric` (the ``make_entry`` of `METRICS`; arguments as in `register_metric`).

    Raises:
        ValueError: A bad name, or ``k_values`` that does not fit the name.
        TypeError: ``compute`` is not callable.
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"metric name must be a non-empty string without outer spaces; got {name!r}")
    cutoff = name.endswith("@k")
    if "@" in name.removesuffix("@k") or (cutoff and name == "@k"):
        raise ValueError(f"metric name {name!r} may hold '@' only in a final '@k' (cut-off metrics)")
    if cutoff and k_values not in ("ks", "map_ks"):
        raise ValueError(f"cut-off metric {name!r} needs k_values='ks' or 'map_ks'; got {k_values!r}")
    if not cutoff and k_values is not None:
        raise ValueError(
            f"metric {name!r} does not end in '@k', so it is a full-ranking metric and takes no "
            f"k_values; got {k_values!r} (name it {name + '@k'!r} for a cut-off metric)"
        )
    if not callable(compute):
        raise TypeError(f"compute of metric {name!r} must be callable (block, k) -> values; got {compute!r}")
    description = description.strip() if isinstance(description, str) else description
    example = example if example and example != name else (name.removesuffix("@k") + "@10" if cutoff else name)
    return Metric(name=name, compute=compute, description=description, k_values=k_values, example=example)


def _computed_for(metric: Metric) -> str:
    """Which cut-offs a metric is computed for (the details column of the docs table)."""
    if metric.k_values is None:
        return "the whole ranking (`full=True`)"
    return f"each k of `{metric.k_values}`"


METRICS: Registry[Metric] = Registry("metric", "metrics", _make_metric, details=("Computed for", _computed_for))
"""Every registered metric by name, in column order (fill it with `register_metric`)."""


def register_metric(
    name: str,
    compute: MetricFunction,
    *,
    description: str,
    k_values: Literal["ks", "map_ks"] | None = None,
    replace: bool = False,
) -> Metric:
    """Register a metric; from then on every evaluation computes it.

    Args:
        name: Column name; ending in ``@k`` (e.g. ``"Recall@k"``) for a cut-off metric.
        compute: ``(block, k) -> values`` (see `RankedBlock`): one float per query of the
            block, NaN allowed; queries without a relevant neighbour are set to NaN anyway.
        description: One line telling readers what the metric measures.
        k_values: Required for a cut-off metric: ``"ks"`` (the precision@k cut-offs) or
            ``"map_ks"`` (the mAP@k cut-offs); must be ``None`` otherwise.
        replace: Allow replacing a metric of the same name.

    Returns:
        The registered `Metric`.

    Raises:
        ValueError: A bad or already registered name, an empty description, or ``k_values``
            that does not fit the name.
        TypeError: ``compute`` is not callable.
    """
    metric = _make_metric(name, compute, description=description, k_values=k_values)
    return METRICS.add(metric, replace=replace)


def metric_names(ks: Iterable[int], map_ks: Iterable[int] = (), *, full: bool = True) -> list[str]:
    """The metric (column) names, in report order, for the given ``ks``.

    Args:
        ks: ``k`` values of precision@k (and of every other cut-off metric using ``"ks"``).
        map_ks: ``k`` values of mAP@k.
        full: Include the full-ranking metrics (``MRR``, ``mAP``, ``R-precision``, ...).

    Returns:
        E.g. ``["P@1", "P@10", "MRR", "mAP@10", "mAP", "R-precision"]``.
    """
    ks, map_ks = list(ks), list(map_ks)
    return [metric.column(k) for metric in METRICS.values() for k in metric.cutoffs(ks, map_ks, full=full)]


# --------------------------------------------------------------------------------------------
# Built-in metrics (r = other items with the query's label; rel_p, hits_p as in the module
# docstring of refinery_quaterion.evaluate)
# --------------------------------------------------------------------------------------------


def _precision(block: RankedBlock, k: int | None) -> np.ndarray:
    """P@k per query: ``hits_k / k``."""
    assert k is not None
    return block.hits[:, k - 1] / k


def _reciprocal_rank(block: RankedBlock, k: int | None) -> np.ndarray:
    """``1 / rank`` of the first relevant neighbour, per query."""
    return block.full_stats[0]


def _average_precision_at(block: RankedBlock, k: int | None) -> np.ndarray:
    """AP@k per query: ``sum(rel_p * hits_p / p for p <= k) / min(k, r)``."""
    assert k is not None
    return block.precision_sums[:, k - 1] / np.maximum(np.minimum(k, block.n_relevant), 1)


def _average_precision(block: RankedBlock, k: int | None) -> np.ndarray:
    """Full average precision per query: ``sum(rel_p * hits_p / p) / r``."""
    return block.full_stats[1]


def _r_precision(block: RankedBlock, k: int | None) -> np.ndarray:
    """R-precision per query: ``hits_r / r``."""
    return block.full_stats[2]


# (name, function, k_values, description): registered in this order, which is the column order
_BUILT_IN: tuple[tuple[str, MetricFunction, Literal["ks", "map_ks"] | None, str], ...] = (
    ("P@k", _precision, "ks", "precision@k: share of the k nearest neighbours with the query's label"),
    ("MRR", _reciprocal_rank, None,
     "mean reciprocal rank: mean of 1 / rank of the first neighbour with the query's label"),
    ("mAP@k", _average_precision_at, "map_ks",
     "mean average precision at k: precision at each relevant rank <= k, summed, over min(k, r)"),
    ("mAP", _average_precision, None,
     "mean average precision over the whole ranking: precision at each relevant rank, over r"),
    ("R-precision", _r_precision, None,
     "precision at rank r, where r is the number of other items with the query's label"),
)
for _name, _compute, _k_values, _description in _BUILT_IN:
    register_metric(_name, _compute, k_values=_k_values, description=_description)
