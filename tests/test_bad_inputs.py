"""Bad input gets one clear exception naming the file, column, row or value."""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from refinery_fixtures import sdk_frame, snapshot, ui_frame, write_snapshot, write_ui, zip_file

from refinery_quaterion.data.cleaning import clean_labels
from refinery_quaterion.data.dataset import LabelMap, RefineryExportDataset, load_records, train_val_split
from refinery_quaterion.data.labels import combine_labels, threshold_report
from refinery_quaterion.data.refinery import RefineryFileError, load_export
from refinery_quaterion.data.splits import split_by_source
from refinery_quaterion.data.text import TextTemplate
from refinery_quaterion.data.thresholds import AutoThreshold


def _write(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _zip(tmp: Path, members: dict[str, str]) -> Path:
    path = tmp / "download.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def _frame_with(column: str, values: list) -> pd.DataFrame:
    frame = sdk_frame()
    frame[column] = values
    return frame


def _protected(tmp: Path) -> Path:
    return zip_file(write_ui(ui_frame(), tmp / "d.json"), tmp / "d.json.zip", password=b"right")


def _snapshot_without(tmp: Path, key: str) -> Path:
    payload = snapshot()
    del payload[key]
    return write_snapshot(tmp / "s.json.zip", payload)


def _corrupt_zip(tmp: Path, method: int) -> Path:
    """A zip whose only member has a flipped byte in its data (stored: CRC error; deflated: zlib error)."""
    path = tmp / "corrupt.zip"
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("d.json", sdk_frame().to_json(orient="records"))
    data = bytearray(path.read_bytes())
    data[30 + len("d.json") + 20] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _both_spellings_disagree() -> pd.DataFrame:
    frame = ui_frame()
    frame["__Topic__WEAK_SUPERVISION__confidence"] = ["0.5"] * len(frame)
    return frame


def _blank_frame() -> pd.DataFrame:
    return pd.DataFrame({"text": ["fine", "  ", "ok"], "label": ["a", "b", "a"]})


class _BadClient:
    def get_record_export(self, **kwargs):
        return [{"a": 1}]


CONF = "__Topic__WEAK_SUPERVISION__confidence"

CASES: list[tuple[str, Callable[[Path], object], type[Exception], str]] = [
    ("missing file", lambda t: load_export(t / "nope.json"), FileNotFoundError, r"nope\.json: no such file"),
    ("folder", lambda t: load_export(t), RefineryFileError, r"is a folder; expected a \.json"),
    ("unknown suffix", lambda t: load_export(_write(t, "x.txt", "hi")), RefineryFileError,
     r"x\.txt: unsupported file type '\.txt'"),
    ("invalid json", lambda t: load_export(_write(t, "x.json", '[{"a": 1},')), RefineryFileError,
     r"x\.json: invalid JSON at line 1, column 11"),
    ("json scalar", lambda t: load_export(_write(t, "x.json", "42")), RefineryFileError,
     r"JSON is a int; expected a list of records"),
    ("json list of non-objects", lambda t: load_export(_write(t, "x.json", '[{"a": 1}, 3]')), RefineryFileError,
     r"record 1 is a int; expected a list of objects"),
    ("not a zip", lambda t: load_export(_write(t, "x.zip", "hello")), RefineryFileError, r"x\.zip: not a valid zip"),
    ("zip without data", lambda t: load_export(_zip(t, {"readme.md": "x"})), RefineryFileError,
     r"holds no \.json, \.csv or \.xlsx file \(it holds \['readme\.md'\]\)"),
    ("zip with two data files", lambda t: load_export(_zip(t, {"a.json": "[]", "b.csv": "x"})), RefineryFileError,
     r"several data files \['a\.json', 'b\.csv'\]"),
    ("password missing", lambda t: load_export(_protected(t)), RefineryFileError,
     r"d\.json\.zip: d\.json is password protected; pass password="),
    ("password wrong", lambda t: load_export(_protected(t), password="wrong"), RefineryFileError,
     r"wrong password for d\.json"),
    ("snapshot missing key", lambda t: load_export(_snapshot_without(t, "attributes_data")), RefineryFileError,
     r"project snapshot lacks \['attributes_data'\]"),
    ("confidence not a number", lambda t: load_export(_frame_with(CONF, ["0.9", "high"] + ["0.5"] * 8)),
     RefineryFileError, rf"column '{CONF}', row 1: confidence 'high' is not a number"),
    ("confidence out of range", lambda t: load_export(_frame_with(CONF, ["1.5"] + ["0.5"] * 9)),
     RefineryFileError, rf"column '{CONF}', row 0: confidence 1.5 is outside 0\.\.1"),
    ("unknown task", lambda t: combine_labels(sdk_frame(), "Topci"), RefineryFileError,
     r"no classification task 'Topci'; tasks found: 'Topic'"),
    ("no task columns", lambda t: combine_labels(pd.DataFrame({"text": ["a"]})), RefineryFileError,
     r"no classification task found; expected columns like '__Topic__MANUAL'.*columns are \['text'\]"),
    ("threshold out of range", lambda t: combine_labels(sdk_frame(), min_confidence=1.5), ValueError,
     r"min_confidence must be between 0 and 1, got 1\.5"),
    ("threshold not a number", lambda t: threshold_report(sdk_frame(), thresholds=["high"]), ValueError,
     r"threshold must be a number between 0 and 1, got 'high'"),
    ("nothing left", lambda t: combine_labels(sdk_frame().drop(columns="__Topic__MANUAL"), min_confidence=0.99),
     ValueError, r"no record of task 'Topic' is left .*min_confidence=0\.99"),
    ("one class left", lambda t: combine_labels(_frame_with("__Topic__MANUAL", ["World"] * 10),
                                                use_weak_supervision=False),
     ValueError, r"only the class 'World' is left"),
    ("unknown attribute", lambda t: combine_labels(sdk_frame(), attributes=["Body"]), RefineryFileError,
     r"unknown attribute\(s\) \['Body'\]"),
    ("unsupported source", lambda t: load_export(42), RefineryFileError, r"cannot read refinery data from a int"),
    ("client returns a list", lambda t: load_export(_BadClient()), RefineryFileError,
     r"_BadClient\.get_record_export\(\)> returned list, expected a pandas DataFrame"),
    ("empty csv", lambda t: load_export(_write(t, "x.csv", "")), RefineryFileError, r"x\.csv: not a readable CSV"),
    ("template column missing",
     lambda t: RefineryExportDataset(pd.DataFrame({"Title": ["a"], "label": ["x"]}), template="{Title} {Body}"),
     ValueError, r"uses 'Body', which is not a column of the dataset frame; available columns: 'Title', 'label'"),
    ("template positional", lambda t: TextTemplate("{} and {0}"), ValueError, r"positional field"),
    ("template no field", lambda t: TextTemplate("just text"), ValueError, r"names no field"),
    ("dataset without labels", lambda t: RefineryExportDataset(pd.DataFrame({"text": ["a"]})), ValueError,
     r"no label column 'label'.*combine_labels\(\)"),
    ("dataset missing label", lambda t: RefineryExportDataset(pd.DataFrame({"text": ["a", "b"],
                                                                            "label": ["x", None]})),
     ValueError, r"1 record\(s\) have no 'label' \(first at row 1\)"),
    ("label not in map", lambda t: RefineryExportDataset(pd.DataFrame({"text": ["a"], "label": ["X"]}),
                                                         label_map=LabelMap(["Y", "Z"])),
     ValueError, r"labels \['X'\] are not in the label map \['Y', 'Z'\]"),
    ("bad label map file", lambda t: LabelMap.load(_write(t, "labels.json", '{"names": []}')), ValueError,
     r"labels\.json: not a label map file"),
    ("split single-record class", lambda t: train_val_split(pd.DataFrame({"label": ["a", "a", "a", "b"]})),
     ValueError, r"class\(es\) \['b'\] have a single record"),
    # Issue 12: compression and one reader for records
    ("corrupt gzip", lambda t: load_export(_write(t, "x.json.gz", b"\x1f\x8b not gzip")), RefineryFileError,
     r"x\.json\.gz: not a valid gzip file"),
    ("corrupt xz", lambda t: load_export(_write(t, "x.csv.xz", b"nope")), RefineryFileError,
     r"x\.csv\.xz: not a valid xz file"),
    ("compressed unknown type", lambda t: load_export(_write(t, "x.txt.gz", gzip.compress(b"hi"))), RefineryFileError,
     r"x\.txt\.gz: unsupported file type '\.txt\.gz'"),
    ("records file is a snapshot", lambda t: load_records(write_snapshot(t / "s.json.zip")), RefineryFileError,
     r"s\.json\.zip!project_export\.json: is a refinery project snapshot, not a table of records"),
    ("jsonl bad line", lambda t: load_records(_write(t, "r.jsonl", '{"a": 1}\n{"a": \n')), RefineryFileError,
     r"r\.jsonl: invalid JSON on line 2"),
    # Issue 11: clear errors
    ("corrupt zip member (stored)", lambda t: load_export(_corrupt_zip(t, zipfile.ZIP_STORED)), RefineryFileError,
     r"corrupt\.zip: zip member d\.json is corrupt"),
    ("corrupt zip member (deflated)", lambda t: load_export(_corrupt_zip(t, zipfile.ZIP_DEFLATED)), RefineryFileError,
     r"corrupt\.zip: zip member d\.json is corrupt"),
    ("csv that does not parse names the delimiter", lambda t: load_export(_write(t, "x.csv", "a;b\n1;2\n3;4;5;6;7\n")),
     RefineryFileError, r"x\.csv: not a readable CSV file \(delimiter: semicolon;"),
    ("both confidence spellings disagree", lambda t: load_export(_both_spellings_disagree()), RefineryFileError,
     r"task 'Topic' has both confidence columns '__Topic__WEAK_SUPERVISION_CONFIDENCE' and "
     r"'__Topic__WEAK_SUPERVISION__confidence', and they disagree \(row 0: 0\.91 vs 0\.5\)"),
    ("format spec that cannot render", lambda t: combine_labels(sdk_frame(), template="{Title:d}"), ValueError,
     r"row 0: text template '\{Title:d\}': field 'Title' cannot format the value 'Stocks rally'"),
    ("format spec in a dataset", lambda t: RefineryExportDataset(_blank_frame(), template="{text:d}"), ValueError,
     r"text template '\{text:d\}': field 'text' cannot format"),
    ("list-valued template field", lambda t: TextTemplate("{vec}")({"vec": [0.1, 0.2]}), ValueError,
     r"field 'vec' holds a list \(\[0\.1, 0\.2\]\), not a text"),
    ("template column missing names the file",
     lambda t: combine_labels(write_ui(ui_frame(), t / "d.json"), template="{Title} {Body}"), ValueError,
     r"uses 'Body', which is not a column of .*d\.json; available columns: 'Title', 'Description'"),
    ("blank text in a dataset", lambda t: RefineryExportDataset(_blank_frame()), ValueError,
     r"1 record\(s\) have a blank text \(first at row 1: template '\{text\}' renders '  '\)"),
    ("negative weight", lambda t: RefineryExportDataset(_blank_frame().assign(text="x", weight=[1, -1, 1])),
     ValueError, r"column 'weight', row 1: weight -1 is not a number >= 0"),
    ("missing weight", lambda t: RefineryExportDataset(_blank_frame().assign(text="x", weight=[1, None, 1])),
     ValueError, r"column 'weight', row 1: weight nan is not a number >= 0"),
    # Splits
    ("val_size out of range", lambda t: train_val_split(_blank_frame(), val_size=1.5), ValueError,
     r"val_size must be between 0 and 1 \(a share\) or a count, got 1\.5"),
    ("val_size too many", lambda t: train_val_split(_blank_frame(), val_size=3), ValueError,
     r"val_size=3 records: must be at least 1 and fewer than the 3 records"),
    ("holdout without source column", lambda t: split_by_source(_blank_frame()), ValueError,
     r"no column 'label_source' .*output of combine_labels\(\)"),
    ("holdout without manual labels", lambda t: split_by_source(_blank_frame().assign(label_source="weak_supervision")),
     ValueError, r"no record has a manual label"),
    # Threshold and cleaning settings
    ("auto overlap", lambda t: AutoThreshold(min_overlap=0), ValueError, r"min_overlap must be at least 1"),
    ("auto candidates", lambda t: AutoThreshold(candidates=(0.5, 2)), ValueError,
     r"an auto-threshold candidate must be between 0 and 1, got 2"),
    ("cleaning shape", lambda t: clean_labels(_blank_frame().assign(label_source="manual"), np.zeros((2, 4))),
     ValueError, r"embeddings must be an array of shape \(records, dim\) = \(3, d\); got \(2, 4\)"),
    ("cleaning NaN", lambda t: clean_labels(_blank_frame().assign(label_source="manual"),
                                            np.array([[1.0, 0], [np.nan, 1], [0, 1]]), k=1),
     ValueError, r"embeddings row 1 holds NaN"),
    ("cleaning k", lambda t: clean_labels(_blank_frame().assign(label_source="manual"), np.eye(3), k=3),
     ValueError, r"k must be an integer from 1 to 2"),
    ("cleaning majority", lambda t: clean_labels(_blank_frame().assign(label_source="manual"), np.eye(3), k=1,
                                                 majority=0.5),
     ValueError, r"majority must be above 0\.5"),
]


@pytest.mark.parametrize(("name", "call", "error", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, name, call, error, message) -> None:
    with pytest.raises(error, match=message):
        call(tmp_path)


def test_errors_never_leak_pandas_key_errors(tmp_path) -> None:
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"__Topic__WEAK_SUPERVISION": "A"}, {"__Topic__WEAK_SUPERVISION": "B"}]))
    export = load_export(path)  # no confidence column: a note, not a KeyError
    assert any("no weak-supervision confidence column" in note for note in export.notes)
    with pytest.raises(ValueError, match="no record of task 'Topic' is left"):
        combine_labels(export)
