"""The label-combining filter and the threshold report on hand-built data."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from refinery_fixtures import EXPECTED_DROPPED, EXPECTED_KEPT, sdk_frame

from refinery_quaterion.data.labels import combine_labels, threshold_report
from refinery_quaterion.data.refinery import load_export
from refinery_quaterion.data.thresholds import AutoThreshold, choose_threshold

BANKING = Path(__file__).resolve().parents[1] / "examples" / "banking_intents" / "data" / "snapshot_data.json.zip"


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
    assert list(frame.columns) == ["record_id", "Title", "Description", "label", "label_source", "confidence",
                                   "weight"]
    assert frame.loc[frame.Title == "Summit held", "confidence"].item() == pytest.approx(0.71)
    # Weights: 1.0 for manual labels, the confidence for weak ones.
    weights = dict(zip(frame.Title, frame.weight))
    assert weights == {"Stocks rally": 1.0, "Cup final": pytest.approx(0.95), "Summit held": pytest.approx(0.71),
                       "Transfer news": 1.0, "Peace deal": 1.0}


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
    row = threshold_report(sdk_frame(), thresholds=[threshold], auto=None).iloc[0]
    assert (row["kept"], row["weak_supervision"]) == (kept, weak)
    assert row["share"] == pytest.approx(kept / 10)


def test_threshold_report_agreement() -> None:
    table = threshold_report(sdk_frame(), "Topic", thresholds=[0.9, 0.5, 0.8], auto=None)
    assert table["threshold"].tolist() == [0.5, 0.8, 0.9]
    assert "chosen" not in table.columns
    # Records with both labels: Stocks rally (Business = Business, 0.91), Transfer news (Sports vs World, 0.80)
    assert table["compared"].tolist() == [2, 1, 1]
    assert table["agreement"].tolist() == [0.5, 1.0, 1.0]
    empty = threshold_report(sdk_frame(), thresholds=[0.95], auto=None)
    assert empty["compared"].item() == 0 and math.isnan(empty["agreement"].item())


def test_manual_only() -> None:
    frame, report = combine_labels(sdk_frame(), use_weak_supervision=False)
    assert set(frame["label_source"]) == {"manual"}
    assert report.kept == 3 and report.kept_weak == 0


def test_attributes_subset() -> None:
    frame, _ = combine_labels(load_export(sdk_frame()), attributes=["Title"])
    assert list(frame.columns) == ["Title", "label", "label_source", "confidence", "weight"]


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


# ----------------------------------------------------------------------------------------
# Blank texts (issue 11, case 4)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", "   ", "\n\t", None, float("nan")])
def test_blank_rendered_texts_are_dropped_and_counted_by_class(blank) -> None:
    frame = sdk_frame()
    frame.loc[frame.Title == "Cup final", "Title"] = blank  # a weak Sports label
    frame.loc[frame.Title == "Peace deal", "Title"] = blank  # a manual World label
    combined, report = combine_labels(frame, "Topic", template="{Title}")
    assert "Cup final" not in set(combined["Title"]) and len(combined) == 3
    assert report.dropped["blank_text"] == 2
    assert report.dropped_by_class["blank_text"] == {"Sports": 1, "World": 1}
    assert report.kept + report.dropped_total == report.total
    assert report.by_class().set_index("label")["dropped_blank_text"].to_dict() == {
        "Business": 0, "Sports": 1, "World": 1}
    assert "blank_text" in str(report)
    assert all(t.strip() for t in combined["Title"])


def test_without_a_template_only_fully_empty_records_are_blank() -> None:
    frame = sdk_frame()
    frame.loc[frame.Title == "Cup final", ["Title", "Description"]] = ["  ", ""]
    combined, report = combine_labels(frame, "Topic")  # record_id is still there: not blank
    assert len(combined) == 5 and "blank_text" not in report.dropped
    assert any("no text template given" in note for note in report.notes)
    combined, report = combine_labels(frame, "Topic", attributes=["Title", "Description"])
    assert report.dropped["blank_text"] == 1 and len(combined) == 4


def test_template_checked_against_the_export() -> None:
    with pytest.raises(ValueError, match=r"uses 'Body', which is not a column of <DataFrame>"):
        combine_labels(sdk_frame(), "Topic", template="{Title} {Body}")


# ----------------------------------------------------------------------------------------
# Automatic threshold (issue 14)
# ----------------------------------------------------------------------------------------

# (confidence, share of weak labels that are right) per band; 150 records each, the first
# 50 of a band also carry the true label as a manual label.
BANDS = [(0.9, 1.0), (0.6, 0.8), (0.3, 0.3), (0.1, 0.4)]


def _banded_export() -> pd.DataFrame:
    rows = []
    for confidence, accuracy in BANDS:
        for i in range(150):
            truth = "A" if i % 2 else "B"
            right = (i % 10) < accuracy * 10
            weak = truth if right else ("B" if truth == "A" else "A")
            rows.append({"text": f"record {confidence} {i}", "__T__MANUAL": truth if i < 50 else None,
                         "__T__WEAK_SUPERVISION": weak, "__T__WEAK_SUPERVISION__confidence": confidence})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("cost", "expected", "weak_kept", "agreement"),
    [
        # net correct: the 0.3 and 0.1 bands are mostly wrong, so keep confidence > 0.55 (ties: highest)
        (1.0, 0.55, 200, 0.9),
        # coverage × agreement: every band adds correct labels, so keep (nearly) everything
        (0.0, 0.05, 400, (50 + 40 + 15 + 20) / 200),
    ],
)
def test_auto_threshold_finds_the_known_best(cost, expected, weak_kept, agreement) -> None:
    settings = AutoThreshold(wrong_label_cost=cost)
    choice = choose_threshold(_banded_export(), settings=settings)
    assert choice.value == pytest.approx(expected)
    assert not choice.fell_back
    assert (choice.weak_kept, choice.weak_total) == (weak_kept, 400)
    assert choice.agreement == pytest.approx(agreement)
    assert choice.expected_correct == pytest.approx(weak_kept * agreement)
    assert f"min_confidence={expected:g} chosen from the manual labels" in choice.reason
    combined, report = combine_labels(_banded_export(), min_confidence="auto", auto=settings)
    assert report.min_confidence == pytest.approx(expected)
    assert report.threshold_choice == choice
    assert report.kept_weak == weak_kept
    assert "chosen from the manual labels" in str(report)
    assert report.to_dict()["threshold_choice"]["value"] == pytest.approx(expected)


def test_auto_threshold_falls_back_with_few_overlaps() -> None:
    combined, report = combine_labels(sdk_frame(), "Topic", min_confidence="auto")
    choice = report.threshold_choice
    assert choice.fell_back and choice.value == 0.7 == report.min_confidence
    assert "only 2 records have both" in choice.reason and "30 needed" in choice.reason
    assert len(combined) == 5  # exactly the fixed 0.7 result
    assert combine_labels(sdk_frame(), "Topic")[1].threshold_choice == choice  # "auto" is the default
    assert combine_labels(sdk_frame(), min_confidence="auto", auto=AutoThreshold(min_overlap=2, fallback=0.5))[
        1].threshold_choice.fell_back is False


def test_auto_threshold_keeps_no_weak_label_when_they_are_mostly_wrong() -> None:
    frame = _banded_export()
    # Flipped, cumulative agreement is below one half at every threshold (0.375 at 0, 0 above 0.6).
    frame["__T__WEAK_SUPERVISION"] = frame["__T__WEAK_SUPERVISION"].map({"A": "B", "B": "A"})
    combined, report = combine_labels(frame, min_confidence="auto")
    assert report.min_confidence == 1.0 and report.kept_weak == 0
    assert set(combined["label_source"]) == {"manual"}
    assert "at most half" in report.threshold_choice.reason


def test_threshold_report_marks_the_chosen_threshold() -> None:
    table = threshold_report(_banded_export(), thresholds=[0.5, 0.7])
    assert table["threshold"].tolist() == [0.5, 0.55, 0.7]
    assert table["chosen"].tolist() == [False, True, False]
    assert table.attrs["threshold_choice"]["value"] == pytest.approx(0.55)
    assert "reason" in table.attrs["threshold_choice"]
    row = table.set_index("threshold").loc[0.55]
    assert row["expected_correct"] == pytest.approx(180) and row["expected_wrong"] == pytest.approx(20)


def test_min_confidence_rejects_other_strings() -> None:
    with pytest.raises(ValueError, match=r"min_confidence must be a number between 0 and 1 or 'auto', got 'best'"):
        combine_labels(sdk_frame(), min_confidence="best")
    assert combine_labels(sdk_frame(), min_confidence="0.7")[1].min_confidence == 0.7


@pytest.fixture(scope="module")
def banking():
    if not BANKING.exists():
        pytest.skip("the banking snapshot is not shipped in this checkout")
    return load_export(BANKING)


def test_auto_threshold_on_the_banking_snapshot(banking) -> None:
    choice = choose_threshold(banking, "intent", template="{text}")
    assert not choice.fell_back
    assert choice.compared >= 200 and choice.agreement > 0.99
    assert 0.0 <= choice.value < 0.7  # the fixed 0.7 throws away good labels here
    assert choice.coverage > 0.95
    records, report = combine_labels(banking, "intent", min_confidence="auto", template="{text}")
    assert report.kept_weak == choice.weak_kept and report.kept_manual == 250
    assert set(records["weight"][records["label_source"] == "manual"]) == {1.0}
    weak = records[records["label_source"] == "weak_supervision"]
    assert (weak["weight"] == weak["confidence"]).all() and (weak["weight"] > choice.value).all()
