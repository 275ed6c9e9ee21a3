"""A disk cache of a frozen encoder's output vectors.

Encoding is by far the slowest step when the encoder is frozen: the AG News example encodes
~20k texts once for the raw evaluation, again for quaterion's cache pass and again for the
fine-tuned evaluation. `EmbeddingCache` stores each vector once, keyed by

* an **encoder fingerprint** (see `refinery_quaterion.model.TransformerEncoder.fingerprint`:
  a hash of the weights, tokenizer, pooling and ``max_length``), and
* the **SHA-1 of the text** that was embedded,

so any later run with the same frozen encoder is served from disk.

Layout on disk::

    folder/
      <fingerprint>/
        meta.json                     # dim, dtype and a human-readable description
        <chunk>.vectors.npy           # float32, n x dim
        <chunk>.keys.npy              # uint8, n x 20: SHA-1 digest of each text (the index)

Each ``put_many`` writes one new chunk; both files are written to a temporary name and
renamed, the keys file last, so a reader never sees half a chunk and several processes can
add to the same cache at the same time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion._io import atomic_write_text

__all__ = ["EmbeddingCache", "default_cache_dir", "text_key"]

_KEY_BYTES = 20  # SHA-1 digest size
_VECTORS = ".vectors.npy"
_KEYS = ".keys.npy"


def default_cache_dir() -> Path:
    """Where embeddings are cached when asked for the default (``embedding_cache=True``).

    ``$REFINERY_QUATERION_CACHE`` if set, else ``$XDG_CACHE_HOME/refinery-quaterion/embeddings``
    (``~/.cache/refinery-quaterion/embeddings``).
    """
    if os.environ.get("REFINERY_QUATERION_CACHE"):
        return Path(os.environ["REFINERY_QUATERION_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "refinery-quaterion" / "embeddings"


def text_key(text: str) -> bytes:
    """The cache key of ``text``: the SHA-1 digest of its UTF-8 bytes."""
    return hashlib.sha1(text.encode("utf-8")).digest()


class _Shard:
    """The vectors of one fingerprint: an in-memory index over the chunk files."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.index: dict[bytes, tuple[int, int]] = {}
        self.chunks: list[np.ndarray] = []
        self.chunk_names: set[str] = set()
        self.dim: int | None = None
        meta = folder / "meta.json"
        if meta.exists():
            self.dim = int(json.loads(meta.read_text(encoding="utf-8"))["dim"])

    def refresh(self) -> None:
        """Pick up chunks written since the last look (by this or another process)."""
        if not self.folder.is_dir():
            return
        for keys_path in sorted(self.folder.glob(f"*{_KEYS}")):
            name = keys_path.name[: -len(_KEYS)]
            if name in self.chunk_names:
                continue
            keys = np.load(keys_path)
            vectors = np.load(self.folder / f"{name}{_VECTORS}", mmap_mode="r")
            if keys.ndim != 2 or keys.shape[1] != _KEY_BYTES or len(keys) != len(vectors):
                raise ValueError(f"embedding cache chunk {keys_path} is corrupt (keys {keys.shape}, "
                                 f"vectors {vectors.shape}); delete it")
            if self.dim is None:
                self.dim = int(vectors.shape[1])
            chunk_id = len(self.chunks)
            self.chunks.append(vectors)
            self.chunk_names.add(name)
            for row, key in enumerate(keys):
                self.index.setdefault(key.tobytes(), (chunk_id, row))


class EmbeddingCache:
    """Disk cache of encoder output vectors, keyed by encoder fingerprint and text hash.

    Args:
        folder: Where the cache lives; created on the first write.

    Example:
        >>> cache = EmbeddingCache("/tmp/emb-cache")  # doctest: +SKIP
        >>> found, vectors = cache.get_many(["a text"], fingerprint=encoder.fingerprint())  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"embedding cache folder {self.folder} exists and is not a folder")
        self._shards: dict[str, _Shard] = {}

    @classmethod
    def coerce(cls, cache: EmbeddingCache | str | os.PathLike | bool | None) -> EmbeddingCache | None:
        """Return ``cache`` as an `EmbeddingCache`.

        A path is opened; ``True`` opens `default_cache_dir`; ``None``/``False`` give ``None``.
        """
        if cache is None or cache is False or isinstance(cache, EmbeddingCache):
            return cache or None
        if cache is True:
            return cls(default_cache_dir())
        if isinstance(cache, (str, os.PathLike)):
            return cls(cache)
        raise TypeError(f"embedding_cache must be an EmbeddingCache, a folder path, True (the default folder) "
                        f"or None, got {type(cache).__name__}")

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.folder)!r})"

    def _shard(self, fingerprint: str) -> _Shard:
        if not isinstance(fingerprint, str) or not fingerprint or not fingerprint.isalnum():
            raise ValueError(f"fingerprint must be a non-empty alphanumeric string, got {fingerprint!r}")
        shard = self._shards.get(fingerprint)
        if shard is None:
            shard = self._shards[fingerprint] = _Shard(self.folder / fingerprint)
        return shard

    def get_many(self, texts: Sequence[str], *, fingerprint: str) -> tuple[np.ndarray, np.ndarray]:
        """Look ``texts`` up.

        Args:
            texts: Texts to look up.
            fingerprint: Fingerprint of the encoder that made the vectors.

        Returns:
            ``(found, vectors)``: a boolean mask of shape ``(n,)`` and a float32 array of shape
            ``(n, dim)`` whose rows are zero where ``found`` is false. When nothing at all is
            stored for ``fingerprint`` yet, ``vectors`` has shape ``(n, 0)``.
        """
        shard = self._shard(fingerprint)
        shard.refresh()
        n = len(texts)
        found = np.zeros(n, dtype=bool)
        if shard.dim is None:
            return found, np.zeros((n, 0), dtype=np.float32)
        vectors = np.zeros((n, shard.dim), dtype=np.float32)
        by_chunk: dict[int, tuple[list[int], list[int]]] = {}
        for i, text in enumerate(texts):
            hit = shard.index.get(text_key(text))
            if hit is not None:
                found[i] = True
                positions, rows = by_chunk.setdefault(hit[0], ([], []))
                positions.append(i)
                rows.append(hit[1])
        for chunk_id, (positions, rows) in by_chunk.items():
            vectors[positions] = shard.chunks[chunk_id][rows]
        return found, vectors

    def put_many(
        self,
        texts: Sequence[str],
        vectors: np.ndarray,
        *,
        fingerprint: str,
        info: Mapping[str, Any] | None = None,
    ) -> int:
        """Store the vectors of ``texts`` (texts already stored are skipped).

        Args:
            texts: Texts that were embedded.
            vectors: Their vectors, shape ``(len(texts), dim)``; stored as float32.
            fingerprint: Fingerprint of the encoder that made them.
            info: JSON-serialisable description of the encoder, kept in ``meta.json`` for humans.

        Returns:
            The number of vectors newly written.

        Raises:
            ValueError: If the shapes do not match each other or the dimension already stored.
        """
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"vectors must have shape ({len(texts)}, dim) for {len(texts)} texts, "
                             f"got {vectors.shape}")
        shard = self._shard(fingerprint)
        shard.refresh()
        if shard.dim is not None and vectors.shape[1] != shard.dim:
            raise ValueError(f"vectors have dimension {vectors.shape[1]}, but the cache for fingerprint "
                             f"{fingerprint} holds dimension {shard.dim}")
        rows: list[int] = []
        keys: list[bytes] = []
        seen: set[bytes] = set()
        for i, text in enumerate(texts):
            key = text_key(text)
            if key in shard.index or key in seen:
                continue
            seen.add(key)
            keys.append(key)
            rows.append(i)
        if not rows:
            return 0
        shard.folder.mkdir(parents=True, exist_ok=True)
        if shard.dim is None:
            meta = {"fingerprint": fingerprint, "dim": int(vectors.shape[1]), "dtype": "float32",
                    "encoder": dict(info) if info else {}}
            atomic_write_text(shard.folder / "meta.json", json.dumps(meta, indent=2) + "\n")
            shard.dim = int(vectors.shape[1])
        name = f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), _KEY_BYTES)
        fresh = np.ascontiguousarray(vectors[rows], dtype=np.float32)
        _atomic_save(shard.folder / f"{name}{_VECTORS}", fresh)
        _atomic_save(shard.folder / f"{name}{_KEYS}", key_array)
        shard.refresh()
        return len(rows)

    def count(self, fingerprint: str) -> int:
        """Number of vectors stored for ``fingerprint``."""
        shard = self._shard(fingerprint)
        shard.refresh()
        return len(shard.index)

    def fingerprints(self) -> list[str]:
        """Fingerprints that have a folder in the cache."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def compact(self, fingerprint: str) -> None:
        """Merge the chunks of ``fingerprint`` into one (fewer files to open on the next run).

        Do not run it while another process writes to the same fingerprint.
        """
        shard = self._shard(fingerprint)
        shard.refresh()
        if len(shard.chunks) <= 1:
            return
        keys = list(shard.index)
        vectors = np.stack([shard.chunks[c][r] for c, r in (shard.index[k] for k in keys)])
        old = sorted(shard.chunk_names)
        name = f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), _KEY_BYTES)
        _atomic_save(shard.folder / f"{name}{_VECTORS}", vectors.astype(np.float32))
        _atomic_save(shard.folder / f"{name}{_KEYS}", key_array)
        self._shards.pop(fingerprint)
        for chunk in old:  # keys first: a reader then never sees a keys file without its vectors
            (shard.folder / f"{chunk}{_KEYS}").unlink(missing_ok=True)
            (shard.folder / f"{chunk}{_VECTORS}").unlink(missing_ok=True)

    def clear(self, fingerprint: str | None = None) -> None:
        """Delete the vectors of ``fingerprint``, or of every fingerprint when ``None``."""
        targets: Iterable[str] = [fingerprint] if fingerprint is not None else self.fingerprints()
        for fp in targets:
            self._shard(fp)
            shutil.rmtree(self.folder / fp, ignore_errors=True)
            self._shards.pop(fp, None)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
