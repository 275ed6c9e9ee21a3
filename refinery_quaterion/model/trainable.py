"""The trainable similarity model: a Hugging Face encoder, a head and a similarity loss.

`DistilBertSimilarityModel` is a ``quaterion.TrainableModel`` built from a
`refinery_quaterion.model.config.ModelConfig`; its head, loss and optimizer come from the
registries of `refinery_quaterion.model.components` by name. Encoding (``encode``,
``encode_raw``, ``apply_head``) is shared with the inference-side
`refinery_quaterion.model.inference.EmbeddingModel`.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any

from refinery_quaterion import _compat  # noqa: F401  (quaterion shims: before quaterion is imported)
from refinery_quaterion.errors import Fix, SettingError

# isort: split
import numpy as np
import torch
from quaterion import TrainableModel
from quaterion.loss import SimilarityLoss
from quaterion.train.cache import CacheConfig, CacheEncoder, CacheType
from quaterion.utils.enums import TrainStage
from quaterion_models import SimilarityModel
from quaterion_models.encoders import Encoder
from quaterion_models.heads import EncoderHead
from quaterion_models.model import DEFAULT_ENCODER_KEY
from torch import Tensor

from refinery_quaterion.data.dataset import LabelMap
from refinery_quaterion.data.text import TextSpec
from refinery_quaterion.model.cache import EmbeddingCache
from refinery_quaterion.model.components import HEADS, LOSSES, OPTIMIZERS
from refinery_quaterion.model.config import FitConfig, ModelConfig
from refinery_quaterion.model.encoder import TransformerEncoder
from refinery_quaterion.model.inference import EmbeddingModel, EncodeMixin

__all__ = ["DistilBertSimilarityModel", "TrainingDiverged"]


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite during training: the weights are garbage and nothing is saved.

    Args:
        stage: ``"train"`` or ``"validation"``.
        epoch: 1-based epoch.
        step: 1-based batch of that epoch.
        loss: The loss value.

    Attributes:
        stage, epoch, step, loss: As given.
    """

    def __init__(self, stage: str, epoch: int, step: int, loss: float):
        self.stage, self.epoch, self.step, self.loss = stage, epoch, step, loss
        super().__init__(f"training diverged: the {stage} loss is {loss} at epoch {epoch}, step {step}; nothing "
                         "was saved (lower the learning rate, or check the records' weights)")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.stage, self.epoch, self.step, self.loss)

_BLOCK = 1024  # validation queries per similarity block


def _validation_precision(embeddings: Tensor, groups: Tensor, k: int) -> float:
    """Exact precision@k of the validation set (NaN when it is not defined).

    Every vector is a query against all the others, ranked as the evaluate stage ranks them
    (float32 cosine, ties by position, the query never its own neighbour); queries whose label
    occurs once are left out. ``tests/test_model.py`` checks it against
    `refinery_quaterion.evaluate.precision_at_k`.
    """
    vectors = embeddings.double().numpy()
    labels = np.unique(groups.numpy(), return_inverse=True)[1]
    n = vectors.shape[0]
    counts = np.bincount(labels)
    if n < 2 or not np.isfinite(vectors).all() or counts.max() < 2:
        return math.nan
    k = min(k, n - 1)
    scale = np.abs(vectors).max(axis=1)  # as the evaluate stage normalises: no overflow of the squares
    scale[scale == 0] = 1.0
    vectors = vectors / scale[:, None]
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    norms[norms == 0] = 1.0
    unit = np.ascontiguousarray(vectors / norms[:, None], dtype=np.float32)
    hits = np.zeros(n)
    for start in range(0, n, _BLOCK):
        rows = np.arange(start, min(n, start + _BLOCK))
        sims = unit[rows] @ unit.T
        sims[np.arange(len(rows)), rows] = -np.inf
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        hits[rows] = (labels[top] == labels[rows, None]).sum(axis=1)
    valid = counts[labels] > 1
    return float(np.mean(hits[valid] / k))


class DistilBertSimilarityModel(EncodeMixin, TrainableModel):
    """A quaterion trainable model: a Hugging Face encoder, a head and a similarity loss.

    Works with any Hugging Face encoder; with no config it uses the bundled all-MiniLM-L6-v2
    (``ModelConfig().pretrained == "minilm"``, offline), as the CLI does. By default the encoder
    is frozen and its output cached, so only the small head is trained (fast, also on CPU).

    Everything the model is comes from its `ModelConfig`::

        DistilBertSimilarityModel(ModelConfig(template="{Title}. {Description}", loss="triplet"))

    Args:
        config: The `ModelConfig` (default: ``ModelConfig()``).
        embedding_cache: Disk cache (or folder) of the frozen encoder's vectors, reused across
            runs and by evaluation (not quaterion's in-memory ``memory_cache``).
        allow_download: Try the Hugging Face hub when ``pretrained`` is not available locally.

    Attributes:
        model_config: The `ModelConfig` (updated when ``fit`` adopts a template or sets
            ``num_groups``).
        fit_config: The `FitConfig` of the last ``fit`` (``None`` before).
        embedding_cache: The disk `EmbeddingCache`, or ``None``.
        label_map: The labels of the last ``fit`` 's training data (``None`` before, or when the
            dataset has no label map); `refinery_quaterion.training.model_files.save` checks the label map it
            is given against it.
        training_summary: What the last ``fit`` did (saved in ``training_config.json``);
            ``{"interrupted": True, ...}`` after an interrupted ``fit``, which ``save`` refuses.

    Raises:
        ValueError: For an ``embedding_cache`` with a trainable encoder.
        TypeError: For a ``config`` that is not a `ModelConfig`.
        ModelNotFoundError: If ``pretrained`` cannot be loaded (the message names ``"minilm"``).
    """

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        embedding_cache: EmbeddingCache | str | os.PathLike | None = None,
        allow_download: bool = False,
    ):
        if config is not None and not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        model_config = config or ModelConfig()
        if embedding_cache is not None and model_config.trainable_encoder:
            raise SettingError("the embedding cache stores a frozen encoder's vectors; a trainable encoder changes "
                               "them", fixes=(Fix("embedding_cache", None), Fix("trainable_encoder", False)))
        # Plain attributes only before super().__init__(), which calls the configure_* hooks.
        self.model_config = model_config
        self.fit_config: FitConfig | None = None
        self.embedding_cache = EmbeddingCache.coerce(embedding_cache)
        self.allow_download = bool(allow_download)
        self._sums: dict[str, list[float]] = {}
        self._val_embeddings: list[Tensor] = []
        self._val_groups: list[Tensor] = []
        self._last_batch_size = 0
        self._last_val_precision: float | None = None
        self.label_map: LabelMap | None = None
        self.training_summary: dict[str, Any] | None = None
        super().__init__()

    # -- settings -------------------------------------------------------------------------

    @property
    def pretrained(self) -> str:
        """The Hugging Face id or folder the encoder was loaded from (``model_config.pretrained``)."""
        return self.model_config.pretrained

    @property
    def trainable_encoder(self) -> bool:
        """Whether the transformer is fine-tuned too (``model_config.trainable_encoder``)."""
        return self.model_config.trainable_encoder

    @property
    def num_groups(self) -> int | None:
        """Number of labels of a class-aware loss (``model_config.num_groups``)."""
        return self.model_config.num_groups

    @property
    def val_precision_k(self) -> int | None:
        """k of the validation precision@k (``model_config.val_precision_k``)."""
        return self.model_config.val_precision_k

    @property
    def needs_num_groups(self) -> bool:
        """Whether the loss is class-aware and still waits for `set_num_groups`."""
        return self.model_config.needs_num_groups

    def set_num_groups(self, num_groups: int | LabelMap) -> None:
        """Set the number of labels and (re)build a class-aware loss for it.

        `refinery_quaterion.training.fit.fit` calls this with the training label map when the model
        was built without ``num_groups``.

        Raises:
            ValueError: If ``num_groups`` is below 2.
        """
        count = len(num_groups) if isinstance(num_groups, LabelMap) else int(num_groups)
        if count < 2:
            raise ValueError(f"num_groups must be >= 2 (the number of labels), got {count}")
        self.model_config = self.model_config.replace(num_groups=count)
        self._loss = self.configure_loss()

    def set_template(self, template: TextSpec) -> None:
        """Render records with ``template`` from now on (encoder and ``model_config.template``)."""
        self.encoder.set_template(template)
        self.model_config = self.model_config.replace(template=self.encoder.template.spec)

    # -- quaterion hooks ------------------------------------------------------------------

    def configure_encoders(self) -> Encoder:
        """Load the transformer as a `TransformerEncoder`."""
        c = self.model_config
        return TransformerEncoder.from_pretrained(
            c.pretrained, allow_download=self.allow_download, template=c.template, pooling=c.pooling,
            max_length=c.max_length, trainable=c.trainable_encoder, normalize=c.normalize,
            batch_size=c.encoder_batch_size, embedding_cache=self.embedding_cache, backend=c.encoder_backend,
            calibration_size=c.calibration_size,
        )

    def configure_caches(self) -> CacheConfig | None:
        """quaterion's in-memory cache of the frozen encoder's output (see ``memory_cache``)."""
        if not self.model_config.use_memory_cache:
            return None
        return CacheConfig(cache_type=CacheType.AUTO, batch_size=self.model_config.cache_batch_size)

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        """Build the head named by ``model_config.head``."""
        with self._seeded():
            return HEADS[self.model_config.head].build(input_embedding_size, options=self.model_config.head_options)

    def configure_loss(self) -> SimilarityLoss | None:
        """Build the loss named by ``model_config.loss`` (``None`` while it lacks ``num_groups``)."""
        if self.needs_num_groups:
            return None
        with self._seeded(offset=1):
            size = self.model.head.output_size
            c = self.model_config
            return LOSSES[c.loss].build(size, c.num_groups, options=c.loss_options)

    @contextlib.contextmanager
    def _seeded(self, offset: int = 0) -> Iterator[None]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.model_config.seed + offset)
            yield

    def configure_metrics(self) -> list:
        """No quaterion batch metrics (its GroupSampler evaluator is wrong in 0.1.35).

        Validation precision@k over the whole validation set is computed by this class instead.
        """
        return []

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The optimizer named by ``model_config.optimizer`` over the head and loss (``lr``) and a
        trainable encoder (``encoder_lr``)."""
        c = self.model_config
        head_params = [p for p in self.model.head.parameters() if p.requires_grad]
        head_params += [p for p in self.loss.parameters() if p.requires_grad]
        encoder = self.encoder
        encoder_params = [p for p in encoder.parameters() if p.requires_grad] if encoder.trainable else []
        groups = [g for g in ({"params": head_params, "lr": c.lr},
                              {"params": encoder_params, "lr": c.encoder_lr}) if g["params"]]
        return OPTIMIZERS[c.optimizer].build(groups, c.lr, c.weight_decay)

    # -- metrics --------------------------------------------------------------------------

    @property
    def val_metric_name(self) -> str | None:
        """Name of the logged validation precision@k metric (``None`` when turned off)."""
        if not self.val_precision_k:
            return None
        return f"{TrainStage.VALIDATION.value}_precision@{self.val_precision_k}"

    def process_results(self, embeddings: Tensor, targets: dict[str, Any], batch_idx: int,
                        stage: TrainStage, **kwargs: Any) -> None:
        """Keep validation embeddings for precision@k over the whole validation set."""
        self._last_batch_size = int(embeddings.shape[0])
        if stage != TrainStage.VALIDATION or not self.val_precision_k:
            return
        if "groups" in targets:
            groups, vectors = targets["groups"], embeddings
        elif "pairs" in targets and "subgroups" in targets:  # pair batches: anchors are the first half
            n = targets["pairs"].shape[0]
            groups, vectors = targets["subgroups"][:n], embeddings[:n]
        else:
            return
        self._val_embeddings.append(vectors.detach().float().cpu())
        self._val_groups.append(groups.detach().long().cpu())

    def _common_step(self, batch: Any, batch_idx: int, stage: TrainStage, **kwargs: Any) -> Tensor:
        loss = super()._common_step(batch=batch, batch_idx=batch_idx, stage=stage, **kwargs)
        value = float(loss.detach())
        if not math.isfinite(value):
            self.training_summary = {"diverged": True, "epochs": self.current_epoch}  # save refuses it
            raise TrainingDiverged(str(stage.value), self.current_epoch + 1, batch_idx + 1, value)
        sums = self._sums.setdefault(str(stage.value), [0.0, 0])
        sums[0] += value * self._last_batch_size
        sums[1] += self._last_batch_size
        return loss

    def on_train_epoch_start(self) -> None:
        """Reset the epoch's training loss."""
        self._sums.pop(TrainStage.TRAIN.value, None)

    def on_validation_epoch_start(self) -> None:
        """Reset the epoch's validation loss and embeddings."""
        self._sums.pop(TrainStage.VALIDATION.value, None)
        self._val_embeddings, self._val_groups = [], []
        self._last_val_precision = None

    def on_validation_epoch_end(self) -> None:
        """Log precision@k of the whole validation set."""
        if self._val_embeddings and self.val_metric_name and not self.trainer.sanity_checking:
            value = _validation_precision(torch.cat(self._val_embeddings), torch.cat(self._val_groups),
                                          self.val_precision_k or 10)
            self._last_val_precision = value
            self.log(self.val_metric_name, value, prog_bar=True)
        self._val_embeddings, self._val_groups = [], []

    def epoch_summary(self) -> dict[str, float | None]:
        """Mean training / validation loss and validation precision@k of the last epoch."""
        def mean(stage: TrainStage) -> float | None:
            total, count = self._sums.get(stage.value, (0.0, 0))
            return total / count if count else None

        summary: dict[str, float | None] = {"train_loss": mean(TrainStage.TRAIN),
                                            "validation_loss": mean(TrainStage.VALIDATION)}
        if self.val_metric_name:
            summary[self.val_metric_name] = self._last_val_precision
        return summary

    # -- inference ------------------------------------------------------------------------

    @property
    def encoder(self) -> TransformerEncoder:
        """The `TransformerEncoder` (unwrapped from quaterion's cache during training)."""
        encoder = self.model.encoders[DEFAULT_ENCODER_KEY]
        return encoder.wrapped_encoder if isinstance(encoder, CacheEncoder) else encoder

    @property
    def head(self) -> EncoderHead:
        """The head being trained."""
        return self.model.head

    def embedding_model(self, label_map: LabelMap | None = None) -> EmbeddingModel:
        """This model as an `EmbeddingModel` (shares the weights; no copy).

        Args:
            label_map: Its labels; by default those of the last ``fit`` (`label_map`).
        """
        return EmbeddingModel(SimilarityModel(encoders=self.encoder, head=self.model.head),
                              label_map=label_map if label_map is not None else self.label_map,
                              config=self.config_sections())
