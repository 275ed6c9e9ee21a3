"""A Hugging Face text encoder for quaterion.

* `TransformerEncoder` — a ``quaterion_models`` encoder over any Hugging Face encoder
  (``AutoModel`` + ``AutoTokenizer``) with fast, length-sorted batch encoding and an optional
  disk `refinery_quaterion.model.cache.EmbeddingCache` for its frozen output.
* Pretrained models are found and loaded by `refinery_quaterion.model.pretrained` (``"minilm"`` is
  the bundled all-MiniLM-L6-v2; nothing is downloaded unless allowed).
* The frozen pass runs on a backend of `refinery_quaterion.model.backends` (torch, ONNX Runtime, OpenVINO).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from refinery_quaterion import _compat  # noqa: F401  (quaterion shims: before quaterion is imported)

# isort: split
import numpy as np
import torch
from quaterion.dataset import SimilarityGroupSample
from quaterion_models.encoders import Encoder
from torch import Tensor

from refinery_quaterion._bars import stage_bar
from refinery_quaterion.data.text import TextSpec, TextTemplate
from refinery_quaterion.model.backends import (
    BACKENDS,
    DEFAULT_BACKEND,
    BatchRunner,
    check_backend,
    embed_sorted,
    resolve_backend,
)
from refinery_quaterion.model.cache import EmbeddingCache
from refinery_quaterion.model.config import check_calibration_size, check_max_length, check_pooling
from refinery_quaterion.model.openvino_backend import DEFAULT_CALIBRATION_SIZE
from refinery_quaterion.model.pretrained import MINILM_ALIAS, load_pretrained, quiet_transformers
from refinery_quaterion.model.runtime import pool_tokens, torch_threads

__all__ = ["TransformerEncoder"]

_PROGRESS_THRESHOLD = 1000  # progress=None shows a bar from this many texts to encode
_CHUNK = 8192  # texts per length-sorted chunk (and per embedding-cache write)


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
    import pandas as pd

    if isinstance(items, pd.DataFrame):
        items = items.to_dict(orient="records")
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
    (Lightning calls ``.train()`` on every module), gradients are off, an optional disk
    `EmbeddingCache` serves texts it has seen before, and the pass may run on a faster
    backend (see `refinery_quaterion.model.backends`).

    Args:
        transformer: A loaded ``transformers`` encoder model (``AutoModel``).
        tokenizer: Its tokenizer.
        template: Template rendering a record as text (format string or callable); plain strings
            are embedded as they are. ``None`` means ``"{text}"``, and lets
            `refinery_quaterion.training.fit.fit` adopt the training dataset's template.
        pooling: ``"mean"`` (mean of the token vectors, the default) or ``"cls"`` (first token).
        max_length: Maximum number of tokens per text (longer texts are truncated); capped at
            the model's position embeddings.
        trainable: Fine-tune the transformer's weights (quaterion's ``Encoder.trainable``; the
            model settings call it ``trainable_encoder``).
        normalize: L2-normalise the pooled vectors (what sentence-transformers does for MiniLM).
        batch_size: Texts per forward pass in `encode` and when serving frozen batches.
        embedding_cache: Disk cache of the frozen output, or a folder for one; ignored while
            trainable.
        source: Name the model was loaded from (recorded in the saved settings).
        backend: What runs the frozen transformer pass: ``"auto"`` (default, see
            `refinery_quaterion.model.backends.resolve_backend`) or a name of
            `refinery_quaterion.model.backends.BACKENDS` (all but ``"torch"`` for frozen encoders only).
        calibration_size: Texts the ``"openvino-int8"`` backend calibrates its int8 model on
            (`refinery_quaterion.model.config.ModelConfig.calibration_size`).

    Attributes:
        transformer: The Hugging Face model (``AutoModel``); its ``last_hidden_state`` is pooled.
        tokenizer: The Hugging Face tokenizer.
        template: The compiled `TextTemplate` records are rendered with.
        template_explicit: Whether the template was given (``False``: ``"{text}"`` stands in
            and ``fit`` may adopt the dataset's).
        embedding_cache: The disk `EmbeddingCache`, or ``None`` (also readable as ``cache``).
        pooling, max_length, normalize, batch_size, source, backend, calibration_size: As the
            arguments (``max_length`` capped; ``backend`` and ``calibration_size`` may be set).

    Raises:
        ValueError: If ``pooling``, ``max_length``, ``batch_size``, ``backend`` or
            ``calibration_size`` is invalid, or ``backend`` cannot run a trainable encoder.
    """

    def __init__(self, transformer: Any, tokenizer: Any, *, template: TextSpec | None = None, pooling: str = "mean",
                 max_length: int = 128, trainable: bool = False, normalize: bool = True, batch_size: int = 64,
                 embedding_cache: EmbeddingCache | str | os.PathLike | None = None, source: str | None = None,
                 backend: str = DEFAULT_BACKEND, calibration_size: int = DEFAULT_CALIBRATION_SIZE):
        super().__init__()
        check_pooling(pooling)
        check_max_length(max_length)
        check_backend(backend, trainable=trainable)
        positions = getattr(transformer.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 1:
            max_length = min(max_length, positions)  # a longer input would index past the positions
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.template_explicit = template is not None
        self.template = TextTemplate.coerce(template if template is not None else "{text}")
        self.pooling = pooling
        self.max_length = max_length
        self.normalize = bool(normalize)
        self.batch_size = batch_size
        self.embedding_cache = EmbeddingCache.coerce(embedding_cache)
        self.source = source or getattr(transformer.config, "_name_or_path", None) or ""
        self._trainable = bool(trainable)
        self._fingerprint: str | None = None
        self._runners: dict[str, BatchRunner] = {}
        self.calibration_size = calibration_size  # validates (the setter)
        self.backend = backend  # resolves "auto" (the setter)
        if not self._trainable:
            self.freeze()

    def __getstate__(self) -> dict[str, Any]:
        """State for pickling and ``copy.deepcopy``, without the backends' runtime sessions."""
        state = dict(super().__getstate__())
        state["_runners"] = {}
        return state

    @property
    def backend(self) -> str:
        """Name of the registered backend that runs the frozen pass (see `refinery_quaterion.model.backends`).

        Setting it takes a registered name or ``"auto"`` (`refinery_quaterion.model.backends.resolve_backend`);
        reading it gives the backend in use, e.g. ``"onnx"`` for ``"auto"``.
        """
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        self._backend = resolve_backend(name, trainable=self._trainable)
        self._requested_backend = name
        self._fingerprint = None

    @property
    def calibration_size(self) -> int:
        """Texts the ``"openvino-int8"`` backend calibrates on; in its fingerprint (setting it drops built runners)."""
        return self._calibration_size

    @calibration_size.setter
    def calibration_size(self, size: int) -> None:
        self._calibration_size = check_calibration_size(size)
        self._fingerprint = None
        self._runners.clear()

    @contextlib.contextmanager
    def using_backend(self, name: str) -> Iterator[TransformerEncoder]:
        """Run with backend ``name`` inside the ``with`` block, then restore the previous one."""
        previous = self._requested_backend
        self.backend = name
        try:
            yield self
        finally:
            self.backend = previous

    @classmethod
    def from_pretrained(cls, pretrained: str | os.PathLike = MINILM_ALIAS, *, allow_download: bool = False,
                        **settings: Any) -> TransformerEncoder:
        """Load a Hugging Face model by id or folder (``"minilm"``: the bundled all-MiniLM-L6-v2).

        Args:
            pretrained: Hugging Face id, local folder, or ``"minilm"``.
            allow_download: Try the Hugging Face hub when the model is not cached locally
                (off by default, so nothing waits on a network that is not there).
            **settings: Keyword arguments of `TransformerEncoder`.

        Raises:
            ModelNotFoundError: If the model is neither a folder nor cached (names ``"minilm"``).
        """
        transformer, tokenizer = load_pretrained(pretrained, allow_download=allow_download)
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
        self.backend = self._requested_backend  # "auto" may now mean another backend
        return self

    def train(self, mode: bool = True) -> TransformerEncoder:
        """Set train mode, keeping a frozen transformer in eval mode (no dropout)."""
        super().train(mode)
        if not self._trainable:
            self.transformer.eval()
        return self

    def set_template(self, template: TextSpec) -> None:
        """Replace the text template."""
        self.template = TextTemplate.coerce(template)
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
            return self.embed_tokens(batch["input_ids"].to(device), batch["attention_mask"].to(device))
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
                The ONNX backends use one session with as many threads as usable CPUs.

        Returns:
            float32 array of shape ``(n, embedding_size)`` in input order.
        """
        texts = self.texts_of(items)
        was_training = self.transformer.training
        self.transformer.eval()
        try:
            with torch_threads(num_threads), torch.inference_mode():
                embeddings = self._encode_texts(texts, batch_size=batch_size or self.batch_size,
                                                progress=progress)
        finally:
            if was_training:
                self.transformer.train()
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
        cache = self.embedding_cache if not self._trainable else None
        fingerprint = self.fingerprint() if cache is not None else ""
        if cache is not None:
            found, cached = cache.get_many(distinct, fingerprint=fingerprint)
            todo = np.flatnonzero(~found)
        else:
            found, cached, todo = np.zeros(len(distinct), dtype=bool), None, np.arange(len(distinct))
        show = progress if progress is not None else len(todo) >= _PROGRESS_THRESHOLD
        pieces: list[Tensor] = []
        with stage_bar(len(todo), desc="Encoding", unit="text", enabled=bool(show)) as bar:
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
        """Run the backend over ``texts`` in length-sorted batches, input order kept (`embed_sorted`)."""
        return embed_sorted(self, texts, batch_size=batch_size, bar=bar)

    def backend_runner(self) -> BatchRunner:
        """The current backend's runner, built on first use (an ONNX graph is built or loaded then)."""
        run = self._runners.get(self._backend)
        if run is None:
            run = self._runners[self._backend] = BACKENDS[self._backend].build(self)
        return run

    def embed_tokens(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Pooled vectors of a padded batch of token ids with the torch transformer, ``(batch, dim)``."""
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool_tokens(hidden, attention_mask, self.pooling, self.normalize).float()

    # -- identity and persistence ---------------------------------------------------------

    def fingerprint(self) -> str:
        """Identity of the encoder's output, the key of its `EmbeddingCache` entries.

        A SHA-1 over the weights (except an unused pooler layer), the tokenizer, the model type,
        pooling, ``max_length``, ``normalize`` and the backend's identity (nothing for ``"torch"``,
        see `refinery_quaterion.model.backends.EncoderBackend.key`) -- not over the path, so a saved
        copy of the same frozen weights shares the cache of the model it was loaded from. Cached
        while frozen.
        """
        if self._fingerprint is not None and not self._trainable:
            return self._fingerprint
        digest = hashlib.sha1()
        model_type = getattr(self.transformer.config, "model_type", type(self.transformer).__name__)
        settings = {"model_type": model_type, "pooling": self.pooling, "max_length": self.max_length,
                    "normalize": self.normalize}
        backend = BACKENDS[self._backend].key(self)
        if backend:  # the torch backend adds nothing: caches written before backends existed stay valid
            settings["backend"] = backend
        digest.update(json.dumps(settings, sort_keys=True).encode())
        fast = getattr(self.tokenizer, "backend_tokenizer", None)
        if fast is not None:  # minus the truncation/padding state that calls leave behind
            state = json.loads(fast.to_str())
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
                "dim": self.embedding_size, "encoder_backend": self._backend}

    def save(self, output_path: str | os.PathLike) -> None:
        """Write tokenizer, weights (``transformer/``) and settings (``encoder.json``).

        Raises:
            ValueError: If the text template is a callable that cannot be imported again.
        """
        template = self.template.to_config()
        settings: dict[str, Any] = {
            "format": 1,
            "source": self.source,
            "template": template,
            "template_callable": None if template is not None else _callable_ref(self.template.spec),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "normalize": self.normalize,
            "trainable": self._trainable,
            "batch_size": self.batch_size,
            "backend": self._requested_backend,
            "calibration_size": self._calibration_size,
        }
        out = Path(output_path)
        out.mkdir(parents=True, exist_ok=True)
        with quiet_transformers():
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
        transformer, tokenizer = load_pretrained(path / "transformer")
        template = settings.get("template")
        if template is None and settings.get("template_callable"):
            template = _import_ref(settings["template_callable"])
        return cls(transformer, tokenizer, template=template, pooling=settings["pooling"],
                   max_length=settings["max_length"], normalize=settings.get("normalize", True),
                   trainable=settings.get("trainable", False), batch_size=settings.get("batch_size", 64),
                   source=settings.get("source"), backend=settings.get("backend", "torch"),  # before backends: torch
                   calibration_size=settings.get("calibration_size", DEFAULT_CALIBRATION_SIZE))

    def extra_repr(self) -> str:
        """Settings shown in ``repr(encoder)``."""
        return (f"source={self.source!r}, pooling={self.pooling!r}, max_length={self.max_length}, "
                f"trainable={self._trainable}, dim={self.embedding_size}, backend={self._backend!r}")


