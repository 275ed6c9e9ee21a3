"""Every form of refinery data reads into the same table."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import math
import sys

import pandas as pd
import pytest
from refinery_fixtures import (
    EXPECTED_KEPT,
    ROWS,
    old_sdk_frame,
    sdk_frame,
    snapshot,
    ui_frame,
    write_snapshot,
    write_ui,
    zip_file,
)

from refinery_quaterion.data.labels import combine_labels
from refinery_quaterion.data.refinery import RefineryExport, RefineryFileError, load_export


def _check_topic_table(export: RefineryExport) -> None:
    assert list(export.tasks) == ["Topic"]
    task = export.tasks["Topic"]
    assert task.attribute == ""
    assert task.labels == ["Business", "Sports", "World"]
    assert task.multi_label_records == 1
    frame = export.records
    assert len(frame) == len(ROWS)
    assert list(frame["Title"]) == [r[0] for r in ROWS]
    assert [None if pd.isna(v) else v for v in frame["__Topic__MANUAL"]] == [r[2] for r in ROWS]
    assert [None if pd.isna(v) else v for v in frame["__Topic__WEAK_SUPERVISION"]] == [r[3] for r in ROWS]
    confidences = frame["__Topic__WEAK_SUPERVISION__confidence"].tolist()
    for got, row in zip(confidences, ROWS, strict=True):
        assert (math.isnan(got) and row[4] is None) or got == pytest.approx(row[4])


def test_sdk_dataframe() -> None:
    export = load_export(sdk_frame())
    _check_topic_table(export)
    assert export.attributes == ["record_id", "Title", "Description"]
    assert export.tasks["Topic"].confidence_column == "__Topic__WEAK_SUPERVISION__confidence"


def test_sdk_client_object_called_with_tokenize_false() -> None:
    calls = []

    class FakeClient:
        def get_record_export(self, **kwargs):
            calls.append(kwargs)
            frame = sdk_frame()
            frame["Title__tokenized"] = "spacy-doc"  # tokenize=True columns are dropped
            return frame

    export = load_export(FakeClient())
    assert calls == [{"tokenize": False}]
    _check_topic_table(export)
    assert "Title__tokenized" not in export.records.columns
    assert "FakeClient" in export.source


@pytest.mark.parametrize("suffix", [".json", ".csv", ".xlsx"])
@pytest.mark.parametrize("zipped", [False, True])
def test_ui_download(tmp_path, suffix, zipped) -> None:
    path = write_ui(ui_frame(), tmp_path / f"project_default_all{suffix}")
    if zipped:
        path = zip_file(path, tmp_path / f"project_default_all{suffix}.zip", macosx=True)
    export = load_export(path)
    _check_topic_table(export)
    assert export.tasks["Topic"].heuristic_columns == ["__Topic__INFORMATION_SOURCE__keywords"]
    assert export.attributes == ["Title", "Description"]


def test_ui_download_with_password(tmp_path) -> None:
    path = zip_file(write_ui(ui_frame(), tmp_path / "data.json"), tmp_path / "data.json.zip", password=b"s3cret")
    _check_topic_table(load_export(path, password="s3cret"))
    _check_topic_table(load_export(path, password=b"s3cret"))


def test_sdk_download_to_json_and_double_encoded(tmp_path) -> None:
    records = sdk_frame().to_json(orient="records")
    plain = tmp_path / "plain.json"
    plain.write_text(records)
    double = tmp_path / "double.json"
    double.write_text(json.dumps(records))  # a JSON string holding the JSON
    _check_topic_table(load_export(plain))
    _check_topic_table(load_export(double))


def test_confidence_spellings_and_types_agree() -> None:
    frame = sdk_frame()
    frame["__Topic__WEAK_SUPERVISION__confidence"] = ["0.91", 0.95, "0.71", "", None, float("nan"),
                                                      "None", " 0.5 ", 1, "0"]
    conf = load_export(frame).records["__Topic__WEAK_SUPERVISION__confidence"].tolist()
    expected = [0.91, 0.95, 0.71, None, None, None, None, 0.5, 1.0, 0.0]
    for got, want in zip(conf, expected, strict=True):
        assert (want is None and math.isnan(got)) or got == pytest.approx(want)


def test_snapshot_zip(tmp_path) -> None:
    export = load_export(write_snapshot(tmp_path / "project_export_1.json.zip"))
    _check_topic_table(export)
    assert export.attributes == ["Title", "Description"]
    assert any("NER" in note and "ignored" in note for note in export.notes)


def test_snapshot_uses_newest_weak_supervision_run_and_valid_manual_labels(tmp_path) -> None:
    payload = snapshot(weak_runs=3)
    export = load_export(write_snapshot(tmp_path / "p.json.zip", payload))
    # Older runs say "World" with 0.99 everywhere; only the newest run counts.
    assert export.records["__Topic__WEAK_SUPERVISION"].tolist()[0] == "Business"
    # r1 has an invalid manual label "World": ignored, so r1 has no manual label.
    assert pd.isna(export.records["__Topic__MANUAL"][1])


def test_snapshot_plain_json(tmp_path) -> None:
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot()))
    _check_topic_table(load_export(path))


def test_all_forms_give_the_same_combined_labels(tmp_path) -> None:
    ui = zip_file(write_ui(ui_frame(), tmp_path / "d.csv"), tmp_path / "d.zip", password=b"pw")
    frames = [
        combine_labels(load_export(sdk_frame()), "Topic")[0],
        combine_labels(load_export(ui, password="pw"), "Topic")[0],
        combine_labels(load_export(write_snapshot(tmp_path / "s.json.zip")), "Topic")[0],
    ]
    for frame in frames:
        assert frame[["Title", "label", "label_source"]].to_dict("records") == frames[0][
            ["Title", "label", "label_source"]
        ].to_dict("records")


def test_extraction_columns_are_ignored_with_a_note() -> None:
    frame = sdk_frame()
    frame["Description__NER__MANUAL"] = [["B-ORG", "I-ORG", "OUTSIDE"]] * len(frame)
    frame["Description__NER__WEAK_SUPERVISION"] = [["OUTSIDE"] * 3] * len(frame)
    frame["Description__NER__WEAK_SUPERVISION__confidence"] = [[0.0, 0.9, 0.0]] * len(frame)
    export = load_export(frame)
    assert list(export.tasks) == ["Topic"]
    assert any("'NER'" in note and "extraction" in note for note in export.notes)


def test_attribute_level_classification_task() -> None:
    frame = pd.DataFrame(
        {
            "Title": ["a", "b", "c"],
            "Title__Sentiment__MANUAL": ["pos", None, "neg"],
            "Title__Sentiment__WEAK_SUPERVISION": ["pos", "neg", "neg"],
            "Title__Sentiment__WEAK_SUPERVISION__confidence": ["0.9", "0.8", "0.1"],
        }
    )
    export = load_export(frame)
    task = export.task("Sentiment")
    assert (task.attribute, task.labels) == ("Title", ["neg", "pos"])
    combined, report = combine_labels(export)
    assert combined["label"].tolist() == ["pos", "neg", "neg"]
    assert combined["label_source"].tolist() == ["manual", "weak_supervision", "manual"]
    assert report.kept == 3


# ----------------------------------------------------------------------------------------
# Compressed files (issue 12)
# ----------------------------------------------------------------------------------------

COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
@pytest.mark.parametrize("suffix", [".json", ".csv"])
@pytest.mark.parametrize("zipped", [False, True])
def test_compressed_exports(tmp_path, compression, suffix, zipped) -> None:
    plain = write_ui(ui_frame(), tmp_path / f"project_default_all{suffix}")
    path = tmp_path / f"project_default_all{suffix}{compression}"
    path.write_bytes(COMPRESSORS[compression](plain.read_bytes()))
    if zipped:  # a zip holding the compressed file
        path = zip_file(path, tmp_path / "download.zip")
    export = load_export(path)
    _check_topic_table(export)
    assert export.source.endswith(f"project_default_all{suffix}{compression}")


def test_compressed_snapshot(tmp_path) -> None:
    path = tmp_path / "project_export.json.gz"
    path.write_bytes(gzip.compress(json.dumps(snapshot()).encode()))
    _check_topic_table(load_export(path))


def test_zstandard_export(tmp_path) -> None:
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "export.json.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(sdk_frame().to_json(orient="records").encode()))
    _check_topic_table(load_export(path))


def test_zstandard_missing_names_the_package(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard -> ImportError
    path = tmp_path / "export.json.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd anything")
    with pytest.raises(RefineryFileError, match=r"export\.json\.zst: reading \.zst files needs the zstandard package"):
        load_export(path)


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_sniffed(tmp_path, delimiter) -> None:
    frame = ui_frame()
    frame.loc[0, "Description"] = "Markets climb; earnings, too"  # delimiters inside a quoted cell
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False, sep=delimiter)
    export = load_export(path)
    assert export.records.loc[0, "Description"] == "Markets climb; earnings, too"
    assert list(export.tasks) == ["Topic"] and len(export.records) == len(ROWS)


def test_json_values_keep_their_types(tmp_path) -> None:
    rows = [{"text": "a", "date": "2021-03-04", "code": "007", "n": 1, "flag": True, "__T__MANUAL": "x"},
            {"text": "b", "date": "2021-03-05", "code": "010", "n": None, "flag": False, "__T__MANUAL": "y"}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(rows))
    records = load_export(path).records
    assert records["date"].tolist() == ["2021-03-04", "2021-03-05"]
    assert records["code"].tolist() == ["007", "010"]
    assert records["n"].tolist()[0] == 1 and str(records["n"].dtype) == "Int64"
    assert records["flag"].tolist() == [True, False]


# ----------------------------------------------------------------------------------------
# Old SDK exports, confidence columns (issue 11, case 8 and clear errors)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("extraction_tags", [False, True])
def test_old_sdk_csv_with_python_repr_extraction_columns(tmp_path, extraction_tags) -> None:
    path = tmp_path / "old_sdk_export.csv"
    old_sdk_frame(extraction_tags).to_csv(path, index=False)
    export = load_export(path)
    _check_topic_table(export)
    assert not any(c.startswith("Title__NER") for c in export.records.columns)
    assert any("'NER' on attribute 'Title' is an extraction (span) task" in note for note in export.notes)
    frame, _ = combine_labels(export, "Topic")
    assert {r.Title: (r.label, r.label_source) for r in frame.itertuples()} == EXPECTED_KEPT


def test_both_confidence_spellings_that_agree_are_merged_with_a_note() -> None:
    frame = ui_frame()
    frame["__Topic__WEAK_SUPERVISION__confidence"] = [None if r[4] is None else f"{r[4]:.4f}" for r in ROWS]
    frame.loc[1, "__Topic__WEAK_SUPERVISION_CONFIDENCE"] = None  # a gap filled from the other spelling
    export = load_export(frame)
    _check_topic_table(export)
    assert any("both confidence columns '__Topic__WEAK_SUPERVISION_CONFIDENCE' and "
               "'__Topic__WEAK_SUPERVISION__confidence'" in note for note in export.notes)


def test_both_spellings_for_different_tasks_are_fine() -> None:
    frame = old_sdk_frame(extraction_tags=True).rename(
        columns={"__Topic__WEAK_SUPERVISION__confidence": "__Topic__WEAK_SUPERVISION_CONFIDENCE"})
    export = load_export(frame)
    _check_topic_table(export)
    assert export.tasks["Topic"].confidence_column == "__Topic__WEAK_SUPERVISION__confidence"


def test_confidence_column_without_its_label_column_is_a_note() -> None:
    frame = sdk_frame().drop(columns="__Topic__WEAK_SUPERVISION")
    export = load_export(frame)
    assert export.tasks["Topic"].weak_column is None
    assert any("confidence column '__Topic__WEAK_SUPERVISION__confidence' without its weak-supervision label "
               "column '__Topic__WEAK_SUPERVISION'" in note for note in export.notes)
    only = pd.DataFrame({"text": ["a"], "__X__WEAK_SUPERVISION_CONFIDENCE": [0.5]})
    export = load_export(only)
    assert export.tasks == {} and any("task ignored" in note for note in export.notes)
