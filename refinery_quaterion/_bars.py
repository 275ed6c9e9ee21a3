"""One progress display per stage: a bar in a terminal, one plain line when stderr is piped.

`stage_bar` is what `refinery_quaterion.model.encoder.TransformerEncoder.encode` ("Encoding") and
`refinery_quaterion.search.SimilarityIndex` ("Indexing") use. A tqdm bar written to a pipe or a
log file leaves a line per refresh (a cold AG News run logged 5 KB of them); off a terminal the
stage instead prints one line when it ends, e.g. ``Encoding: 20,000 texts in 171.2 s``.
(`refinery_quaterion.training.progress.ProgressReporter` does the same for the stages of ``fit``.)
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

from tqdm.auto import tqdm

__all__ = ["LineBar", "is_terminal", "stage_bar"]


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr) is a terminal; ``False`` for a closed or unusual stream."""
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LineBar:
    """A stand-in for a tqdm bar off a terminal: counts, and prints one line when closed.

    Args:
        total: Items the stage will process.
        desc: Name of the stage, e.g. ``"Encoding"``.
        unit: What an item is, e.g. ``"text"``.
        stream: Where the line goes (default: stderr).
    """

    def __init__(self, total: int, *, desc: str, unit: str, stream: TextIO | None = None):
        self.total = int(total)
        self.n = 0
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self._started = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items."""
        self.n += int(n)

    def close(self) -> None:
        """Print the stage's line once (nothing when nothing was processed)."""
        if self._closed:
            return
        self._closed = True
        if self.n:
            done = f"{self.n:,}" if self.n == self.total else f"{self.n:,} of {self.total:,}"
            plural = "" if self.n == 1 else "s"
            print(f"{self.desc}: {done} {self.unit}{plural} in {time.perf_counter() - self._started:.1f} s",
                  file=self.stream, flush=True)

    def __enter__(self) -> LineBar:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def stage_bar(total: int, *, desc: str, unit: str, enabled: bool, leave: bool = False,
              stream: TextIO | None = None) -> Any:
    """The progress display of one stage: a tqdm bar, a `LineBar`, or a disabled bar.

    Args:
        total: Items the stage will process.
        desc: Name of the stage.
        unit: What an item is.
        enabled: Whether to show anything at all.
        leave: Keep the finished bar on screen (terminal only).
        stream: Where to write (default: stderr).

    Returns:
        A context manager with ``update(n)`` and ``close()``: a tqdm bar when ``stream`` is a
        terminal, else a `LineBar` (disabled: a tqdm bar that shows nothing).
    """
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        return tqdm(total=total, disable=True)
    if is_terminal(stream):
        return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=stream)
    return LineBar(total, desc=desc, unit=unit, stream=stream)
