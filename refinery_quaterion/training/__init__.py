"""Stage 3, training: `fit` a model on labeled records, `save` it, `load` it back.

* `refinery_quaterion.training.fit`: `fit`, `FitResult`, `TrainingInterrupted`;
* `refinery_quaterion.training.samples`: records as Quaterion pair or group samples, with weights;
* `refinery_quaterion.training.progress`: one progress bar per epoch, or plain lines when piped;
* `refinery_quaterion.training.model_files`: the saved model folder (`save`, `load`, its checks).
"""

from __future__ import annotations

from refinery_quaterion._lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "fit": ("FitResult", "TrainingInterrupted", "fit"),
    "model_files": ("load", "save"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
