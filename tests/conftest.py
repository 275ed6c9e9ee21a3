"""Shared fixtures: a tiny random DistilBERT (no download) and a synthetic 4-class dataset."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

CLASS_WORDS: dict[str, list[str]] = {
    "sports": ["goal", "match", "team", "coach", "league", "score", "player", "season"],
    "science": ["atom", "cell", "energy", "physics", "genome", "laser", "theory", "galaxy"],
    "business": ["market", "stock", "profit", "bank", "merger", "trade", "revenue", "investor"],
    "world": ["election", "minister", "border", "treaty", "army", "summit", "protest", "embassy"],
}
NOISE_WORDS = [
    "the", "a", "new", "report", "today", "said", "week", "big", "city", "people", "year", "after",
    "first", "again", "news", "update", "local", "late", "early", "major", "small", "plan", "group",
    "time", "day", "big", "old", "open", "long", "high",
]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CACHE_KEY = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread: the test tensors are tiny, and on a busy machine every multi-threaded
    op waits for a second core (measured: 30 cached epochs 12 s with 2 threads, 0.6 s with 1)."""
    import torch

    torch.set_num_threads(1)
    # What the tests cache by default (embeddings, the ONNX graphs of the "auto" backend) goes to a
    # folder of this run, never to the user's ~/.cache; subprocesses inherit it.
    config.stash[_CACHE_KEY] = os.environ["REFINERY_QUATERION_CACHE"] = tempfile.mkdtemp(
        prefix="refinery-quaterion-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's cache folder."""
    if _CACHE_KEY in config.stash:
        shutil.rmtree(config.stash[_CACHE_KEY], ignore_errors=True)


def make_texts(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """``n`` short texts in 4 classes: 2-3 class words mixed into 4-7 shared noise words."""
    rng = random.Random(seed)
    labels = list(CLASS_WORDS)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = rng.sample(CLASS_WORDS[label], rng.randint(2, 3)) + rng.choices(NOISE_WORDS, k=rng.randint(4, 7))
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + ".", "label": label})
    return pd.DataFrame(rows)


def cosines(a, b):
    """Cosine of each row of ``a`` with the same row of ``b`` (float64)."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def encoder_on(folder: Path, backend: str, cache: Path | None, **settings):
    """The encoder of ``folder`` with template ``"{text}"`` on ``backend``, caching in ``cache``."""
    from refinery_quaterion.model.encoder import TransformerEncoder

    return TransformerEncoder.from_pretrained(folder, template="{text}", backend=backend, embedding_cache=cache,
                                              **settings)


def exchange_supported(folder: Path) -> bool:
    """Whether the file system under ``folder`` can swap two folders atomically (`_io._exchange`)."""
    from refinery_quaterion import _io

    a, b = folder / "probe-a", folder / "probe-b"
    a.mkdir()
    b.mkdir()
    try:
        return _io._exchange(a, b)
    finally:
        a.rmdir()
        b.rmdir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer DistilBERT (dim 32) + WordPiece tokenizer saved to a folder."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    words = sorted({w for ws in CLASS_WORDS.values() for w in ws} | set(NOISE_WORDS) | {".", ",", "##s"})
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + words)}
    folder = tmp_path_factory.mktemp("tiny-distilbert")
    tokenizer = DistilBertTokenizer(vocab=vocab, model_max_length=128)
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=128, dropout=0.1, attention_dropout=0.1)
    model = DistilBertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return folder


@pytest.fixture(scope="session")
def synthetic_frame() -> pd.DataFrame:
    """~200 short texts in 4 classes (columns ``text``, ``label``)."""
    return make_texts(200)


@pytest.fixture(scope="session")
def synthetic_split(synthetic_frame: pd.DataFrame):
    """``(train, val)`` `RefineryExportDataset` s (75/25, stratified) of the synthetic texts."""
    from refinery_quaterion.data.dataset import RefineryExportDataset, train_val_split

    train_frame, val_frame = train_val_split(synthetic_frame, val_size=0.25, seed=42)
    train = RefineryExportDataset(train_frame, template="{text}")
    val = RefineryExportDataset(val_frame, template="{text}", label_map=train.label_map)
    return train, val


class ForwardCounter:
    """Counts forward calls of a module and the rows they embedded."""

    def __init__(self, module):
        self.calls = 0
        self.rows = 0
        self._handle = module.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output) -> None:
        self.calls += 1
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None:
            self.rows += int(input_ids.shape[0])

    def remove(self) -> None:
        self._handle.remove()


@pytest.fixture
def count_forward():
    """Factory: ``count_forward(module)`` returns a `ForwardCounter` removed after the test."""
    counters: list[ForwardCounter] = []

    def make(module) -> ForwardCounter:
        counter = ForwardCounter(module)
        counters.append(counter)
        return counter

    yield make
    for counter in counters:
        counter.remove()
