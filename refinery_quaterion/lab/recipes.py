"""Recipes of a refinery case: how a case turns its export into training labels and a model.

* `Recipe`: the settings one row of a case changes (threshold, cleaning, `ModelConfig` and
  `FitConfig` settings), each left to the library's default unless set;
* `CASE_RECIPES`: the recipes the quality benchmark compares;
* `RecipeRun`: what running one recipe of a case did (`refinery_quaterion.lab.cases.run_case`).

Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, InitVar, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from refinery_quaterion.data._tasklabels import check_threshold
from refinery_quaterion.data.labels import LabelReport
from refinery_quaterion.model.config import FitConfig, ModelConfig

if TYPE_CHECKING:  # pragma: no cover
    from refinery_quaterion.training.fit import FitResult
    from refinery_quaterion.workflow import PreparedRecords

__all__ = ["CASE_RECIPES", "Recipe", "RecipeRun"]

CLEAN_ACTIONS = ("drop", "downweight")
"""The actions of `refinery_quaterion.data.cleaning.clean_labels` a `Recipe` may ask for."""

FIT_SHORTCUTS = ("sample_weighting", "min_weight", "min_steps")
"""The `FitConfig` settings `Recipe` also takes as keywords of its own (folded into ``Recipe.fit``)."""

RESERVED = ("seed", "template", "pretrained")
"""Settings that belong to the `refinery_quaterion.lab.cases.RefineryCase`, never to a `Recipe`."""


@dataclass(frozen=True)
class Recipe:
    """How a case turns its export into training labels and a model.

    Every setting left at ``None`` (or empty) takes the library's default, so ``Recipe()`` is
    "what a user gets without choosing anything", and a recipe written today keeps meaning the
    same thing when a default changes only where it sets the value.

    The recipe holds the `refinery_quaterion.model.config.ModelConfig` and
    `refinery_quaterion.model.config.FitConfig` settings it changes (``model``, ``fit``) and
    produces the configs from a case's base ones (`model_config`, `fit_config`).

    Args:
        sample_weighting: Shortcut for ``fit={"sample_weighting": ...}``
            (`refinery_quaterion.model.config.FitConfig.sample_weighting`); ``None``: not set.
        min_weight: Shortcut for ``fit={"min_weight": ...}``; ``None``: not set.
        min_steps: Shortcut for ``fit={"min_steps": ...}``: with ``epochs="auto"``, train at
            least this many optimizer steps (``0``: 10 epochs, as v0.1); ``None``: not set.

    Attributes:
        min_confidence: Weak-supervision threshold of `refinery_quaterion.data.labels.combine_labels`
            (a number or ``"auto"``); ``None``: its default.
        clean: ``"drop"`` or ``"downweight"``: run `refinery_quaterion.data.cleaning.clean_labels` on
            the training records (raw-encoder embeddings) with that action; ``None``: no cleaning.
        clean_k: Neighbours per record for the cleaning.
        clean_majority: Share of the neighbours that must agree on another label.
        model: The `refinery_quaterion.model.config.ModelConfig` settings it changes, e.g.
            ``{"loss": "triplet"}``.
        fit: The `refinery_quaterion.model.config.FitConfig` settings it changes, e.g.
            ``{"epochs": 20}`` (with the shortcuts ``sample_weighting``, ``min_weight`` and
            ``min_steps`` folded in).

    Raises:
        ValueError: For a threshold outside 0..1, an unknown cleaning action, ``clean_k`` /
            ``clean_majority`` out of range, or an invalid ``model`` / ``fit`` value (see
            `refinery_quaterion.model.config.ModelConfig` and
            `refinery_quaterion.model.config.FitConfig`).
        TypeError: For ``model`` / ``fit`` keys that are not settings (listing the valid ones),
            settings given twice (e.g. ``sample_weighting`` here and in ``fit``), or ``seed``,
            ``template`` or ``pretrained`` (settings of the case).
    """

    min_confidence: float | Literal["auto"] | None = None
    clean: Literal["drop", "downweight"] | None = None
    clean_k: int = 10
    clean_majority: float = 0.7
    model: Mapping[str, Any] = field(default_factory=dict)
    fit: Mapping[str, Any] = field(default_factory=dict)
    _: KW_ONLY
    sample_weighting: InitVar[str | None] = None
    min_weight: InitVar[float | None] = None
    min_steps: InitVar[int | None] = None

    def __post_init__(self, sample_weighting: str | None, min_weight: float | None, min_steps: int | None) -> None:
        if self.min_confidence is not None and self.min_confidence != "auto":
            object.__setattr__(self, "min_confidence", check_threshold(self.min_confidence))
        if self.clean is not None and self.clean not in CLEAN_ACTIONS:
            raise ValueError(f"clean must be one of {list(CLEAN_ACTIONS)} or None, got {self.clean!r}")
        if isinstance(self.clean_k, bool) or not isinstance(self.clean_k, int) or self.clean_k < 1:
            raise ValueError(f"clean_k must be a positive integer, got {self.clean_k!r}")
        if not 0.5 < float(self.clean_majority) <= 1:
            raise ValueError(f"clean_majority must be above 0.5 and at most 1, got {self.clean_majority!r}")
        shortcuts = dict(zip(FIT_SHORTCUTS, (sample_weighting, min_weight, min_steps), strict=True))
        shortcuts = {name: value for name, value in shortcuts.items() if value is not None}
        for name in shortcuts:
            if name in self.fit:
                raise TypeError(f"{name} given twice: as Recipe({name}=...) and in fit=")
        object.__setattr__(self, "model", dict(self.model))
        object.__setattr__(self, "fit", {**self.fit, **shortcuts})
        if any(name in self.model for name in RESERVED):
            raise TypeError("seed, template and pretrained belong to the RefineryCase, not to a Recipe")
        self.model_config(ModelConfig())  # refuses unknown names and invalid values now, not at training
        self.fit_config(FitConfig())

    def model_config(self, base: ModelConfig) -> ModelConfig:
        """``base`` (the case's model: encoder, template, seed) with this recipe's ``model`` settings applied.

        Raises:
            TypeError: For a name that is not a setting.
            ValueError: For an invalid value.
        """
        return base.replace(**self.model)

    def fit_config(self, base: FitConfig) -> FitConfig:
        """``base`` (the case's training: progress) with this recipe's ``fit`` settings applied.

        Raises:
            TypeError: For a name that is not a setting.
            ValueError: For an invalid value.
        """
        return base.replace(**self.fit)

    def fit_settings(self) -> dict[str, Any]:
        """The `refinery_quaterion.model.config.FitConfig` settings this recipe sets (``fit``, shortcuts included)."""
        return dict(self.fit)

    def describe(self) -> str:
        """The settings that differ from the defaults, e.g. ``"min_confidence=auto, clean=drop"``."""
        parts = []
        if self.min_confidence is not None:
            parts.append(f"min_confidence={self.min_confidence:g}" if self.min_confidence != "auto"
                         else "min_confidence=auto")
        parts += [f"{k}={v}" for k, v in self.fit.items() if k != "min_steps"]
        if self.clean is not None:
            parts.append(f"clean={self.clean} (k={self.clean_k}, majority {self.clean_majority:g})")
        if "min_steps" in self.fit:
            parts.append(f"min_steps={self.fit['min_steps']}")
        parts += [f"{k}={v}" for k, v in self.model.items()]
        return ", ".join(parts) or "library defaults"


CASE_RECIPES: dict[str, Recipe] = {
    "fixed 0.7": Recipe(min_confidence=0.7, sample_weighting="none", min_steps=0),
    "auto threshold": Recipe(min_confidence="auto", sample_weighting="none", min_steps=0),
    "confidence-weighted": Recipe(min_confidence="auto", sample_weighting="confidence", min_steps=0),
    "cleaned": Recipe(min_confidence="auto", sample_weighting="none", clean="drop", min_steps=0),
    "default": Recipe(),
}
"""The recipes the quality benchmark compares on each refinery case: the v0.1 default (a fixed
0.7 threshold, every kept record weighing the same, the configured epochs), then one change at a
time -- the automatic threshold; the automatic threshold with confidence-weighted training; the
automatic threshold with label cleaning -- and the library's current defaults (``Recipe()``)."""


@dataclass
class RecipeRun:
    """What one recipe of a case did.

    Attributes:
        name: The recipe's name (its row in `refinery_quaterion.lab.cases.CaseResult.metrics`).
        recipe: The recipe.
        prepared: The records as prepared (``train``, ``val``, ``test``, the `LabelReport`
            in ``report``); ``train`` is the cleaned set when the recipe cleans.
        fit: The training summary.
        epochs: Epochs trained (after ``min_steps``; fewer with early stopping).
        path: Folder of the saved model (removed after `refinery_quaterion.lab.cases.run_case`
            unless it was given ``out``).
    """

    name: str
    recipe: Recipe
    prepared: PreparedRecords
    fit: FitResult
    epochs: int
    path: Path

    @property
    def records(self) -> pd.DataFrame:
        """Every labeled record of the run: training, validation and test (the manual labels), fresh index."""
        parts = [self.prepared.train, self.prepared.val]
        if self.prepared.test is not None:
            parts.append(self.prepared.test)
        return pd.concat([p for p in parts if len(p)], ignore_index=True)

    @property
    def report(self) -> LabelReport:
        """What `combine_labels` (and the cleaning) kept and dropped."""
        assert self.prepared.report is not None
        return self.prepared.report

    def nearest_text(self, queries: Sequence[str], *, k: int = 5, embedding_cache: Any = True) -> str:
        """The ``k`` records of `records` nearest to each query by this run's model, as text.

        Loads the model saved in `path`, embeds `records` in an in-memory
        `refinery_quaterion.search.SimilarityIndex` (records with the same text share one point)
        and searches it for each query. Each query gives a block: an empty line, the query, then
        one line per hit with its rank, score, label and rendered text, e.g.
        ``"  1. 0.912 [card_theft] my card was stolen"``.

        Args:
            queries: Query texts.
            k: Hits per query (fewer when the index holds fewer records).
            embedding_cache: Disk cache of the encoder's raw output, as in
                `refinery_quaterion.training.model_files.load`: ``True`` (the default folder), a folder, or ``None``.

        Returns:
            The blocks of all queries joined by newlines, without a final newline (ready to ``print``).

        Raises:
            FileNotFoundError: If the model folder is gone (`refinery_quaterion.lab.cases.run_case`
                without ``out`` removes it).
            ImportError: If ``qdrant-client`` is not installed.
            ValueError: If a query is empty or ``k < 1``.
        """
        from refinery_quaterion.search import SimilarityIndex
        from refinery_quaterion.training.model_files import load

        model = load(self.path, embedding_cache=embedding_cache)
        lines: list[str] = []
        with SimilarityIndex(model) as index:
            index.add(self.records, progress=False)
            for query in queries:
                lines += ["", query]
                lines += [f"  {rank}. {hit.score:.3f} [{hit.label}] {model.template(hit.record)}"
                          for rank, hit in enumerate(index.search(query, k=k), 1)]
        return "\n".join(lines)

