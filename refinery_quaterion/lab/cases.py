"""A refinery case: one project's export, evaluated with its manual labels as the held-out truth.

`run_case` runs the whole refinery path for one or more `Recipe` s and compares them on the
same test records:

1. load the export and make the `refinery_quaterion.data.thresholds.threshold_report` (records
   kept and agreement of weak labels with manual ones, per confidence threshold);
2. for each recipe: `refinery_quaterion.workflow.prepare.prepare_records` with ``holdout="manual"``
   (`refinery_quaterion.data.labels.combine_labels` with the recipe's threshold, then the records
   with a manual label become the test set and training uses the weak-supervision labels of
   the others), optionally `refinery_quaterion.data.cleaning.clean_labels` on the raw embeddings,
   then `refinery_quaterion.workflow.train.train_model` with the recipe's settings;
3. embed the manually labeled records once with the raw encoder and apply each trained head
   to those vectors (a recipe with ``trainable_encoder`` embeds them with its own encoder):
   precision@k, MRR, mAP... of ``raw`` and of every recipe, leave-one-out over the manual
   labels (`refinery_quaterion.evaluate.compare`).

All recipes share the export, the seeds, the test records and their raw vectors, so the rows
of `CaseResult.metrics` compare. To choose between recipes without looking at the test
figures, the manual labels are also split in two halves (``validation_share``): a
*validation* half (columns ``val P@10``, ``val MRR``; `choose_recipe` picks on them) and a
*test* half (``test P@10``, ``test MRR``), besides the figures on all manual labels.

Note that ``min_confidence="auto"`` estimates label quality from the records that have both
a manual and a weak label (see `refinery_quaterion.data.thresholds`): the manual labels pick that
one number, they never become training labels.

Example:
    >>> case = RefineryCase("examples/banking_intents/data/snapshot_data.json.zip", task="intent",
    ...                     template="{text}", name="banking")  # doctest: +SKIP
    >>> result = run_case(case, {"v0.1": CASE_RECIPES["fixed 0.7"], "default": Recipe()})  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP

The recipes (`refinery_quaterion.lab.recipes.Recipe`, `refinery_quaterion.lab.recipes.CASE_RECIPES`)
and what one recipe's run gives (`refinery_quaterion.lab.recipes.RecipeRun`) are in
`refinery_quaterion.lab.recipes`.

Importing this module imports no torch: the training stack is loaded by `run_case`.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from refinery_quaterion.data.text import TextSpec, TextTemplate
from refinery_quaterion.data.thresholds import threshold_report
from refinery_quaterion.evaluate import compare, format_table, to_markdown
from refinery_quaterion.lab.recipes import CASE_RECIPES, Recipe, RecipeRun
from refinery_quaterion.model.config import FitConfig, ModelConfig

if TYPE_CHECKING:  # pragma: no cover
    from refinery_quaterion.model.cache import EmbeddingCache
    from refinery_quaterion.model.trainable import DistilBertSimilarityModel
    from refinery_quaterion.workflow import PreparedRecords

__all__ = [
    "CASE_COLUMNS",
    "CASE_KS",
    "CaseResult",
    "RefineryCase",
    "choose_recipe",
    "markdown_table",
    "run_case",
]

CASE_KS: tuple[int, ...] = (1, 5, 10, 25, 50, 100)
"""The k values of precision@k `run_case` computes by default (those above the test size are dropped)."""

CASE_COLUMNS: tuple[str, ...] = ("P@1", "P@10", "MRR", "train s")
"""The columns `CaseResult.table` shows by default."""

RAW = "raw"
"""Name of the row of the untrained encoder in `CaseResult.metrics`."""

RUN_COLUMNS = ("threshold", "weak labels", "epochs", "train s")
"""The columns of `CaseResult.metrics` that describe each run rather than measure it."""


@dataclass(frozen=True)
class RefineryCase:
    """A refinery project to evaluate: an export, its task and how its records are rendered.

    Attributes:
        export: The export: a file `refinery_quaterion.data.refinery.load_export` reads (a project
            snapshot, a UI download...) or an already loaded `refinery_quaterion.data.refinery.RefineryExport`.
        task: Classification task (may be omitted when the export has one).
        template: Text template, e.g. ``"{text}"`` or ``"{Title}. {Description}"``.
        name: Name for tables and file names (default: the file name, or ``"case"``).
        pretrained: The encoder (``"minilm"``: the bundled all-MiniLM-L6-v2).
        seed: Seed of the splits (`refinery_quaterion.data.config.LabelConfig.split_seed`) and of
            the model and its training (`refinery_quaterion.model.config.ModelConfig.seed`).
        val_size: Weak-supervision records held out of training as its validation set (share or
            count; reported by training, never used to compare recipes); ``0``: train on all.
        password: Password of a protected UI download zip.
    """

    export: Any
    task: str | None = None
    template: TextSpec = "{text}"
    name: str | None = None
    pretrained: str = "minilm"
    seed: int = 42
    val_size: float | int = 0.0
    password: str | None = None

    @property
    def label(self) -> str:
        """`name`, or a name derived from the export file."""
        if self.name:
            return self.name
        if isinstance(self.export, str | os.PathLike):
            return Path(self.export).name.split(".")[0]
        return "case"



@dataclass
class CaseResult:
    """The outcome of `run_case`.

    Attributes:
        case: The case.
        thresholds: Its `refinery_quaterion.data.thresholds.threshold_report` (with the automatic
            choice marked; the reason is in ``thresholds.attrs["threshold_choice"]``).
        metrics: One row per model (``raw``, then each recipe): ``P@k`` ..., ``MRR``, ``mAP``...
            over all manual labels as queries, then ``val P@10``, ``val MRR``, ``test P@10``,
            ``test MRR`` (the two halves of the manual labels; without halves these are left
            out), ``threshold`` (the one used), ``weak labels`` (training records), ``epochs``
            and ``train s`` (seconds of the training epochs).
        runs: Recipe name -> `RecipeRun`.
        test: The manually labeled records (the queries), in order.
        halves: ``(validation, test)`` halves of ``test`` (``None`` without them).
    """

    case: RefineryCase
    thresholds: pd.DataFrame
    metrics: pd.DataFrame
    runs: dict[str, RecipeRun]
    test: pd.DataFrame
    halves: tuple[pd.DataFrame, pd.DataFrame] | None = None

    @property
    def threshold_choice(self) -> dict[str, Any]:
        """The automatic threshold choice of the threshold report, as a dict (with ``reason``)."""
        return dict(self.thresholds.attrs.get("threshold_choice") or {})

    def threshold_text(self, *, digits: int = 3) -> str:
        """The threshold report as a plain-text table, followed by the automatic choice and why."""
        shown = self.thresholds
        if "chosen" in shown.columns:
            shown = shown.assign(chosen=shown["chosen"].map({True: "yes", False: ""}))
        text = format_table(shown, digits=digits, index=False)
        reason = self.threshold_choice.get("reason")
        return text + (f"\n\nautomatic threshold: {reason}" if reason else "")

    def table(self, columns: Sequence[str] = CASE_COLUMNS) -> pd.DataFrame:
        """``metrics`` restricted to ``columns`` (those it has), one row per model.

        Raises:
            ValueError: If none of ``columns`` is in ``metrics``.
        """
        keep = [c for c in columns if c in self.metrics.columns]
        if not keep:
            raise ValueError(f"none of {list(columns)} is a column of the metrics; "
                             f"columns: {list(self.metrics.columns)}")
        return self.metrics[keep]

    def to_markdown(self, columns: Sequence[str] = CASE_COLUMNS, *, digits: int = 3) -> str:
        """`table` as a Markdown table (``train s`` with one decimal, counts as integers)."""
        return markdown_table(_rounded(self.table(columns)), digits=digits)

    def summary(self, columns: Sequence[str] = CASE_COLUMNS, *, digits: int = 3) -> str:
        """A plain-text summary: the case, the threshold choice, each recipe and the table."""
        n, labels = len(self.test), self.test["label"].nunique()
        lines = [f"{self.case.label}: {n} manually labeled records ({labels} labels) as the held-out test set"]
        if self.threshold_choice:
            lines.append(f"automatic threshold: {self.threshold_choice.get('reason', '')}")
        for name, run in self.runs.items():
            lines.append(f"  {name}: {run.recipe.describe()} -> {len(run.prepared.train)} training records, "
                         f"{run.epochs} epochs")
        lines += ["", format_table(_rounded(self.table(columns)), digits=digits)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def plot_thresholds(self, path: str | os.PathLike, *, title: str | None = None) -> Path:
        """The threshold report as a PNG (`refinery_quaterion.evaluate.label_plots.plot_threshold_curve`)."""
        from refinery_quaterion.evaluate.label_plots import plot_threshold_curve

        title = title or f"{self.case.label}: weak-supervision confidence threshold"
        return plot_threshold_curve(self.thresholds, path, title=title)

    def plot_precision(self, path: str | os.PathLike, *, models: Sequence[str] | None = None,
                       ks: Iterable[int] | None = None, title: str | None = None) -> Path:
        """Precision@k of ``models`` (default: all rows) as a PNG (`refinery_quaterion.evaluate.plots.plot_topk_curve`).

        Args:
            path: Target ``.png`` file.
            models: Rows of ``metrics`` to draw.
            ks: The k values to draw (default: every ``P@k`` column); k above the size of a
                class cannot reach 1, so small test sets read best with small k.
            title: Figure title.
        """
        from refinery_quaterion.evaluate.plots import plot_topk_curve

        rows = self.metrics.loc[list(models)] if models is not None else self.metrics
        wanted = None if ks is None else {f"P@{k}" for k in ks}
        ks = [c for c in rows.columns if re.fullmatch(r"P@\d+", str(c)) and (wanted is None or c in wanted)]
        title = title or f"{self.case.label}: precision@k on {len(self.test)} manual labels"
        return plot_topk_curve(rows[ks], path, title=title)


def markdown_table(table: pd.DataFrame, *, digits: int = 3) -> str:
    """`refinery_quaterion.evaluate.to_markdown` of ``table`` with every column but the index right-aligned.

    For tables whose number columns hold pre-formatted cells (``"1365"``, ``"–"``), which
    ``to_markdown`` would left-align as text.
    """
    lines = to_markdown(table, digits=digits).split("\n")
    lines[1] = "|:---|" + "---:|" * len(table.columns)
    return "\n".join(lines)


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    """Counts as integers and seconds with one decimal, so Markdown shows ``1365`` and ``2.3``."""
    out = table.copy().astype(object)
    for column in out.columns:
        if column in ("weak labels", "epochs"):
            out[column] = [("–" if _missing(v) else f"{int(v)}") for v in table[column]]
        elif column == "train s":
            out[column] = [("–" if _missing(v) or v == 0 else f"{float(v):.1f}") for v in table[column]]
        elif column == "threshold":
            out[column] = [("–" if _missing(v) else f"{float(v):g}") for v in table[column]]
        else:
            out[column] = table[column]
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower() or "recipe"


def run_case(
    case: RefineryCase,
    recipes: Mapping[str, Recipe] | None = None,
    *,
    out: str | os.PathLike | None = None,
    ks: Iterable[int] = CASE_KS,
    validation_share: float | None = 0.5,
    embedding_cache: Any = True,
    progress: bool = False,
) -> CaseResult:
    """Train each recipe on the weak labels of a refinery case and evaluate on its manual labels.

    See the module description for the steps. The raw encoder's vectors of every text are
    computed once (and kept in the embedding cache), so each further recipe costs its
    training time only.

    Args:
        case: The project.
        recipes: Name -> `Recipe` (default: `CASE_RECIPES`).
        out: Folder to keep the trained models in (one sub-folder per recipe, replaced if there);
            ``None`` trains in a temporary folder, removed at the end.
        ks: k values of precision@k (those above ``len(test) - 1`` are dropped).
        validation_share: Share of the manual labels in the validation half (stratified by
            label, seeded by ``case.seed``); the rest is the test half. ``None`` or ``0``:
            no halves.
        embedding_cache: Disk cache of the raw encoder's vectors: ``True`` (the default
            folder), a folder, or ``None``.
        progress: Show progress bars while encoding and training.

    Returns:
        A `CaseResult`.

    Raises:
        ValueError: For an empty ``recipes``, an export without manual labels or weak labels
            (see `refinery_quaterion.data.splits.split_by_source`), or invalid settings.
    """
    recipes = _checked_recipes(CASE_RECIPES if recipes is None else recipes)
    session = _CaseRun.open(case, embedding_cache=embedding_cache, progress=progress)
    workdir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="refinery-case-"))
    try:
        for name, recipe in recipes.items():
            prepared = session.prepare(name, recipe)
            session.train(name, recipe, prepared, workdir / _slug(name))
    finally:
        if out is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return session.result(ks=ks, validation_share=validation_share)


def _checked_recipes(recipes: Mapping[str, Recipe]) -> dict[str, Recipe]:
    """``recipes`` as a dict, refused when empty or when one is named like the raw encoder's row."""
    recipes = dict(recipes)
    if not recipes:
        raise ValueError("recipes is empty; pass e.g. {'default': Recipe()}")
    if RAW in recipes:
        raise ValueError(f"{RAW!r} names the untrained encoder's row; give the recipe another name")
    return recipes


@dataclass
class _CaseRun:
    """One `run_case` call: what its recipes share and what they gave so far.

    The recipes share the export, the raw encoder and the test records (the manual labels,
    taken from the first recipe) with their raw vectors; each recipe adds its `RecipeRun`,
    its vectors of the test records and its row of the `RUN_COLUMNS`.
    """

    case: RefineryCase
    template: TextTemplate
    export: Any
    cache: EmbeddingCache | None
    thresholds: pd.DataFrame
    base_model: ModelConfig
    encoder: DistilBertSimilarityModel
    progress: bool
    test: pd.DataFrame | None = None
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    runs: dict[str, RecipeRun] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        RAW: {"threshold": np.nan, "weak labels": np.nan, "epochs": np.nan, "train s": 0.0}})

    @classmethod
    def open(cls, case: RefineryCase, *, embedding_cache: Any, progress: bool) -> _CaseRun:
        """Load the case's export, make its threshold report and build the raw encoder."""
        from refinery_quaterion.data.refinery import load_export
        from refinery_quaterion.model.cache import EmbeddingCache
        from refinery_quaterion.model.trainable import DistilBertSimilarityModel

        template = TextTemplate.coerce(case.template)
        export = case.export
        if isinstance(export, str | os.PathLike):
            export = load_export(export, password=case.password)
        cache = EmbeddingCache.coerce(embedding_cache)
        thresholds = threshold_report(export, case.task, template=template.spec)
        base_model = ModelConfig(pretrained=case.pretrained, template=template.spec, seed=case.seed)
        encoder = DistilBertSimilarityModel(base_model, embedding_cache=cache)
        return cls(case=case, template=template, export=export, cache=cache, thresholds=thresholds,
                   base_model=base_model, encoder=encoder, progress=progress)

    def prepare(self, name: str, recipe: Recipe) -> PreparedRecords:
        """The recipe's records: its weak labels for training, the manual labels held out (and cleaned if asked)."""
        from refinery_quaterion.data.cleaning import clean_labels
        from refinery_quaterion.data.config import LabelConfig
        from refinery_quaterion.workflow import prepare_records

        case = self.case
        config = LabelConfig(task=case.task, template=self.template.spec, min_confidence=recipe.min_confidence,
                             val_size=case.val_size, split_seed=case.seed, holdout="manual")
        prepared = prepare_records(self.export, config)
        assert prepared.test is not None and prepared.report is not None
        self._hold_out(name, prepared.test)
        if recipe.clean is not None:
            vectors = self.encoder.encode_raw(prepared.train, progress=self.progress)
            prepared.train, _ = clean_labels(prepared.train, vectors, k=recipe.clean_k,
                                             majority=recipe.clean_majority, action=recipe.clean,
                                             report=prepared.report)
        return prepared

    def _hold_out(self, name: str, test: pd.DataFrame) -> None:
        """Keep the first recipe's test records and their raw vectors; refuse other test records later."""
        if self.test is None:
            self.test = test
            self.embeddings[RAW] = self.encoder.encode_raw(test, progress=self.progress)
        elif not _same_records(self.test, test, self.template):
            raise ValueError(f"recipe {name!r} gives other test records than the first recipe; the manual "
                             "labels must not depend on the recipe")

    def train(self, name: str, recipe: Recipe, prepared: PreparedRecords, folder: Path) -> None:
        """Train the recipe's model into ``folder`` and embed the test records with it."""
        from refinery_quaterion.training.model_files import load
        from refinery_quaterion.workflow import train_model

        assert self.test is not None and prepared.report is not None
        model_config = recipe.model_config(self.base_model)
        fit_config = recipe.fit_config(FitConfig(progress="auto" if self.progress else "off"))
        outcome = train_model(prepared.train, prepared.val if len(prepared.val) else None, folder,
                              model_config=model_config, fit_config=fit_config, embedding_cache=self.cache,
                              overwrite=True)
        tuned = load(outcome.path, embedding_cache=self.cache)
        if model_config.trainable_encoder:  # its encoder changed: embed the test texts again
            self.embeddings[name] = tuned.encode(self.test, progress=self.progress)
        else:
            self.embeddings[name] = tuned.apply_head(self.embeddings[RAW])
        self.runs[name] = RecipeRun(name=name, recipe=recipe, prepared=prepared, fit=outcome.fit,
                                    epochs=outcome.fit.epochs, path=outcome.path)
        self.extra[name] = {"threshold": prepared.report.min_confidence, "weak labels": len(prepared.train),
                            "epochs": outcome.fit.epochs, "train s": outcome.fit.train_time_s}

    def result(self, *, ks: Iterable[int], validation_share: float | None) -> CaseResult:
        """The `CaseResult`: the metrics of every model on all manual labels (and on their halves)."""
        test = self.test
        assert test is not None
        labels = test["label"].astype(str).to_numpy()
        metrics = compare(self.embeddings, labels, ks=[k for k in ks if 1 <= k <= len(test) - 1])
        halves = self._add_half_metrics(metrics, labels, validation_share) if validation_share else None
        for column in RUN_COLUMNS:
            metrics[column] = [self.extra[name][column] for name in metrics.index]
        return CaseResult(case=self.case, thresholds=self.thresholds, metrics=metrics, runs=self.runs, test=test,
                          halves=halves)

    def _add_half_metrics(self, metrics: pd.DataFrame, labels: np.ndarray,
                          share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Add ``val``/``test`` P@10 and MRR columns to ``metrics``; return the two halves of the test records."""
        from refinery_quaterion.data.splits import train_val_split

        assert self.test is not None
        test = self.test
        val_half, test_half = train_val_split(test.assign(_row=np.arange(len(test))), val_size=share,
                                              seed=self.case.seed, template=self.template.spec)
        for prefix, half in (("val", val_half), ("test", test_half)):
            rows = half["_row"].to_numpy()
            part = compare({k: v[rows] for k, v in self.embeddings.items()}, labels[rows],
                           ks=[k for k in (10,) if k <= len(rows) - 1])
            for column in ("P@10", "MRR"):
                if column in part.columns:
                    metrics[f"{prefix} {column}"] = part[column]
        return val_half.drop(columns="_row"), test_half.drop(columns="_row")


def _same_records(a: pd.DataFrame, b: pd.DataFrame, template: TextTemplate) -> bool:
    if len(a) != len(b):
        return False
    texts_a = [template(r) for r in a.to_dict(orient="records")]
    texts_b = [template(r) for r in b.to_dict(orient="records")]
    return texts_a == texts_b and list(a["label"].astype(str)) == list(b["label"].astype(str))


def choose_recipe(results: CaseResult | Sequence[CaseResult], *, metric: str = "val P@10",
                  candidates: Sequence[str] | None = None) -> tuple[str, pd.Series]:
    """The recipe with the best mean ``metric`` over one or more cases (the validation halves by default).

    Args:
        results: `run_case` results that ran the same recipes.
        metric: A column of `CaseResult.metrics` (higher is better); choose on a validation
            column (``"val P@10"``, ``"val MRR"``), never on a test column.
        candidates: Recipe names to choose from (default: every recipe all results ran).

    Returns:
        ``(name, scores)``: the winner (ties: the first in ``candidates``) and the mean
        ``metric`` of every candidate.

    Raises:
        ValueError: If a result lacks ``metric`` (run with ``validation_share``) or no recipe
            is common to all results.
    """
    results = [results] if isinstance(results, CaseResult) else list(results)
    if not results:
        raise ValueError("no results to choose from")
    for result in results:
        if metric not in result.metrics.columns:
            raise ValueError(f"{result.case.label}: no column {metric!r} in the metrics; run_case with "
                             f"validation_share= gives 'val P@10' and 'val MRR'")
    names = list(candidates) if candidates is not None else [n for n in results[0].runs
                                                             if all(n in r.runs for r in results)]
    if not names:
        raise ValueError("no recipe was run on every case")
    scores = pd.Series({n: float(np.mean([r.metrics.loc[n, metric] for r in results])) for n in names})
    return str(scores.idxmax()), scores
