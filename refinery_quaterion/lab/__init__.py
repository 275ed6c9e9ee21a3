"""The lab: end-to-end cases (recipes run on a refinery project) for the examples and benchmarks.

Nothing in the library's stages imports this package; it sits on top of them like the CLI.

* `refinery_quaterion.lab.recipes`: `Recipe` (how a case trains), `CASE_RECIPES`, `RecipeRun`;
* `refinery_quaterion.lab.cases`: `RefineryCase`, `run_case`, its `CaseResult`, `choose_recipe`.
"""

from __future__ import annotations

from refinery_quaterion._lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "recipes": ("CASE_RECIPES", "Recipe", "RecipeRun"),
    "cases": ("CaseResult", "RefineryCase", "choose_recipe", "run_case"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
