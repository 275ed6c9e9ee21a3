"""The label-combining filter and the threshold report on hand-built data."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from refinery_fixtures import EXPECTED_DROPPED, EXPECTED_KEPT, sdk_frame

from refinery_quaterion.export import load_export
from refinery_quaterion.labels import combine_labels, threshold_report


def test_combine_labels_counts_and_values() -> None:
    frame, report = combine_labels(sdk_frame(), "Topic", min_confidence=0.7)
    got = {row.Title: (row.label, row.label_source) for row in frame.itertuples()}
    assert got == EXPECTED_KEPT
    assert (report.total, report.kept, report.kept_manual, report.kept_weak) == (10, 5, 3, 2)
    assert report.dropped == EXPECTED_DROPPED
    assert report.kept + report.dropped_total == report.total
    assert report.kept_by_class == {
        "Business": {"manual": 1, "weak_supervision": 0},
        "Sports": {"manual": 1, "weak_supervision": 1},
        "World": {"manual": 1, "weak_supervision": 1},
    }
    # Dropped weak labels: Oil prices (Business, 0.70), Merger talks (Business, none), Election (World, 0.55)
    assert report.dropped_weak_by_class == {"Business": 2, "World": 1}
    assert list(frame.columns) == ["record_id", "Title", "Description", "label", "label_source", "confidence"]
    assert frame.loc[frame.Title == "Summit held", "confidence"].item() == pytest.approx(0.71)


def test_report_prints_a_table() -> None:
    _, report = combine_labels(sdk_frame(), "Topic")
    text = str(report)
    assert "kept 5 of 10 records (50.0%)" in text
    assert "low_confidence" in text and "2" in text
    assert report.by_class()["kept"].tolist() == [1, 2, 2]
    assert report.to_dict()["dropped"] == EXPECTED_DROPPED


def test_threshold_is_strict_like_the_seed() -> None:
    frame = sdk_frame()
    seed = frame[
        frame["__Topic__MANUAL"].notna()
        | (frame["__Topic__WEAK_SUPERVISION__confidence"].astype(float) > 0.7)
    ]
    seed_labels = seed["__Topic__MANUAL"].fillna(seed["__Topic__WEAK_SUPERVISION"])
    ours, _ = combine_labels(frame, "Topic", min_confidence=0.7)
    # Identical to the seed's filter, except the multi-label record the seed would keep as is.
    single = seed_labels[~seed_labels.str.contains(", ")]
    assert ours["label"].tolist() == single.tolist()
    assert "Oil prices" not in set(ours["Title"])  # confidence exactly 0.70 is dropped


@pytest.mark.parametrize(
    ("threshold", "kept", "weak"),
    [(0.0, 7, 4), (0.6, 6, 3), (0.7, 5, 2), (0.9, 4, 1), (0.95, 3, 0)],
)
def test_combine_matches_threshold_report(threshold, kept, weak) -> None:
    frame, report = combine_labels(sdk_frame(), min_confidence=threshold)
    assert (report.kept, report.kept_weak) == (kept, weak)
    row = threshold_report(sdk_frame(), thresholds=[threshold]).iloc[0]
    assert (row["kept"], row["weak_supervision"]) == (kept, weak)
    assert row["share"] == pytest.approx(kept / 10)


def test_threshold_report_agreement() -> None:
    table = threshold_report(sdk_frame(), "Topic", thresholds=[0.9, 0.5, 0.8])
    assert table["threshold"].tolist() == [0.5, 0.8, 0.9]
    # Records with both labels: Stocks rally (Business = Business, 0.91), Transfer news (Sports vs World, 0.80)
    assert table["compared"].tolist() == [2, 1, 1]
    assert table["agreement"].tolist() == [0.5, 1.0, 1.0]
    empty = threshold_report(sdk_frame(), thresholds=[0.95])
    assert empty["compared"].item() == 0 and math.isnan(empty["agreement"].item())


def test_manual_only() -> None:
    frame, report = combine_labels(sdk_frame(), use_weak_supervision=False)
    assert set(frame["label_source"]) == {"manual"}
    assert report.kept == 3 and report.kept_weak == 0


def test_attributes_subset() -> None:
    frame, _ = combine_labels(load_export(sdk_frame()), attributes=["Title"])
    assert list(frame.columns) == ["Title", "label", "label_source", "confidence"]


def test_task_argument_optional_with_several_tasks_is_an_error() -> None:
    frame = sdk_frame()
    frame["__Other__MANUAL"] = "x"
    with pytest.raises(ValueError, match="several classification tasks .*'Topic'.*'Other'"):
        combine_labels(frame)
    assert len(combine_labels(frame, "Topic")[0]) == 5


def test_label_with_comma_that_is_not_multi_label() -> None:
    frame = pd.DataFrame(
        {
            "text": ["a", "b", "c"],
            "__T__MANUAL": ["Arts, Culture", "Sports", None],
            "__T__WEAK_SUPERVISION": [None, None, "Arts, Culture"],
            "__T__WEAK_SUPERVISION__confidence": [None, None, "0.9"],
        }
    )
    export = load_export(frame)
    assert export.tasks["T"].labels == ["Arts, Culture", "Sports"]
    assert export.tasks["T"].multi_label_records == 0
    combined, _ = combine_labels(export)
    assert combined["label"].tolist() == ["Arts, Culture", "Sports", "Arts, Culture"]
