"""`SortedBatchEmbedder`: what `OnnxEmbedder` and `OpenVinoEmbedder` share (no torch imported).

An export folder's ``tokenizer.json`` (tokenized without padding), texts run in length-sorted
batches padded to their longest text, like the library's own encoder, and vectors returned in
input order. A runtime adds its model: ``run`` for one padded batch, and ``run_batches`` where it
can run several at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion.model.runtime import length_sorted_batches

__all__ = ["SortedBatchEmbedder"]


class SortedBatchEmbedder:
    """Tokenizing and batching for an exported model; subclasses implement `run`."""

    tokenizer: Any
    pad_id: int

    def _load_tokenizer(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.pad_id = int((self.tokenizer.padding or {}).get("pad_id", 0))
        self.tokenizer.no_padding()

    @property
    def dim(self) -> int:
        """Size of the output vectors."""
        return int(self.run(np.full((1, 1), self.pad_id), np.ones((1, 1))).shape[1])

    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        """``tokenizers`` encodings of ``texts`` (truncated, not padded)."""
        return self.tokenizer.encode_batch(list(texts))

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The model on one padded batch: int64 ``(batch, sequence)`` arrays -> float32 ``(batch, dim)``."""
        raise NotImplementedError

    def run_batches(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """The vectors of each ``(input_ids, attention_mask)`` batch, in order (one at a time here)."""
        return (self.run(ids, mask) for ids, mask in batches)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors of ``texts`` in input order, float32 ``(n, dim)``.

        Raises:
            TypeError: If ``texts`` is one string instead of a list of strings.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        ids = [e.ids for e in self.tokenize(texts)]
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = list(length_sorted_batches(ids, batch_size, self.pad_id))
        parts: dict[int, np.ndarray] = {}
        vectors = self.run_batches((batch, mask) for _, batch, mask in batches)
        for (rows, _, _), found in zip(batches, vectors, strict=True):
            parts.update(zip(rows.tolist(), found, strict=True))
        return np.stack([parts[i] for i in range(len(ids))]).astype(np.float32, copy=False)
