"""Stage 2, model: the encoder, its head and loss, and the configs that describe them.

* `refinery_quaterion.model.components`: the head, loss and optimizer registries;
* `refinery_quaterion.model.config`: `ModelConfig` (what the model is) and `FitConfig` (how it is trained);
* `refinery_quaterion.model.pretrained`: resolving and loading the pretrained transformer;
* `refinery_quaterion.model.cache`: the disk cache of raw encoder vectors;
* `refinery_quaterion.model.backends`: where the frozen encoder runs (torch, ONNX Runtime);
* `refinery_quaterion.model.onnx_graph`: the encoder as one ONNX graph (for the ONNX backends and exports);
* `refinery_quaterion.model.encoder`: `TransformerEncoder`;
* `refinery_quaterion.model.trainable`: `DistilBertSimilarityModel`, the Quaterion `TrainableModel`;
* `refinery_quaterion.model.inference`: `EmbeddingModel`, a trained model for encoding.
"""

from __future__ import annotations

from refinery_quaterion._lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "components": ("HEADS", "LOSSES", "OPTIMIZERS"),
    "config": ("FitConfig", "ModelConfig"),
    "pretrained": ("MINILM_ALIAS", "ModelNotFoundError", "resolve_pretrained"),
    "cache": ("EmbeddingCache", "default_cache_dir"),
    "backends": ("BACKENDS",),
    "encoder": ("TransformerEncoder",),
    "trainable": ("DistilBertSimilarityModel",),
    "inference": ("EmbeddingModel", "ModelFileError"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
