"""The report folder: metrics of several models, linear probes and plots, written atomically."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from refinery_quaterion._io import atomic_dir, atomic_write_text
from refinery_quaterion.errors import OutputExistsError
from refinery_quaterion.evaluate._inputs import EmbeddingsLike, label_codes, label_list
from refinery_quaterion.evaluate.config import ProbeConfig
from refinery_quaterion.evaluate.metrics import TIE_RULE, RetrievalMetrics
from refinery_quaterion.evaluate.notes import label_notes, precision_ceiling, probe_notes
from refinery_quaterion.evaluate.probe import LinearProbeReport, ProbeSet, linear_probe_report
from refinery_quaterion.evaluate.registry import METRICS
from refinery_quaterion.evaluate.tables import _compare, format_table, frame_json, save_table, to_markdown

__all__ = ["EvaluationReport", "evaluation_report"]


@dataclass(frozen=True)
class EvaluationReport:
    """What `evaluation_report` wrote.

    Attributes:
        out_dir: The report folder.
        metrics: The `compare` table; with a probe, also ``probe accuracy`` and
            ``probe macro-F1`` columns (NaN for models without a probe).
        paths: File kind -> path: ``json``, ``md``, ``csv``, ``topk_curve``, optionally
            ``precision_distribution``, ``probe:<model>`` (per-class CSV) and each extra plot.
        probe: Model name -> `LinearProbeReport`.
        details: Model name -> `RetrievalMetrics` (with per-query values).
        notes: What makes the numbers mean less than they seem (`refinery_quaterion.evaluate.notes`):
            a single test label, probes with disjoint labels or trained on the test items, and
            the caller's notes.
    """

    out_dir: Path
    metrics: pd.DataFrame
    paths: dict[str, Path]
    probe: dict[str, LinearProbeReport] = field(default_factory=dict)
    details: dict[str, RetrievalMetrics] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"Evaluation report in {self.out_dir}\n{format_table(self.metrics)}" + "".join(
            f"\nnote: {note}" for note in self.notes)


_FILE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RESERVED = {"metrics", "topk_curve", "precision_distribution"}


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"
    return stem


def evaluation_report(
    out_dir: str | os.PathLike,
    embeddings_by_name: Mapping[str, EmbeddingsLike],
    labels: Any,
    *,
    ks: int | Iterable[int] | None = None,
    map_ks: int | Iterable[int] | None = None,
    probe: Mapping[str, ProbeSet] | None = None,
    probe_config: ProbeConfig | None = None,
    extra_plots: bool | Mapping[str, Callable[[Path], Any]] = True,
    distribution_k: int | None = None,
    block_size: int | None = None,
    title: str = "Retrieval evaluation",
    overwrite: bool = False,
    notes: Iterable[str] = (),
) -> EvaluationReport:
    """Evaluate several embeddings of the same items and write everything into one folder.

    The folder (written atomically: it appears complete or not at all) holds:

    * ``metrics.json``: the settings (n, ks, tie rule, ...), the metrics per model and the
      linear-probe results;
    * ``metrics.md``: the same as Markdown tables, with the plots linked;
    * ``metrics.csv``: the metrics table (one row per model);
    * ``topk_curve.png``: precision@k against k, one line per model;
    * ``precision_distribution.png``: violin/box plot of the per-query precision@k per
      model (unless ``extra_plots`` is ``False``);
    * ``probe_<model>.csv``: per-class linear-probe report, for each probed model;
    * ``<name>.png`` for each extra plot.

    Args:
        out_dir: Report folder (parents are created).
        embeddings_by_name: Model name -> ``(n, d)`` embeddings of the same items.
        labels: ``n`` hashable labels.
        ks: ``k`` values of precision@k (default `DEFAULT_KS` up to ``n - 1``).
        map_ks: ``k`` values of mAP@k (default ``max(ks)``).
        probe: Optional model name -> `ProbeSet` (what `linear_probe_report` trains and
            tests on); names must be keys of ``embeddings_by_name``.
        probe_config: The probe's classifier (default `ProbeConfig()`).
        extra_plots: ``True`` (default) adds the per-query distribution plot; ``False``
            writes the top-k curve only; a mapping ``{name: fn}`` adds the distribution plot
            and calls ``fn(path)`` for each entry to write ``<out_dir>/<name>.png`` (e.g.
            ``{"confusion": lambda p: plot_confusion_matrix(ws, manual, p)}``).
        distribution_k: ``k`` of the distribution plot (must be in ``ks``; default 10 when
            in ``ks``, else ``max(ks)``).
        block_size: Queries per block (see `retrieval_metrics`).
        title: Title of ``metrics.md``.
        overwrite: Replace an existing ``out_dir``.
        notes: Notes of the caller (e.g. duplicate test texts), written before the report's own.

    Returns:
        An `EvaluationReport` with the table, the probe reports and the written paths.

    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is false (checked first).
        ValueError: Bad inputs (see `compare`, `linear_probe_report`), a probe
            name that is not a model, ``distribution_k`` not in ``ks``, a bad extra plot
            name.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputExistsError(out_dir)
    extras = _checked_extra_plots(extra_plots)
    probe = _checked_probe(probe, embeddings_by_name)
    evaluated = _evaluate(embeddings_by_name, labels, ks, map_ks, block_size, probe, probe_config or ProbeConfig(),
                          distribution_k)
    evaluated.notes[:0] = list(notes)
    names = _file_names(evaluated.probes, extras, distribution=extra_plots is not False)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        _write_tables(tmp, names, evaluated, title, extras)
        _write_plots(tmp, names, evaluated, title)
        for name, report in evaluated.probes.items():
            save_table(report.per_class, tmp / names[f"probe:{name}"])
        _write_extra_plots(tmp, names, extras)
    return EvaluationReport(
        out_dir=out_dir,
        metrics=evaluated.table,
        paths={kind: out_dir / file for kind, file in names.items()},
        probe=evaluated.probes,
        details=evaluated.details,
        notes=evaluated.notes,
    )


@dataclass(frozen=True)
class _Evaluated:
    """What a report shows: the metrics and probes of the models, and how they were computed."""

    frame: pd.DataFrame  # the compare table, with its attrs
    table: pd.DataFrame  # the compare table plus the probe columns (when probed)
    details: dict[str, RetrievalMetrics]
    probes: dict[str, LinearProbeReport]
    distribution_k: int
    n_labels: int
    definitions: dict[str, str]  # metric name -> description, for the metrics in the table
    ceiling: dict[int, float] = field(default_factory=dict)  # k -> best P@k the class sizes allow
    notes: list[str] = field(default_factory=list)

    @property
    def first(self) -> RetrievalMetrics:
        """The metrics of the first model (the settings and counts are the same for every model)."""
        return next(iter(self.details.values()))


def _checked_extra_plots(extra_plots: bool | Mapping[str, Callable[[Path], Any]]) -> dict[str, Callable[[Path], Any]]:
    """The extra plots by file stem (none for a bool), each name and function checked."""
    extras: dict[str, Callable[[Path], Any]] = {}
    if isinstance(extra_plots, Mapping):
        for name, fn in extra_plots.items():
            if not isinstance(name, str) or not _FILE_STEM.match(name) or name in _RESERVED:
                raise ValueError(
                    f"extra_plots name {name!r} must be a file stem of letters, digits, '_', '-', '.' "
                    f"and not one of {sorted(_RESERVED)}"
                )
            if not callable(fn):
                raise TypeError(f"extra_plots[{name!r}] must be callable (path -> None); got {fn!r}")
            extras[name] = fn
    elif not isinstance(extra_plots, bool):
        raise TypeError(f"extra_plots must be a bool or a mapping name -> callable; got {extra_plots!r}")
    return extras


def _checked_probe(
    probe: Mapping[str, ProbeSet] | None,
    embeddings_by_name: Mapping[str, EmbeddingsLike],
) -> dict[str, ProbeSet]:
    """The probe inputs as a dict, each name a model and each value a `ProbeSet`."""
    probe = dict(probe or {})
    for name, value in probe.items():
        if name not in embeddings_by_name:
            raise ValueError(
                f"probe name {name!r} is not a model of embeddings_by_name ({list(embeddings_by_name)})"
            )
        if not isinstance(value, ProbeSet):
            raise TypeError(f"probe[{name!r}] must be a ProbeSet, got {type(value).__name__}")
    return probe


def _evaluate(
    embeddings_by_name: Mapping[str, EmbeddingsLike],
    labels: Any,
    ks: int | Iterable[int] | None,
    map_ks: int | Iterable[int] | None,
    block_size: int | None,
    probe: dict[str, ProbeSet],
    probe_config: ProbeConfig,
    distribution_k: int | None,
) -> _Evaluated:
    """Compute the metrics of every model and the linear probes."""
    frame, details = _compare(embeddings_by_name, labels, ks, map_ks, block_size, per_query=True)
    ks_t = tuple(frame.attrs["ks"])
    if distribution_k is None:
        distribution_k = 10 if 10 in ks_t else max(ks_t)
    elif distribution_k not in ks_t:
        raise ValueError(f"distribution_k={distribution_k} is not one of ks {list(ks_t)}")
    settings = probe_config.to_dict()
    notes = label_notes(label_list(labels, "labels")) + probe_notes(probe)
    probes = {name: linear_probe_report(data.train_embeddings, data.train_labels, data.test_embeddings,
                                        data.test_labels, **settings) for name, data in probe.items()}
    table = frame.copy()
    table.attrs = dict(frame.attrs)
    if probes:
        table["probe accuracy"] = [probes[m].accuracy if m in probes else np.nan for m in table.index]
        table["probe macro-F1"] = [probes[m].macro_f1 if m in probes else np.nan for m in table.index]
    first = next(iter(details.values()))
    n_labels = len(label_codes(label_list(labels, "labels"), first.n_items)[1])
    definitions = {
        metric.name: metric.description
        for metric in METRICS.values()
        if metric.cutoffs(first.ks, first.map_ks)
    }
    ceiling = precision_ceiling(label_list(labels, "labels"), ks_t)
    return _Evaluated(frame, table, details, probes, distribution_k, n_labels, definitions, ceiling, notes)


def _file_names(
    probes: Mapping[str, LinearProbeReport], extras: Mapping[str, Any], *, distribution: bool
) -> dict[str, str]:
    """File kind -> file name in the report folder (probe CSVs named after safe, unique stems)."""
    names = {
        "json": "metrics.json",
        "md": "metrics.md",
        "csv": "metrics.csv",
        "topk_curve": "topk_curve.png",
    }
    if distribution:
        names["precision_distribution"] = "precision_distribution.png"
    used = set()
    for name in probes:
        stem = _safe_stem(name)
        while stem in used:
            stem += "_"
        used.add(stem)
        names[f"probe:{name}"] = f"probe_{stem}.csv"
    for name in extras:
        names[name] = f"{name}.png"
    return names


def _summary(evaluated: _Evaluated, title: str) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    first = evaluated.first
    return {
        "title": title,
        "n_items": first.n_items,
        "n_labels": evaluated.n_labels,
        "n_queries": first.n_queries,
        "n_excluded_queries": first.n_excluded,
        "ks": list(first.ks),
        "map_ks": list(first.map_ks),
        "similarity": "cosine (L2-normalised rows, float32)",
        "tie_rule": TIE_RULE,
        "metric_definitions": evaluated.definitions,
        "models": frame_json(evaluated.frame),
        "linear_probe": {name: report.to_dict() for name, report in evaluated.probes.items()},
        "precision_ceiling": {f"P@{k}": round(v, 6) for k, v in evaluated.ceiling.items() if v == v},
        "notes": list(evaluated.notes),
    }


def _markdown(evaluated: _Evaluated, names: Mapping[str, str], extras: Mapping[str, Any], title: str) -> str:
    """The content of ``metrics.md``: the tables, the metric definitions and the plots linked."""
    first = evaluated.first
    md = [f"# {title}", ""]
    md.append(
        f"{first.n_items} items, {evaluated.n_labels} labels, {first.n_queries} queries"
        + (f" ({first.n_excluded} excluded: label occurs once)" if first.n_excluded else "")
        + ". Leave-one-out retrieval by cosine similarity over all queries."
    )
    md += ["", to_markdown(evaluated.table), ""]
    md += [f"- `{name}`: {description}" for name, description in evaluated.definitions.items()]
    md += ["", f"Ties: {TIE_RULE}", ""]
    if evaluated.probes:
        md += ["## Linear probe", ""]
        for name, report in evaluated.probes.items():
            md += [
                f"### {name}",
                "",
                f"Accuracy {report.accuracy:.4f}, macro-F1 {report.macro_f1:.4f} "
                f"({report.n_train} train / {report.n_test} test items).",
                "",
                to_markdown(report.per_class),
                "",
            ]
    if evaluated.notes:
        md += ["## Notes", "", *[f"- {note}" for note in evaluated.notes], ""]
    md += ["## Plots", "", "![precision@k](topk_curve.png)", "",
           "The dashed line is the ceiling: the best precision@k the class sizes allow (a query of a class of n "
           "items has at most n - 1 same-label neighbours).", ""]
    if "precision_distribution" in names:
        md += [f"![per-query precision@{evaluated.distribution_k}](precision_distribution.png)", ""]
    for name in extras:
        md += [f"![{name}]({name}.png)", ""]
    return "\n".join(md).rstrip() + "\n"


def _write_tables(
    folder: Path, names: Mapping[str, str], evaluated: _Evaluated, title: str, extras: Mapping[str, Any]
) -> None:
    """Write ``metrics.json``, ``metrics.md`` and ``metrics.csv`` into ``folder``."""
    summary = _summary(evaluated, title)
    atomic_write_text(folder / names["json"], json.dumps(summary, indent=2, allow_nan=False) + "\n")
    atomic_write_text(folder / names["md"], _markdown(evaluated, names, extras, title))
    save_table(evaluated.table, folder / names["csv"])


def _write_plots(folder: Path, names: Mapping[str, str], evaluated: _Evaluated, title: str) -> None:
    """Write the top-k curve and, when named, the per-query precision distribution."""
    from refinery_quaterion.evaluate import plots

    plots.plot_topk_curve(evaluated.frame, folder / names["topk_curve"], title=title, ceiling=evaluated.ceiling)
    if "precision_distribution" in names:
        k = evaluated.distribution_k
        per_query = {
            name: result.per_query[f"P@{k}"]  # type: ignore[index]
            for name, result in evaluated.details.items()
        }
        plots.plot_precision_distribution(per_query, folder / names["precision_distribution"], k=k)


def _write_extra_plots(folder: Path, names: Mapping[str, str], extras: Mapping[str, Callable[[Path], Any]]) -> None:
    """Call each extra plot with its path and check that it wrote a file."""
    for name, fn in extras.items():
        target = folder / names[name]
        fn(target)
        if not target.is_file() or target.stat().st_size == 0:
            raise RuntimeError(f"extra_plots[{name!r}] did not write {target.name}")
