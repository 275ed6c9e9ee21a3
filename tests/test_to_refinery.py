"""``to_refinery`` / ``to-refinery``: the model's vectors as one more embedding of a refinery snapshot.

Round trips on the real banking (2022-09) and clickbait (2022-07) snapshots with tiny random
models: everything but the added embedding, its tensors and the optional slice stays equal;
refusals are one line, exit code 2, and write nothing.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_texts

from refinery_quaterion import DistilBertSimilarityModel, ModelConfig, RefineryExportDataset, save
from refinery_quaterion.cli import main
from refinery_quaterion.data.refinery import load_export
from refinery_quaterion.errors import OutputExistsError, SettingError
from refinery_quaterion.exporters import to_refinery
from refinery_quaterion.exporters.refinery_config import ToRefineryConfig
from refinery_quaterion.exporters.refinery_snapshot import reduce_dimension, unique_name

ROOT = Path(__file__).resolve().parents[1]
BANKING = ROOT / "examples" / "banking_intents" / "data" / "snapshot_data.json.zip"
CLICKBAIT = ROOT / "examples" / "clickbait" / "data" / "clickbait.zip"
ADDED = ("embeddings_data", "embedding_tensors_data")
SLICES = ("data_slice_data", "data_slice_record_association_data")


def read_zip(path: Path) -> tuple[list[str], dict]:
    """The entry names of a snapshot zip and its first entry's JSON (what refinery-gateway reads)."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        return names, json.loads(archive.read(names[0]))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    """Saved tiny models whose templates are ``{text}`` (banking) and ``{headline}`` (clickbait)."""
    made = {}
    for field in ("text", "headline"):
        frame = make_texts(40).rename(columns={"text": field})
        label_map = RefineryExportDataset(frame, template=f"{{{field}}}").label_map
        model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, template=f"{{{field}}}",
                                                      head="linear", head_options={"output_size": 16}, loss="triplet"))
        made[field] = save(model, tmp_path_factory.mktemp(field) / f"tiny-{field}", label_map=label_map)
    return made


def check_round_trip(source: Path, out: Path, result, dim: int) -> tuple[dict, dict]:
    """The output equals the input but for one embedding with one ``dim``-long tensor per record."""
    _, before = read_zip(source)
    names, after = read_zip(out)
    assert len(names) == 1 and names[0].endswith(".json")
    assert load_export(out).records.shape[0] == len(before["records_data"])
    assert set(after) == set(before) | set(ADDED)
    for key in set(before) - set(ADDED) - set(SLICES if result.slice else ()):
        assert after[key] == before[key], key
    assert after["embeddings_data"][:-1] == before.get("embeddings_data", [])
    item = after["embeddings_data"][-1]
    assert item["name"] == result.embedding and item["custom"] is True and item["type"] == "ON_ATTRIBUTE"
    assert item["platform"] == "huggingface" and item["name"].endswith(f"-huggingface-{item['model']}")
    old = before.get("embedding_tensors_data") or []
    assert after["embedding_tensors_data"][: len(old)] == old
    new = [row for row in after["embedding_tensors_data"] if row["embedding_id"] == item["id"]]
    assert [row["record_id"] for row in new] == [record["id"] for record in before["records_data"]]
    assert {len(row["data"]) for row in new} == {dim} and result.dim == dim
    return before, after


def test_banking_round_trip_keeps_everything_else(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "banking_with_embedding.json.zip"
    result = to_refinery(models["text"], BANKING, out)
    before, after = check_round_trip(BANKING, out, result, dim=16)  # 16 < 64: kept whole, as refinery does
    assert result.embedding == "text-classification-huggingface-refinery-quaterion-tiny-text"
    assert after["embeddings_data"][-1]["attribute_id"] == before["attributes_data"][0]["id"]
    assert any("text-classification-distilbert-base-uncased" in note for note in result.notes)  # it has no tensors
    again = to_refinery(models["text"], out, tmp_path / "twice.json.zip")
    assert again.embedding == result.embedding + "-2"


def test_clickbait_round_trip_with_pca(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "clickbait.zip"
    result = to_refinery(models["headline"], CLICKBAIT, out, dimension=8, model_name="me/tuned-minilm")
    _, after = check_round_trip(CLICKBAIT, out, result, dim=8)
    assert result.embedding == "headline-classification-huggingface-me/tuned-minilm"
    vectors = np.array([row["data"] for row in after["embedding_tensors_data"][3000:]])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert result.notes == []  # the 2022 snapshot's own embedding carries its tensors


def test_suspected_label_errors_slice(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "with_slice.json.zip"
    result = to_refinery(models["text"], BANKING, out, suspects=True, suspects_limit=40, suspects_majority=0.6)
    before, after = check_round_trip(BANKING, out, result, dim=16)
    assert after["data_slice_data"][:-1] == before["data_slice_data"]
    item = after["data_slice_data"][-1]
    assert item["name"] == result.slice == "suspected label errors: intent"
    assert item["static"] is True and item["slice_type"] == "STATIC_DEFAULT"
    rows = after["data_slice_record_association_data"]
    assert len(rows) == item["count"] == result.slice_records and 0 < len(rows) <= 40
    assert item["filter_data"][0]["VALUES"] == [row["record_id"] for row in rows]
    scores = [row["outlier_score"] for row in rows]
    assert all(0 < s <= 1 for s in scores) and scores == sorted(scores, reverse=True)
    assert before["project_details_data"]["id"] in item["count_sql"]


def test_ui_export_gets_parquet(models: dict[str, Path], tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    export = tmp_path / "ui.json"
    frame = make_texts(30)
    frame.insert(0, "id", [f"rec-{i}" for i in range(30)])
    frame.rename(columns={"label": "__Topic__MANUAL"}).to_json(export, orient="records")
    result = to_refinery(models["text"], export, tmp_path / "vectors.parquet", dimension="full")
    table = pq.read_table(tmp_path / "vectors.parquet")
    assert table.column("record_id").to_pylist() == list(frame["id"])
    assert np.asarray(table.column("vector").to_pylist()).shape == (30, 16) and result.format == "parquet"
    with pytest.raises(SettingError, match=r"cannot carry embeddings.*pass out='ui.parquet'"):
        to_refinery(models["text"], export, tmp_path / "ui.json.zip")
    assert not (tmp_path / "ui.json.zip").exists()


def test_library_refusals(models: dict[str, Path], tmp_path: Path) -> None:
    exists = tmp_path / "exists.zip"
    exists.write_text("keep")
    with pytest.raises(OutputExistsError):
        to_refinery(models["text"], BANKING, exists)
    with pytest.raises(ValueError, match="is, contains or lies inside the input"):
        to_refinery(models["text"], BANKING, BANKING, overwrite=True)
    with pytest.raises(ValueError, match="is, contains or lies inside the input"):
        to_refinery(models["text"], BANKING, models["text"] / "inside.zip")
    with pytest.raises(ValueError, match="dimension must be"):
        ToRefineryConfig(dimension=1)
    assert exists.read_text() == "keep"


@pytest.mark.parametrize("case", ["no attribute", "other template", "exists", "ui export", "inside input"])
def test_cli_refusals_are_one_line_and_write_nothing(case: str, models: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.json.zip"
    ui = tmp_path / "records.csv"
    ui.write_text("text\nhello\nworld\n")
    argv, expected = {
        "no attribute": ([str(models["text"]), str(BANKING), "--out", str(out), "--attribute", "nope"],
                         "has no attribute --attribute nope"),
        "other template": ([str(models["headline"]), str(BANKING), "--out", str(out)], "no attribute 'headline'"),
        "exists": ([str(models["text"]), str(BANKING), "--out", str(out)], "pass --overwrite"),
        "ui export": ([str(models["text"]), str(ui), "--out", str(out)], "pass --out records.parquet"),
        "inside input": ([str(models["text"]), str(BANKING), "--out", str(models["text"] / "x.zip")],
                         "lies inside the input"),
    }[case]
    if case == "exists":
        out.write_text("keep")
    with pytest.raises(SystemExit) as exit_info:
        main(["to-refinery", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and expected in err, err
    assert (out.read_text() == "keep") if case == "exists" else not out.exists()
    assert not (models["text"] / "x.zip").exists()


def test_cli_writes_the_snapshot(models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new.json.zip"
    assert main(["to-refinery", str(models["text"]), str(BANKING), "--out", str(out), "--model-name", "me/x",
                 "--quiet"]) == 0
    assert "text-classification-huggingface-me/x" in capsys.readouterr().out
    assert read_zip(out)[0] == ["snapshot_data.json"]


def test_reduce_dimension_and_unique_name() -> None:
    vectors = np.random.default_rng(0).normal(size=(100, 20))
    reduced = reduce_dimension(vectors, 5)
    assert reduced.shape == (100, 5) and np.allclose(np.linalg.norm(reduced, axis=1), 1.0, atol=1e-5)
    assert np.allclose(reduce_dimension(vectors[::-1], 5)[::-1], reduced, atol=1e-5)  # signs fixed, order-free
    assert reduce_dimension(vectors[:4], 5).shape == (4, 20)  # fewer records than components: kept whole
    assert reduce_dimension(vectors, "full").shape == (100, 20)
    assert unique_name("a", ["a", "a-2"]) == "a-3" and unique_name("b", ["a"]) == "b"
