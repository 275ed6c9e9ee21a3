"""LabelMap, RefineryExportDataset and the split."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from refinery_fixtures import sdk_frame

from refinery_quaterion.data.dataset import LabelMap, RefineryExportDataset, split_by_source, train_val_split
from refinery_quaterion.data.labels import combine_labels
from refinery_quaterion.data.refinery import load_export
from refinery_quaterion.data.splits import DuplicateTextWarning, duplicate_report
from refinery_quaterion.data.text import TextTemplate

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
    dataset = RefineryExportDataset(frame, template="{Title}. {Description}")
    assert len(dataset) == 5
    sample = dataset[0]
    from quaterion.dataset import SimilarityGroupSample  # after refinery_quaterion: its shims apply

    assert isinstance(sample, SimilarityGroupSample)
    assert sample.obj["Title"] == "Stocks rally" and sample.group == dataset.label_map.to_id("Business")
    assert dataset.texts[0] == "Stocks rally. Markets climb on earnings"
    assert dataset.class_counts() == {"Business": 1, "Sports": 2, "World": 2}


def test_dataset_with_callable_template_and_shared_label_map() -> None:
    frame, _ = combine_labels(sdk_frame(), "Topic")
    label_map = LabelMap(["Business", "Sports", "Tech", "World"])
    dataset = RefineryExportDataset(frame, template=lambda r: r["Title"].upper(), label_map=label_map)
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
    dataset = RefineryExportDataset(frame, template="{Title}. {Description}")
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


# ----------------------------------------------------------------------------------------
# Blank texts and weights (issues 11 and 14)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", "   ", "\t\n", None, float("nan")])
def test_dataset_refuses_blank_texts_naming_the_first_row(blank) -> None:
    frame = pd.DataFrame({"text": ["ok", "fine", blank, blank], "label": ["a", "b", "a", "b"]},
                         index=[10, 11, 12, 13])
    with pytest.raises(ValueError, match=r"2 record\(s\) have a blank text \(first at row 12"):
        RefineryExportDataset(frame)
    dataset = RefineryExportDataset(frame.loc[[10, 11]])
    assert dataset.texts == ["ok", "fine"]


def test_dataset_weights_come_from_combine_labels() -> None:
    frame, _ = combine_labels(sdk_frame(), "Topic")
    dataset = RefineryExportDataset(frame, template="{Title}")
    assert dataset.weights.tolist() == pytest.approx(frame["weight"].tolist())
    assert dataset.weights.tolist() == pytest.approx([1.0, 0.95, 0.71, 1.0, 1.0])
    dataset.weights[0] = 5  # a copy: the dataset is not changed
    assert dataset.weights[0] == 1.0
    assert type(dataset[1]).__name__ == "SimilarityGroupSample"  # the sample type is unchanged
    unweighted = RefineryExportDataset(frame.drop(columns="weight"), template="{Title}")
    assert unweighted.weights.tolist() == [1.0] * 5
    assert RefineryExportDataset(frame, template="{Title}", weight_column=None).weights.tolist() == [1.0] * 5


# ----------------------------------------------------------------------------------------
# Duplicates and the group split (issue 11, case 5)
# ----------------------------------------------------------------------------------------


def _duplicated(copies: int = 2) -> pd.DataFrame:
    base = pd.DataFrame({"text": [f"text {i}" for i in range(40)], "label": ["a", "b"] * 20,
                         "record_id": range(40)})
    frame = pd.concat([base] * copies, ignore_index=True)
    frame["record_id"] = range(len(frame))  # ids differ: only the rendered text is the same
    return frame


@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("val_size", [0.25, 20])
def test_identical_texts_stay_on_one_side(stratify, val_size) -> None:
    frame = _duplicated()
    with pytest.warns(DuplicateTextWarning, match=r"80 of 80 records share their text .*40 texts occur more"):
        train, val = train_val_split(frame, val_size=val_size, seed=42, stratify=stratify, template="{text}")
    assert set(train["text"]).isdisjoint(val["text"])
    assert len(train) + len(val) == 80 and len(val) == 20
    if stratify:
        assert val["label"].value_counts().to_dict() == {"a": 10, "b": 10}


def test_without_duplicates_the_split_is_sklearns() -> None:
    from sklearn.model_selection import train_test_split

    frame = _duplicated(copies=1)
    ours, _ = train_val_split(frame, val_size=0.25, seed=42, stratify=False, template="{text}")
    theirs, _ = train_test_split(frame, test_size=0.25, random_state=42)
    assert ours["record_id"].tolist() == theirs["record_id"].tolist()


def test_conflicting_labels_for_one_text_are_reported() -> None:
    frame = _duplicated(copies=1)
    extra = pd.DataFrame({"text": ["text 0", "  text   0 ", "text 1"], "label": ["b", "a", "b"], "record_id": [97, 98, 99]})
    frame = pd.concat([frame, extra], ignore_index=True)
    report = duplicate_report(frame, template="{text}")
    assert (report.duplicated_records, report.duplicate_texts, report.conflicting_texts) == (5, 2, 1)
    assert report.conflicts[0]["text"] == "text 0" and report.conflicts[0]["labels"] == {"a": 2, "b": 1}
    assert report.conflicts[0]["rows"] == [0, 40, 41]
    assert "1 texts carry different labels: 'text 0' (a×2, b×1)" in str(report)
    with pytest.warns(DuplicateTextWarning, match="texts carry different labels"):
        train, val = train_val_split(frame, template="{text}")
    assert set(train["text"].str.split().str.join(" ")).isdisjoint(val["text"].str.split().str.join(" "))
    # Without a template, records compare on every non-label column: record_id differs, no duplicates.
    assert duplicate_report(frame).duplicated_records == 0
    assert duplicate_report(frame.drop(columns="record_id")).duplicate_texts == 2  # "text 0" and "text 1", raw


# ----------------------------------------------------------------------------------------
# Manual labels as the test set (issue 12)
# ----------------------------------------------------------------------------------------

BANKING = Path(__file__).resolve().parents[1] / "examples" / "banking_intents" / "data" / "snapshot_data.json.zip"


def test_split_by_source_on_the_banking_snapshot() -> None:
    if not BANKING.exists():
        pytest.skip("the banking snapshot is not shipped in this checkout")
    export = load_export(BANKING)
    records, report = combine_labels(export, "intent", min_confidence=0.7, template="{text}")
    split = split_by_source(records, val_size=0.2, seed=42, template="{text}")
    train, val, test = split
    manual = export.records["__intent__MANUAL"]
    assert len(test) == 250 == int(manual.notna().sum())
    assert set(test["label_source"]) == {"manual"}
    assert set(train["label_source"]) == set(val["label_source"]) == {"weak_supervision"}
    # The test labels are the manual ones, record by record.
    truth = dict(zip(export.records["text"][manual.notna()], manual[manual.notna()]))
    assert all(truth[t] == label for t, label in zip(test["text"], test["label"]))
    # No test text is trained or validated on; every weak record is used once.
    assert set(test["text"]).isdisjoint(set(train["text"]) | set(val["text"]))
    assert len(train) + len(val) + split.removed_overlap == report.kept_weak
    assert abs(len(val) - 0.2 * (len(train) + len(val))) <= 11
    assert split.test_only_labels == []
    assert "test 250 (manual labels)" in str(split)


def test_split_by_source_drops_training_copies_of_test_texts() -> None:
    records = pd.DataFrame({"text": ["x", "x", "y", "z", "w"], "label": ["a", "a", "b", "b", "c"],
                            "label_source": ["manual", "weak_supervision", "weak_supervision",
                                             "weak_supervision", "manual"]})
    split = split_by_source(records, template="{text}")
    assert split.train["text"].tolist() == ["y", "z"] and split.val.empty
    assert split.removed_overlap == 1 and split.test_only_labels == ["a", "c"]
