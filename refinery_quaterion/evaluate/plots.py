"""PNG figures for evaluations and label quality (matplotlib, no display needed).

Every function draws on its own `matplotlib.figure.Figure` (never through
``pyplot``, so no global figure state or backend is touched), writes the PNG atomically
(a temporary file renamed on success, parent folders created) and returns the path.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, PercentFormatter

from refinery_quaterion._io import atomic_path
from refinery_quaterion._util import is_missing

__all__ = [
    "NONE_LABEL",
    "plot_topk_curve",
    "plot_precision_distribution",
    "confusion_table",
    "plot_confusion_matrix",
    "plot_threshold_curve",
]

NONE_LABEL = "(none)"
"""Column name for records without a predicted (weak-supervision) label."""

_P_AT_K = re.compile(r"^P@(\d+)$")
_THRESHOLD_COLUMNS = ("threshold", "kept", "share", "agreement", "compared")


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png (figures are written as PNG); got {str(path)!r}")
    return path


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


# --------------------------------------------------------------------------------------------
# Retrieval metrics
# --------------------------------------------------------------------------------------------


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
) -> Path:
    """Precision@k against k (log scale), one line per model.

    Args:
        results: The DataFrame of `refinery_quaterion.evaluate.compare` (rows: models,
            index or a ``model`` column as names; columns ``P@k``), or a mapping
            ``name -> {k: precision}`` (a ``RetrievalMetrics`` also works as a value).
        path: Target ``.png`` file; parent folders are created.
        title: Figure title.
        dpi: Resolution.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: No ``P@k`` column, nothing to plot, values outside 0..1, a ``k < 1``,
            or a path not ending in ``.png``.
        TypeError: ``results`` of another type.
    """
    path = _check_path(path)
    curves = _topk_series(results)
    ks = sorted({k for curve in curves.values() for k in curve})
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^vP*X<>"
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(list(curve), list(curve.values()), marker=markers[i % len(markers)], label=name)
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
    return _save(fig, path, dpi)


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
    path = _check_path(path)
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
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------------------------
# Label quality
# --------------------------------------------------------------------------------------------


def _values(labels: Any, name: str) -> list[Any]:
    if isinstance(labels, str | bytes) or not isinstance(labels, Iterable):
        raise TypeError(f"{name} must be a sequence of labels; got {type(labels).__name__}")
    if isinstance(labels, np.ndarray) and labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {labels.shape}")
    return list(labels)


def confusion_table(
    predicted_labels: Iterable[Any],
    reference_labels: Iterable[Any],
    labels: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Counts of reference (rows) × predicted (columns) labels.

    Records without a reference label are dropped. Records without a predicted label
    (``None``/NaN) are counted in an extra last column `NONE_LABEL`, present only
    when there are such records. Labels are compared as text (``str(label)``).

    Args:
        predicted_labels: Predicted labels per record, e.g. weak-supervision labels.
        reference_labels: Reference labels per record, e.g. manual labels (same length).
        labels: Label order for rows and columns; default: sorted labels seen in either.

    Returns:
        An ``int`` DataFrame (index name ``reference``, columns name ``predicted``).

    Raises:
        ValueError: Lengths differ, no record has a reference label, ``labels`` is empty
            or has duplicates, or a label is not in ``labels``.
    """
    predicted = _values(predicted_labels, "predicted_labels")
    reference = _values(reference_labels, "reference_labels")
    if len(predicted) != len(reference):
        raise ValueError(
            f"predicted_labels has {len(predicted)} entries but reference_labels has {len(reference)}; "
            "one of each per record is expected"
        )
    pairs = [
        (str(ref), None if is_missing(pred) else str(pred))
        for pred, ref in zip(predicted, reference)
        if not is_missing(ref)
    ]
    if not pairs:
        raise ValueError("no record has a reference label; nothing to compare")
    seen = sorted({ref for ref, _ in pairs} | {pred for _, pred in pairs if pred is not None})
    if labels is None:
        order = seen
    else:
        order = [str(label) for label in labels]
        if not order:
            raise ValueError("labels is empty; pass None to use the labels seen")
        if len(set(order)) != len(order):
            raise ValueError(f"labels has duplicates: {order}")
        unknown = sorted(set(seen) - set(order))
        if unknown:
            raise ValueError(f"labels {unknown} occur in the data but are not in labels={order}")
    if NONE_LABEL in order:
        raise ValueError(f"{NONE_LABEL!r} is reserved for records without a predicted label")
    has_none = any(pred is None for _, pred in pairs)
    columns = order + ([NONE_LABEL] if has_none else [])
    row_of = {label: i for i, label in enumerate(order)}
    col_of = {label: i for i, label in enumerate(columns)}
    counts = np.zeros((len(order), len(columns)), dtype=np.int64)
    for ref, pred in pairs:
        counts[row_of[ref], col_of[NONE_LABEL if pred is None else pred]] += 1
    return pd.DataFrame(
        counts,
        index=pd.Index(order, name="reference"),
        columns=pd.Index(columns, name="predicted"),
    )


def _text_color(share: float) -> str:
    return "white" if share > 0.55 else "black"


def plot_confusion_matrix(
    predicted_labels: Iterable[Any],
    reference_labels: Iterable[Any],
    path: str | os.PathLike,
    labels: Sequence[Any] | None = None,
    title: str = "Weak supervision vs manual labels",
    *,
    predicted_name: str = "weak supervision",
    reference_name: str = "manual",
    dpi: int = 120,
) -> Path:
    """Confusion matrix of predicted vs reference labels, with recall and precision margins.

    Rows are reference (e.g. manual) labels, columns predicted (e.g. weak-supervision)
    labels, plus a `NONE_LABEL` column for records without a prediction. Cells show
    counts, coloured by their share of the row. The right margin shows each row's recall
    (diagonal / all records of the row, so missing predictions count as misses); the bottom
    margin each column's precision (diagonal / column); the corner the agreement on records
    having both labels (trace / records with a prediction). Records without a reference
    label are dropped. See `confusion_table`.

    Args:
        predicted_labels: Predicted labels per record (``None``/NaN when missing).
        reference_labels: Reference labels per record (same length).
        path: Target ``.png`` file; parent folders are created.
        labels: Label order (default: sorted labels seen).
        title: Figure title.
        predicted_name: Axis name of the predicted labels.
        reference_name: Axis name of the reference labels.
        dpi: Resolution.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: See `confusion_table`; a path not ending in ``.png``.
    """
    path = _check_path(path)
    table = confusion_table(predicted_labels, reference_labels, labels)
    counts = table.to_numpy()
    rows, cols = list(table.index), list(table.columns)
    n_rows, n_cols = counts.shape
    row_totals = counts.sum(axis=1)
    col_totals = counts.sum(axis=0)
    diag = np.array([counts[i, i] for i in range(n_rows)], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / np.where(row_totals == 0, 1, row_totals)[:, None]
        recall = np.where(row_totals > 0, diag / row_totals, np.nan)
        precision = np.full(n_cols, np.nan)
        precision[:n_rows] = np.where(col_totals[:n_rows] > 0, diag / col_totals[:n_rows], np.nan)
    compared = int(counts[:, :n_rows].sum())
    agreement = diag.sum() / compared if compared else float("nan")

    cell = 0.55 if max(n_rows, n_cols) <= 12 else 0.35
    annotate = max(n_rows, n_cols) <= 30
    fig = Figure(
        figsize=(max(5.0, cell * (n_cols + 1) + 3.2), max(4.0, cell * (n_rows + 1) + 2.6)),
        layout="constrained",
    )
    grid = fig.add_gridspec(2, 2, width_ratios=[n_cols, 1.3], height_ratios=[n_rows, 1.3])
    ax = fig.add_subplot(grid[0, 0])
    ax_right = fig.add_subplot(grid[0, 1], sharey=ax)
    ax_bottom = fig.add_subplot(grid[1, 0], sharex=ax)
    ax_corner = fig.add_subplot(grid[1, 1])
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax_right.imshow(recall[:, None], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax_bottom.imshow(precision[None, :], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax_corner.imshow([[agreement]], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    if annotate:
        size = 9 if max(n_rows, n_cols) <= 12 else 6
        for i in range(n_rows):
            for j in range(n_cols):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=size,
                    color=_text_color(shares[i, j]),
                )
            ax_right.text(
                0,
                i,
                "–" if np.isnan(recall[i]) else f"{recall[i]:.0%}",
                ha="center",
                va="center",
                fontsize=size,
            )
        for j in range(n_cols):
            ax_bottom.text(
                j,
                0,
                "–" if np.isnan(precision[j]) else f"{precision[j]:.0%}",
                ha="center",
                va="center",
                fontsize=size,
            )
    ax_corner.text(
        0,
        0,
        "–" if np.isnan(agreement) else f"{agreement:.1%}\nn={compared}",
        ha="center",
        va="center",
        fontsize=9,
    )
    ax.set_xticks(range(n_cols))
    ax.set_yticks(range(n_rows), rows)
    ax.tick_params(axis="x", labelbottom=False, top=True, labeltop=True)
    ax.set_xticklabels(cols, rotation=45 if n_cols > 4 else 0, ha="left" if n_cols > 4 else "center")
    ax.set_ylabel(f"{reference_name} (reference)")
    ax.xaxis.set_label_position("top")
    ax.set_xlabel(f"{predicted_name} (predicted)")
    ax_right.set_xticks([0], ["recall"])
    ax_right.tick_params(axis="y", labelleft=False)
    ax_bottom.set_yticks([0], ["precision"])
    ax_bottom.tick_params(axis="x", labelbottom=False)
    ax_corner.set_xticks([0], ["agreement"])
    ax_corner.set_yticks([])
    fig.colorbar(image, ax=[ax, ax_right], label="share of row", shrink=0.8, format=PercentFormatter(1.0))
    fig.suptitle(title)
    return _save(fig, path, dpi)


def plot_threshold_curve(
    report: pd.DataFrame,
    path: str | os.PathLike,
    *,
    title: str = "Weak-supervision confidence threshold",
    dpi: int = 120,
    chosen: float | None = None,
) -> Path:
    """Share of records kept and label agreement against the confidence threshold (two panels).

    Top panel: share kept (left axis) with the number kept at each point. Bottom panel:
    agreement of weak-supervision labels with manual labels (NaN thresholds leave a gap)
    and, on a right axis, the number of records compared. The chosen threshold is marked on
    both panels by a red vertical line, labeled with its value.

    Args:
        report: A threshold report DataFrame (e.g. ``thresholds.threshold_report``) with columns
            ``threshold``, ``kept`` (int), ``share`` (0..1), ``agreement`` (0..1 or NaN) and
            ``compared`` (int); a boolean ``chosen`` column marks the chosen threshold; other
            columns are ignored.
        path: Target ``.png`` file; parent folders are created.
        title: Figure title.
        dpi: Resolution.
        chosen: The threshold to mark; ``None`` takes the row the ``chosen`` column marks
            (or ``report.attrs["threshold_choice"]["value"]``), and marks nothing without either.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: Missing columns, no rows, non-finite thresholds, ``share`` or
            ``agreement`` outside 0..1, ``chosen`` outside 0..1 or several rows marked
            chosen, or a path not ending in ``.png``.
        TypeError: ``report`` is not a DataFrame.
    """
    path = _check_path(path)
    if not isinstance(report, pd.DataFrame):
        raise TypeError(f"report must be a pandas DataFrame; got {type(report).__name__}")
    missing = [c for c in _THRESHOLD_COLUMNS if c not in report.columns]
    if missing:
        raise ValueError(
            f"report lacks columns {missing}; expected {list(_THRESHOLD_COLUMNS)} "
            f"(see labels.threshold_report); got {list(report.columns)}"
        )
    if report.empty:
        raise ValueError("report has no rows; nothing to plot")
    try:
        data = report[list(_THRESHOLD_COLUMNS)].astype(float).sort_values("threshold")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"report columns {list(_THRESHOLD_COLUMNS)} must be numeric: {exc}") from None
    if not np.isfinite(data["threshold"]).all():
        raise ValueError("report['threshold'] holds NaN or infinite values")
    for column in ("share", "agreement"):
        values = data[column].dropna()
        if ((values < -1e-9) | (values > 1 + 1e-9)).any():
            raise ValueError(f"report[{column!r}] must lie in 0..1; got {values.min()}..{values.max()}")
    x = data["threshold"].to_numpy()
    fig = Figure(figsize=(7, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(x, data["share"], marker="o", color="tab:blue")
    for xi, share, kept in zip(x, data["share"], data["kept"]):
        if not math.isnan(share):
            top.annotate(
                f"{int(kept)}",
                (xi, share),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
    top.set_ylim(0, 1.1)
    top.yaxis.set_major_formatter(PercentFormatter(1.0))
    top.set_ylabel("share of records kept")
    top.set_title("records kept (labels above the threshold)", fontsize=10)
    top.grid(True, alpha=0.3)

    agreement = data["agreement"].to_numpy()
    bottom.plot(x, agreement, marker="s", color="tab:green", label="agreement")
    bottom.set_ylim(0, 1.1)
    bottom.yaxis.set_major_formatter(PercentFormatter(1.0))
    bottom.set_ylabel("agreement with manual labels", color="tab:green")
    bottom.set_xlabel("confidence threshold (labels kept when confidence > threshold)")
    bottom.grid(True, alpha=0.3)
    twin = bottom.twinx()
    twin.plot(x, data["compared"], linestyle="--", marker=".", color="tab:gray", label="compared")
    twin.set_ylabel("records compared", color="tab:gray")
    twin.set_ylim(bottom=0, top=max(1.0, float(np.nanmax(data["compared"].to_numpy()))) * 1.15)
    if np.isnan(agreement).all():
        bottom.text(
            0.5,
            0.5,
            "no record has both labels",
            transform=bottom.transAxes,
            ha="center",
            va="center",
            color="gray",
        )
    marked = _chosen_threshold(report, chosen)
    if marked is not None:
        for axis in (top, bottom):
            axis.axvline(marked, color=_CHOSEN_COLOR, linestyle="-", linewidth=1.5, label=f"chosen: {marked:g}")
        top.annotate(f"chosen: {marked:g}", (marked, 1.05), textcoords="offset points", xytext=(4, 0),
                     color=_CHOSEN_COLOR, fontsize=8, va="center")
    handles = bottom.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    bottom.legend(handles=handles, loc="lower left", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path, dpi)


_CHOSEN_COLOR = "tab:red"  # the line plot_threshold_curve draws at the chosen threshold


def _chosen_threshold(report: pd.DataFrame, chosen: float | None) -> float | None:
    """The threshold to mark: ``chosen``, else the ``chosen`` row, else ``attrs["threshold_choice"]``."""
    if chosen is None and "chosen" in report.columns:
        rows = report.loc[report["chosen"].fillna(False).astype(bool), "threshold"]
        if len(rows) > 1:
            raise ValueError(f"report marks {len(rows)} rows as chosen ({list(rows)}); expected at most one")
        chosen = float(rows.iloc[0]) if len(rows) else None
    if chosen is None:
        choice = report.attrs.get("threshold_choice")
        chosen = choice.get("value") if isinstance(choice, dict) else None
    if chosen is None:
        return None
    try:
        value = float(chosen)
    except (TypeError, ValueError):
        raise ValueError(f"chosen must be a threshold between 0 and 1, got {chosen!r}") from None
    if not 0 <= value <= 1:
        raise ValueError(f"chosen must be a threshold between 0 and 1, got {chosen!r}")
    return value
