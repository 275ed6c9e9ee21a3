"""A disk cache of a frozen encoder's output vectors.

Encoding is by far the slowest step when the encoder is frozen: the AG News example encodes
~20k texts once for the raw evaluation, again for quaterion's cache pass and again for the
fine-tuned evaluation. `EmbeddingCache` stores each vector once, keyed by

* an **encoder fingerprint** (see `refinery_quaterion.model.encoder.TransformerEncoder.fingerprint`:
  a hash of the weights, tokenizer, pooling and ``max_length``), and
* the **SHA-1 of the text** that was embedded,

so any later run with the same frozen encoder is served from disk.

Layout on disk::

    folder/
      <fingerprint>/
        meta.json                     # dim, dtype and a human-readable description
        <chunk>.chunk.npy             # one record per text: SHA-1 digest (20 bytes) + float32 vector

Each ``put_many`` writes one new chunk file, keys and vectors together, under a temporary name
that is renamed into place when complete (`refinery_quaterion._io.atomic_path`). A reader
therefore sees a whole chunk or none of it -- also when the writer is interrupted (Ctrl-C) or
killed mid-write -- and several processes can add to the same cache at the same time. Chunks of
the older two-file layout (``<chunk>.keys.npy`` + ``<chunk>.vectors.npy``) are still read, and
`EmbeddingCache.compact` rewrites them in the one-file layout. Each chunk's name ends with the
first 16 hex digits of the SHA-256 of its records, checked when it is read. A chunk that cannot
be read, or whose bytes changed since it was written, is skipped with a warning (its texts are
encoded again), never served; an unreadable ``meta.json`` is ignored with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion._io import atomic_path, atomic_write_text

__all__ = ["EmbeddingCache", "default_cache_dir", "text_key"]

_KEY_BYTES = 20  # SHA-1 digest size
_CHUNK = ".chunk.npy"  # keys and vectors in one file (one rename makes a chunk visible)
_VECTORS = ".vectors.npy"  # older layout: two files per chunk, the keys file renamed last
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
            self.dim = _read_dim(meta)

    def refresh(self) -> None:
        """Pick up chunks written since the last look (by this or another process)."""
        if not self.folder.is_dir():
            return
        found = [(p.name[: -len(_CHUNK)], p) for p in self.folder.glob(f"*{_CHUNK}")]
        found += [(p.name[: -len(_KEYS)], p) for p in self.folder.glob(f"*{_KEYS}")]
        for name, path in sorted(found, key=lambda item: item[1].name):
            if name in self.chunk_names or path.name.startswith("."):
                continue
            self.chunk_names.add(name)  # also when unreadable: warn once, then leave it alone
            try:
                keys, vectors = _read_chunk(path, name)
            except (OSError, ValueError, EOFError) as err:
                warnings.warn(f"ignoring unreadable embedding cache chunk {path} ({err}); its texts are encoded "
                              "again; delete the file", RuntimeWarning, stacklevel=3)
                continue
            if self.dim is None:
                self.dim = int(vectors.shape[1])
            elif vectors.shape[1] != self.dim:
                warnings.warn(f"ignoring embedding cache chunk {path}: dimension {vectors.shape[1]}, expected "
                              f"{self.dim}; delete the file", RuntimeWarning, stacklevel=3)
                continue
            chunk_id = len(self.chunks)
            self.chunks.append(vectors)
            for row, key in enumerate(keys):
                self.index.setdefault(key, (chunk_id, row))


def _read_dim(meta: Path) -> int | None:
    """The ``dim`` of a shard's ``meta.json``; ``None`` (taken from the chunks) with a warning when unreadable."""
    try:
        dim = json.loads(meta.read_text(encoding="utf-8"))["dim"]
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"'dim' is {dim!r}")
        return dim
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        warnings.warn(f"ignoring unreadable embedding cache file {meta} ({type(err).__name__}: {err}); the vector "
                      "dimension is taken from the chunks; delete the file to rebuild it", RuntimeWarning,
                      stacklevel=4)
        return None


def _read_chunk(path: Path, name: str) -> tuple[list[bytes], np.ndarray]:
    """The keys and (memory-mapped) vectors of one chunk, in either layout.

    Raises:
        ValueError: If the file is not a chunk (wrong dtype or shape, or mismatched legacy files).
    """
    if path.name.endswith(_CHUNK):
        array = np.load(path, mmap_mode="r")
        fields = array.dtype.fields or {}
        if array.ndim != 1 or set(fields) != {"key", "vector"} or fields["key"][0].itemsize != _KEY_BYTES:
            raise ValueError(f"not an embedding cache chunk (dtype {array.dtype}, shape {array.shape})")
        _verify_checksum(name, array)
        raw = np.ascontiguousarray(array["key"]).tobytes()
        vectors = array["vector"]
    else:  # the older layout: keys and vectors in two files
        key_array = np.load(path)
        vectors = np.load(path.with_name(f"{name}{_VECTORS}"), mmap_mode="r")
        if key_array.ndim != 2 or key_array.shape[1] != _KEY_BYTES or len(key_array) != len(vectors):
            raise ValueError(f"keys {key_array.shape} do not match vectors {vectors.shape}")
        raw = np.ascontiguousarray(key_array, dtype=np.uint8).tobytes()
    if vectors.ndim != 2:
        raise ValueError(f"vectors have shape {vectors.shape}, expected (n, dim)")
    keys = [raw[i * _KEY_BYTES : (i + 1) * _KEY_BYTES] for i in range(len(vectors))]
    return keys, vectors


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
        _write_chunk(shard.folder, keys, np.asarray(vectors)[rows])
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
        _write_chunk(shard.folder, keys, vectors)
        self._shards.pop(fingerprint)
        for chunk in old:  # the merged chunk is in place: a reader finds every vector in it
            for suffix in (_CHUNK, _KEYS, _VECTORS):  # legacy keys before their vectors
                (shard.folder / f"{chunk}{suffix}").unlink(missing_ok=True)

    def clear(self, fingerprint: str | None = None) -> None:
        """Delete the vectors of ``fingerprint``, or of every fingerprint when ``None``."""
        targets: Iterable[str] = [fingerprint] if fingerprint is not None else self.fingerprints()
        for fp in targets:
            self._shard(fp)
            shutil.rmtree(self.folder / fp, ignore_errors=True)
            self._shards.pop(fp, None)


def _write_chunk(folder: Path, keys: Sequence[bytes], vectors: np.ndarray) -> Path:
    """Write one chunk (keys and float32 vectors in one file) atomically; return its path."""
    vectors = np.asarray(vectors, dtype=np.float32)
    records = np.empty(len(keys), dtype=[("key", f"V{_KEY_BYTES}"), ("vector", np.float32, (vectors.shape[1],))])
    records["key"] = np.frombuffer(b"".join(keys), dtype=f"V{_KEY_BYTES}")
    records["vector"] = vectors
    path = folder / f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}-{_checksum(records)}{_CHUNK}"
    _atomic_save(path, records)
    return path


def _checksum(records: np.ndarray) -> str:
    """The first 16 hex digits of the SHA-256 of a chunk's records (written into its name)."""
    return hashlib.sha256(np.ascontiguousarray(records).tobytes()).hexdigest()[:16]


def _verify_checksum(name: str, records: np.ndarray) -> None:
    """Refuse a chunk whose records differ from the checksum in its name (chunks without one pass).

    Raises:
        ValueError: Naming both checksums.
    """
    parts = name.split("-")
    expected = parts[-1] if len(parts) == 3 and len(parts[-1]) == 16 else None
    if expected is not None and (actual := _checksum(records)) != expected:
        raise ValueError(f"its bytes changed since it was written (checksum {actual}, expected {expected})")


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` through a temporary file and a rename: never half-written, umask respected."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)  # a handle, not a name: np.save would append ".npy" to the temporary name
