"""`OpenVinoEmbedder`: run an OpenVINO export folder with openvino, tokenizers and numpy only.

No torch is imported here, so Ray's encoder actors (`refinery_quaterion.scale`) and any serving
process can use it; the ``openvino`` format itself (``model.xml``, and the calibrated int8
``model_int8.xml``) is written by `refinery_quaterion.exporters.openvino_model`. The IR is
compiled by `refinery_quaterion.model.openvino_backend.compile_ir`: on the CPU, fp32 inference
precision (the int8 model's quantised operations stay int8).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from refinery_quaterion.exporters._serving import SortedBatchEmbedder
from refinery_quaterion.model.openvino_backend import IR_FILE, compile_ir, require_openvino

__all__ = ["OpenVinoEmbedder"]


class OpenVinoEmbedder(SortedBatchEmbedder):
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
        folder = Path(folder)
        for name in (model, str(Path(model).with_suffix(".bin")), "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} not found; is {folder} an OpenVINO export folder?")
        self._load_tokenizer(folder)
        self._run = compile_ir(folder / model, threads=threads)
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """Size of the output vectors (found by running a one-token batch once)."""
        if self._dim is None:
            self._dim = super().dim
        return self._dim

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The model on one padded batch: int64 ``(batch, sequence)`` arrays -> float32 ``(batch, dim)``."""
        return self._run(np.asarray(input_ids, dtype=np.int64), np.asarray(attention_mask, dtype=np.int64))

    def run_batches(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """The vectors of each batch, in order, several in flight (OpenVINO's parallel streams)."""
        return self._run.run_all(batches)
