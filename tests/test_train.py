"""fit / save / load on the synthetic dataset with a tiny random DistilBERT (no download)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refinery_quaterion.data.dataset import RefineryExportDataset
from refinery_quaterion.model.config import FitConfig, ModelConfig
from refinery_quaterion.model.inference import EmbeddingModel
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training.fit import FitResult, fit
from refinery_quaterion.training.model_files import ModelFileError, load, save


def precision_at_10(embeddings: np.ndarray, labels) -> float:
    """Share of each item's 10 nearest neighbours (cosine, the item itself excluded) with its label."""
    vectors = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argsort(-sims, axis=1)[:, :10]
    labels = np.asarray(labels)
    return float((labels[neighbours] == labels[:, None]).mean())


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, synthetic_split, tmp_path_factory) -> tuple[DistilBertSimilarityModel, FitResult]:
    """A frozen-encoder model trained with quaterion's cache and a disk embedding cache."""
    train, val = synthetic_split
    cache = tmp_path_factory.mktemp("emb-cache")
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, lr=0.2), embedding_cache=cache)
    model.before = precision_at_10(model.encode_raw(val.records), val.labels)  # type: ignore[attr-defined]
    result = fit(model, train, val, FitConfig(epochs=30, batch_size=64, progress=False))
    return model, result


def test_frozen_encoder_with_cache_improves_precision(trained, synthetic_split) -> None:
    model, result = trained
    _, val = synthetic_split
    after = precision_at_10(model.encode(val.records), val.labels)
    assert after >= model.before + 0.15, (model.before, after)
    assert result.epochs == 30 and len(result.history) == 30
    assert result.best_val_precision is not None and result.last_val_loss is not None
    assert result.train_records_per_s > 0 and result.wall_time_s >= result.train_time_s
    assert set(result.history[0]) == {"epoch", "train_loss", "validation_loss", "validation_precision@10", "time_s"}
    # the model's own validation P@10 agrees with the test's helper
    assert result.last_val_precision == pytest.approx(after, abs=0.02)


def test_trainable_encoder_improves_precision(tiny_model_dir: Path, synthetic_split) -> None:
    train, val = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, trainable_encoder=True, encoder_lr=3e-3))
    assert model.configure_caches() is None
    before = precision_at_10(model.encode_raw(val.records), val.labels)
    result = fit(model, train, val, FitConfig(epochs=5, batch_size=64, progress=False))
    after = precision_at_10(model.encode(val.records), val.labels)
    assert after >= before + 0.15, (before, after)
    assert result.epochs == 5


def test_frozen_encoder_without_any_cache_trains(tiny_model_dir: Path, synthetic_split, count_forward) -> None:
    train, val = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, memory_cache=False, lr=0.05, encoder_backend="torch"))
    assert model.configure_caches() is None
    calls = count_forward(model.encoder.transformer)
    result = fit(model, train, val, FitConfig(epochs=2, batch_size=64, progress=False))
    assert calls.rows == 2 * (len(train) + len(val))  # encoded every epoch, no cache
    assert result.epochs == 2 and result.last_val_precision is not None


def test_same_seed_gives_the_same_model(tiny_model_dir: Path, synthetic_split) -> None:
    train, val = synthetic_split
    runs = []
    for _ in range(2):
        model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, lr=0.05, seed=7))
        fit(model, train, val, FitConfig(epochs=3, batch_size=64, progress=False))
        runs.append(model.encode(val.texts))
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.slow
def test_save_then_load_in_a_new_process_gives_identical_embeddings(trained, synthetic_split, tmp_path: Path) -> None:
    model, _ = trained
    train, val = synthetic_split
    target = save(model, tmp_path / "model", label_map=train.label_map)
    expected = model.encode(val.records)
    script = textwrap.dedent(f"""
        import json, numpy as np
        from refinery_quaterion.training.model_files import load
        model = load({str(target)!r})
        records = json.load(open({str(tmp_path / "records.json")!r}))
        np.save({str(tmp_path / "out.npy")!r}, model.encode(records, progress=False))
        print(json.dumps({{"labels": model.label_map.names, "dim": model.dim, "text": model.template.spec}}))
    """)
    (tmp_path / "records.json").write_text(json.dumps(val.records))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info == {"labels": train.label_map.names, "dim": model.model.head.output_size, "text": "{text}"}
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)
    assert not (tmp_path / "lightning_logs").exists()


def test_save_refuses_an_existing_folder_unless_overwrite(trained, synthetic_split, tmp_path: Path) -> None:
    model, _ = trained
    label_map = synthetic_split[0].label_map
    save(model, tmp_path / "m", label_map=label_map, extra={"run": 1})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save(model, tmp_path / "m", label_map=label_map, extra={"run": 2})
    save(model, tmp_path / "m", label_map=label_map, overwrite=True, extra={"run": 2})
    config = json.loads((tmp_path / "m" / "training_config.json").read_text())
    assert config["extra"] == {"run": 2}
    assert config["model"]["head"] == "skip_connection" and config["model"]["loss"] == "arcface"
    assert config["model"]["template"] == "{text}" and config["training"]["epochs"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp folders left


def test_loaded_model_parts(trained, synthetic_split, tmp_path: Path, count_forward) -> None:
    model, _ = trained
    train, val = synthetic_split
    save(model, tmp_path / "m", label_map=train.label_map)
    loaded = load(tmp_path / "m", embedding_cache=model.embedding_cache)
    assert isinstance(loaded, EmbeddingModel) and loaded.label_map == train.label_map
    assert loaded.config["model"]["pretrained"] == str(model.pretrained)
    # the frozen weights are unchanged, so the raw vectors come from the training run's cache
    calls = count_forward(loaded.encoder.transformer)
    raw = loaded.encode_raw(val.texts)
    assert calls.calls == 0
    np.testing.assert_allclose(loaded.apply_head(raw), loaded.encode(val.texts, normalize=False), atol=1e-6)
    assert raw.shape == (len(val), loaded.raw_dim) and loaded.apply_head(raw).shape == (len(val), loaded.dim)
    with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
        loaded.apply_head(np.zeros((2, 5)))
    with pytest.raises(FileNotFoundError, match="not a saved model folder"):
        load(tmp_path / "nothing-here")


def test_saved_settings_are_the_configs_and_load_reads_them_back(trained, synthetic_split, tmp_path: Path) -> None:
    model, _ = trained
    train, val = synthetic_split
    save(model, tmp_path / "m", label_map=train.label_map)
    saved = json.loads((tmp_path / "m" / "training_config.json").read_text())
    assert saved["format"] == 3
    assert saved["model"]["template"] == "{text}" and "text" not in saved["model"] and "seed" not in saved["fit"]
    assert saved["model"] == {**model.model_config.to_dict(), "model_type": "distilbert", "raw_dim": 32, "dim": 32}
    assert saved["model"]["num_groups"] == len(train.label_map) and saved["model"]["memory_cache"] is None
    assert saved["fit"] == FitConfig(epochs=30, batch_size=64, progress=False).to_dict()
    assert saved["training"]["train_records"] == len(train) and saved["training"]["val_records"] == len(val)
    loaded = load(tmp_path / "m")
    assert loaded.model_config == model.model_config and loaded.fit_config == model.fit_config
    # a loaded model saves the same settings again
    save(loaded, tmp_path / "again", label_map=loaded.label_map)
    again = json.loads((tmp_path / "again" / "training_config.json").read_text())
    assert {k: again[k] for k in ("model", "fit", "training", "labels")} == {
        k: saved[k] for k in ("model", "fit", "training", "labels")}
    # the configs rebuild an equal model
    rebuilt = DistilBertSimilarityModel(loaded.model_config)
    assert rebuilt.model_config == model.model_config


def test_folders_of_format_1_and_2_are_refused(trained, synthetic_split, tmp_path: Path) -> None:
    """Folders of 0.2 and earlier (format 1: before the configs; 2: ``text``, two seeds) are refused; bad settings too."""
    model, _ = trained
    train, _ = synthetic_split
    folder = save(model, tmp_path / "old", label_map=train.label_map)
    (folder / "manifest.json").unlink()  # folders of those versions had no manifest
    written = json.loads((folder / "training_config.json").read_text())
    format_1 = {
        "format": 1, "created": "2024-05-01T10:00:00+00:00",
        "versions": {"refinery-quaterion": "0.1.0", "quaterion": "0.1.35"},
        "model": {"pretrained": str(model.pretrained), "model_type": "distilbert", "text": "{text}", "pooling": "mean",
                  "max_length": 128, "normalize": True, "trainable_encoder": False, "head": "skip_connection",
                  "head_options": {}, "loss": "arcface", "loss_options": {"margin": 0.7}, "lr": 0.2,
                  "encoder_lr": None, "optimizer": "adam", "weight_decay": 0.0, "num_groups": 4, "cache": True,
                  "raw_dim": 32, "dim": 32},
        "training": {"epochs": 30, "max_epochs": 30, "batch_size": 64, "seed": 42, "early_stopping": None},
        "labels": train.label_map.names, "extra": None,
    }
    (folder / "training_config.json").write_text(json.dumps(format_1))
    with pytest.raises(ModelFileError, match=r"0\.2 or earlier \(format 1\), which this version no longer reads"):
        load(folder)
    (folder / "training_config.json").write_text(json.dumps({**written, "format": 2}))
    with pytest.raises(ModelFileError, match=r"0\.2 or earlier \(format 2\), which this version no longer reads"):
        load(folder)
    (folder / "training_config.json").write_text(json.dumps({**written, "model": {"head": "sequential"}}))
    with pytest.raises(ModelFileError, match=r"training_config.json: does not hold valid settings: unknown head"):
        load(folder)


def test_fit_and_the_model_take_their_config_only(tiny_model_dir: Path, synthetic_split) -> None:
    train, val = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=str(tiny_model_dir), loss="triplet", memory_cache=False))
    assert model.model_config.memory_cache is False and model.configure_caches() is None
    result = fit(model, train, None, FitConfig(epochs=1, batch_size=64, progress=False))
    assert result.epochs == 1 and model.fit_config == FitConfig(epochs=1, batch_size=64, progress=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epochs'"):
        fit(model, train, epochs=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="config must be a FitConfig, got dict"):
        fit(model, train, None, {"epochs": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword argument 'lr'"):
        DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir), lr=0.1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="config must be a ModelConfig, got str"):
        DistilBertSimilarityModel("minilm")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"unknown FitConfig setting\(s\) \['seed'\]"):
        FitConfig(epochs=1).replace(seed=1)  # the seed is the model's: ModelConfig.seed


def test_embedding_cache_serves_the_training_cache_pass(tiny_model_dir: Path, synthetic_split, tmp_path: Path,
                                                        count_forward) -> None:
    train, val = synthetic_split
    first = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir), embedding_cache=tmp_path / "cache")
    fit(first, train, val, FitConfig(epochs=1, batch_size=64, progress=False))
    again = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir), embedding_cache=tmp_path / "cache")
    calls = count_forward(again.encoder.transformer)
    fit(again, train, val, FitConfig(epochs=2, batch_size=64, progress=False))
    assert calls.calls == 0


def test_early_stopping_restores_the_best_epoch(tiny_model_dir: Path, synthetic_split, tmp_path: Path,
                                                monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    train, val = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, lr=0.05))
    result = fit(model, train, val, FitConfig(epochs=40, batch_size=64, progress=False, early_stopping=2),
                 output_dir=tmp_path / "run")
    assert result.monitor == "validation_precision@10" and result.best_epoch is not None
    assert result.stopped_early == (result.epochs < 40)
    if result.restored_best:
        assert result.best_epoch < result.epochs
    now = precision_at_10(model.encode(val.records), val.labels)
    assert now == pytest.approx(result.best_score, abs=0.02)
    assert (tmp_path / "run" / "fit_result.json").is_file()
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no lightning_logs in the cwd


def test_text_none_adopts_the_dataset_template_and_conflicts_are_refused(tiny_model_dir: Path) -> None:
    frame = pd.DataFrame({"title": ["goal match", "market stock", "team coach", "bank profit"] * 4,
                          "body": ["the team", "a bank", "league", "trade"] * 4,
                          "label": ["sports", "business"] * 8})
    dataset = RefineryExportDataset(frame, template="{title}. {body}")
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir))
    fit(model, dataset, None, FitConfig(epochs=1, batch_size=16, progress=False))
    assert model.template.spec == "{title}. {body}"
    other = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, template="{title}"))
    with pytest.raises(ValueError, match=r"the template '\{title\}' but train_dataset uses .*same template"):
        fit(other, dataset, None, FitConfig(epochs=1, progress=False))


def test_fit_argument_errors(tiny_model_dir: Path, synthetic_split) -> None:
    train, _ = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir))
    with pytest.raises(ValueError, match="early_stopping needs a val_dataset"):
        fit(model, train, None, FitConfig(early_stopping=2))
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        fit(model, train, None, FitConfig(epochs=0))
    softmax = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, loss="softmax", num_groups=2))
    with pytest.raises(ValueError, match="outside 0..1 for num_groups=2"):
        fit(softmax, train, None, FitConfig(epochs=1, progress=False))


def test_auto_epochs_reach_min_steps_on_small_training_sets(tiny_model_dir: Path, synthetic_split) -> None:
    train, _ = synthetic_split  # 150 records: 3 batches of 64 an epoch
    results = {}
    for settings in ({"min_steps": 45}, {"min_steps": 12}, {"min_steps": 45, "epochs": 2}):
        model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir))
        results[str(settings)] = fit(model, train, None, FitConfig(batch_size=64, progress=False, **settings)).epochs
        assert model.training_summary["max_epochs"] == results[str(settings)]
    # 45 steps need 15 epochs; 12 steps are reached within the 10 epochs of "auto"; explicit epochs stay
    assert list(results.values()) == [15, 10, 2]
