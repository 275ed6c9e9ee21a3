"""Ctrl-C during training or while the embedding cache fills: an exception, nothing half-done kept."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refinery_quaterion import FitConfig, ModelConfig
from refinery_quaterion.model.cache import EmbeddingCache
from refinery_quaterion.model.encoder import TransformerEncoder
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training.fit import TrainingInterrupted, fit
from refinery_quaterion.training.model_files import save


def interrupt_at_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Raise KeyboardInterrupt when the 0-based ``epoch`` starts (as Ctrl-C would, inside Lightning)."""
    original = DistilBertSimilarityModel.on_train_epoch_start

    def hook(self: DistilBertSimilarityModel) -> None:
        if self.current_epoch == epoch:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(DistilBertSimilarityModel, "on_train_epoch_start", hook)


def interrupt_at_cache_write(monkeypatch: pytest.MonkeyPatch, call: int) -> list[int]:
    """Raise KeyboardInterrupt when the encoder stores its ``call``-th chunk; returns the call counter."""
    original = EmbeddingCache.put_many
    calls = [0]

    def put_many(self: EmbeddingCache, *args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EmbeddingCache, "put_many", put_many)
    return calls


def test_ctrl_c_during_training_raises_and_the_model_cannot_be_saved(tiny_model_dir: Path, synthetic_split,
                                                                    tmp_path: Path, monkeypatch) -> None:
    train, val = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, lr=0.05))
    interrupt_at_epoch(monkeypatch, 2)
    with pytest.raises(TrainingInterrupted, match=r"interrupted after 2 of 5 epoch\(s\)") as caught:
        fit(model, train, val, FitConfig(epochs=5, batch_size=64, progress=False), output_dir=tmp_path / "run")
    assert isinstance(caught.value, KeyboardInterrupt)
    assert (caught.value.epochs, caught.value.max_epochs, caught.value.stage) == (2, 5, "training")
    assert not (tmp_path / "run" / "fit_result.json").exists()
    assert model.training_summary == {"interrupted": True, "epochs": 2, "stage": "training"}
    with pytest.raises(ValueError, match=r"interrupted after 2 epoch\(s\): it is half-trained"):
        save(model, tmp_path / "model", label_map=train.label_map)
    assert not (tmp_path / "model").exists()
    saved = save(model, tmp_path / "model", label_map=train.label_map, allow_interrupted=True)
    assert '"interrupted": true' in (saved / "training_config.json").read_text()


def test_ctrl_c_in_train_model_saves_nothing(tiny_model_dir: Path, synthetic_frame: pd.DataFrame, tmp_path: Path,
                                             monkeypatch) -> None:
    from refinery_quaterion.workflow import train_model

    interrupt_at_epoch(monkeypatch, 1)
    (tmp_path / "models").mkdir()
    out = tmp_path / "models" / "m"
    with pytest.raises(TrainingInterrupted) as caught:
        train_model(synthetic_frame.iloc[:120], synthetic_frame.iloc[120:160], out,
                    model_config=ModelConfig(template="{text}", pretrained=str(tiny_model_dir)),
                    fit_config=FitConfig(epochs=3, progress=False), embedding_cache=None)
    assert caught.value.epochs == 1
    assert not out.exists() and list((tmp_path / "models").iterdir()) == []


def test_ctrl_c_while_encoding_stops_at_once_and_the_cache_keeps_complete_chunks(
        tiny_model_dir: Path, synthetic_split, tmp_path: Path, monkeypatch, count_forward) -> None:
    train, val = synthetic_split
    monkeypatch.setattr("refinery_quaterion.model.encoder._CHUNK", 8)  # one cache chunk per 8 texts
    cache = EmbeddingCache(tmp_path / "cache")
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, encoder_backend="torch"),
                                      embedding_cache=cache)
    calls = interrupt_at_cache_write(monkeypatch, 5)
    with pytest.raises(TrainingInterrupted, match="while encoding the records") as caught:
        fit(model, train, val, FitConfig(epochs=3, batch_size=64, progress=False))
    assert (caught.value.epochs, caught.value.stage) == (0, "encoding")
    assert calls[0] == 5  # stopped at once: quaterion did not go on to train on a half-filled cache

    fingerprint = model.encoder.fingerprint()
    chunks = list((tmp_path / "cache" / fingerprint).glob("*.chunk.npy"))
    assert len(chunks) == 4 and EmbeddingCache(tmp_path / "cache").count(fingerprint) == 32
    assert not [p for p in (tmp_path / "cache" / fingerprint).iterdir() if p.name.startswith(".")]
    # the stored vectors are the ones a fresh encoder computes, and the rest is encoded on the next run
    monkeypatch.undo()
    fresh = TransformerEncoder.from_pretrained(tiny_model_dir, backend="torch")
    found, stored = EmbeddingCache(tmp_path / "cache").get_many(train.texts, fingerprint=fingerprint)
    assert found.sum() == 32
    np.testing.assert_allclose(stored[found], fresh.encode(np.asarray(train.texts)[found].tolist()), atol=1e-5)
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, encoder_backend="torch"),
                                      embedding_cache=EmbeddingCache(tmp_path / "cache"))  # the counter counts the torch transformer's rows
    counter = count_forward(model.encoder.transformer)
    result = fit(model, train, val, FitConfig(epochs=1, batch_size=64, progress=False))
    assert result.epochs == 1 and counter.rows == len(set(train.texts) | set(val.texts)) - 32


def test_an_interrupted_cache_write_leaves_no_chunk(tmp_path: Path, monkeypatch) -> None:
    cache = EmbeddingCache(tmp_path / "c")
    cache.put_many(["a"], np.ones((1, 4), dtype=np.float32), fingerprint="fp")
    real_save = np.save

    def half_save(handle, array, *args, **kwargs):
        handle.write(b"\x93NUMPY half of a chunk")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", half_save)
    with pytest.raises(KeyboardInterrupt):
        cache.put_many(["b", "c"], np.zeros((2, 4), dtype=np.float32), fingerprint="fp")
    monkeypatch.setattr(np, "save", real_save)
    names = sorted(p.name for p in (tmp_path / "c" / "fp").iterdir())
    assert len(names) == 2 and names[1] == "meta.json" and names[0].endswith(".chunk.npy")  # no temp file left
    found, _ = EmbeddingCache(tmp_path / "c").get_many(["a", "b", "c"], fingerprint="fp")
    assert found.tolist() == [True, False, False]


def test_a_chunk_is_one_file_readable_by_others_and_a_damaged_one_is_skipped(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        cache = EmbeddingCache(tmp_path / "c")
        cache.put_many(["a", "b"], np.arange(8, dtype=np.float32).reshape(2, 4), fingerprint="fp")
        cache.put_many(["c"], np.full((1, 4), 9, dtype=np.float32), fingerprint="fp")
    finally:
        os.umask(old)
    chunks = sorted((tmp_path / "c" / "fp").glob("*.npy"))
    assert [p.name.endswith(".chunk.npy") for p in chunks] == [True, True]  # keys and vectors together
    assert {stat.S_IMODE(p.stat().st_mode) for p in chunks} == {0o644}  # not mkstemp's 0600
    chunks[1].write_bytes(chunks[1].read_bytes()[:40])  # damaged from outside (a full disk, a bad copy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found, vectors = EmbeddingCache(tmp_path / "c").get_many(["a", "b", "c"], fingerprint="fp")
    assert found.tolist() == [True, True, False]
    np.testing.assert_array_equal(vectors[1], [4, 5, 6, 7])
    assert any(str(chunks[1]) in str(w.message) and "unreadable" in str(w.message) for w in caught)


def test_chunks_of_the_two_file_layout_are_read_and_compacted(tmp_path: Path) -> None:
    from refinery_quaterion.model.cache import text_key

    folder = tmp_path / "c" / "fp"
    folder.mkdir(parents=True)
    keys = np.frombuffer(text_key("a") + text_key("b"), dtype=np.uint8).reshape(2, 20)
    np.save(folder / "old.vectors.npy", np.array([[1, 2], [3, 4]], dtype=np.float32))
    np.save(folder / "old.keys.npy", keys)
    cache = EmbeddingCache(tmp_path / "c")
    cache.put_many(["c"], np.array([[5, 6]], dtype=np.float32), fingerprint="fp")
    found, vectors = cache.get_many(["b", "c", "a"], fingerprint="fp")
    assert found.all() and vectors.tolist() == [[3, 4], [5, 6], [1, 2]]
    cache.compact("fp")
    assert [p.name.endswith(".chunk.npy") for p in folder.glob("*.npy")] == [True]
    assert EmbeddingCache(tmp_path / "c").get_many(["a", "b", "c"], fingerprint="fp")[1].tolist() == [
        [1, 2], [3, 4], [5, 6]]
