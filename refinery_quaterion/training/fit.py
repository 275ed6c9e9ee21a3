"""Training: `fit` and what it returns.

* `fit` trains a `DistilBertSimilarityModel` on labeled records (``Quaterion.fit`` with a
  bounded, quiet Lightning trainer) as a `FitConfig` says, and returns a `FitResult`. Ctrl-C
  stops it with `TrainingInterrupted` (a ``KeyboardInterrupt``), never with a half-trained
  model that looks finished.

Saving and loading the trained model are in `refinery_quaterion.training.model_files`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from refinery_quaterion import _compat  # noqa: F401  (quaterion shims: before quaterion is imported)
from refinery_quaterion.errors import Fix, SettingError

# isort: split
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping
from quaterion import Quaterion
from quaterion.loss import PairwiseLoss
from torch.utils.data import Dataset

from refinery_quaterion._io import atomic_write_text
from refinery_quaterion._util import to_jsonable
from refinery_quaterion.data.dataset import LabelMap
from refinery_quaterion.data.text import TextTemplate
from refinery_quaterion.model.components import LOSSES
from refinery_quaterion.model.config import FitConfig
from refinery_quaterion.model.runtime import cap_torch_threads
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training._guards import check_learnable
from refinery_quaterion.training.progress import FitTracker, ProgressReporter, quiet_training, resolve_progress
from refinery_quaterion.training.samples import (
    GroupSamples,
    PairSamples,
    TrainingRecords,
    loader_class,
    training_records,
)

__all__ = ["FitResult", "TrainingInterrupted", "fit"]


class TrainingInterrupted(KeyboardInterrupt):
    """`fit` was interrupted (Ctrl-C / SIGINT): the model is half-trained and `save` refuses it.

    A ``KeyboardInterrupt``, so code that does not catch it stops as on any Ctrl-C (the
    command line prints the message and exits with 130).

    Args:
        epochs: Epochs completed before the interrupt.
        max_epochs: Epochs the run was to have at most.
        stage: What was running: ``"setup"``, ``"encoding"`` (quaterion's cache pass over the
            records) or ``"training"``.

    Attributes:
        epochs: Epochs completed before the interrupt.
        max_epochs: Epochs the run was to have at most.
        stage: What was running.
    """

    def __init__(self, epochs: int, max_epochs: int, stage: str):
        self.epochs = epochs
        self.max_epochs = max_epochs
        self.stage = stage
        where = {"setup": " before training started", "encoding": " while encoding the records"}.get(stage, "")
        state = "half-trained" if epochs else "not trained"
        super().__init__(f"training interrupted after {epochs} of {max_epochs} epoch(s){where}; "
                         f"the model is {state}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.epochs, self.max_epochs, self.stage)


@dataclasses.dataclass
class FitResult:
    """What `fit` did.

    Attributes:
        epochs: Epochs run (fewer than asked when early stopping stopped the run).
        best_epoch: 1-based epoch with the best ``monitor`` value (``None`` without validation).
        monitor: Validation metric used to pick the best epoch, e.g. ``"validation_precision@10"``.
        best_score: Value of ``monitor`` at ``best_epoch``.
        best_val_loss: Lowest validation loss of any epoch.
        last_val_loss: Validation loss of the last epoch.
        best_val_precision: Highest validation precision@k of any epoch.
        last_val_precision: Validation precision@k of the last epoch.
        last_train_loss: Mean training loss of the last epoch.
        stopped_early: Whether early stopping ended the run.
        restored_best: Whether the weights of ``best_epoch`` were restored at the end.
        wall_time_s: Seconds for the whole call.
        setup_time_s: Seconds before the first epoch (mostly the encoder cache pass).
        train_time_s: Seconds of the epochs (training and validation).
        train_records_per_s: Training records per second over ``train_time_s``.
        history: One dict per epoch: ``epoch``, ``train_loss``, ``validation_loss``,
            ``validation_precision@k``, ``time_s``.
        dropped_records: Training records below ``FitConfig.min_weight``, left out.
    """

    epochs: int
    best_epoch: int | None
    monitor: str | None
    best_score: float | None
    best_val_loss: float | None
    last_val_loss: float | None
    best_val_precision: float | None
    last_val_precision: float | None
    last_train_loss: float | None
    stopped_early: bool
    restored_best: bool
    wall_time_s: float
    setup_time_s: float
    train_time_s: float
    train_records_per_s: float
    history: list[dict[str, Any]]
    dropped_records: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-serialisable dict (NaN becomes ``None``)."""
        return to_jsonable(dataclasses.asdict(self))

    def __str__(self) -> str:
        lines = [
            f"trained {self.epochs} epoch(s) in {self.train_time_s:.1f} s "
            f"({self.train_records_per_s:,.0f} records/s; setup incl. encoding {self.setup_time_s:.1f} s)"
        ]
        if self.best_epoch is not None and self.best_score is not None:
            lines.append(f"best {self.monitor} {self.best_score:.4f} at epoch {self.best_epoch}"
                         + (" (weights restored)" if self.restored_best else ""))
        if self.last_val_loss is not None:
            lines.append(f"last validation loss {self.last_val_loss:.4f}")
        if self.stopped_early:
            lines.append("stopped early")
        if self.dropped_records:
            lines.append(f"{self.dropped_records:,} record(s) below min_weight left out")
        return "\n".join(lines)


def _adopt_template(model: DistilBertSimilarityModel, datasets: Mapping[str, Dataset | None]) -> None:
    encoder = model.encoder
    for name, dataset in datasets.items():
        template = getattr(dataset, "template", None) if dataset is not None else None
        if not isinstance(template, TextTemplate):
            continue
        if not encoder.template_explicit:
            model.set_template(template)
        elif encoder.template.spec != template.spec:
            raise ValueError(f"the model renders records with the template {encoder.template.spec!r} but {name} "
                             f"uses {template.spec!r}; give both the same template (or the model none, to adopt "
                             "the dataset's)")


def fit(
    model: DistilBertSimilarityModel,
    train_dataset: Dataset,
    val_dataset: Dataset | None = None,
    config: FitConfig | None = None,
    *,
    output_dir: str | os.PathLike | None = None,
    trainer: pl.Trainer | None = None,
) -> FitResult:
    """Train ``model`` on labeled records with quaterion.

    Builds ``GroupSimilarityDataLoader`` s (or, for a pair loss such as
    ``multiple_negatives_ranking``, ``PairsSimilarityDataLoader`` s over positive pairs drawn
    from same-label records) and a Lightning trainer with bounded epochs, no checkpoints, no
    logger unless ``output_dir`` is given, no sanity validation pass, and the model's seed
    (``model.model_config.seed``: the one seed of a model, see `ModelConfig`), then
    runs ``Quaterion.fit``. With a frozen, cached encoder the records are encoded once (served
    from the model's ``embedding_cache`` when it has them) and each epoch only trains the head.

    Record weights (the dataset's ``weights``, e.g. confidences of weak labels) drop records
    below ``config.min_weight`` and, with ``config.sample_weighting="confidence"``, scale each
    record's term of the loss (see `refinery_quaterion.model._losses` for how and why).

    Progress goes to stderr as ``config.progress`` says; Lightning's own output is hidden
    unless ``config.verbose``.

    A model built with ``template=None`` adopts the dataset's text template; a model with a
    different explicit template is refused.

    Args:
        model: The model to train (changed in place; ``model.fit_config`` records ``config``,
            ``model.label_map`` the training data's label map).
        train_dataset: Dataset of ``SimilarityGroupSample`` s, e.g. ``RefineryExportDataset``.
        val_dataset: Optional validation dataset (use the training set's label map).
        config: The training settings (default: `FitConfig()`).
        output_dir: If given, a CSV log (``logs/``) and ``fit_result.json`` go there;
            otherwise nothing is written.
        trainer: Your own ``pl.Trainer``; then ``epochs``, ``accelerator``, ``devices``,
            ``progress`` of the config and ``output_dir`` are not used.

    Returns:
        A `FitResult`.

    Raises:
        TrainingInterrupted: On Ctrl-C (SIGINT), also while the records are encoded; the
            model is then marked as half-trained (``training_summary["interrupted"]``) and
            `save` refuses it. Nothing is written to ``output_dir``.
        ValueError: For invalid settings (see `FitConfig`), mismatched templates, labels
            outside ``num_groups``, early stopping without validation data,
            ``sample_weighting="confidence"`` with a loss that takes no weights, or a
            ``min_weight`` that drops every record, or data that cannot teach the loss anything
            (`refinery_quaterion.training._guards.check_learnable`).
        TrainingDiverged: If the loss becomes NaN or infinite (naming the epoch and step).
        TypeError: For a ``config`` that is not a `FitConfig`, or a dataset that does not yield
            ``SimilarityGroupSample`` s.
    """
    started = time.perf_counter()
    config = _checked_config(model, config, has_val=val_dataset is not None, own_trainer=trainer is not None)
    train, val, weighting = _training_data(model, config, train_dataset, val_dataset)
    pairwise = isinstance(model.loss, PairwiseLoss)
    check_learnable(train.groups, train.weights, weighted=weighting == "confidence",
                    needs_positives=pairwise or not LOSSES[model.model_config.loss].needs_num_groups)
    tracker, reporter = _callbacks(model, config, n_train=len(train), has_val=val_dataset is not None,
                                   trainer=trainer)

    cap_torch_threads()
    early = _train(model, config, train, val, tracker, reporter, trainer=trainer, output_dir=output_dir,
                   pairwise=pairwise, weighted=weighting == "confidence")

    restored = _restore_best(model, tracker)
    result = _fit_result(tracker, model, n_train=len(train), started=started,
                         stopped_early=bool(early is not None and early.stopped_epoch > 0), restored=restored)
    result.dropped_records = train.dropped
    model.fit_config = config
    model.training_summary = {
        "epochs": result.epochs, "monitor": result.monitor, "best_epoch": result.best_epoch,
        "restored_best": restored, "train_records": len(train),
        "val_records": len(val) if val is not None else 0, "pairs": pairwise,
        "best_score": result.best_score, "last_train_loss": result.last_train_loss,
        "sample_weighting": weighting, "dropped_below_min_weight": train.dropped,
        "max_epochs": reporter.epochs,
        "mean_train_weight": round(float(train.weights.mean()), 6),
    }
    if output_dir is not None:
        atomic_write_text(Path(output_dir) / "fit_result.json", json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _checked_config(model: DistilBertSimilarityModel, config: FitConfig | None, *, has_val: bool,
                    own_trainer: bool) -> FitConfig:
    """``config`` (default `FitConfig()`), refused where it cannot train ``model``."""
    if not isinstance(model, DistilBertSimilarityModel):
        raise TypeError(f"model must be a DistilBertSimilarityModel, got {type(model).__name__}")
    if config is not None and not isinstance(config, FitConfig):
        raise TypeError(f"config must be a FitConfig, got {type(config).__name__}")
    config = config or FitConfig()
    if config.early_stopping is not None and not has_val:
        raise ValueError("early_stopping needs a val_dataset to watch")
    if config.early_stopping is not None and own_trainer:
        raise ValueError(
            "early_stopping cannot be added to your own trainer; add an EarlyStopping callback to it"
        )
    if config.sample_weighting == "confidence" and not LOSSES[model.model_config.loss].takes_weights:
        raise SettingError(f"{{sample_weighting}} needs a loss that takes per-record weights "
                           f"({', '.join(LOSSES.weighted())}); loss {model.model_config.loss!r} does not",
                           settings={"sample_weighting": "confidence"},
                           fixes=(Fix("sample_weighting", "none", "(a minimum weight still drops low-confidence "
                                      "records)"),))
    return config


def _training_data(model: DistilBertSimilarityModel, config: FitConfig, train_dataset: Dataset,
                   val_dataset: Dataset | None) -> tuple[TrainingRecords, TrainingRecords | None, str]:
    """The training and validation records and the sample weighting; fits ``model`` to their labels and template.

    Sets ``model.label_map`` (and ``num_groups`` when the loss needs it) from the training data.
    """
    takes_weights = LOSSES[model.model_config.loss].takes_weights
    train = training_records(train_dataset, "train_dataset", min_weight=config.min_weight)
    weighting = _resolve_weighting(config.sample_weighting, train.weights, takes_weights=takes_weights)
    val = training_records(val_dataset, "val_dataset") if val_dataset is not None else None
    label_map = getattr(train_dataset, "label_map", None)
    model.label_map = label_map if isinstance(label_map, LabelMap) else None
    if model.needs_num_groups:
        model.set_num_groups(len(label_map) if label_map is not None else int(train.groups.max()) + 1)
    _check_groups(model, {"train_dataset": train, "val_dataset": val})
    _adopt_template(model, {"train_dataset": train_dataset, "val_dataset": val_dataset})
    return train, val, weighting


def _check_groups(model: DistilBertSimilarityModel, records: Mapping[str, TrainingRecords | None]) -> None:
    """Refuse group ids outside ``0..num_groups - 1`` of ``model``."""
    if model.num_groups is None:
        return
    for name, part in records.items():
        groups = part.groups if part is not None else None
        if groups is not None and (groups.min() < 0 or groups.max() >= model.num_groups):
            raise ValueError(
                f"{name} has group ids {int(groups.min())}..{int(groups.max())}, outside "
                f"0..{model.num_groups - 1} for num_groups={model.num_groups}; build the model "
                "with num_groups=len(label_map) of the training labels"
            )


def _callbacks(model: DistilBertSimilarityModel, config: FitConfig, *, n_train: int, has_val: bool,
               trainer: pl.Trainer | None) -> tuple[FitTracker, ProgressReporter]:
    """The history tracker and the progress reporter of one `fit` call.

    ``reporter.epochs`` is the number of epochs the run is to have at most: for ``epochs="auto"``
    an estimate here, made exact by `_quaterion_fit` once the loader exists; an interrupt reports it.
    """
    monitor_name, mode = _resolve_monitor(model, config.monitor, has_val=has_val)
    keep_best = (config.early_stopping is not None) if config.restore_best is None else config.restore_best
    # epochs="auto" depends on the batches an epoch (FitConfig.epochs_for): estimated here, exact once the loader
    # exists; the loaders are built inside the try of _train, so a Ctrl-C meanwhile is a TrainingInterrupted at "setup"
    estimate = config.epochs_for(math.ceil(n_train / config.batch_size))
    max_epochs = estimate if trainer is None else int(trainer.max_epochs or -1)
    tracker = FitTracker(monitor_name, mode, keep_best=keep_best and monitor_name is not None,
                         interrupt=lambda epochs, stage: TrainingInterrupted(epochs, reporter.epochs, stage))
    reporter = ProgressReporter(resolve_progress(config.progress) if trainer is None else "off",
                                epochs=max_epochs, history=tracker.history, metric=model.val_metric_name)
    return tracker, reporter


def _train(model: DistilBertSimilarityModel, config: FitConfig, train: TrainingRecords, val: TrainingRecords | None,
           tracker: FitTracker, reporter: ProgressReporter, *, trainer: pl.Trainer | None,
           output_dir: str | os.PathLike | None, pairwise: bool, weighted: bool) -> EarlyStopping | None:
    """Run the training; returns the trainer's early-stopping callback, if any.

    A Ctrl-C from the start (also while the loaders are built) raises `TrainingInterrupted`
    and marks ``model`` as half-trained.
    """
    try:
        trainer, early = _quaterion_fit(model, config, train, val, tracker, reporter, trainer=trainer,
                                        output_dir=output_dir, pairwise=pairwise, weighted=weighted)
        if tracker.interrupted or trainer.interrupted:  # Lightning swallowed the KeyboardInterrupt
            raise tracker.interrupt()
    except KeyboardInterrupt as err:
        interrupt = err if isinstance(err, TrainingInterrupted) else tracker.interrupt()
        model.fit_config = config
        model.training_summary = {"interrupted": True, "epochs": interrupt.epochs, "stage": interrupt.stage}
        if interrupt is err:
            raise
        raise interrupt from err
    return early


def _quaterion_fit(model: DistilBertSimilarityModel, config: FitConfig, train: TrainingRecords,
                   val: TrainingRecords | None, tracker: FitTracker, reporter: ProgressReporter, *,
                   trainer: pl.Trainer | None, output_dir: str | os.PathLike | None, pairwise: bool,
                   weighted: bool) -> tuple[pl.Trainer, EarlyStopping | None]:
    """Seed, build the loaders and the trainer (unless given one) and run ``Quaterion.fit`` quietly."""
    with quiet_training(config.verbose):
        seed = model.model_config.seed
        pl.seed_everything(seed=seed, workers=True)
        # called inside the try of _train: a Ctrl-C while the loaders are built is a TrainingInterrupted at "setup"
        train_loader, val_loader = _loaders(train, val, config, seed, pairwise=pairwise, weighted=weighted)
        scratch = None
        if trainer is None:
            reporter.epochs = config.epochs_for(len(train_loader))
            if output_dir is None:
                scratch = Path(tempfile.mkdtemp(prefix="refinery-quaterion-fit-"))
            trainer = _trainer(config, [tracker, reporter], tracker.monitor, tracker.mode, output_dir=output_dir,
                               scratch=scratch, n_batches=len(train_loader), epochs=reporter.epochs)
        else:
            trainer.callbacks.append(tracker)
        early = next((cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)), None)
        try:
            Quaterion.fit(trainable_model=model, trainer=trainer, train_dataloader=train_loader,
                          val_dataloader=val_loader)
        finally:
            reporter.close()
            model.unwrap_cache()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
    return trainer, early


def _restore_best(model: DistilBertSimilarityModel, tracker: FitTracker) -> bool:
    """Copy the best epoch's weights back into ``model`` when the tracker kept them and it was not the last."""
    if tracker.best_state is None or tracker.best_epoch == len(tracker.history):
        return False
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tracker.best_state.items():
            params[name].copy_(value.to(params[name].device))
    return True

def _loaders(train: TrainingRecords, val: TrainingRecords | None, config: FitConfig, seed: int, *, pairwise: bool,
             weighted: bool) -> tuple[Any, Any]:
    """The training and validation data loaders (group or pair samples, with weights when ``weighted``).

    ``seed`` (the model's) draws the pairs and shuffles the batches.
    """
    if pairwise:
        train_data: Dataset = PairSamples(train.objects, train.groups, seed,
                                          train.weights if weighted else None)
        val_data = (PairSamples(val.objects, val.groups, seed + 1, val.weights if weighted else None)
                    if val is not None else None)
    else:
        train_data = GroupSamples(train.objects, train.groups, train.weights if weighted else None)
        val_data = GroupSamples(val.objects, val.groups, val.weights if weighted else None) if val is not None else None
    loader = loader_class(pairs=pairwise, weighted=weighted)
    generator = torch.Generator()
    generator.manual_seed(seed)
    train_loader = loader(train_data, batch_size=config.batch_size, shuffle=True, num_workers=config.num_workers,
                          generator=generator)
    val_loader = (loader(val_data, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers)
                  if val_data is not None else None)
    return train_loader, val_loader


def _resolve_weighting(requested: str, weights: np.ndarray, *, takes_weights: bool) -> str:
    """``"auto"`` as ``"confidence"`` when the loss takes weights and some weight is not 1.0, else ``"none"``."""
    if requested != "auto":
        return requested
    return "confidence" if takes_weights and bool(np.any(weights != 1.0)) else "none"


def _trainer(config: FitConfig, callbacks: list[Callback], monitor: str | None, mode: str, *,
             output_dir: str | os.PathLike | None, scratch: Path | None, n_batches: int,
             epochs: int) -> pl.Trainer:
    """The bounded Lightning trainer ``fit`` uses when not given one."""
    if config.early_stopping is not None:
        callbacks = [*callbacks, EarlyStopping(monitor=monitor, mode=mode, patience=config.early_stopping)]
    if output_dir is not None:
        root = Path(output_dir)
        root.mkdir(parents=True, exist_ok=True)
        logger: Any = pl.loggers.CSVLogger(save_dir=str(root), name="logs", version="")
    else:
        root, logger = scratch or Path(tempfile.gettempdir()), False
    return pl.Trainer(
        max_epochs=epochs, accelerator=config.accelerator, devices=config.devices, logger=logger,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
        num_sanity_val_steps=0, deterministic="warn", log_every_n_steps=min(50, max(1, n_batches)),
        default_root_dir=str(root), callbacks=callbacks,
    )


def _resolve_monitor(
    model: DistilBertSimilarityModel, monitor: str, *, has_val: bool
) -> tuple[str | None, str]:
    if not has_val:
        return None, "min"
    if monitor == "auto":
        name = model.val_metric_name or "validation_loss"
    elif monitor == "loss":
        name = "validation_loss"
    elif monitor == "precision":
        if model.val_metric_name is None:
            raise ValueError("monitor='precision' needs a model built with val_precision_k set")
        name = model.val_metric_name
    else:  # a logged metric name (FitConfig checked that it is a non-empty string)
        name = monitor
    return name, ("min" if "loss" in name else "max")


def _fit_result(tracker: FitTracker, model: DistilBertSimilarityModel, *, n_train: int, started: float,
                stopped_early: bool, restored: bool) -> FitResult:
    history = tracker.history
    end = time.perf_counter()
    train_start = tracker.train_start if tracker.train_start is not None else end
    train_end = tracker.train_end if tracker.train_end is not None else end
    train_time = max(train_end - train_start, 1e-9)

    def column(key: str | None) -> list[float]:
        if key is None:
            return []
        return [float(e[key]) for e in history if e.get(key) is not None and not math.isnan(float(e[key]))]

    losses = column("validation_loss")
    precisions = column(model.val_metric_name)
    train_losses = column("train_loss")
    return FitResult(
        epochs=len(history),
        best_epoch=tracker.best_epoch,
        monitor=tracker.monitor,
        best_score=tracker.best_score,
        best_val_loss=min(losses) if losses else None,
        last_val_loss=history[-1].get("validation_loss") if history else None,
        best_val_precision=max(precisions) if precisions else None,
        last_val_precision=precisions[-1] if precisions else None,
        last_train_loss=train_losses[-1] if train_losses else None,
        stopped_early=stopped_early,
        restored_best=restored,
        wall_time_s=round(end - started, 4),
        setup_time_s=round(train_start - started, 4),
        train_time_s=round(train_time, 4),
        train_records_per_s=round(n_train * len(history) / train_time, 2),
        history=history,
    )
