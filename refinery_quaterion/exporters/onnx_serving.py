"""`OnnxEmbedder`: run an ONNX export folder with onnxruntime, tokenizers and numpy only.

No torch is imported here, so Ray's encoder actors (`refinery_quaterion.scale`) and any serving
process can use it; the ``onnx`` format itself is written by
`refinery_quaterion.exporters.onnx_model`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from refinery_quaterion.exporters._serving import SortedBatchEmbedder
from refinery_quaterion.model.runtime import OUTPUT, inference_session, require_onnx

__all__ = ["PROBE_SAMPLE", "OnnxEmbedder"]

PROBE_SAMPLE = ["a short text", "a somewhat longer text, so that the first one is padded"]
"""Texts of two lengths: a batch of them is padded, so checks run the masking path too."""


class OnnxEmbedder(SortedBatchEmbedder):
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
        folder = Path(folder)
        for name in (model, "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} not found; is {folder} an ONNX export folder?")
        self._load_tokenizer(folder)
        self.session = inference_session(folder / model, threads=threads)

    @property
    def dim(self) -> int:
        """Size of the output vectors."""
        size = self.session.get_outputs()[0].shape[1]
        return int(size) if isinstance(size, int) else super().dim  # a symbolic axis: run a one-token batch

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The model on one padded batch: int64 ``(batch, sequence)`` arrays -> float32 ``(batch, dim)``."""
        feed = {"input_ids": np.asarray(input_ids, dtype=np.int64),
                "attention_mask": np.asarray(attention_mask, dtype=np.int64)}
        return self.session.run([OUTPUT], feed)[0]
