"""PNG figures of retrieval metrics: precision@k against k, and per-query precision@k.

Every function draws on its own `matplotlib.figure.Figure` (never through
``pyplot``, so no global figure state or backend is touched), writes the PNG atomically
(a temporary file renamed on success, parent folders created) and returns the path.
The label-quality figures (confusion matrix, confidence threshold) are in
`refinery_quaterion.evaluate.label_plots`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, PercentFormatter

from refinery_quaterion.evaluate._figures import png_path, save_png

__all__ = ["plot_topk_curve", "plot_precision_distribution"]

_P_AT_K = re.compile(r"^P@(\d+)$")


def _topk_series(results: Any) -> dict[str, dict[int, float]]:
    curves: dict[str, dict[int, float]] = {}
    if isinstance(results, pd.DataFrame):
        columns = {int(m.group(1)): c for c in results.columns if (m := _P_AT_K.match(str(c)))}
        if not columns:
            raise ValueError(
                f"results has no precision columns named like 'P@10'; columns: {list(results.columns)}"
            )
        names = results["model"] if "model" in results.columns else results.index
        for name, (_, row) in zip(names, results.iterrows()):
            curves[str(name)] = {k: float(row[c]) for k, c in sorted(columns.items())}
    elif isinstance(results, Mapping):
        for name, values in results.items():
            if hasattr(values, "precision") and isinstance(values.precision, Mapping):
                values = values.precision  # a RetrievalMetrics
            if not isinstance(values, Mapping):
                raise TypeError(
                    f"results[{name!r}] must be a mapping k -> precision; got {type(values).__name__}"
                )
            curve = {}
            for k, value in values.items():
                if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
                    raise ValueError(f"results[{name!r}] has k={k!r}; k must be an int >= 1")
                curve[int(k)] = float(value)
            curves[str(name)] = dict(sorted(curve.items()))
    else:
        raise TypeError(
            "results must be a DataFrame with 'P@k' columns (see evaluate.compare) or a mapping "
            f"name -> {{k: precision}}; got {type(results).__name__}"
        )
    if not curves or not any(curves.values()):
        raise ValueError("results is empty; nothing to plot")
    for name, curve in curves.items():
        bad = [v for v in curve.values() if not (math.isnan(v) or -1e-9 <= v <= 1 + 1e-9)]
        if bad:
            raise ValueError(f"results[{name!r}] holds precision values outside 0..1: {bad[:3]}")
    return curves


def plot_topk_curve(
    results: pd.DataFrame | Mapping[str, Any],
    path: str | os.PathLike,
    *,
    title: str = "Precision@k",
    dpi: int = 120,
    ceiling: Mapping[int, float] | None = None,
) -> Path:
    """Precision@k against k (log scale), one line per model, and the ceiling the class sizes allow.

    Args:
        results: The DataFrame of `refinery_quaterion.evaluate.compare` (rows: models,
            index or a ``model`` column as names; columns ``P@k``), or a mapping
            ``name -> {k: precision}`` (a ``RetrievalMetrics`` also works as a value).
        path: Target ``.png`` file; parent folders are created.
        title: Figure title.
        dpi: Resolution.
        ceiling: ``k -> `` the best precision@k the class sizes allow
            (`refinery_quaterion.evaluate.notes.precision_ceiling`), drawn as a dashed, labelled
            line; precision falling with k along it is the data's limit, not the model failing.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: No ``P@k`` column, nothing to plot, values outside 0..1, a ``k < 1``,
            or a path not ending in ``.png``.
        TypeError: ``results`` of another type.
    """
    path = png_path(path)
    curves = _topk_series(results)
    ks = sorted({k for curve in curves.values() for k in curve})
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^vP*X<>"
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(list(curve), list(curve.values()), marker=markers[i % len(markers)], label=name)
    _draw_ceiling(ax, ceiling, ks)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_major_formatter(lambda x, _pos: f"{x:g}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if len(ks) > 1:
        ax.set_xlim(ks[0] / 1.25, ks[-1] * 1.25)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("k (nearest neighbours)")
    ax.set_ylabel("precision@k (same label)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best")
    return save_png(fig, path, dpi)


def _draw_ceiling(ax: Any, ceiling: Mapping[int, float] | None, ks: list[int]) -> None:
    """The ceiling as a dashed grey line over the plotted ks (nothing when none is known)."""
    points = sorted((int(k), float(v)) for k, v in (ceiling or {}).items() if k in ks and not math.isnan(v))
    if points:
        ax.plot([k for k, _ in points], [v for _, v in points], linestyle="--", color="0.45", linewidth=1.2,
                label="ceiling (best P@k the class sizes allow)")


def plot_precision_distribution(
    per_query: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    k: int | None = None,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Violin + box plot of per-query precision@k, one per model (mean marked with a diamond).

    NaN values (excluded queries) are dropped.

    Args:
        per_query: Model name -> 1-D array of per-query precision@k (e.g.
            ``precision_at_k(..., return_per_query=True)[1][k]``), values in 0..1.
        path: Target ``.png`` file; parent folders are created.
        k: The ``k`` of the values, for the axis label.
        title: Figure title (default ``"Per-query precision@k"``).
        dpi: Resolution.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: Empty mapping, a non-1-D array, a model without any non-NaN value,
            values outside 0..1, or a path not ending in ``.png``.
    """
    path = png_path(path)
    if not isinstance(per_query, Mapping) or not per_query:
        raise ValueError("per_query must be a non-empty mapping of model name -> per-query values")
    names, data = [], []
    for name, values in per_query.items():
        if type(values).__module__.split(".")[0] == "torch":
            values = values.detach().cpu().numpy()
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(
                f"per_query[{name!r}] must be 1-D (one value per query); got shape {array.shape}"
            )
        array = array[~np.isnan(array)]
        if array.size == 0:
            raise ValueError(f"per_query[{name!r}] has no value (empty or all NaN)")
        if array.min() < -1e-9 or array.max() > 1 + 1e-9:
            raise ValueError(f"per_query[{name!r}] holds values outside 0..1")
        names.append(str(name))
        data.append(array)
    label = f"precision@{k}" if k is not None else "precision@k"
    fig = Figure(figsize=(max(4.5, 1.6 * len(names) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(1, len(data) + 1)
    spread = [i for i, d in enumerate(data) if np.ptp(d) > 0]
    if spread:
        parts = ax.violinplot(
            [data[i] for i in spread], positions=positions[spread], widths=0.8, showextrema=False
        )
        for body in parts["bodies"]:
            body.set_alpha(0.35)
    ax.boxplot(
        data,
        positions=positions,
        widths=0.18,
        showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": "white", "alpha": 0.9},
        medianprops={"color": "black"},
    )
    means = [float(d.mean()) for d in data]
    ax.scatter(positions, means, marker="D", color="crimson", zorder=3, label="mean")
    for x, mean, d in zip(positions, means, data):
        ax.annotate(
            f"{mean:.3f}\n(n={d.size})",
            (x, 1.02),
            ha="center",
            va="bottom",
            fontsize=8,
            annotation_clip=False,
        )
    ax.set_xticks(positions, names)
    ax.set_ylim(-0.02, 1.12)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel(f"per-query {label}")
    ax.set_title(title or f"Per-query {label}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="lower right")
    return save_png(fig, path, dpi)
