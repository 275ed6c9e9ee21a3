"""The exact blocked engine: leave-one-out retrieval metrics over all queries.

Every item is a query against all the other items; neighbours are ranked by cosine similarity
following `TIE_RULE`, in blocks of queries so that memory stays bounded whatever the number of
items. For each block the engine builds a `refinery_quaterion.evaluate.registry.RankedBlock`
and asks every registered metric (`refinery_quaterion.evaluate.registry.METRICS`) for its
per-query values; `retrieval_metrics` averages them over the queries that have a relevant
neighbour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import numpy as np

from refinery_quaterion.evaluate._inputs import EmbeddingsLike, as_matrix, label_codes, normalize_rows
from refinery_quaterion.evaluate.registry import METRICS, RankedBlock

__all__ = [
    "DEFAULT_KS",
    "TIE_RULE",
    "RetrievalMetrics",
    "retrieval_metrics",
    "precision_at_k",
    "mean_reciprocal_rank",
    "mean_average_precision",
    "r_precision",
]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 25, 50, 100, 250, 1000)
"""The ``k`` values used when ``ks`` is not given (those above ``n - 1`` are dropped).

The one default list of the package: the CLI, `refinery_quaterion.workflow` and the benchmarks use it too.
"""

TIE_RULE = (
    "Neighbours are ranked by descending float32 cosine similarity to the query; neighbours "
    "with exactly equal similarity (e.g. duplicate vectors, or all-zero rows) are ranked by "
    "ascending position in the embeddings (lower index first). The query itself is never its "
    "own neighbour; its duplicates are ordinary neighbours."
)
"""How neighbours are ranked (also written into report files); the tests' brute-force reference follows it."""

#: Similarity entries per block (queries x items) when ``block_size`` is not given.
_BLOCK_ENTRIES = 1 << 23
_MAX_BLOCK = 1024
_LOW32 = np.uint64(0xFFFFFFFF)


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_ks(ks: int | Iterable[int] | None, n: int, name: str = "ks") -> tuple[int, ...]:
    if ks is None:
        return tuple(k for k in DEFAULT_KS if k <= n - 1)
    if isinstance(ks, int | np.integer) and not isinstance(ks, bool):
        ks = (int(ks),)
    if isinstance(ks, str | bytes) or not isinstance(ks, Iterable):
        raise TypeError(f"{name} must be an int or a sequence of ints; got {ks!r}")
    out = set()
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise TypeError(f"{name} must hold integers; got {k!r} ({type(k).__name__})")
        if k < 1:
            raise ValueError(f"{name} must hold k >= 1; got k={k}")
        if k > n - 1:
            raise ValueError(
                f"k={k} in {name} exceeds the {n - 1} neighbours each query has "
                f"({n} items, the query itself excluded); use k <= {n - 1}"
            )
        out.add(int(k))
    if not out:
        raise ValueError(f"{name} is empty; pass at least one k, e.g. (1, 5, 10)")
    return tuple(sorted(out))


def _check_block_size(block_size: int | None, n: int) -> int:
    if block_size is None:
        return max(1, min(_MAX_BLOCK, _BLOCK_ENTRIES // n))
    if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer):
        raise TypeError(f"block_size must be a positive int or None; got {block_size!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    return int(block_size)


# --------------------------------------------------------------------------------------------
# Core: one blocked pass
# --------------------------------------------------------------------------------------------


def _rank_keys(sims: np.ndarray, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Unique uint64 sort keys: ascending key order is the ranking order of `TIE_RULE`.

    High 32 bits: the similarity mapped to an order-reversing unsigned integer; low 32 bits:
    the item's position (tie-break). The query's own entry gets similarity -inf, so it sorts
    last. ``sims`` (float32, C-contiguous) is overwritten.
    """
    sims[np.arange(sims.shape[0]), rows] = -np.inf
    sims += np.float32(0.0)  # -0.0 -> +0.0, so equal similarities give equal bits
    bits = sims.view(np.uint32)
    flip = bits >> np.uint32(31)
    flip *= np.uint32(0x7FFFFFFF)
    flip |= np.uint32(0x80000000)
    bits ^= flip  # order-preserving float -> uint32
    del flip
    np.invert(bits, out=bits)  # descending similarity
    keys = bits.astype(np.uint64)
    keys <<= np.uint64(32)
    keys |= positions
    return keys


def _run(
    emb: np.ndarray,
    codes: np.ndarray,
    ks: tuple[int, ...],
    map_ks: tuple[int, ...],
    full: bool,
    block_size: int,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-query values of every metric (NaN for excluded queries) and the mask of used queries."""
    n = emb.shape[0]
    r = np.bincount(codes)[codes] - 1
    valid = r > 0
    if not valid.any():
        raise ValueError(
            "labels: every label occurs only once, so no query has a relevant neighbour and "
            "retrieval metrics are undefined; each label needs at least 2 items"
        )
    kmax = max(ks + map_ks)
    columns = [
        (metric, metric.column(k), k) for metric in METRICS.values() for k in metric.cutoffs(ks, map_ks, full=full)
    ]
    code_dtype = np.int16 if codes.max() < np.iinfo(np.int16).max else np.int32
    small = codes.astype(code_dtype)
    positions = np.arange(n, dtype=np.uint64)
    per = {column: np.full(n, np.nan) for _, column, _ in columns}
    emb_t = emb.T
    for start in range(0, n, block_size):
        stop = min(n, start + block_size)
        keys = _rank_keys(emb[start:stop] @ emb_t, np.arange(start, stop), positions)
        if full:
            keys.sort(axis=1)
            ranked = keys[:, : n - 1]
        else:
            keys.partition(kmax - 1, axis=1)
            ranked = np.sort(keys[:, :kmax], axis=1)
        ranked &= _LOW32  # keep the positions
        rel = small[ranked.view(np.int64)] == small[start:stop, None]
        del keys, ranked
        block = RankedBlock(rel, r[start:stop], kmax, full)
        for metric, column, k in columns:
            values = np.asarray(metric.compute(block, k), dtype=np.float64)
            if values.shape != (stop - start,):
                raise ValueError(
                    f"metric {metric.name!r} returned shape {values.shape} for a block of "
                    f"{stop - start} queries; expected one value per query"
                )
            per[column][start:stop] = values
        del rel, block
    for values in per.values():
        values[~valid] = np.nan
    return per, valid


@dataclass(frozen=True)
class RetrievalMetrics:
    """The result of `retrieval_metrics`.

    Attributes:
        values: Metric name -> mean over the used queries, in report order (``P@k``..., ``MRR``,
            ``mAP@k``..., ``mAP``, ``R-precision``, then any metric added with
            `refinery_quaterion.evaluate.registry.register_metric`).
        ks: The ``k`` values of precision@k.
        map_ks: The ``k`` values of mAP@k.
        n_items: Items (each one a query and a candidate neighbour).
        n_queries: Queries averaged (items whose label occurs at least twice).
        n_excluded: Queries left out because their label occurs once.
        block_size: Queries per block used for the computation.
        per_query: Metric name -> float64 array of length ``n_items`` (NaN for excluded
            queries), when asked for; else ``None``.
    """

    values: dict[str, float]
    ks: tuple[int, ...]
    map_ks: tuple[int, ...]
    n_items: int
    n_queries: int
    n_excluded: int
    block_size: int
    per_query: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def precision(self) -> dict[int, float]:
        """``{k: P@k}``."""
        return {k: self.values[f"P@{k}"] for k in self.ks}

    @property
    def map_at_k(self) -> dict[int, float]:
        """``{k: mAP@k}``."""
        return {k: self.values[f"mAP@{k}"] for k in self.map_ks}

    @property
    def mrr(self) -> float | None:
        """Mean reciprocal rank (``None`` when computed with ``full=False``)."""
        return self.values.get("MRR")

    @property
    def mean_ap(self) -> float | None:
        """Full mean average precision (``None`` when computed with ``full=False``)."""
        return self.values.get("mAP")

    @property
    def r_precision(self) -> float | None:
        """Mean R-precision (``None`` when computed with ``full=False``)."""
        return self.values.get("R-precision")

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def as_dict(self) -> dict[str, float]:
        """Metric name -> mean value, in report order (a copy)."""
        return dict(self.values)

    def __str__(self) -> str:
        body = ", ".join(f"{name}={value:.4f}" for name, value in self.values.items())
        extra = f", {self.n_excluded} excluded" if self.n_excluded else ""
        return f"RetrievalMetrics({body}; {self.n_queries} queries{extra})"


def _prepare(
    embeddings: EmbeddingsLike, labels: Any, name: str = "embeddings"
) -> tuple[np.ndarray, np.ndarray]:
    array = as_matrix(embeddings, name)
    n = array.shape[0]
    codes, _ = label_codes(labels, n)
    if n < 2:
        raise ValueError(f"{name} has {n} item; retrieval needs at least 2 items")
    return normalize_rows(array), codes


def retrieval_metrics(
    embeddings: EmbeddingsLike,
    labels: Any,
    ks: int | Iterable[int] | None = None,
    *,
    map_ks: int | Iterable[int] | None = None,
    full: bool = True,
    block_size: int | None = None,
    per_query: bool = False,
) -> RetrievalMetrics:
    """Exact leave-one-out retrieval metrics over all queries, in one blocked pass.

    Each item is a query; its neighbours are all the other items, ranked by cosine
    similarity following `TIE_RULE`; a neighbour is relevant when it has the query's
    label. See the module docstring for the metric definitions. Queries whose label occurs
    once are excluded from the means.

    Memory: queries are processed ``block_size`` at a time; a block needs about
    ``block_size × n × 25`` bytes (similarities, uint64 sort keys, relevance), plus the
    normalised float32 copy of the embeddings. The default block holds about 8.4 M entries:
    ``min(1024, 8_388_608 // n)`` queries × ``n`` items, e.g. 167 queries × 50,000 items,
    i.e. ~250 MB of working memory whatever ``n`` (see ``benchmarks/bench_metrics_memory.py``:
    50,000 × 384 in under 0.7 GiB peak RSS, imports included). Cost: one ``block × n``
    float32 matrix product per block, plus a full row sort (``full=True``) or a partial one
    (``full=False``); no ``n × n`` matrix is built unless ``block_size >= n``.

    Args:
        embeddings: ``(n, d)`` numpy array, torch tensor (any device/dtype) or nested
            sequence of numbers; ``n >= 2``, finite values.
        labels: ``n`` hashable labels (str, int, ...), one per row; no missing values.
        ks: ``k`` values of precision@k. Default: those of `DEFAULT_KS` up to
            ``n - 1``. An explicit ``k`` above ``n - 1`` raises ``ValueError``; a ``k`` above
            a class size is fine (P@k then cannot reach 1).
        map_ks: ``k`` values of mAP@k. Default: ``max(ks)``; pass ``()`` for none.
        full: Also compute the full-ranking metrics ``MRR``, ``mAP`` and ``R-precision``
            (full sort of each row). With ``False`` only ``P@k`` and ``mAP@k`` are computed
            from a partial sort, which is faster.
        block_size: Queries per block; ``None`` for the default above.
        per_query: Also return the per-query values in ``RetrievalMetrics.per_query``.

    Returns:
        The metrics; ``values`` maps ``P@k``, ``MRR``, ``mAP@k``, ``mAP``, ``R-precision``
        (and every other registered metric) to their means.

    Raises:
        ValueError: Embeddings not 2-D, empty, fewer than 2 items, non-finite values;
            label count different from the row count or a missing label; a ``k < 1`` or
            ``k > n - 1``; ``block_size < 1``; no label occurring twice.
        TypeError: Non-numeric embeddings, unhashable labels, non-integer ``k``.

    Example:
        >>> m = retrieval_metrics([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], ["a", "a", "b", "b"], ks=(1,))
        >>> m.values["P@1"], m.mrr
        (1.0, 1.0)
    """
    emb, codes = _prepare(embeddings, labels)
    n = emb.shape[0]
    ks_t = _check_ks(ks, n)
    if map_ks is None:
        map_t: tuple[int, ...] = (max(ks_t),)
    else:
        if isinstance(map_ks, Iterable) and not isinstance(map_ks, str | bytes):
            map_ks = list(map_ks)
        map_t = _check_ks(map_ks, n, "map_ks") if map_ks != [] else ()
    bs = _check_block_size(block_size, n)
    per, valid = _run(emb, codes, ks_t, map_t, bool(full), bs)
    values = {name: float(np.mean(arr[valid])) for name, arr in per.items()}
    n_queries = int(valid.sum())
    return RetrievalMetrics(
        values=values,
        ks=ks_t,
        map_ks=map_t,
        n_items=n,
        n_queries=n_queries,
        n_excluded=n - n_queries,
        block_size=bs,
        per_query=per if per_query else None,
    )


@overload
def precision_at_k(embeddings: EmbeddingsLike, labels: Any, ks: int | Iterable[int] | None = ..., *,
                   block_size: int | None = ..., return_per_query: Literal[False] = ...) -> dict[int, float]: ...
@overload
def precision_at_k(embeddings: EmbeddingsLike, labels: Any, ks: int | Iterable[int] | None = ..., *,
                   block_size: int | None = ..., return_per_query: Literal[True],
                   ) -> tuple[dict[int, float], dict[int, np.ndarray]]: ...


def precision_at_k(
    embeddings: EmbeddingsLike,
    labels: Any,
    ks: int | Iterable[int] | None = None,
    *,
    block_size: int | None = None,
    return_per_query: bool = False,
) -> dict[int, float] | tuple[dict[int, float], dict[int, np.ndarray]]:
    """Mean precision@k over all queries: share of the k nearest neighbours with the query's label.

    Uses a partial sort (top ``max(ks)`` per query) in blocks of queries; see
    `retrieval_metrics` for the memory bound, the default block size
    (``min(1024, 8_388_608 // n)`` queries × ``n``), the tie rule and excluded queries.

    Args:
        embeddings: ``(n, d)`` numpy array or torch tensor.
        labels: ``n`` hashable labels.
        ks: One ``k`` or several; default `DEFAULT_KS` up to ``n - 1``. ``k`` must be
            ``1 <= k <= n - 1``.
        block_size: Queries per block (``None``: default).
        return_per_query: Also return ``{k: per-query precision array}`` (NaN for excluded
            queries).

    Returns:
        ``{k: mean P@k}``, or ``({k: mean}, {k: per-query array})``.

    Raises:
        ValueError: See `retrieval_metrics`.
        TypeError: See `retrieval_metrics`.
    """
    result = retrieval_metrics(
        embeddings, labels, ks, map_ks=(), full=False, block_size=block_size, per_query=return_per_query
    )
    if not return_per_query:
        return result.precision
    assert result.per_query is not None
    return result.precision, {k: result.per_query[f"P@{k}"] for k in result.ks}


def mean_reciprocal_rank(embeddings: EmbeddingsLike, labels: Any, *, block_size: int | None = None) -> float:
    """Mean over all queries of ``1 / rank`` of the first neighbour with the query's label.

    Exact, full ranking in blocks of queries; see `retrieval_metrics` (memory, tie
    rule, excluded queries, errors).

    Args:
        embeddings: ``(n, d)`` numpy array or torch tensor.
        labels: ``n`` hashable labels.
        block_size: Queries per block (``None``: ``min(1024, 8_388_608 // n)``).

    Returns:
        The MRR, between 0 and 1.
    """
    return float(retrieval_metrics(embeddings, labels, (1,), map_ks=(), block_size=block_size).values["MRR"])


def mean_average_precision(
    embeddings: EmbeddingsLike, labels: Any, k: int | None = None, *, block_size: int | None = None
) -> float:
    """Mean average precision over all queries, full (``k=None``) or at ``k``.

    ``AP = sum(rel_p * hits_p / p) / r`` over the whole ranking; ``AP@k`` sums ranks
    ``p <= k`` and divides by ``min(k, r)``. Exact, in blocks of queries; see
    `retrieval_metrics` (memory, tie rule, excluded queries, errors).

    Args:
        embeddings: ``(n, d)`` numpy array or torch tensor.
        labels: ``n`` hashable labels.
        k: Cut-off (``1 <= k <= n - 1``), or ``None`` for the full ranking.
        block_size: Queries per block (``None``: ``min(1024, 8_388_608 // n)``).

    Returns:
        mAP or mAP@k, between 0 and 1.
    """
    if k is None:
        return float(
            retrieval_metrics(embeddings, labels, (1,), map_ks=(), block_size=block_size).values["mAP"]
        )
    result = retrieval_metrics(embeddings, labels, (1,), map_ks=k, full=False, block_size=block_size)
    return float(result.values[f"mAP@{result.map_ks[0]}"])


def r_precision(embeddings: EmbeddingsLike, labels: Any, *, block_size: int | None = None) -> float:
    """Mean R-precision: precision at rank ``r``, the number of other items with the query's label.

    Exact, in blocks of queries; see `retrieval_metrics` (memory, tie rule, excluded
    queries, errors).

    Args:
        embeddings: ``(n, d)`` numpy array or torch tensor.
        labels: ``n`` hashable labels.
        block_size: Queries per block (``None``: ``min(1024, 8_388_608 // n)``).

    Returns:
        The mean R-precision, between 0 and 1.
    """
    return float(
        retrieval_metrics(embeddings, labels, (1,), map_ks=(), block_size=block_size).values["R-precision"]
    )


