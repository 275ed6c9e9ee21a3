"""PNG figures of label quality: predicted against reference labels, and the confidence threshold.

`confusion_table` counts weak-supervision (predicted) against manual (reference) labels and
`plot_confusion_matrix` draws it with recall and precision margins; `plot_threshold_curve`
draws a threshold report (records kept and agreement against the confidence threshold).
Like `refinery_quaterion.evaluate.plots`, every function draws on its own
`matplotlib.figure.Figure` (never through ``pyplot``), writes the PNG atomically (parent
folders created) and returns the path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import PercentFormatter

from refinery_quaterion._util import is_missing
from refinery_quaterion.evaluate._figures import png_path, save_png

__all__ = ["NONE_LABEL", "confusion_table", "plot_confusion_matrix", "plot_threshold_curve"]

NONE_LABEL = "(none)"
"""Column name for records without a predicted (weak-supervision) label."""

_THRESHOLD_COLUMNS = ("threshold", "kept", "share", "agreement", "compared")
_CHOSEN_COLOR = "tab:red"  # the line plot_threshold_curve draws at the chosen threshold


# --------------------------------------------------------------------------------------------
# Confusion matrix
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


@dataclass(frozen=True)
class _ConfusionRates:
    """The shares and rates a confusion matrix shows beside its counts."""

    shares: np.ndarray  # each count as a share of its row
    recall: np.ndarray  # per row: diagonal / row total (NaN for an empty row)
    precision: np.ndarray  # per column: diagonal / column total (NaN for NONE_LABEL or an empty column)
    compared: int  # records with both labels
    agreement: float  # diagonal / compared (NaN when nothing is compared)


class _ConfusionAxes(NamedTuple):
    """The four panels of a confusion matrix: the counts and their three margins."""

    matrix: Axes
    recall: Axes
    precision: Axes
    agreement: Axes


def _confusion_rates(counts: np.ndarray) -> _ConfusionRates:
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
    return _ConfusionRates(shares, recall, precision, compared, agreement)


def _confusion_figure(n_rows: int, n_cols: int) -> tuple[Figure, _ConfusionAxes]:
    cell = 0.55 if max(n_rows, n_cols) <= 12 else 0.35
    fig = Figure(
        figsize=(max(5.0, cell * (n_cols + 1) + 3.2), max(4.0, cell * (n_rows + 1) + 2.6)),
        layout="constrained",
    )
    grid = fig.add_gridspec(2, 2, width_ratios=[n_cols, 1.3], height_ratios=[n_rows, 1.3])
    ax = fig.add_subplot(grid[0, 0])
    ax_right = fig.add_subplot(grid[0, 1], sharey=ax)
    ax_bottom = fig.add_subplot(grid[1, 0], sharex=ax)
    ax_corner = fig.add_subplot(grid[1, 1])
    return fig, _ConfusionAxes(ax, ax_right, ax_bottom, ax_corner)


def _draw_confusion_colors(axes: _ConfusionAxes, rates: _ConfusionRates) -> AxesImage:
    """Colour the cells by share of row and the margins by rate; returns the cells' image."""
    image = axes.matrix.imshow(rates.shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    axes.recall.imshow(rates.recall[:, None], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    axes.precision.imshow(rates.precision[None, :], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    axes.agreement.imshow([[rates.agreement]], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    return image


def _text_color(share: float) -> str:
    return "white" if share > 0.55 else "black"


def _percent_or_dash(rate: float) -> str:
    return "–" if np.isnan(rate) else f"{rate:.0%}"


def _write_confusion_values(axes: _ConfusionAxes, counts: np.ndarray, rates: _ConfusionRates) -> None:
    """Write each count in its cell and each recall and precision in its margin."""
    n_rows, n_cols = counts.shape
    size = 9 if max(n_rows, n_cols) <= 12 else 6
    for i in range(n_rows):
        for j in range(n_cols):
            axes.matrix.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=size,
                color=_text_color(rates.shares[i, j]),
            )
        axes.recall.text(0, i, _percent_or_dash(rates.recall[i]), ha="center", va="center", fontsize=size)
    for j in range(n_cols):
        axes.precision.text(j, 0, _percent_or_dash(rates.precision[j]), ha="center", va="center", fontsize=size)


def _label_confusion_axes(
    axes: _ConfusionAxes, rows: list[Any], cols: list[Any], predicted_name: str, reference_name: str
) -> None:
    """Name the rows, columns and margins, the column labels on top."""
    ax, n_cols = axes.matrix, len(cols)
    ax.set_xticks(range(n_cols))
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(axis="x", labelbottom=False, top=True, labeltop=True)
    ax.set_xticklabels(cols, rotation=45 if n_cols > 4 else 0, ha="left" if n_cols > 4 else "center")
    ax.set_ylabel(f"{reference_name} (reference)")
    ax.xaxis.set_label_position("top")
    ax.set_xlabel(f"{predicted_name} (predicted)")
    axes.recall.set_xticks([0], ["recall"])
    axes.recall.tick_params(axis="y", labelleft=False)
    axes.precision.set_yticks([0], ["precision"])
    axes.precision.tick_params(axis="x", labelbottom=False)
    axes.agreement.set_xticks([0], ["agreement"])
    axes.agreement.set_yticks([])


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
    path = png_path(path)
    table = confusion_table(predicted_labels, reference_labels, labels)
    counts = table.to_numpy()
    rates = _confusion_rates(counts)
    fig, axes = _confusion_figure(*counts.shape)
    image = _draw_confusion_colors(axes, rates)
    if max(counts.shape) <= 30:
        _write_confusion_values(axes, counts, rates)
    axes.agreement.text(
        0,
        0,
        "–" if np.isnan(rates.agreement) else f"{rates.agreement:.1%}\nn={rates.compared}",
        ha="center",
        va="center",
        fontsize=9,
    )
    _label_confusion_axes(axes, list(table.index), list(table.columns), predicted_name, reference_name)
    fig.colorbar(image, ax=[axes.matrix, axes.recall], label="share of row", shrink=0.8, format=PercentFormatter(1.0))
    fig.suptitle(title)
    return save_png(fig, path, dpi)


# --------------------------------------------------------------------------------------------
# Confidence threshold
# --------------------------------------------------------------------------------------------


def _threshold_data(report: pd.DataFrame) -> pd.DataFrame:
    """The numeric threshold columns of ``report``, checked and sorted by threshold."""
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
    return data


def _plot_kept(top: Axes, x: np.ndarray, data: pd.DataFrame) -> None:
    """Top panel: the share of records kept, each point labelled with the number kept."""
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


def _plot_agreement(bottom: Axes, x: np.ndarray, data: pd.DataFrame) -> Axes:
    """Bottom panel: the agreement, and the records compared on a right axis (returned)."""
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
    return twin


def _mark_chosen(top: Axes, bottom: Axes, marked: float) -> None:
    """A red vertical line at the chosen threshold on both panels, its value written on top."""
    for axis in (top, bottom):
        axis.axvline(marked, color=_CHOSEN_COLOR, linestyle="-", linewidth=1.5, label=f"chosen: {marked:g}")
    top.annotate(
        f"chosen: {marked:g}",
        (marked, 1.05),
        textcoords="offset points",
        xytext=(4, 0),
        color=_CHOSEN_COLOR,
        fontsize=8,
        va="center",
    )


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
    path = png_path(path)
    data = _threshold_data(report)
    x = data["threshold"].to_numpy()
    fig = Figure(figsize=(7, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    _plot_kept(top, x, data)
    twin = _plot_agreement(bottom, x, data)
    marked = _chosen_threshold(report, chosen)
    if marked is not None:
        _mark_chosen(top, bottom, marked)
    handles = bottom.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    bottom.legend(handles=handles, loc="lower left", fontsize=8)
    fig.suptitle(title)
    return save_png(fig, path, dpi)


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
