"""Following a ``fit`` run: its history (`FitTracker`) and what it shows (`ProgressReporter`).

`FitTracker` records each epoch's losses and validation precision, keeps the best weights
when asked, and notes a Ctrl-C that Lightning swallowed. `quiet_training` hides what
Lightning, quaterion and torch print by themselves ("GPU available: False", "Global seed
set", progress bars of their own, known harmless warnings) unless ``verbose``;
`ProgressReporter` then reports the two stages of a run on stderr, as
`refinery_quaterion.model.config.FitConfig.progress` says:

* ``"bar"``: one progress bar for encoding the records (quaterion's cache pass) and one over the
  epochs, with the training loss and validation precision@k;
* ``"lines"``: one line when encoding is done and one per epoch (a piped log of a 10-epoch run
  is about a kilobyte);
* ``"off"``: nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from refinery_quaterion import _compat  # noqa: F401  (quaterion shims: before quaterion is imported)

# isort: split
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from tqdm.auto import tqdm

from refinery_quaterion._bars import is_terminal

__all__ = ["FitTracker", "ProgressReporter", "quiet_training", "resolve_progress"]

_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric")


def resolve_progress(progress: str, stream: TextIO | None = None) -> str:
    """``"bar"``, ``"lines"`` or ``"off"`` for a `FitConfig.progress` value (``"auto"``: a bar in a terminal)."""
    if progress != "auto":
        return progress
    return "bar" if is_terminal(stream) else "lines"


@contextlib.contextmanager
def quiet_training(verbose: bool) -> Iterator[None]:
    """Hide Lightning's info lines, quaterion's debug log and known warnings, unless ``verbose``.

    Also restores torch's deterministic-algorithm settings, which ``Trainer(deterministic=...)``
    changes for the whole process.
    """
    from loguru import logger as loguru_logger
    from pytorch_lightning.utilities.warnings import PossibleUserWarning

    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    if not verbose:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        loguru_logger.disable("quaterion")
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected KeyboardInterrupt")  # fit raises its own
            if not verbose:
                warnings.filterwarnings("ignore", category=PossibleUserWarning)
                warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
                warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
                warnings.filterwarnings("ignore", message=r".*deterministic.*")
                warnings.filterwarnings("ignore", message=r"One of given dataloaders is None")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if not verbose:
            loguru_logger.enable("quaterion")
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


class FitTracker(Callback):
    """Records per-epoch history and timings; keeps the best weights when asked; notes interrupts.

    Lightning catches ``KeyboardInterrupt`` and returns as if the run had ended. An interrupt
    during quaterion's cache pass (a ``trainer.predict``) is raised again at once (as
    ``interrupt(epochs, stage)`` makes it), since quaterion would otherwise go on training on a
    half-filled cache; one during training is noted (``interrupted``) for ``fit`` to raise once
    Lightning has shut down.

    Args:
        monitor: The metric that picks the best epoch, or ``None``.
        mode: ``"min"`` or ``"max"``: which way ``monitor`` improves.
        keep_best: Keep a copy of the trainable weights of the best epoch.
        interrupt: Makes the exception for an interrupt: ``interrupt(epochs, stage)``.
    """

    def __init__(self, monitor: str | None, mode: str, keep_best: bool,
                 interrupt: Callable[[int, str], KeyboardInterrupt]):
        self.monitor = monitor
        self.mode = mode
        self.keep_best = keep_best
        self.make_interrupt = interrupt
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_score: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.start = time.perf_counter()
        self.train_start: float | None = None
        self.train_end: float | None = None
        self._epoch_start = 0.0
        self.stage = "setup"
        self.interrupted = False

    def interrupt(self) -> KeyboardInterrupt:
        """The exception for an interrupt now (epochs completed, current stage)."""
        return self.make_interrupt(len(self.history), self.stage)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Note the encoding stage (quaterion's cache pass)."""
        self.stage = "encoding"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Note the training stage."""
        self.stage = "training"

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Note an interrupt; during encoding, raise it again at once."""
        if isinstance(exception, KeyboardInterrupt) and not self.interrupted:
            self.interrupted = True
            if self.stage == "encoding":
                raise self.interrupt() from exception

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the training clock."""
        self.train_start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Stop the training clock."""
        self.train_end = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the epoch's clock."""
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the epoch (the model's ``epoch_summary`` when it has one) and keep the best weights."""
        metrics = {k: _as_float(v) for k, v in trainer.callback_metrics.items()}
        summary = getattr(pl_module, "epoch_summary", None)
        entry: dict[str, Any] = {"epoch": trainer.current_epoch + 1, **(summary() if callable(summary) else metrics)}
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


def _fmt(value: Any, digits: int = 4) -> str | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else f"{number:.{digits}f}"


class ProgressReporter(Callback):
    """Reports encoding and the epochs of a ``fit`` as a bar per stage or a line per stage and epoch.

    Args:
        mode: ``"bar"``, ``"lines"`` or ``"off"`` (see `resolve_progress`).
        epochs: The maximum number of epochs (for "epoch 3/10").
        history: The list the fit tracker appends one dict per epoch to (``train_loss``,
            ``validation_loss``, the precision metric, ``time_s``); read after each epoch.
        metric: Name of the validation precision@k metric, or ``None``.
        stream: Where to write; ``sys.stderr`` at the time of writing by default.
    """

    def __init__(self, mode: str, *, epochs: int, history: Sequence[dict[str, Any]], metric: str | None,
                 stream: TextIO | None = None):
        self.mode = mode
        self.epochs = epochs
        self.history = history
        self.metric = metric
        self._stream = stream
        self._bar: Any = None
        self._started = 0.0
        self._records = 0
        self._per_epoch = 0
        self._sizes: list[int] = []
        self._done: list[int] = []

    @property
    def stream(self) -> TextIO:
        """The stream written to."""
        return self._stream if self._stream is not None else sys.stderr

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _open_bar(self, total: int, desc: str, unit: str) -> None:
        self.close()
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=True)

    def close(self) -> None:
        """Close an open progress bar (also after an interrupt)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- encoding: quaterion's cache pass is a `trainer.predict` ----------------------------

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the encoding stage."""
        self._started = time.perf_counter()
        self._sizes = [len(dl.dataset) if dl is not None and hasattr(dl.dataset, "__len__") else 0
                       for dl in (trainer.predict_dataloaders or [])]
        self._done = [0] * len(self._sizes)
        self._records = sum(self._sizes)
        if self.mode == "bar":
            self._open_bar(self._records, "Encoding", "record")

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        """Advance the encoding bar by the records of the batch."""
        if self._bar is None or dataloader_idx >= len(self._sizes):
            return
        batches = list(trainer.num_predict_batches or [])
        total = batches[dataloader_idx] if dataloader_idx < len(batches) else 0
        size = self._sizes[dataloader_idx]
        done = size if not total or not math.isfinite(total) else min(size, round((batch_idx + 1) * size / total))
        self._bar.update(max(0, done - self._done[dataloader_idx]))
        self._done[dataloader_idx] = max(done, self._done[dataloader_idx])

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """End the encoding stage."""
        self.close()
        if self.mode == "lines":
            self._line(f"encoding: {self._records:,} records in {time.perf_counter() - self._started:.1f} s")

    # -- training ---------------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the training stage."""
        self._started = time.perf_counter()
        if self.mode == "bar":
            batches = trainer.num_training_batches
            per_epoch = int(batches) if isinstance(batches, int | float) and math.isfinite(batches) else 0
            self._open_bar(self.epochs * per_epoch if per_epoch else self.epochs, "Training",
                           "batch" if per_epoch else "epoch")
            self._per_epoch = per_epoch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Advance the training bar by one batch."""
        if self._bar is not None and self._per_epoch:
            self._bar.update(1)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Show the epoch's loss and validation precision."""
        if self.mode == "off" or not self.history:
            return
        entry = self.history[-1]
        parts = [(name, _fmt(entry.get(key))) for name, key in
                 (("loss", "train_loss"), ("validation loss", "validation_loss"),
                  (self._short(self.metric), self.metric))]
        shown = [(name, value) for name, value in parts if value is not None]
        if self._bar is not None:
            if not self._per_epoch:
                self._bar.update(1)
            self._bar.set_postfix_str(f"epoch {entry['epoch']}/{self.epochs}, "
                                      + ", ".join(f"{name.replace('validation', 'val')} {value}"
                                                  for name, value in shown))
        elif self.mode == "lines":
            details = ", ".join(f"{name} {value}" for name, value in shown)
            self._line(f"epoch {entry['epoch']}/{self.epochs}: {details} ({entry.get('time_s', 0):.1f} s)")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """End the training stage."""
        self.close()
        if self.mode == "lines":
            self._line(f"training: {len(self.history)} epoch(s) in {time.perf_counter() - self._started:.1f} s")

    @staticmethod
    def _short(metric: str | None) -> str:
        """``validation_precision@10`` -> ``P@10``."""
        if not metric:
            return ""
        return "P@" + metric.rsplit("@", 1)[1] if "@" in metric else metric
