"""The inference side of a trained model: `EmbeddingModel` (what `refinery_quaterion.training.model_files.load`
returns) and `EncodeMixin`, the ``encode`` / ``similarity`` / ``encode_raw`` / ``apply_head`` it
shares with the trainable `refinery_quaterion.model.trainable.DistilBertSimilarityModel`.

``encode`` works like sentence-transformers' ``SentenceTransformer.encode``: one text gives a
1-D vector, a list (or records, a DataFrame, a dataset) a 2-D float32 array, unit-length rows
by default, so that the dot product of two vectors is their cosine similarity.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from refinery_quaterion import _compat  # noqa: F401  (quaterion shims: before quaterion is imported)

# isort: split
import numpy as np
import torch
from quaterion.train.cache import CacheEncoder
from quaterion_models import SimilarityModel
from quaterion_models.heads import EncoderHead

from refinery_quaterion.data.dataset import LabelMap
from refinery_quaterion.data.text import TextTemplate
from refinery_quaterion.model.config import FitConfig, ModelConfig
from refinery_quaterion.model.encoder import TransformerEncoder

__all__ = ["PRECISIONS", "EmbeddingModel", "EncodeMixin", "ModelFileError", "quantize"]


class ModelFileError(ValueError):
    """A file of a saved model folder is missing, empty, truncated or malformed.

    Attributes:
        path: The file (or folder) at fault.
    """

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


class _Movable(Protocol):
    def to(self, device: str | torch.device) -> Any: ...


def _normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` with unit-length rows (rows of zeros stay zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0).astype(np.float32, copy=False)


def _apply_head(head: EncoderHead, raw: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Run ``head`` over raw encoder vectors in inference mode."""
    vectors = np.asarray(raw, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    if vectors.ndim != 2 or vectors.shape[1] != head.input_embedding_size:
        raise ValueError(
            f"raw embeddings must have shape (n, {head.input_embedding_size}), got {vectors.shape}"
        )
    device = next(head.parameters(), torch.empty(0)).device
    was_training = head.training
    head.eval()
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(vectors), batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(vectors[start : start + batch_size])).to(device)
                out.append(head(chunk).float().cpu().numpy())
    finally:
        head.train(was_training)
    if not out:
        return np.zeros((0, head.output_size), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
"""The ``precision`` values of `EncodeMixin.encode` (sentence-transformers' names)."""


def quantize(vectors: np.ndarray, precision: str) -> np.ndarray:
    """``(n, dim)`` float vectors at ``precision``, as sentence-transformers' ``quantize_embeddings`` makes them.

    ``"int8"`` / ``"uint8"``: per dimension, the range from the smallest to the largest value over
    the rows is cut into 256 equal buckets (bucket index, minus 128 for int8). ``"binary"`` /
    ``"ubinary"``: one bit per dimension (value > 0), packed into bytes (minus 128 for binary).

    Raises:
        ValueError: If ``precision`` is unknown, or int8 / uint8 ranges would come from one row.
    """
    if precision == "float32":
        return np.asarray(vectors, dtype=np.float32)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(vectors > 0, axis=-1)
        return (packed - 128).astype(np.int8) if precision == "binary" else packed
    if precision not in ("int8", "uint8"):
        raise ValueError(f"precision {precision!r} is not supported, must be one of {list(PRECISIONS)}")
    if len(vectors) == 0:
        return np.zeros(vectors.shape, dtype=np.int8 if precision == "int8" else np.uint8)
    if len(vectors) == 1:
        raise ValueError(f"cannot compute {precision} quantization ranges from a single embedding; "
                         "encode more texts at once")
    starts = vectors.min(axis=0)
    steps = (vectors.max(axis=0) - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    buckets = np.clip(np.floor((vectors - starts) / steps), 0, 255)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)


def _same_setting(name: str, value: bool | None, alias: str, alias_value: bool | None) -> bool | None:
    """``value``, or ``alias_value`` when only the alias is given; both given must agree."""
    if alias_value is None:
        return value
    if value is not None and bool(value) != bool(alias_value):
        raise ValueError(f"{name}={value!r} and {alias}={alias_value!r} disagree; give one of them")
    return alias_value


def _converted(vectors: np.ndarray, *, single: bool, to_numpy: bool, to_tensor: bool) -> Any:
    """``vectors`` as `EncodeMixin.encode` returns them: array, tensor or list of tensors; one row if ``single``."""
    if to_tensor:
        out: Any = torch.from_numpy(np.ascontiguousarray(vectors))
    elif to_numpy:
        out = vectors
    else:
        out = list(torch.from_numpy(np.ascontiguousarray(vectors)))
    return out[0] if single else out


class EncodeMixin:
    """Encoding through an ``encoder`` (a `TransformerEncoder`) and a ``head``.

    Shared by `EmbeddingModel` and `refinery_quaterion.model.trainable.DistilBertSimilarityModel`;
    a class using it provides ``encoder``, ``head``, ``model_config``, ``fit_config`` and
    ``training_summary``.
    """

    encoder: TransformerEncoder
    head: EncoderHead
    model_config: ModelConfig | None
    fit_config: FitConfig | None
    training_summary: dict[str, Any] | None

    @property
    def template(self) -> TextTemplate:
        """Template rendering records as text (the encoder's)."""
        return self.encoder.template

    @property
    def dim(self) -> int:
        """Size of the final (fine-tuned) embeddings."""
        return int(self.head.output_size)

    @property
    def raw_dim(self) -> int:
        """Size of the raw encoder embeddings (before the head)."""
        return self.encoder.embedding_size

    def encode_raw(self, items: Any, batch_size: int = 64, progress: bool | None = None,
                   num_threads: int | None = None) -> np.ndarray:
        """Raw encoder embeddings (before the head, not normalised by this call), float32 ``(n, raw_dim)``.

        Always 2-D, in input order (one text gives one row). Arguments as in `encode`.
        """
        return self.encoder.encode(items, batch_size=batch_size, progress=progress, num_threads=num_threads)

    def apply_head(self, raw: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Apply the head to raw embeddings, e.g. ones from `encode_raw`, float32 ``(n, dim)``.

        The rows are the head's output as it is (not normalised; `encode` normalises by default).

        Raises:
            ValueError: If ``raw`` is not of shape ``(n, raw_dim)``.
        """
        return _apply_head(self.head, raw, batch_size=batch_size)

    def encode(self, items: Any, batch_size: int = 64, progress: bool | None = None,
               num_threads: int | None = None, *, normalize: bool = True,
               device: str | torch.device | None = None, show_progress_bar: bool | None = None,
               convert_to_numpy: bool = True, convert_to_tensor: bool = False,
               normalize_embeddings: bool | None = None, precision: str = "float32",
               prompt: str | None = None) -> Any:
        """Embeddings of texts or records (encoder + head), float32, in input order.

        The keywords after ``device`` are sentence-transformers' ``SentenceTransformer.encode``
        keywords, with their meanings there.

        Args:
            items: One text (``str``) or record (``dict``, rendered with `template`), or many:
                a list of texts or records, a DataFrame, or a dataset of records.
            batch_size: Texts per forward pass.
            progress: Progress bar; ``None`` shows one from 1000 texts to encode.
            num_threads: torch CPU threads for this call (see `TransformerEncoder.encode`).
            normalize: Scale each vector to unit length (cosine similarity is then the dot
                product); ``False`` gives the head's output as it is.
            device: Move the model there first (e.g. ``"cuda"``); it stays there. ``None``
                keeps its device.
            show_progress_bar: sentence-transformers' name for ``progress`` (give one of the two).
            convert_to_numpy: ``False`` (and no ``convert_to_tensor``) returns a list of 1-D
                torch tensors, one per item.
            convert_to_tensor: Return one torch tensor (on the CPU) instead of a NumPy array;
                wins over ``convert_to_numpy``.
            normalize_embeddings: sentence-transformers' name for ``normalize``; when given, it
                decides. Unlike sentence-transformers, this library normalises by default. (An
                exported sentence-transformers folder ends in ``Normalize``, so it gives unit
                vectors whatever this says.)
            precision: ``"float32"``, or quantized as sentence-transformers'
                ``quantize_embeddings`` does (after normalising): ``"int8"`` / ``"uint8"`` map
                each dimension's range over these items (their min and max) to 256 buckets;
                ``"binary"`` / ``"ubinary"`` pack the signs into bits (``dim / 8`` int8 / uint8
                values per vector). int8 and uint8 need at least two items.
            prompt: Text put before every text (after records are rendered with the template),
                e.g. ``"query: "``.

        Returns:
            Shape ``(dim,)`` for one text or record, ``(n, dim)`` for many (``(0, dim)`` for none),
            as a NumPy array (default), a torch tensor or a list of tensors (see above); binary
            precisions have ``dim / 8`` columns.

        Raises:
            ValueError: If ``progress`` and ``show_progress_bar`` disagree, ``precision`` is not
                one of the five, or int8 / uint8 ranges would come from a single vector.
        """
        progress = _same_setting("progress", progress, "show_progress_bar", show_progress_bar)
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not supported, must be one of {list(PRECISIONS)}")
        if device is not None:
            self._move(device)
        single = isinstance(items, str | Mapping)
        items = [items] if single else items
        if prompt:
            items = [prompt + text for text in self.encoder.texts_of(items)]
        raw = self.encode_raw(items, batch_size=batch_size, progress=progress, num_threads=num_threads)
        vectors = self.apply_head(raw) if len(raw) else np.zeros((0, self.dim), dtype=np.float32)
        if normalize if normalize_embeddings is None else normalize_embeddings:
            vectors = _normalize_rows(vectors)
        vectors = quantize(vectors, precision)
        return _converted(vectors, single=single, to_numpy=convert_to_numpy, to_tensor=convert_to_tensor)

    def similarity(self, a: Any, b: Any = None, *, batch_size: int = 64) -> np.ndarray:
        """Cosine similarity matrix of ``a`` and ``b`` (or of ``a`` with itself), float32 ``(len(a), len(b))``.

        Args:
            a: Texts or records (anything `encode` takes; one text counts as one row), or
                vectors of shape ``(dim,)`` or ``(n, dim)``, e.g. from `encode`.
            b: The same kinds; ``None`` compares ``a`` with itself.
            batch_size: Texts per forward pass when encoding.

        Raises:
            ValueError: If given vectors are not of width `dim`.
        """
        left = self._as_vectors(a, "a", batch_size)
        right = left if b is None else self._as_vectors(b, "b", batch_size)
        return np.ascontiguousarray(left @ right.T, dtype=np.float32)

    def _as_vectors(self, items: Any, name: str, batch_size: int) -> np.ndarray:
        if isinstance(items, np.ndarray | torch.Tensor):
            array = np.asarray(items.detach().cpu() if isinstance(items, torch.Tensor) else items, dtype=np.float32)
            array = array[None, :] if array.ndim == 1 else array
            if array.ndim != 2 or array.shape[1] != self.dim:
                raise ValueError(f"{name} must be texts, records or vectors of shape (n, {self.dim}), "
                                 f"got an array of shape {tuple(np.shape(items))}")
            return _normalize_rows(array)
        vectors = self.encode(items, batch_size=batch_size)
        return vectors[None, :] if vectors.ndim == 1 else vectors

    def _move(self, device: str | torch.device) -> None:
        mover: _Movable = self  # type: ignore[assignment]  (both users are movable: nn.Module or EmbeddingModel)
        mover.to(device)

    def model_section(self) -> dict[str, Any]:
        """The ``model`` section of ``training_config.json``: `ModelConfig.to_dict` plus facts.

        The facts are ``model_type`` (of the transformer), ``raw_dim`` and ``dim``; ``template``
        is the template in use (``None`` for a callable).
        """
        encoder = self.encoder
        facts = {"model_type": getattr(encoder.transformer.config, "model_type", None),
                 "raw_dim": self.raw_dim, "dim": self.dim}
        if self.model_config is None:
            return {**encoder.describe(), "template": self.template.to_config(), **facts}
        return {**self.model_config.to_dict(), "template": self.template.to_config(), **facts}

    def config_sections(self) -> dict[str, Any]:
        """The ``model``, ``fit`` and ``training`` sections of ``training_config.json``."""
        return {"model": self.model_section(),
                "fit": self.fit_config.to_dict() if self.fit_config is not None else None,
                "training": self.training_summary}


class EmbeddingModel(EncodeMixin):
    """A trained similarity model for inference: encoder + head, plus its label map and settings.

    Usually obtained from `refinery_quaterion.training.model_files.load` or
    `refinery_quaterion.model.trainable.DistilBertSimilarityModel.embedding_model`.

    Args:
        model: A quaterion ``SimilarityModel`` whose single encoder is a `TransformerEncoder`.
        label_map: Labels the model was trained on.
        config: The contents of ``training_config.json`` (as written by
            `refinery_quaterion.training.model_files.save`).
        path: Folder the model was loaded from.

    Attributes:
        model: The quaterion ``SimilarityModel`` (encoder + head).
        encoder: Its `TransformerEncoder` (``transformer``, ``tokenizer``, ``pooling``,
            ``max_length``, ``normalize``, ``template``).
        label_map: Labels the model was trained on, or ``None``.
        config: ``training_config.json`` as a dict (empty when there was none).
        model_config: The `ModelConfig` it was trained with (``None`` without a config).
        fit_config: The `FitConfig` it was trained with (``None`` when not recorded).
        path: Folder it was loaded from, or ``None``.

    Raises:
        TypeError: If the model's encoder is not one `TransformerEncoder`.
        ValueError: If the ``model`` section of ``config`` is not a valid `ModelConfig`
            (a `ModelFileError` naming ``training_config.json`` when ``path`` is given).
    """

    def __init__(self, model: SimilarityModel, *, label_map: LabelMap | None = None,
                 config: Mapping[str, Any] | None = None, path: str | os.PathLike | None = None):
        encoders = list(model.encoders.values())
        encoder = encoders[0] if len(encoders) == 1 else None
        if isinstance(encoder, CacheEncoder):
            encoder = encoder.wrapped_encoder
        if not isinstance(encoder, TransformerEncoder):
            raise TypeError(f"EmbeddingModel needs a SimilarityModel with one TransformerEncoder, "
                            f"got encoders {[type(e).__name__ for e in encoders]}")
        self.model = model
        self.encoder: TransformerEncoder = encoder
        self.label_map = label_map
        self.config: dict[str, Any] = dict(config or {})
        self.path = Path(path) if path is not None else None
        self.model_config, self.fit_config = _configs_of(self.config, where=self.path)

    @property
    def head(self) -> EncoderHead:
        """The trained head."""
        return self.model.head

    @property
    def training_summary(self) -> dict[str, Any] | None:
        """What training did (the ``training`` section of ``training_config.json``)."""
        return self.config.get("training")

    def to(self, device: str | torch.device) -> EmbeddingModel:
        """Move the model to ``device`` (e.g. ``"cuda"``). Returns ``self``."""
        self.model.to(device)
        return self

    def __repr__(self) -> str:
        return (f"EmbeddingModel(source={self.encoder.source!r}, dim={self.dim}, "
                f"labels={self.label_map.names if self.label_map else None})")


def _configs_of(config: Mapping[str, Any], where: Path | None) -> tuple[ModelConfig | None, FitConfig | None]:
    """The `ModelConfig` and `FitConfig` recorded in a ``training_config.json`` (format 3)."""
    if config.get("format") in (1, 2):
        message = (f"was written by refinery-quaterion 0.2 or earlier (format {config['format']}), which this "
                   "version no longer reads; train the model again")
        raise ModelFileError(where / "training_config.json", message) if where is not None else ValueError(message)
    section = config.get("model")
    if section is None and "pretrained" in config:  # a bare model section
        section = config
    try:
        model_config = ModelConfig.from_dict(section) if section is not None else None
        fit_config = FitConfig.from_dict(config["fit"]) if config.get("fit") is not None else None
    except (TypeError, ValueError) as err:
        if where is not None:
            raise ModelFileError(where / "training_config.json", f"does not hold valid settings: {err}") from err
        raise ValueError(f"the model's config does not hold valid settings: {err}") from err
    return model_config, fit_config
