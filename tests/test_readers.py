"""One reader for every data file: compression, zips, and values kept as written (issues 11, 12)."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from refinery_quaterion._util import to_jsonable
from refinery_quaterion.data.dataset import load_records
from refinery_quaterion.data.readers import read_data_file
from refinery_quaterion.data.refinery import load_export

RECORDS = [
    {"text": "first", "date": "2021-03-04", "created_at": "2021-03-04T10:00:00", "code": "007", "n": 1,
     "score": 0.5, "flag": True, "label": "a"},
    {"text": "second", "date": "2021-03-05", "created_at": "2022-01-01T00:00:00", "code": "010", "n": None,
     "score": None, "flag": False, "label": "b"},
]


def _write(path, data: bytes) -> None:
    compress = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}.get(path.suffix)
    path.write_bytes(compress(data) if compress else data)


@pytest.mark.parametrize("name", ["train.json", "train.json.gz", "train.json.bz2", "train.json.xz", "train.jsonl",
                                  "train.jsonl.gz"])
def test_values_read_back_as_written(tmp_path, name) -> None:
    path = tmp_path / name
    if ".jsonl" in name:
        text = "\n".join(json.dumps(r) for r in RECORDS) + "\n"
    else:
        text = json.dumps(RECORDS)
    _write(path, text.encode())
    frame = load_records(path)
    assert to_jsonable(frame.to_dict(orient="records")) == RECORDS


def test_prepare_style_round_trip_keeps_every_value(tmp_path) -> None:
    """What ``prepare`` writes (pandas' to_json) reads back unchanged: no date conversion."""
    first = load_records(_json(tmp_path / "a.json", RECORDS))
    first.to_json(tmp_path / "b.json", orient="records", force_ascii=False, indent=1)
    second = load_records(tmp_path / "b.json")
    assert second["date"].tolist() == ["2021-03-04", "2021-03-05"]
    assert second["created_at"].tolist() == ["2021-03-04T10:00:00", "2022-01-01T00:00:00"]
    assert second["code"].tolist() == ["007", "010"]
    assert to_jsonable(second.to_dict(orient="records")) == RECORDS


def _json(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_zipped_and_csv_records(tmp_path) -> None:
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    csv = tmp_path / "records.csv.gz"
    frame.to_csv(csv, index=False, compression="gzip")
    assert load_records(csv).to_dict("records") == frame.to_dict("records")
    archive = tmp_path / "records.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("records.json", frame.to_json(orient="records"))
    assert load_records(archive).to_dict("records") == frame.to_dict("records")


def test_load_records_and_load_export_share_the_reader(tmp_path) -> None:
    rows = [{"text": "a", "date": "2021-03-04", "__T__MANUAL": "x"}, {"text": "b", "date": None, "__T__MANUAL": "y"}]
    path = tmp_path / "export.json.gz"
    path.write_bytes(gzip.compress(json.dumps(rows).encode()))
    records = load_records(path)
    export = load_export(path)
    pd.testing.assert_frame_equal(export.records[["text", "date"]], records[["text", "date"]])
    assert read_data_file(path).name == str(path)


def test_ag_news_files_read_as_before() -> None:
    data = Path(__file__).resolve().parents[1] / "examples" / "ag_news" / "data" / "labeled_data_val.json.gz"
    ours = load_records(data)
    theirs = pd.read_json(data)
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs) == 2714
    assert ours["Title"].tolist() == theirs["Title"].tolist()
    assert ours["label"].tolist() == theirs["label"].tolist()
