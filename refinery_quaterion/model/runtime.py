"""What runs an encoder's computation: CPU threads, length-sorted batches, pooling, ONNX Runtime sessions.

Shared by the encoder backends (`refinery_quaterion.model.backends`), the ONNX graph
(`refinery_quaterion.model.onnx_graph`) and the exports. Imports no torch and no onnxruntime
until a function needs them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "INPUTS",
    "ONNX_EXTRA",
    "ONNX_OPSET",
    "OUTPUT",
    "cap_torch_threads",
    "import_or_name_extra",
    "inference_session",
    "length_sorted_batches",
    "pool_tokens",
    "quantize_int8",
    "require_onnx",
    "torch_threads",
    "usable_cpus",
]

ONNX_EXTRA = "refinery-quaterion[onnx]"
"""The extra that installs onnx and onnxruntime."""
ONNX_OPSET = 17
"""The ONNX opset the encoder graphs are written with."""
INPUTS = ("input_ids", "attention_mask")
"""Input names of the encoder graphs (int64, dynamic batch and sequence axes)."""
OUTPUT = "sentence_embedding"
"""Output name of the encoder graphs (float32 ``(batch, dim)``)."""


def usable_cpus() -> int:
    """CPUs this process may use: its CPU affinity, capped by a cgroup (container) CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    return max(1, n)


_threads_capped = False


def cap_torch_threads() -> None:
    """Cap torch's intra-op threads at `usable_cpus` once per process (never raises them).

    torch sizes its pool from the machine's cores; inside a container limited to a few CPUs
    that oversubscribes them and slows encoding down several times.
    """
    global _threads_capped
    if _threads_capped:
        return
    import torch

    _threads_capped = True
    usable = usable_cpus()
    if torch.get_num_threads() > usable:
        torch.set_num_threads(usable)


@contextlib.contextmanager
def torch_threads(num_threads: int | None = None) -> Iterator[None]:
    """torch's intra-op threads inside the block: ``num_threads``, or torch's setting capped by `cap_torch_threads`.

    Raises:
        ValueError: If ``num_threads`` is not a positive integer or ``None``.
    """
    import torch

    cap_torch_threads()
    if num_threads is None:
        yield
        return
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def length_sorted_batches(
    token_ids: Sequence[Sequence[int]], batch_size: int, pad_id: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Batches of texts of similar token length, longest first, padded on the right to their longest.

    Args:
        token_ids: Token ids of each text (truncated, not padded).
        batch_size: Texts per batch.
        pad_id: Id of the padding token.

    Yields:
        ``(rows, input_ids, attention_mask)``: the positions of the batch's texts in
        ``token_ids`` and two int64 arrays of shape ``(len(rows), longest)``.
    """
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks show up at once
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows].max())
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, i in enumerate(rows):
            n = lengths[i]
            ids[r, :n] = token_ids[i]
            mask[r, :n] = 1
        yield rows, ids, mask


def pool_tokens(hidden: Tensor, attention_mask: Tensor, pooling: str, normalize: bool) -> Tensor:
    """One vector per text from the token vectors, as `TransformerEncoder` pools them.

    Plain tensor operations (traceable, e.g. for an ONNX export).

    Args:
        hidden: ``(batch, tokens, dim)`` token vectors (``last_hidden_state``).
        attention_mask: ``(batch, tokens)``, 1 for real tokens and 0 for padding.
        pooling: ``"mean"`` (attention-masked mean) or ``"cls"`` (first token).
        normalize: L2-normalise the pooled vectors.
    """
    import torch.nn.functional as F

    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=1) if normalize else pooled


def require_onnx(*modules: str) -> list[Any]:
    """Import ``onnx`` / ``onnxruntime`` (as asked), or fail with the extra to install.

    Raises:
        ImportError: Naming ``refinery-quaterion[onnx]``.
    """
    return import_or_name_extra(modules or ("onnx", "onnxruntime"),
                                needed_by="ONNX export and the ONNX encoder backends", extra=ONNX_EXTRA)


def import_or_name_extra(modules: Sequence[str], *, needed_by: str, extra: str) -> list[Any]:
    """Import ``modules``; a missing one raises one ``ImportError`` naming it and the extra that installs it.

    Args:
        modules: Module names, imported in order.
        needed_by: What needs them, the message's subject (e.g. ``"the OpenVINO backends"``).
        extra: The ``refinery-quaterion[...]`` extra to install.

    Raises:
        ImportError: ``"<needed_by> need <module>, which is not installed: pip install '<extra>'"``.
    """
    import importlib

    imported = []
    for name in modules:
        try:
            imported.append(importlib.import_module(name))
        except ImportError as err:
            raise ImportError(f"{needed_by} need {name}, which is not installed: pip install '{extra}'") from err
    return imported


def inference_session(path: str | os.PathLike, *, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU for the model file ``path``.

    Args:
        path: An ``.onnx`` file.
        threads: Intra-op threads (default: the CPUs this process may use, `usable_cpus`).

    Raises:
        ImportError: If onnxruntime is not installed (names the extra).
    """
    (ort,) = require_onnx("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cpus()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantize_int8(model: Path, target: Path) -> None:
    """Dynamic int8 quantisation of ``model`` into ``target`` (per-channel weights).

    Raises:
        ImportError: If onnxruntime is not installed (names the extra).
    """
    require_onnx("onnx", "onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # quantize_dynamic warns to run quant_pre_process, which fails here
    try:
        quantize_dynamic(str(model), str(target), per_channel=True, weight_type=QuantType.QInt8)
    finally:
        logger.setLevel(level)
