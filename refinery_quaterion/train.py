"""Training, saving and loading.

* `fit` trains a `DistilBertSimilarityModel` on labeled
  records (``Quaterion.fit`` with a bounded, quiet Lightning trainer) and returns a
  `FitResult`.
* `save` writes the trained model (quaterion servable + label map + training config)
  atomically; `load` reads it back as an `EmbeddingModel`,
  in any process, without network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping
from quaterion import Quaterion
from quaterion.dataset import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    SimilarityGroupSample,
    SimilarityPairSample,
)
from quaterion.loss import PairwiseLoss
from quaterion_models import SimilarityModel
from torch.utils.data import Dataset

from refinery_quaterion._io import atomic_dir, atomic_write_text
from refinery_quaterion.cache import EmbeddingCache
from refinery_quaterion.dataset import LabelMap
from refinery_quaterion.model import DistilBertSimilarityModel, EmbeddingModel, _configure_torch_threads
from refinery_quaterion.text import TextTemplate

__all__ = ["FitResult", "fit", "load", "save"]

_LABEL_MAP_FILE = "label_map.json"
_CONFIG_FILE = "training_config.json"


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

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

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
        return "\n".join(lines)


class _FitTracker(Callback):
    """Records per-epoch history and timings; keeps the best weights when asked."""

    def __init__(self, monitor: str | None, mode: str, keep_best: bool):
        self.monitor = monitor
        self.mode = mode
        self.keep_best = keep_best
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_score: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.start = time.perf_counter()
        self.train_start: float | None = None
        self.train_end: float | None = None
        self._epoch_start = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_end = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {k: _as_float(v) for k, v in trainer.callback_metrics.items()}
        if isinstance(pl_module, DistilBertSimilarityModel):
            entry: dict[str, Any] = {"epoch": trainer.current_epoch + 1, **pl_module.epoch_summary()}
        else:
            entry = {"epoch": trainer.current_epoch + 1, **metrics}
        entry["time_s"] = round(time.perf_counter() - self._epoch_start, 4)
        self.history.append(entry)
        if self.monitor is None:
            return
        score = entry.get(self.monitor, metrics.get(self.monitor))
        if score is None or (isinstance(score, float) and math.isnan(score)):
            return
        best = self.best_score
        better = best is None or (score < best if self.mode == "min" else score > best)
        if better:
            self.best_score, self.best_epoch = float(score), entry["epoch"]
            if self.keep_best:
                self.best_state = {name: p.detach().to("cpu", copy=True)
                                   for name, p in pl_module.named_parameters() if p.requires_grad}


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _PairsDataset(Dataset):
    """Positive pairs (two records of the same label) built from a group dataset, for pair losses."""

    def __init__(self, objects: Sequence[Any], groups: np.ndarray, seed: int):
        rng = np.random.default_rng(seed)
        members: dict[int, np.ndarray] = {}
        for group in np.unique(groups):
            members[int(group)] = np.flatnonzero(groups == group)
        self.pairs: list[SimilarityPairSample] = []
        for i, group in enumerate(groups):
            same = members[int(group)]
            if len(same) < 2:
                continue
            j = i
            while j == i:
                j = int(rng.choice(same))
            self.pairs.append(SimilarityPairSample(obj_a=objects[i], obj_b=objects[j], score=1.0,
                                                   subgroup=int(group)))
        if not self.pairs:
            raise ValueError("a pair loss needs at least two records with the same label; every label here "
                             "has a single record")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> SimilarityPairSample:
        return self.pairs[index]


def _objects_and_groups(dataset: Dataset, name: str) -> tuple[list[Any], np.ndarray]:
    """The objects and group ids of a dataset of ``SimilarityGroupSample``."""
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a sized dataset (e.g. RefineryExportDataset)") from None
    if size == 0:
        raise ValueError(f"{name} is empty")
    records = getattr(dataset, "records", None)
    groups = getattr(dataset, "groups", None)
    if isinstance(records, list) and groups is not None and len(records) == size:
        return records, np.asarray(groups, dtype=np.int64)
    objects, ids = [], []
    for i in range(size):
        sample = dataset[i]
        if not isinstance(sample, SimilarityGroupSample):
            raise TypeError(f"{name} item {i} is a {type(sample).__name__}; expected SimilarityGroupSample "
                            "(use RefineryExportDataset)")
        objects.append(sample.obj)
        ids.append(int(sample.group))
    return objects, np.asarray(ids, dtype=np.int64)


def _adopt_template(model: DistilBertSimilarityModel, datasets: Mapping[str, Dataset | None]) -> None:
    encoder = model.encoder
    for name, dataset in datasets.items():
        template = getattr(dataset, "template", None) if dataset is not None else None
        if not isinstance(template, TextTemplate):
            continue
        if not encoder.template_explicit:
            encoder.set_template(template)
        elif encoder.template.spec != template.spec:
            raise ValueError(f"the model renders records with text={encoder.template.spec!r} but {name} uses "
                             f"text={template.spec!r}; pass the same template to both (or text=None to the "
                             "model to adopt the dataset's)")


@contextlib.contextmanager
def _quiet_training(progress: bool) -> Iterator[None]:
    """Silence Lightning's info lines (unless ``progress``), quaterion's debug log and known warnings."""
    from loguru import logger as loguru_logger
    from pytorch_lightning.utilities.warnings import PossibleUserWarning

    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    if not progress:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    loguru_logger.disable("quaterion")
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=PossibleUserWarning)
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=r".*deterministic.*")
            warnings.filterwarnings("ignore", message=r"One of given dataloaders is None")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        loguru_logger.enable("quaterion")
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def fit(
    model: DistilBertSimilarityModel,
    train_dataset: Dataset,
    val_dataset: Dataset | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    seed: int = 42,
    accelerator: str = "auto",
    devices: int | str = 1,
    progress: bool = True,
    output_dir: str | os.PathLike | None = None,
    early_stopping: int | None = None,
    monitor: str = "auto",
    restore_best: bool | None = None,
    num_workers: int = 0,
    trainer: pl.Trainer | None = None,
) -> FitResult:
    """Train ``model`` on labeled records with quaterion.

    Builds ``GroupSimilarityDataLoader`` s (or, for a pair loss such as
    ``multiple_negatives_ranking``, ``PairsSimilarityDataLoader`` s over positive pairs drawn
    from same-label records) and a Lightning trainer with bounded epochs, no checkpoints, no
    logger unless ``output_dir`` is given, no sanity validation pass, and a fixed seed, then
    runs ``Quaterion.fit``. With a frozen, cached encoder the records are encoded once (served
    from the model's ``embedding_cache`` when it has them) and each epoch only trains the head.

    A model built with ``text=None`` adopts the dataset's text template; a model with a
    different explicit template is refused.

    Args:
        model: The model to train (changed in place).
        train_dataset: Dataset of ``SimilarityGroupSample`` s, e.g. ``RefineryExportDataset``.
        val_dataset: Optional validation dataset (use the training set's label map).
        epochs: Maximum number of epochs.
        batch_size: Records per training batch (more gives triplet mining more to choose from).
        seed: Seed for weights, shuffling and pair drawing (``pl.seed_everything``).
        accelerator: Lightning accelerator: ``"auto"`` uses a GPU when there is one.
        devices: Lightning devices.
        progress: Show Lightning's progress bars and info lines.
        output_dir: If given, a CSV log (``logs/``) and ``fit_result.json`` go there;
            otherwise nothing is written.
        early_stopping: Stop after this many epochs without improvement of ``monitor``
            (needs ``val_dataset``); ``None`` runs all epochs.
        monitor: Validation metric for early stopping and the best epoch: ``"auto"``
            (precision@k when the model computes it, else the loss), ``"loss"``,
            ``"precision"`` or a logged metric name.
        restore_best: Restore the weights of the best epoch at the end; ``None`` does so when
            ``early_stopping`` is set.
        num_workers: DataLoader worker processes.
        trainer: Your own ``pl.Trainer``; then ``epochs``, ``accelerator``, ``devices``,
            ``progress`` and ``output_dir`` are not used.

    Returns:
        A `FitResult`.

    Raises:
        ValueError: For invalid arguments, mismatched templates, labels outside ``num_groups``,
            or early stopping without validation data.
        TypeError: If a dataset does not yield ``SimilarityGroupSample`` s.
    """
    started = time.perf_counter()
    if not isinstance(model, DistilBertSimilarityModel):
        raise TypeError(f"model must be a DistilBertSimilarityModel, got {type(model).__name__}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}")
    if early_stopping is not None and (not isinstance(early_stopping, int) or early_stopping < 1):
        raise ValueError(
            f"early_stopping must be a positive number of epochs or None, got {early_stopping!r}"
        )
    if early_stopping is not None and val_dataset is None:
        raise ValueError("early_stopping needs a val_dataset to watch")
    if early_stopping is not None and trainer is not None:
        raise ValueError(
            "early_stopping cannot be added to your own trainer; add an EarlyStopping callback to it"
        )

    train_objects, train_groups = _objects_and_groups(train_dataset, "train_dataset")
    val_objects, val_groups = (_objects_and_groups(val_dataset, "val_dataset") if val_dataset is not None
                               else (None, None))
    if model.needs_num_groups:
        label_map = getattr(train_dataset, "label_map", None)
        model.set_num_groups(len(label_map) if label_map is not None else int(train_groups.max()) + 1)
    if model.num_groups is not None:
        for name, groups in (("train_dataset", train_groups), ("val_dataset", val_groups)):
            if groups is not None and (groups.min() < 0 or groups.max() >= model.num_groups):
                raise ValueError(
                    f"{name} has group ids {int(groups.min())}..{int(groups.max())}, outside "
                    f"0..{model.num_groups - 1} for num_groups={model.num_groups}; build the model "
                    "with num_groups=len(label_map) of the training labels"
                )
    _adopt_template(model, {"train_dataset": train_dataset, "val_dataset": val_dataset})

    monitor_name, mode = _resolve_monitor(model, monitor, has_val=val_dataset is not None)
    keep_best = (early_stopping is not None) if restore_best is None else bool(restore_best)
    tracker = _FitTracker(monitor_name, mode, keep_best=keep_best and monitor_name is not None)

    _configure_torch_threads()
    with _quiet_training(progress):
        pl.seed_everything(seed, workers=True)
        pairwise = isinstance(model.loss, PairwiseLoss)
        if pairwise:
            train_data: Dataset = _PairsDataset(train_objects, train_groups, seed)
            val_data = _PairsDataset(val_objects, val_groups, seed + 1) if val_objects is not None else None
            loader_class: type = PairsSimilarityDataLoader
        else:
            train_data, val_data, loader_class = train_dataset, val_dataset, GroupSimilarityDataLoader
        generator = torch.Generator()
        generator.manual_seed(seed)
        train_loader = loader_class(train_data, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                    generator=generator)
        val_loader = (loader_class(val_data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
                      if val_data is not None else None)

        scratch = None
        if trainer is None:
            callbacks: list[Callback] = [tracker]
            if early_stopping is not None:
                callbacks.append(EarlyStopping(monitor=monitor_name, mode=mode, patience=early_stopping))
            if output_dir is not None:
                root = Path(output_dir)
                root.mkdir(parents=True, exist_ok=True)
                logger: Any = pl.loggers.CSVLogger(save_dir=str(root), name="logs", version="")
            else:
                root = scratch = Path(tempfile.mkdtemp(prefix="refinery-quaterion-fit-"))
                logger = False
            n_batches = max(1, math.ceil(len(train_data) / batch_size))  # type: ignore[arg-type]
            trainer = pl.Trainer(
                max_epochs=epochs, accelerator=accelerator, devices=devices, logger=logger,
                enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
                num_sanity_val_steps=0, deterministic="warn", log_every_n_steps=min(50, n_batches),
                default_root_dir=str(root), callbacks=callbacks,
            )
        else:
            trainer.callbacks.append(tracker)
        early = next((cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)), None)
        try:
            Quaterion.fit(trainable_model=model, trainer=trainer, train_dataloader=train_loader,
                          val_dataloader=val_loader)
        finally:
            model.unwrap_cache()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    restored = False
    if tracker.best_state is not None and tracker.best_epoch != len(tracker.history):
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in tracker.best_state.items():
                params[name].copy_(value.to(params[name].device))
        restored = True

    result = _fit_result(tracker, model, n_train=len(train_objects), started=started,
                         stopped_early=bool(early is not None and early.stopped_epoch > 0), restored=restored)
    model.training_summary = {
        "epochs": result.epochs, "max_epochs": epochs, "batch_size": batch_size, "seed": seed,
        "early_stopping": early_stopping, "monitor": result.monitor, "best_epoch": result.best_epoch,
        "restored_best": restored, "train_records": len(train_objects),
        "val_records": len(val_objects) if val_objects is not None else 0, "pairs": pairwise,
        "best_score": result.best_score, "last_train_loss": result.last_train_loss,
    }
    if output_dir is not None:
        atomic_write_text(Path(output_dir) / "fit_result.json", json.dumps(result.to_dict(), indent=2) + "\n")
    return result


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
    elif isinstance(monitor, str) and monitor:
        name = monitor
    else:
        raise ValueError(
            f"monitor must be 'auto', 'loss', 'precision' or a logged metric name, got {monitor!r}"
        )
    return name, ("min" if "loss" in name else "max")


def _fit_result(tracker: _FitTracker, model: DistilBertSimilarityModel, *, n_train: int, started: float,
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


def save(
    model: DistilBertSimilarityModel | EmbeddingModel,
    path: str | os.PathLike,
    *,
    label_map: LabelMap | None,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a trained model to a folder, atomically.

    The folder holds the quaterion servable (``config.json``, ``head/``, ``encoders/`` -- so
    ``quaterion_models.SimilarityModel.load`` reads it too), ``label_map.json`` and
    ``training_config.json`` (model settings, training summary, library versions, ``extra``).
    Everything is written to a temporary folder beside ``path`` and renamed at the end.

    Args:
        model: A trained `DistilBertSimilarityModel` (or a loaded `EmbeddingModel`).
        path: Target folder.
        label_map: The labels the model was trained on (``train_dataset.label_map``).
        overwrite: Replace an existing folder; otherwise an existing ``path`` is refused.
        extra: More JSON-serialisable facts to keep in ``training_config.json``.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        FileExistsError: If ``path`` exists and ``overwrite`` is false.
        ValueError: If the text template is a callable that cannot be re-imported.
    """
    if not isinstance(model, (DistilBertSimilarityModel, EmbeddingModel)):
        raise TypeError(
            f"model must be a DistilBertSimilarityModel or EmbeddingModel, got {type(model).__name__}"
        )
    if label_map is not None and not isinstance(label_map, LabelMap):
        raise TypeError(f"label_map must be a LabelMap, got {type(label_map).__name__}")
    if isinstance(model, DistilBertSimilarityModel):
        model_config, training = model.to_config(), model.training_summary
    else:
        model_config = dict(model.config.get("model", model.config))
        training = model.config.get("training")
    config = {
        "format": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "model": model_config,
        "training": training,
        "labels": label_map.names if label_map is not None else None,
        "extra": dict(extra) if extra else None,
    }
    text = json.dumps(config, indent=2, default=_json_default) + "\n"
    path = Path(path)
    with atomic_dir(path, overwrite=overwrite) as tmp:
        if isinstance(model, DistilBertSimilarityModel):
            model.save_servable(str(tmp))
        else:
            model.model.save(str(tmp))
        if label_map is not None:
            label_map.save(tmp / _LABEL_MAP_FILE)
        atomic_write_text(tmp / _CONFIG_FILE, text)
    return path


def load(
    path: str | os.PathLike,
    *,
    embedding_cache: EmbeddingCache | str | os.PathLike | bool | None = None,
    device: str | torch.device | None = None,
) -> EmbeddingModel:
    """Load a model written by `save` for inference (works offline, in a new process).

    Args:
        path: Folder written by `save`.
        embedding_cache: Disk cache, folder, or ``True`` (the default folder) for the
            encoder's raw output; the encoder is frozen on load, so texts it has embedded
            before are not encoded again.
        device: Move the model there (e.g. ``"cuda"``); CPU by default.

    Returns:
        An `EmbeddingModel` with ``encode``, ``encode_raw``,
        ``apply_head``, ``label_map``, ``template``, ``config`` and ``dim``.

    Raises:
        FileNotFoundError: If ``path`` is not a saved model folder.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a saved model folder (no config.json); expected a folder "
                                "written by refinery_quaterion.train.save")
    with _quiet_loading():
        similarity_model = SimilarityModel.load(str(path))
    label_file, config_file = path / _LABEL_MAP_FILE, path / _CONFIG_FILE
    label_map = LabelMap.load(label_file) if label_file.is_file() else None
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    model = EmbeddingModel(similarity_model, label_map=label_map, config=config, path=path)
    model.encoder.freeze()
    model.encoder.cache = EmbeddingCache.coerce(embedding_cache)
    similarity_model.eval()
    if device is not None:
        model.to(device)
    return model


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for package in ("refinery-quaterion", "quaterion", "quaterion-models", "torch", "transformers"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def _json_default(value: Any) -> Any:
    if hasattr(value, "value"):  # enums such as quaterion's Distance
        return value.value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{value!r} is not JSON serialisable")
