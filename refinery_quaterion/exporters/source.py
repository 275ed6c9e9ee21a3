"""What an export needs from a trained model, read in one place.

The exporters never reach into the library's model classes themselves: `read_model` collects
the Hugging Face model and tokenizer, the encoder settings (pooling, ``max_length``,
normalisation), the trained head, the text template, the labels and the training
configuration into one `ExportSource`, looking the attributes up by name and failing with an
`ModelExportError` that says which one is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ModelExportError", "ExportSource", "read_model"]


class ModelExportError(ValueError):
    """A model (or one of its parts) cannot be exported in the requested format.

    A ``ValueError``; the message names the part (a head, an activation, a pooling mode, a
    tokenizer) and says why.
    """


@dataclass(frozen=True)
class ExportSource:
    """Everything the exporters read from a trained model.

    Attributes:
        transformer: The Hugging Face encoder (``transformers.AutoModel``).
        tokenizer: Its tokenizer (a fast one for the ONNX export).
        head: The trained head (a ``torch.nn.Module``, e.g. a quaterion ``EncoderHead``).
        pooling: ``"mean"`` or ``"cls"``.
        max_length: Maximum tokens per text (longer texts are truncated).
        normalize: Whether the encoder L2-normalises the pooled vector before the head.
        encode: The library's own ``encode(texts) -> (n, dim)`` of the model with the torch
            encoder backend (the reference the exports are checked against, also for a model
            whose encoder runs on ONNX Runtime).
        template: The text template as a format string, e.g. ``"{Title}. {Description}"``
            (``None`` when the template is a Python function, see ``template_ref``).
        template_ref: ``module:qualname`` of a template function, else ``None``.
        labels: Label names the model was trained on (index = group id), or ``None``.
        config: Training configuration (the contents of ``training_config.json``), or ``{}``.
        head_name: Name of the head in the library's registry (e.g. ``"skip_connection"``).
        base_model: The pretrained model the encoder was loaded from.
        model_path: Folder the model was loaded from, if any.
    """

    transformer: Any
    tokenizer: Any
    head: Any
    pooling: str
    max_length: int
    normalize: bool
    encode: Callable[[list[str]], np.ndarray]
    template: str | None = None
    template_ref: str | None = None
    labels: list[str] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    head_name: str | None = None
    base_model: str = ""
    model_path: Path | None = None

    @property
    def raw_dim(self) -> int:
        """Size of the pooled encoder vector (the transformer's hidden size)."""
        return int(self.transformer.config.hidden_size)

    @property
    def head_label(self) -> str:
        """How messages name the head: registry name and class, e.g. ``'gated' (GatedHead)``."""
        cls = type(self.head).__name__
        return f"{self.head_name!r} ({cls})" if self.head_name else cls


_POOLINGS = ("mean", "cls")


def read_model(model_or_path: Any, *, label_map: Any = None) -> ExportSource:
    """Collect what an export needs from a model or a saved model folder.

    Args:
        model_or_path: A folder written by `refinery_quaterion.save`, the model `load`
            returns, or a trained `DistilBertSimilarityModel`.
        label_map: Labels to record (a `LabelMap` or a list of names); by default the model's
            own label map, else the labels of its ``training_config.json``.

    Returns:
        An `ExportSource`.

    Raises:
        FileNotFoundError: If ``model_or_path`` is a path that is not a saved model folder.
        ModelExportError: If the model lacks a part the export needs (the message names it).
    """
    if isinstance(model_or_path, str | os.PathLike):
        from refinery_quaterion.training.model_files import load

        model = load(model_or_path)
    else:
        model = model_or_path
    encoder = _encoder_of(model)
    transformer = _first_attr(encoder, ("transformer", "auto_model", "hf_model"), "Hugging Face model")
    if not hasattr(transformer, "config") or not hasattr(transformer, "save_pretrained"):
        raise ModelExportError(f"the encoder's model is a {type(transformer).__name__}, not a Hugging Face model")
    tokenizer = _first_attr(encoder, ("tokenizer",), "tokenizer")
    head = _first_attr(model, ("head",), "head", fallback=lambda: model.model.head)
    pooling = str(_first_attr(encoder, ("pooling", "pooling_mode"), "pooling mode"))
    if pooling not in _POOLINGS:
        raise ModelExportError(f"pooling {pooling!r} cannot be exported; supported: {list(_POOLINGS)}")
    max_length = _first_attr(encoder, ("max_length", "max_seq_length"), "max_length")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise ModelExportError(f"the encoder's max_length must be a positive integer, got {max_length!r}")
    normalize = _first_attr(encoder, ("normalize", "normalise", "normalize_embeddings"), "normalisation")
    encode = getattr(model, "encode", None)
    if not callable(encode):
        raise ModelExportError(f"{type(model).__name__} has no encode method to check the export against")
    encode = _with_torch_backend(encode, encoder)

    config = _config_of(model)
    model_config = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    template = _first_attr(model, ("template",), "text template", fallback=lambda: encoder.template)
    spec = getattr(template, "spec", template)
    template_text = spec if isinstance(spec, str) else model_config.get("template")
    template_ref = None if isinstance(template_text, str) else _callable_name(spec)
    path = getattr(model, "path", None)
    return ExportSource(
        transformer=transformer,
        tokenizer=tokenizer,
        head=head,
        pooling=pooling,
        max_length=max_length,
        normalize=bool(normalize),
        encode=encode,
        template=template_text if isinstance(template_text, str) else None,
        template_ref=template_ref,
        labels=_labels_of(label_map if label_map is not None else getattr(model, "label_map", None), config),
        config=config,
        head_name=model_config.get("head") or getattr(model, "head_name", None),
        base_model=str(model_config.get("pretrained") or getattr(encoder, "source", "") or ""),
        model_path=Path(path) if isinstance(path, str | os.PathLike) else None,
    )


def _encoder_of(model: Any) -> Any:
    """The text encoder of a model: ``model.encoder``, else the single encoder of ``model.model``."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        encoders = getattr(getattr(model, "model", None), "encoders", None)
        values = list(encoders.values()) if isinstance(encoders, Mapping) else []
        if len(values) != 1:
            raise ModelExportError(f"cannot find the text encoder of {type(model).__name__}: expected a model "
                                   "written by refinery_quaterion.save, what load returns, or a "
                                   "DistilBertSimilarityModel")
        encoder = values[0]
    return getattr(encoder, "wrapped_encoder", encoder)  # quaterion's cache wrapper during training


def _with_torch_backend(encode: Callable[..., np.ndarray], encoder: Any) -> Callable[[list[str]], np.ndarray]:
    """``encode`` run with the encoder's torch backend (the exports hold the torch computation)."""
    using = getattr(encoder, "using_backend", None)
    if not callable(using):
        return encode

    def reference(texts: list[str]) -> np.ndarray:
        with using("torch"):
            return encode(texts)

    return reference


def _first_attr(obj: Any, names: Sequence[str], what: str, fallback: Callable[[], Any] | None = None) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    if fallback is not None:
        try:
            value = fallback()
        except AttributeError:
            value = None
        if value is not None:
            return value
    raise ModelExportError(f"cannot read the {what} of {type(obj).__name__} (looked for {', '.join(names)})")


def _config_of(model: Any) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if isinstance(config, Mapping) and config:  # a loaded model: training_config.json
        return dict(config)
    for method in ("config_sections", "to_config"):  # a DistilBertSimilarityModel still in memory
        function = getattr(model, method, None)
        if callable(function):
            sections = dict(function())
            if method == "to_config":
                sections = {"model": sections, "training": getattr(model, "training_summary", None)}
            return sections
    return dict(config) if isinstance(config, Mapping) else {}


def _labels_of(labels: Any, config: Mapping[str, Any]) -> list[str] | None:
    names = getattr(labels, "names", labels)
    if names is None:
        names = config.get("labels")
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ModelExportError(f"label_map must be a LabelMap or a list of label names, got {labels!r}")
    return [str(name) for name in names]


def _callable_name(spec: Any) -> str | None:
    module, qualname = getattr(spec, "__module__", None), getattr(spec, "__qualname__", None)
    return f"{module}:{qualname}" if module and qualname else None
