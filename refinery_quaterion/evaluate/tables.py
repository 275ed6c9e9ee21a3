"""Tables of retrieval metrics: `compare` builds one (a row per model), the rest print and save it.

Formatting note: pandas' `DataFrame.to_markdown` needs the optional ``tabulate`` package, which
is not in ``requirements.lock``, and `DataFrame.to_string` can neither left-align text cells
nor draw the rule under the header that `format_table` prints (the CLI's output); so both
tables come from the small formatter below (`_rows`), which also writes NaN as ``n/a`` and
escapes ``|`` in Markdown cells. CSV goes through pandas' own `DataFrame.to_csv`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
import pandas as pd

from refinery_quaterion._io import atomic_path, atomic_write_text
from refinery_quaterion._util import is_missing, to_jsonable
from refinery_quaterion.evaluate._inputs import EmbeddingsLike, as_matrix, label_list
from refinery_quaterion.evaluate.metrics import RetrievalMetrics, retrieval_metrics

__all__ = ["compare", "format_table", "to_markdown", "print_table", "save_table"]


def _compare(
    embeddings_by_name: Mapping[str, EmbeddingsLike],
    labels: Any,
    ks: int | Iterable[int] | None,
    map_ks: int | Iterable[int] | None,
    block_size: int | None,
    per_query: bool,
) -> tuple[pd.DataFrame, dict[str, RetrievalMetrics]]:
    if not isinstance(embeddings_by_name, Mapping):
        raise TypeError(
            "embeddings_by_name must be a mapping of model name -> embeddings, e.g. "
            f"{{'raw': raw, 'fine-tuned': tuned}}; got {type(embeddings_by_name).__name__}"
        )
    if not embeddings_by_name:
        raise ValueError("embeddings_by_name is empty; pass at least one model, e.g. {'raw': embeddings}")
    results: dict[str, RetrievalMetrics] = {}
    label_values = label_list(labels, "labels")
    for name, embeddings in embeddings_by_name.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"embeddings_by_name keys must be non-empty strings; got {name!r}")
        array = as_matrix(embeddings, f"embeddings_by_name[{name!r}]")
        if array.shape[0] != len(label_values):
            raise ValueError(
                f"embeddings_by_name[{name!r}] has {array.shape[0]} rows but labels has "
                f"{len(label_values)} entries; every model must embed the same items as labels"
            )
        results[name] = retrieval_metrics(
            array, label_values, ks, map_ks=map_ks, block_size=block_size, per_query=per_query
        )
    frame = pd.DataFrame([m.values for m in results.values()], index=pd.Index(list(results), name="model"))
    first = next(iter(results.values()))
    frame.attrs.update(
        {
            "n_items": first.n_items,
            "n_queries": first.n_queries,
            "n_excluded": first.n_excluded,
            "ks": list(first.ks),
            "map_ks": list(first.map_ks),
        }
    )
    return frame, results


def compare(
    embeddings_by_name: Mapping[str, EmbeddingsLike],
    labels: Any,
    ks: int | Iterable[int] | None = None,
    *,
    map_ks: int | Iterable[int] | None = None,
    block_size: int | None = None,
) -> pd.DataFrame:
    """Retrieval metrics of several embeddings of the same items, one row per model.

    Args:
        embeddings_by_name: Model name -> ``(n, d)`` embeddings of the same ``n`` items
            (``d`` may differ between models), e.g. ``{"raw": raw, "fine-tuned": tuned}``.
        labels: ``n`` hashable labels.
        ks: ``k`` values of precision@k (default `DEFAULT_KS` up to ``n - 1``).
        map_ks: ``k`` values of mAP@k (default ``max(ks)``).
        block_size: Queries per block (see `retrieval_metrics`).

    Returns:
        A DataFrame indexed by model name (index name ``model``) with one column per metric:
        ``P@k``..., ``MRR``, ``mAP@k``..., ``mAP``, ``R-precision``, then any metric added with
        `refinery_quaterion.evaluate.registry.register_metric`. ``frame.attrs`` holds
        ``n_items``, ``n_queries``, ``n_excluded``, ``ks`` and ``map_ks``.

    Raises:
        ValueError: Empty mapping, a model whose row count differs from ``labels``, or any
            error of `retrieval_metrics` (the message names the model).
        TypeError: ``embeddings_by_name`` is not a mapping.
    """
    frame, _ = _compare(embeddings_by_name, labels, ks, map_ks, block_size, per_query=False)
    return frame


def _cell(value: Any, digits: int) -> str:
    if is_missing(value):
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value)


def _rows(frame: pd.DataFrame, digits: int, index: bool) -> tuple[list[str], list[list[str]], list[bool]]:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame; got {type(frame).__name__}")
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
        raise ValueError(f"digits must be an int >= 0; got {digits!r}")
    header = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    body = [[_cell(v, digits) for v in row] for row in frame.itertuples(index=False, name=None)]
    if index:
        header.insert(0, str(frame.index.name) if frame.index.name is not None else "")
        numeric.insert(0, False)
        body = [[_cell(label, digits), *row] for label, row in zip(frame.index, body)]
    return header, body, numeric


def format_table(frame: pd.DataFrame, *, digits: int = 4, index: bool = True) -> str:
    """A plain-text table of ``frame`` with aligned columns (numbers right-aligned).

    Args:
        frame: E.g. the result of `compare`.
        digits: Decimals of float cells (NaN shows as ``n/a``).
        index: Include the index as the first column.

    Returns:
        The table, lines separated by ``\\n``, no trailing newline.
    """
    header, body, numeric = _rows(frame, digits, index)
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def to_markdown(frame: pd.DataFrame, *, digits: int = 4, index: bool = True) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (no ``tabulate`` needed).

    Numeric columns are right-aligned; ``|`` in cells is escaped; NaN shows as ``n/a``.

    Args:
        frame: E.g. the result of `compare`.
        digits: Decimals of float cells.
        index: Include the index as the first column.

    Returns:
        The table, lines separated by ``\\n``, no trailing newline.
    """
    header, body, numeric = _rows(frame, digits, index)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    rule = "|" + "|".join("---:" if num else ":---" for num in numeric) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def print_table(frame: pd.DataFrame, *, digits: int = 4, file: TextIO | None = None) -> None:
    """Print `format_table` of ``frame`` to ``file`` (default: standard output).

    Args:
        frame: E.g. the result of `compare`.
        digits: Decimals of float cells.
        file: Text stream to print to.
    """
    print(format_table(frame, digits=digits), file=file if file is not None else sys.stdout)


def frame_json(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``{index label: {column: value}}`` of ``frame``, JSON-ready (NaN as ``None``)."""
    return {
        str(label): {str(col): to_jsonable(val) for col, val in zip(frame.columns, row)}
        for label, row in zip(frame.index, frame.itertuples(index=False, name=None))
    }


def save_table(
    frame: pd.DataFrame, path: str | os.PathLike, *, fmt: Literal["csv", "json", "md"] | None = None
) -> Path:
    """Write ``frame`` atomically as CSV, JSON or Markdown (chosen from the suffix by default).

    JSON is ``{index label: {column: value}}`` with NaN as ``null``; Markdown is
    `to_markdown` with 4 decimals; CSV keeps full precision.

    Args:
        frame: E.g. the result of `compare`.
        path: Target file; parent folders are created.
        fmt: ``"csv"``, ``"json"`` or ``"md"``; ``None`` infers it from the suffix
            (``.csv``, ``.json``, ``.md``/``.markdown``).

    Returns:
        The written path.

    Raises:
        ValueError: Unknown format or suffix.
    """
    path = Path(path)
    if fmt is None:
        suffix = path.suffix.lower()
        fmt = {".csv": "csv", ".json": "json", ".md": "md", ".markdown": "md"}.get(suffix)  # type: ignore[assignment]
        if fmt is None:
            raise ValueError(
                f"cannot infer the format of {path}: use a .csv, .json or .md suffix, or pass fmt"
            )
    if fmt == "csv":
        with atomic_path(path) as tmp:
            frame.to_csv(tmp)
    elif fmt == "json":
        atomic_write_text(path, json.dumps(frame_json(frame), indent=2, allow_nan=False) + "\n")
    elif fmt == "md":
        atomic_write_text(path, to_markdown(frame) + "\n")
    else:
        raise ValueError(f"fmt must be 'csv', 'json' or 'md'; got {fmt!r}")
    return path


