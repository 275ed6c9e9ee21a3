"""Bad input gets one clear exception naming the file, column, row or value."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from refinery_fixtures import sdk_frame, snapshot, ui_frame, write_snapshot, write_ui, zip_file

from refinery_quaterion.dataset import LabelMap, RefineryExportDataset, train_val_split
from refinery_quaterion.export import ExportError, load_export
from refinery_quaterion.labels import combine_labels, threshold_report
from refinery_quaterion.text import TextTemplate


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


class _BadClient:
    def get_record_export(self, **kwargs):
        return [{"a": 1}]


CONF = "__Topic__WEAK_SUPERVISION__confidence"

CASES: list[tuple[str, Callable[[Path], object], type[Exception], str]] = [
    ("missing file", lambda t: load_export(t / "nope.json"), FileNotFoundError, r"nope\.json: no such file"),
    ("folder", lambda t: load_export(t), ExportError, r"is a folder; expected a \.json"),
    ("unknown suffix", lambda t: load_export(_write(t, "x.txt", "hi")), ExportError,
     r"x\.txt: unsupported file type '\.txt'"),
    ("invalid json", lambda t: load_export(_write(t, "x.json", '[{"a": 1},')), ExportError,
     r"x\.json: invalid JSON at line 1, column 11"),
    ("json scalar", lambda t: load_export(_write(t, "x.json", "42")), ExportError,
     r"JSON is a int; expected a list of records"),
    ("json list of non-objects", lambda t: load_export(_write(t, "x.json", '[{"a": 1}, 3]')), ExportError,
     r"record 1 is a int; expected a list of objects"),
    ("not a zip", lambda t: load_export(_write(t, "x.zip", "hello")), ExportError, r"x\.zip: not a valid zip"),
    ("zip without data", lambda t: load_export(_zip(t, {"readme.md": "x"})), ExportError,
     r"holds no \.json, \.csv or \.xlsx file \(it holds \['readme\.md'\]\)"),
    ("zip with two data files", lambda t: load_export(_zip(t, {"a.json": "[]", "b.csv": "x"})), ExportError,
     r"several data files \['a\.json', 'b\.csv'\]"),
    ("password missing", lambda t: load_export(_protected(t)), ExportError,
     r"d\.json\.zip: d\.json is password protected; pass password="),
    ("password wrong", lambda t: load_export(_protected(t), password="wrong"), ExportError,
     r"wrong password for d\.json"),
    ("snapshot missing key", lambda t: load_export(_snapshot_without(t, "attributes_data")), ExportError,
     r"project snapshot lacks \['attributes_data'\]"),
    ("confidence not a number", lambda t: load_export(_frame_with(CONF, ["0.9", "high"] + ["0.5"] * 8)),
     ExportError, rf"column '{CONF}', row 1: confidence 'high' is not a number"),
    ("confidence out of range", lambda t: load_export(_frame_with(CONF, ["1.5"] + ["0.5"] * 9)),
     ExportError, rf"column '{CONF}', row 0: confidence 1.5 is outside 0\.\.1"),
    ("unknown task", lambda t: combine_labels(sdk_frame(), "Topci"), ExportError,
     r"no classification task 'Topci'; tasks found: 'Topic'"),
    ("no task columns", lambda t: combine_labels(pd.DataFrame({"text": ["a"]})), ExportError,
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
    ("unknown attribute", lambda t: combine_labels(sdk_frame(), attributes=["Body"]), ExportError,
     r"unknown attribute\(s\) \['Body'\]"),
    ("unsupported source", lambda t: load_export(42), ExportError, r"cannot read refinery data from a int"),
    ("client returns a list", lambda t: load_export(_BadClient()), ExportError,
     r"_BadClient\.get_record_export\(\)> returned list, expected a pandas DataFrame"),
    ("empty csv", lambda t: load_export(_write(t, "x.csv", "")), ExportError, r"x\.csv: not a readable CSV"),
    ("template column missing",
     lambda t: RefineryExportDataset(pd.DataFrame({"Title": ["a"], "label": ["x"]}), text="{Title} {Body}"),
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
