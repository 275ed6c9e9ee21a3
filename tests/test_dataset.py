"""LabelMap, RefineryExportDataset and the split."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from quaterion.dataset import SimilarityGroupSample
from refinery_fixtures import sdk_frame

from refinery_quaterion.dataset import LabelMap, RefineryExportDataset, train_val_split
from refinery_quaterion.labels import combine_labels
from refinery_quaterion.text import TextTemplate

AG_NEWS = Path(__file__).resolve().parents[1] / "examples" / "ag_news" / "data"


def test_label_map_is_stable_and_round_trips(tmp_path) -> None:
    a = LabelMap(["World", "Sports", "Business", "World"])
    b = LabelMap(["Business", "World", "Sports"])
    assert a == b and a.names == ["Business", "Sports", "World"]
    assert [a.to_id(n) for n in ["Business", "Sports", "World"]] == [0, 1, 2]
    assert a.to_name(2) == "World"
    a.save(tmp_path / "labels.json")
    assert json.loads((tmp_path / "labels.json").read_text()) == {"labels": ["Business", "Sports", "World"]}
    assert LabelMap.load(tmp_path / "labels.json") == a
    with pytest.raises(KeyError, match="'Tech' is not in the label map"):
        a.to_id("Tech")


def test_dataset_yields_group_samples() -> None:
    frame, _ = combine_labels(sdk_frame(), "Topic")
    dataset = RefineryExportDataset(frame, text="{Title}. {Description}")
    assert len(dataset) == 5
    sample = dataset[0]
    assert isinstance(sample, SimilarityGroupSample)
    assert sample.obj["Title"] == "Stocks rally" and sample.group == dataset.label_map.to_id("Business")
    assert dataset.texts[0] == "Stocks rally. Markets climb on earnings"
    assert dataset.class_counts() == {"Business": 1, "Sports": 2, "World": 2}


def test_dataset_with_callable_template_and_shared_label_map() -> None:
    frame, _ = combine_labels(sdk_frame(), "Topic")
    label_map = LabelMap(["Business", "Sports", "Tech", "World"])
    dataset = RefineryExportDataset(frame, text=lambda r: r["Title"].upper(), label_map=label_map)
    assert dataset.texts[0] == "STOCKS RALLY"
    assert dataset[0].group == 0 and dataset[2].group == 3
    assert dataset.class_counts()["Tech"] == 0


def test_template_renders_missing_values_as_empty() -> None:
    template = TextTemplate("{Title}. {Description}")
    assert template({"Title": "A", "Description": None}) == "A. "
    assert template({"Title": "A", "Description": float("nan")}) == "A. "
    assert template("already text") == "already text"


def test_train_val_split_reproduces_sklearn_split() -> None:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(40)], "label": ["a", "b"] * 20})
    train, val = train_val_split(frame, val_size=0.25, seed=42)
    assert (len(train), len(val)) == (30, 10)
    assert val["label"].value_counts().to_dict() == {"a": 5, "b": 5}
    assert set(train["text"]).isdisjoint(val["text"])
    again, _ = train_val_split(frame, val_size=0.25, seed=42)
    assert again["text"].tolist() == train["text"].tolist()
    plain, _ = train_val_split(frame, stratify=False)
    assert len(plain) == 30


def test_ag_news_train_file_gives_8140_samples_in_4_groups() -> None:
    frame = pd.read_json(AG_NEWS / "labeled_data_train.json.gz")
    dataset = RefineryExportDataset(frame, text="{Title}. {Description}")
    assert len(dataset) == 8140
    assert len(dataset.label_map) == 4
    assert dataset.label_map.names == ["Business", "Sci/Tech", "Sports", "World"]
    assert {dataset[i].group for i in range(len(dataset))} == {0, 1, 2, 3}


def test_ag_news_data_matches_shared_copy() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "ag_news" / "labeled_data_train.json"
    if not shared.exists():
        pytest.skip("../shared is not beside this checkout")
    ours = pd.read_json(AG_NEWS / "labeled_data_train.json.gz")
    pd.testing.assert_frame_equal(ours, pd.read_json(shared))
