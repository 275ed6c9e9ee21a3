"""``save`` refuses a label map that does not fit the model; ``load`` names a missing or damaged file."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from refinery_quaterion import FitConfig, ModelConfig
from refinery_quaterion.data.dataset import LabelMap
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training.fit import fit
from refinery_quaterion.training.model_files import ModelFileError, load, save


@pytest.fixture(scope="module")
def saved(tiny_model_dir: Path, synthetic_split, tmp_path_factory) -> tuple[DistilBertSimilarityModel, Path]:
    """An arcface model trained for one epoch on the 4 synthetic labels, and its saved folder."""
    train, _ = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir))
    fit(model, train, None, FitConfig(epochs=1, batch_size=64, progress=False))
    return model, save(model, tmp_path_factory.mktemp("files") / "model", label_map=train.label_map)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_save_refuses_a_label_map_that_does_not_fit_the_model(saved, synthetic_split, tiny_model_dir: Path,
                                                             tmp_path: Path) -> None:
    model, _ = saved
    train, _ = synthetic_split
    assert model.num_groups == 4 and model.label_map == train.label_map
    with pytest.raises(ValueError, match=r"label_map has 3 labels but the model classifies 4 \(num_groups=4, "
                                         r"loss 'arcface'\)"):
        save(model, tmp_path / "m", label_map=LabelMap(["a", "b", "c"]))
    renamed = LabelMap(["w", "x", "y", "z"])
    with pytest.raises(ValueError, match=r"label_map has 4 labels \['w', 'x', 'y', 'z'\] but the model was trained "
                                         r"on 4 labels \['business'"):
        save(model, tmp_path / "m", label_map=renamed)
    assert not (tmp_path / "m").exists()
    untrained = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, loss="triplet"))  # knows no labels
    with pytest.raises(ValueError, match="save needs the labels the model was trained on"):
        save(untrained, tmp_path / "m")
    folder = save(model, tmp_path / "m")  # the model's own label map by default
    assert json.loads((folder / "label_map.json").read_text())["labels"] == train.label_map.names
    loaded = load(folder)
    with pytest.raises(ValueError, match=r"label_map has 2 labels but the model classifies 4"):
        save(loaded, tmp_path / "again", label_map=LabelMap(["a", "b"]))


def test_missing_label_map_is_an_error_for_our_folders_and_a_warning_for_plain_quaterion(saved, tmp_path: Path):
    _, folder = saved
    ours = copy_of(folder, tmp_path)
    (ours / "label_map.json").unlink()
    with pytest.raises(ModelFileError, match=r"label_map.json: is missing; training_config.json lists 4 labels"):
        load(ours)
    (ours / "training_config.json").unlink()  # now shaped like a folder quaterion itself wrote
    (ours / "manifest.json").unlink()
    with pytest.warns(UserWarning, match=r"has no training_config.json or label_map.json: not a folder written by "
                                         r"refinery_quaterion.save"):
        plain = load(ours)
    assert plain.label_map is None and plain.model_config is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(folder).label_map is not None  # a complete folder loads without a word


@pytest.mark.parametrize(("damage", "file", "message"), [
    ("empty", "config.json", "is empty; expected JSON"),
    ("truncate", "training_config.json", r"is not valid JSON \(line \d+, column \d+"),
    ("garbage", "label_map.json", "is not valid JSON"),
    ("wrong", "label_map.json", "is not a label map"),
    ("truncate", "head/weights.bin", "is truncated or damaged"),
    ("empty", "head/weights.bin", "is empty; expected torch weights"),
    ("truncate", "encoders/default/transformer/model.safetensors", "is truncated"),
    ("truncate", "encoders/default/transformer/config.json", "is not valid JSON"),
])
def test_a_damaged_file_is_named(damage: str, file: str, message: str, saved, tmp_path: Path) -> None:
    _, folder = saved
    target = copy_of(folder, tmp_path)
    path = target / file
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncate": data[: len(data) // 2], "garbage": b"\x00{not json",
                      "wrong": b'{"names": ["a"]}'}[damage])
    with pytest.raises(ModelFileError, match=message) as caught:
        load(target)
    assert caught.value.path == path and str(caught.value).startswith(str(path))
    assert isinstance(caught.value, ValueError)


def test_label_map_and_training_config_must_agree(saved, tmp_path: Path) -> None:
    _, folder = saved
    target = copy_of(folder, tmp_path)
    (target / "label_map.json").write_text(json.dumps({"labels": ["a", "b", "c"]}))
    with pytest.raises(ModelFileError, match=r"label_map.json: holds 3 labels \['a', 'b', 'c'\] but "
                                             r"training_config.json lists 4 labels"):
        load(target)


def test_the_manifest_names_a_missing_or_changed_file(saved, tmp_path: Path) -> None:
    _, folder = saved
    manifest = json.loads((folder / "manifest.json").read_text())["files"]
    assert "training_config.json" in manifest and all({"size", "sha256"} <= set(v) for v in manifest.values())
    target = copy_of(folder, tmp_path)
    tokenizer = next(name for name in manifest if name.endswith("tokenizer.json"))
    (target / tokenizer).unlink()  # without it the tokenizer would map every word to [UNK]
    with pytest.raises(ModelFileError, match=rf"is incomplete or damaged \(missing: {tokenizer}\)"):
        load(target)
    other = copy_of(folder, tmp_path / "b")
    labels = json.loads((other / "label_map.json").read_text())
    (other / "label_map.json").write_text(json.dumps(labels, indent=4))  # same labels, other bytes
    with pytest.raises(ModelFileError, match=r"changed since it was saved: label_map.json"):
        load(other)


def test_a_sentence_transformers_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "st"
    folder.mkdir()
    (folder / "modules.json").write_text("[]")
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelFileError, match="is a sentence-transformers folder .it has modules.json.") as caught:
        load(folder)
    assert "SentenceTransformer" in str(caught.value) and "\n" not in str(caught.value)


def test_save_refuses_non_finite_weights_and_a_diverged_fit(saved, tmp_path: Path) -> None:
    import torch

    from refinery_quaterion.training._guards import TrainedModelError

    model, _ = saved
    weights = next(p for p in model.head.parameters())
    kept, summary = weights.detach().clone(), model.training_summary
    try:
        with torch.no_grad():
            weights.fill_(float("nan"))
        with pytest.raises(TrainedModelError, match="weight tensors hold NaN or infinite values"):
            save(model, tmp_path / "nan")
        model.training_summary = {"diverged": True}
        with pytest.raises(TrainedModelError, match="last fit diverged"):
            save(model, tmp_path / "nan")
    finally:
        with torch.no_grad():
            weights.copy_(kept)
        model.training_summary = summary
    assert not (tmp_path / "nan").exists()
