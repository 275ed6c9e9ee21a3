"""Notes an evaluation owes its reader: what makes its numbers mean less than they seem.

Each function returns sentences (no warnings raised): the report folder (``metrics.md``,
``metrics.json``), `refinery_quaterion.evaluate.report.EvaluationReport.notes` and the
command line print them. `precision_ceiling` is the best precision@k the class sizes allow,
drawn in the top-k plot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from refinery_quaterion.data.text import comparable_text
from refinery_quaterion.evaluate.probe import ProbeSet

__all__ = ["duplicate_text_note", "label_notes", "precision_ceiling", "probe_notes"]


def precision_ceiling(labels: Iterable[Any], ks: Iterable[int]) -> dict[int, float]:
    """The best mean precision@k any embedding can reach on ``labels`` (leave-one-out).

    A query of a class with ``n`` items has at most ``n - 1`` same-label neighbours, so its
    precision@k is at most ``min(k, n - 1) / k``; queries of classes with one item are left out
    of the means, as `refinery_quaterion.evaluate.metrics.retrieval_metrics` leaves them out.

    Args:
        labels: One label per item.
        ks: The ``k`` values.

    Returns:
        ``k -> ceiling`` (NaN when no class has two items).
    """
    sizes = np.array([n for n in Counter(labels).values() if n >= 2], dtype=float)
    queries = sizes.sum()
    out = {}
    for k in ks:
        out[int(k)] = float((sizes * np.minimum(k, sizes - 1) / k).sum() / queries) if queries else float("nan")
    return out


def label_notes(labels: Sequence[Any]) -> list[str]:
    """A note when the test labels leave nothing to compare: a single label."""
    distinct = set(labels)
    if len(distinct) == 1:
        return [f"the test set has a single label ({next(iter(distinct))!r}): every neighbour shares the query's "
                "label, so every model scores 1.0 and the metrics say nothing; test on records of several labels"]
    return []


def duplicate_text_note(texts: Iterable[str]) -> list[str]:
    """A note when test texts repeat (compared up to case, whitespace and invisible characters).

    A duplicate is its copy's nearest neighbour under any model, which lifts precision@k for
    every model alike.
    """
    counts = Counter(comparable_text(str(text)) for text in texts)
    repeated = {text: n for text, n in counts.items() if n > 1}
    if not repeated:
        return []
    records = sum(repeated.values())
    return [f"{records} test records share their text with another ({len(repeated)} distinct texts repeated): "
            "each is its copies' nearest neighbour, which lifts every model's precision; deduplicate the test "
            "set for a fair measure"]


def probe_notes(probe: Mapping[str, ProbeSet]) -> list[str]:
    """Notes on the linear probes: train and test labels disjoint, or trained on the test items."""
    notes: list[str] = []
    for name, data in probe.items():
        train, test = {str(v) for v in data.train_labels}, {str(v) for v in data.test_labels}
        if not train & test:
            notes.append(f"probe {name!r}: its training labels and the test labels have none in common, so its "
                         "accuracy is 0 by construction; train the probe on records of the test set's labels")
        elif test - train:
            notes.append(f"probe {name!r}: {len(test - train)} test label(s) never occur in its training records "
                         f"({sorted(test - train)[:5]}); it cannot predict them")
        shared = _shared_rows(data.train_embeddings, data.test_embeddings)
        if shared == len(data.test_labels):
            notes.append(f"probe {name!r} was trained on the test items themselves: its accuracy measures "
                         "memorisation, not how well the embeddings separate the labels; train it on other records")
        elif shared:
            notes.append(f"probe {name!r}: {shared} of {len(data.test_labels)} test items are also in its "
                         "training records (identical vectors), which inflates its accuracy")
    return notes


def _shared_rows(train: Any, test: Any) -> int:
    """How many rows of ``test`` also occur (bit for bit, as float32) in ``train``."""
    train_rows = {row.tobytes() for row in _float_rows(train)}
    return sum(row.tobytes() in train_rows for row in _float_rows(test))


def _float_rows(embeddings: Any) -> np.ndarray:
    if hasattr(embeddings, "detach"):  # a torch tensor
        embeddings = embeddings.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
