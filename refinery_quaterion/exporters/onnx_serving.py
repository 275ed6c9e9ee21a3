"""`OnnxEmbedder`: run an ONNX export folder with onnxruntime, tokenizers and numpy only.

No torch is imported here, so Ray's encoder actors (`refinery_quaterion.scale`) and any serving
process can use it; the ``onnx`` format itself is written by
`refinery_quaterion.exporters.onnx_model`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion.model.runtime import OUTPUT, inference_session, length_sorted_batches, require_onnx

__all__ = ["PROBE_SAMPLE", "OnnxEmbedder"]

PROBE_SAMPLE = ["a short text", "a somewhat longer text, so that the first one is padded"]
"""Texts of two lengths: a batch of them is padded, so checks run the masking path too."""


class OnnxEmbedder:
    """Embed texts with an exported ONNX folder (onnxruntime + tokenizers; no torch needed).

    Texts are tokenized without padding, sorted by length and run in batches padded to their
    longest text, like the library's own encoder.

    Args:
        folder: Folder written by ``export_model(..., format="onnx")``.
        model: File in it: ``"model.onnx"`` or ``"model_int8.onnx"``.
        threads: ONNX Runtime intra-op threads (default: the CPUs this process may use).

    Raises:
        ImportError: If onnxruntime is not installed (names the extra).
        FileNotFoundError: If the model file or ``tokenizer.json`` is missing.
    """

    def __init__(self, folder: str | os.PathLike, model: str = "model.onnx", *, threads: int | None = None):
        require_onnx("onnxruntime")
        from tokenizers import Tokenizer

        folder = Path(folder)
        for name in (model, "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} not found; is {folder} an ONNX export folder?")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.pad_id = int((self.tokenizer.padding or {}).get("pad_id", 0))
        self.tokenizer.no_padding()
        self.session = inference_session(folder / model, threads=threads)

    @property
    def dim(self) -> int:
        """Size of the output vectors."""
        size = self.session.get_outputs()[0].shape[1]
        if not isinstance(size, int):  # a symbolic axis: run a one-token batch
            size = self.run(np.full((1, 1), self.pad_id), np.ones((1, 1))).shape[1]
        return int(size)

    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        """``tokenizers`` encodings of ``texts`` (truncated, not padded)."""
        return self.tokenizer.encode_batch(list(texts))

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The model on one padded batch: int64 ``(batch, sequence)`` arrays -> float32 ``(batch, dim)``."""
        feed = {"input_ids": np.asarray(input_ids, dtype=np.int64),
                "attention_mask": np.asarray(attention_mask, dtype=np.int64)}
        return self.session.run([OUTPUT], feed)[0]

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors of ``texts`` in input order, float32 ``(n, dim)``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        ids = [e.ids for e in self.tokenize(texts)]
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts: dict[int, np.ndarray] = {}
        for rows, batch, mask in length_sorted_batches(ids, batch_size, self.pad_id):
            parts.update(zip(rows.tolist(), self.run(batch, mask), strict=True))
        return np.stack([parts[i] for i in range(len(ids))]).astype(np.float32, copy=False)
