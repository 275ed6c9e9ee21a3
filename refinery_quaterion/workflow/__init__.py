"""Stage 7, workflow: end-to-end steps shared by the command line and the examples.

Each step is a thin composition of the library's building blocks, so a script (or the CLI)
needs no logic of its own:

* `prepare_records` — a refinery export → one label per record (fixed or ``"auto"``
  confidence threshold, blank texts dropped) → train/validation split with identical texts
  on one side, or with ``holdout="manual"`` the manual labels as the test set; optionally
  written to a folder (what ``refinery-quaterion prepare`` does); `load_prepared` reads such
  a folder back;
* `train_model` — labeled records → datasets → `DistilBertSimilarityModel` → `fit` → `save`,
  as a `ModelConfig` and a `FitConfig` say;
* `evaluate_model` — a saved model and labeled test records (checked against the model's
  text template first) → raw vs fine-tuned retrieval metrics (+ linear probe) → optionally
  a report folder.

The frozen encoder's vectors go through one disk `EmbeddingCache`
(by default `default_cache_dir`), so each text is encoded once
across training, raw evaluation and fine-tuned evaluation, and a re-run is fast.
"""

from __future__ import annotations

from refinery_quaterion._lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "prepare": ("HOLDOUTS", "PreparedRecords", "load_prepared", "prepare_records"),
    "train": ("CacheSpec", "TrainOutcome", "train_model"),
    "evaluate": ("EvaluationOutcome", "evaluate_model"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
