"""`OpenVinoEmbedder`: run an OpenVINO export folder with openvino, tokenizers and numpy only.

No torch is imported here, so Ray's encoder actors (`refinery_quaterion.scale`) and any serving
process can use it; the ``openvino`` format itself (``model.xml``, and the calibrated int8
``model_int8.xml``) is written by `refinery_quaterion.exporters.openvino_model`. The IR is
compiled by `refinery_quaterion.model.openvino_backend.compile_ir`: on the CPU, fp32 inference
precision (the int8 model's quantised operations stay int8).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion.model.openvino_backend import IR_FILE, compile_ir, require_openvino
from refinery_quaterion.model.runtime import length_sorted_batches

__all__ = ["OpenVinoEmbedder"]


class OpenVinoEmbedder:
    """Embed texts with an exported OpenVINO IR folder (openvino + tokenizers; no torch needed).

    Texts are tokenized without padding, sorted by length and run in batches padded to their
    longest text, like the library's own encoder.

    Args:
        folder: Folder written by ``export_model(..., format="openvino")``.
        model: IR file in it: ``"model.xml"`` (fp32) or ``"model_int8.xml"`` (int8); its weights
            are the ``.bin`` file of the same name beside it.
        threads: OpenVINO inference threads (default: the CPUs this process may use).

    Raises:
        ImportError: If openvino is not installed (names the extra).
        FileNotFoundError: If the IR file, its ``.bin`` or ``tokenizer.json`` is missing.
    """

    def __init__(self, folder: str | os.PathLike, model: str = IR_FILE, *, threads: int | None = None):
        require_openvino("openvino")
        from tokenizers import Tokenizer

        folder = Path(folder)
        for name in (model, str(Path(model).with_suffix(".bin")), "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} not found; is {folder} an OpenVINO export folder?")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.pad_id = int((self.tokenizer.padding or {}).get("pad_id", 0))
        self.tokenizer.no_padding()
        self._run = compile_ir(folder / model, threads=threads)
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """Size of the output vectors (found by running a one-token batch once)."""
        if self._dim is None:
            self._dim = int(self.run(np.full((1, 1), self.pad_id), np.ones((1, 1))).shape[1])
        return self._dim

    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        """``tokenizers`` encodings of ``texts`` (truncated, not padded)."""
        return self.tokenizer.encode_batch(list(texts))

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The model on one padded batch: int64 ``(batch, sequence)`` arrays -> float32 ``(batch, dim)``."""
        return self._run(np.asarray(input_ids, dtype=np.int64), np.asarray(attention_mask, dtype=np.int64))

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors of ``texts`` in input order, float32 ``(n, dim)``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        ids = [e.ids for e in self.tokenize(texts)]
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = list(length_sorted_batches(ids, batch_size, self.pad_id))
        parts: dict[int, np.ndarray] = {}
        vectors = self._run.run_all((batch, mask) for _, batch, mask in batches)  # in parallel streams
        for (rows, _, _), found in zip(batches, vectors, strict=True):
            parts.update(zip(rows.tolist(), found, strict=True))
        return np.stack([parts[i] for i in range(len(ids))]).astype(np.float32, copy=False)
