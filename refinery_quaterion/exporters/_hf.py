"""Hugging Face files of an export: the transformer, its tokenizer and a serving ``tokenizer.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion.exporters._files import write_json
from refinery_quaterion.exporters.source import ExportSource, ModelExportError
from refinery_quaterion.model.pretrained import quiet_transformers

PROBE_TEXTS = [
    "Stocks rally on strong earnings",
    "The home team won the final match after extra time.",
    "a",
    "Oil prices climb as supply tightens; analysts expect more gains next week",
]


def save_transformer(source: ExportSource, folder: Path, *, weights: bool = True) -> None:
    """Write the tokenizer (and with ``weights`` the model) as a Hugging Face folder.

    ``tokenizer.json`` is replaced by `serving_tokenizer_json` when the tokenizer is a fast one, and
    ``tokenizer_config.json`` gets ``model_max_length`` = the model's ``max_length``: loaders that
    truncate by that key (FastEmbed, transformers' ``AutoTokenizer``) then cut texts where the
    library does.
    """
    with quiet_transformers():
        if weights:
            source.transformer.save_pretrained(folder)
        source.tokenizer.save_pretrained(folder)
    if getattr(source.tokenizer, "backend_tokenizer", None) is not None:
        (folder / "tokenizer.json").write_text(serving_tokenizer_json(source), encoding="utf-8")
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["model_max_length"] = source.max_length
        write_json(config_file, config)


def serving_tokenizer_json(source: ExportSource) -> str:
    """The tokenizer as ``tokenizer.json``, set up like the library's encoder.

    Truncation to ``max_length`` and padding on the right to the longest text of each batch
    (a saved tokenizer may carry fixed padding, e.g. all-MiniLM-L6-v2's 128 tokens, which would
    make every batch as long as the longest possible text).

    Raises:
        ModelExportError: If the tokenizer is not a fast (``tokenizers``) one or has no padding token.
    """
    from tokenizers import Tokenizer

    tokenizer = source.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelExportError(f"the tokenizer {type(tokenizer).__name__} has no fast (tokenizers) version, "
                               "so no tokenizer.json can be written for serving")
    pad_id, pad_token = getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "pad_token", None)
    if pad_id is None or pad_token is None:
        raise ModelExportError(f"the tokenizer {type(tokenizer).__name__} has no padding token")
    serving = Tokenizer.from_str(backend.to_str())
    serving.enable_truncation(max_length=source.max_length, strategy="longest_first", direction="right")
    serving.enable_padding(direction="right", pad_id=int(pad_id), pad_token=str(pad_token),
                           pad_type_id=int(getattr(tokenizer, "pad_token_type_id", 0) or 0))
    return serving.to_str(pretty=True)


def library_tokens(source: ExportSource, texts: list[str]) -> list[list[int]]:
    """Token ids of ``texts`` as the library's encoder makes them (truncated, unpadded)."""
    encoded = source.tokenizer(list(texts), truncation=True, max_length=source.max_length, padding=False,
                               return_attention_mask=False, return_token_type_ids=False)
    return [list(ids) for ids in encoded["input_ids"]]


def probe_texts(source: ExportSource) -> list[str]:
    """Texts to check an export with: a few sentences, the labels, one text longer than ``max_length``."""
    texts = list(PROBE_TEXTS) + [f"{label}" for label in (source.labels or [])[:8]]
    texts.append(" ".join(["market news from the league and the lab"] * (source.max_length // 4 + 4)))
    return texts


def export_config(source: ExportSource, fmt: str, dim: int, **more: Any) -> dict[str, Any]:
    """What ``refinery_export.json`` records: settings a user (or a backend) needs to use the files."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        library = version("refinery-quaterion")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        library = None
    return {
        "format": fmt,
        "refinery_quaterion": library,
        "base_model": source.base_model,
        "model_type": getattr(source.transformer.config, "model_type", None),
        "text_template": source.template,
        "text_template_function": source.template_ref,
        "pooling": source.pooling,
        "max_length": source.max_length,
        "normalize_pooled": source.normalize,
        "head": source.head_name or type(source.head).__name__,
        "raw_dim": source.raw_dim,
        "dim": dim,
        "similarity": "cosine",
        "unit_length": True,
        "labels": source.labels,
        **more,
    }


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine similarity of two ``(n, d)`` arrays."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ModelExportError(f"exported vectors have shape {a.shape}, the library's {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.min(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))
