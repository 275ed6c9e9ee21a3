"""The model commands on tiny trained models: template checks, damaged models, index freshness, Qdrant errors, export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from refinery_quaterion.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, synthetic_frame) -> dict[str, Path]:
    """A prepared folder, test records, and two models trained on them (A by the CLI, B by the API)."""
    from refinery_quaterion.model.config import FitConfig, ModelConfig
    from refinery_quaterion.workflow import train_model

    root = tmp_path_factory.mktemp("cli-models")
    frame = synthetic_frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    prepared = root / "prepared"
    prepared.mkdir()
    frame.iloc[:120].to_json(prepared / "train.json", orient="records")
    frame.iloc[120:160].to_json(prepared / "val.json", orient="records")
    (prepared / "prepare.json").write_text(json.dumps({"text": "{text}"}))
    test = root / "test.json"
    frame.iloc[160:].to_json(test, orient="records")
    other = root / "other.json"  # other records: another data fingerprint
    frame.iloc[150:190].to_json(other, orient="records")
    no_column = root / "no_column.json"
    frame.iloc[160:].rename(columns={"text": "body"}).to_json(no_column, orient="records")
    no_label = root / "no_label.json"
    frame.iloc[160:].drop(columns="label").to_json(no_label, orient="records")
    cache = root / "cache"
    model_a = root / "model-a"
    assert main(["train", str(prepared), "--pretrained", str(tiny_model_dir), "--out", str(model_a), "--epochs", "2",
                 "--batch-size", "40", "--lr", "0.2", "--cache-dir", str(cache), "--quiet"]) == 0
    model_b = train_model(frame.iloc[:120], None, root / "model-b",
                          model_config=ModelConfig(pretrained=str(tiny_model_dir), template="{text}", lr=0.05, seed=1),
                          fit_config=FitConfig(epochs=1, batch_size=40, progress=False), embedding_cache=cache).path
    return {"root": root, "prepared": prepared, "test": test, "other": other, "no_column": no_column,
            "no_label": no_label, "cache": cache, "a": model_a, "b": model_b}


def _fails(argv: list[str], capsys) -> str:
    """Run ``argv``, expect exit code 2 and one error line; return it."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if ": warning: " not in line and line.strip()]
    assert len(lines) == 1 and f"refinery-quaterion {argv[0]}: error: " in lines[0], lines
    return lines[0]


def test_evaluate_refuses_records_without_the_template_or_label_column(world, capsys) -> None:
    """Before: every record embedded as "" and plausible metrics. Now: the column and the file are named."""
    common = ["--cache-dir", str(world["cache"]), "-q"]
    err = _fails(["evaluate", str(world["a"]), str(world["no_column"]), *common], capsys)
    assert f"text template '{{text}}' uses 'text', which is not a column of {world['no_column']}" in err
    err = _fails(["evaluate", str(world["a"]), str(world["no_label"]), *common], capsys)
    assert f"{world['no_label']} has no label column 'label'" in err
    err = _fails(["evaluate", str(world["a"]), str(world["test"]), "--probe-train", str(world["no_column"]),
                  *common], capsys)
    assert f"not a column of {world['no_column']}" in err


@pytest.mark.parametrize("damaged", ["head/weights.bin", "encoders/default/transformer/model.safetensors",
                                     "config.json", "training_config.json"])
def test_a_damaged_model_is_named(world, capsys, tmp_path, damaged) -> None:
    model = tmp_path / "model"
    shutil.copytree(world["a"], model)
    target = model / damaged
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    err = _fails(["evaluate", str(model), str(world["test"]), "--no-cache", "-q"], capsys)
    assert str(model) in err


def test_search_reads_data_every_time_and_rebuilds_a_stale_index(world, capsys) -> None:
    """Before: a reused --index-path served the old model's vectors and DATA was never read."""
    index = world["root"] / "search-index"
    query = "goal match team coach"

    def search(model: Path, data: Path) -> tuple[str, str]:
        assert main(["search", str(model), str(data), query, "-k", "3", "--index-path", str(index),
                     "--cache-dir", str(world["cache"])]) == 0
        captured = capsys.readouterr()
        return captured.out, " ".join(line for line in captured.err.splitlines() if "Indexing" not in line)

    out, err = search(world["a"], world["test"])
    assert f"built the index at {index} from {world['test']} (40 records" in err and query in out
    first = out
    out, err = search(world["a"], world["test"])
    assert f"the index at {index} is up to date (40 records" in err and out == first
    out, err = search(world["a"], world["other"])
    assert "built the index" in err and "DATA changed" in err
    out, err = search(world["b"], world["other"])
    assert f"rebuilt the index at {index} (40 records)" in err and "fingerprint" in err
    assert out != first
    with pytest.raises(SystemExit):
        main(["search", str(world["b"]), str(world["root"] / "gone.json"), query, "--index-path", str(index)])
    assert f"DATA {world['root'] / 'gone.json'}: no such file" in capsys.readouterr().err
    _, err = search(world["b"], world["other"])  # the index survived the refused call
    assert "is up to date" in err


def test_index_refuses_a_stale_index_unless_rebuild(world, capsys) -> None:
    index = world["root"] / "index-folder"
    common = ["--cache-dir", str(world["cache"]), "-q"]
    assert main(["index", str(world["a"]), str(world["test"]), "--path", str(index), *common]) == 0
    assert f"indexed 40 records into 'refinery' at {index} (40 points)" in capsys.readouterr().out
    err = _fails(["index", str(world["b"]), str(world["test"]), "--path", str(index), *common], capsys)
    assert f"collection 'refinery' at {index} was built with the model of fingerprint" in err
    assert "pass --rebuild to rebuild it" in err and "if_stale" not in err
    assert main(["index", str(world["b"]), str(world["test"]), "--path", str(index), "--rebuild", *common]) == 0
    out = capsys.readouterr().out
    assert f"rebuilt 'refinery' at {index} from 40 records (" in out and "fingerprint" in out
    assert main(["index", str(world["b"]), str(world["test"]), "--path", str(index), "--rebuild", *common]) == 0
    assert f"'refinery' at {index} is up to date (40 points)" in capsys.readouterr().out


def test_index_refuses_a_folder_that_is_not_an_index(world, capsys) -> None:
    before = sorted(p.name for p in world["prepared"].iterdir())
    err = _fails(["index", str(world["a"]), str(world["test"]), "--path", str(world["prepared"]), "--cache-dir",
                  str(world["cache"]), "-q"], capsys)
    assert f"{world['prepared']} is not a similarity index folder" in err
    assert sorted(p.name for p in world["prepared"].iterdir()) == before


def test_index_folder_open_elsewhere_is_one_line(world, capsys) -> None:
    from refinery_quaterion.search import SimilarityIndex
    from refinery_quaterion.training.model_files import load

    folder = world["root"] / "locked-index"
    with SimilarityIndex(load(world["a"]), path=folder):
        err = _fails(["index", str(world["a"]), str(world["test"]), "--path", str(folder), "--cache-dir",
                      str(world["cache"]), "-q"], capsys)
    assert f"the index folder {folder} is open in another process" in err


def test_unreachable_qdrant_server_is_one_line(world, capsys) -> None:
    url = "http://127.0.0.1:1"
    err = _fails(["index", str(world["a"]), str(world["test"]), "--url", url, "--cache-dir", str(world["cache"]),
                  "-q"], capsys)
    assert f"cannot reach the Qdrant server at {url}: " in err


def test_index_settings_options(world, capsys) -> None:
    folder = world["root"] / "tuned-index"
    common = ["--cache-dir", str(world["cache"]), "-q"]
    assert main(["index", str(world["a"]), str(world["test"]), "--path", str(folder), "--hnsw-m", "8",
                 "--hnsw-ef-construct", "32", "--search-ef", "16", "--quantization", "int8", "--oversampling", "3",
                 "--on-disk", "--batch-size", "16", *common]) == 0
    assert f"indexed 40 records into 'refinery' at {folder} (40 points)" in capsys.readouterr().out
    config = json.loads((folder / "refinery" / "edge_config.json").read_text())
    assert config["hnsw_config"]["m"] == 8 and config["hnsw_config"]["ef_construct"] == 32
    assert "scalar" in config["quantization_config"] and config["vectors"][""]["on_disk"] is True
    assert main(["search", str(world["a"]), str(world["test"]), "some query", "-k", "2", "--exact", *common]) == 0
    err = _fails(["index", str(world["a"]), str(world["test"]), "--path", str(folder), "--hnsw-m", "2", *common],
                 capsys)
    assert "--hnsw-m must be an integer from 4 to 128, got 2" in err


def test_old_engine_folder_is_one_line(world, capsys) -> None:
    folder = world["root"] / "old-engine-index"
    (folder / "collection" / "refinery").mkdir(parents=True)
    (folder / "meta.json").write_text('{"collections": {"refinery": {}}, "aliases": {}}')
    err = _fails(["index", str(world["a"]), str(world["test"]), "--path", str(folder), "--cache-dir",
                  str(world["cache"]), "-q"], capsys)
    assert f"{folder} is an index written by the old engine" in err and "delete the folder" in err


def test_export_onnx_int8(world, capsys) -> None:
    pytest.importorskip("onnxruntime")
    out = world["root"] / "onnx"
    assert main(["export", str(world["a"]), str(out), "--format", "onnx", "--int8"]) == 0
    printed = capsys.readouterr().out
    assert f"exported onnx model to {out}" in printed and "int8_min_cosine" in printed
    assert (out / "model.onnx").is_file() and (out / "model_int8.onnx").is_file()
    err = _fails(["export", str(world["a"]), str(out), "--format", "onnx"], capsys)
    assert f"{out} already exists (OUT); pass --overwrite" in err


def test_export_openvino_int8_calibrated_on_records(world, capsys) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from refinery_quaterion.data.readers import load_records

    out = world["root"] / "openvino"
    err = _fails(["export", str(world["a"]), str(out), "--format", "openvino", "--int8", "--calibration-data",
                  str(world["no_column"])], capsys)  # rendered with the model's template, which needs 'text'
    assert "uses 'text', which is not a column of --calibration-data" in err and not out.exists()
    assert main(["export", str(world["a"]), str(out), "--format", "openvino", "--int8", "--no-check",
                 "--calibration-data", str(world["test"])]) == 0
    count = len(load_records(world["test"]))
    assert f"int8_calibration_texts: {count}\n" in capsys.readouterr().out + "\n"
    assert (out / "model_int8.xml").is_file()
    assert f"The int8 model was calibrated on {count} texts (your texts)." in (out / "README.md").read_text()


def test_backend_option_reaches_the_encoder(world, capsys) -> None:
    pytest.importorskip("onnxruntime")
    from refinery_quaterion.cli import build_parser
    from refinery_quaterion.cli._common import load_model

    args = build_parser().parse_args(["evaluate", str(world["a"]), str(world["test"]), "--backend", "onnx-int8",
                                      "--no-cache"])
    assert load_model(args).encoder.backend == "onnx-int8"
    tables = []
    for backend in ("torch", "onnx"):
        assert main(["evaluate", str(world["a"]), str(world["test"]), "--ks", "1,5", "--no-cache", "-q",
                     "--backend", backend]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1] and "fine-tuned" in tables[0]


def test_train_with_a_backend_records_it(world, tiny_model_dir, capsys) -> None:
    pytest.importorskip("onnxruntime")
    out = world["root"] / "model-onnx"
    assert main(["train", str(world["prepared"]), "--pretrained", str(tiny_model_dir), "--out", str(out),
                 "--epochs", "1", "--batch-size", "40", "--backend", "onnx", "--calibration-size", "17",
                 "--no-cache", "-q"]) == 0
    model_settings = json.loads((out / "training_config.json").read_text())["model"]
    assert model_settings["encoder_backend"] == "onnx" and model_settings["calibration_size"] == 17
    err = _fails(["train", str(world["prepared"]), "--pretrained", str(tiny_model_dir), "--out",
                  str(world["root"] / "m-trainable"), "--trainable-encoder", "--backend", "onnx", "-q"], capsys)
    assert "--backend" in err and "encoder_backend" not in err


# -- issue 21, case 13: reports say when their numbers mean less than they seem --------------------------------


def test_search_notes_a_label_filter_that_matches_no_record(world, capsys, tmp_path) -> None:
    import pandas as pd

    frame = pd.read_json(world["test"])
    missing = sorted(frame["label"].unique())[0]
    data = tmp_path / "some.json"
    frame[frame["label"] != missing].to_json(data, orient="records")
    assert main(["search", str(world["a"]), str(data), "a query", "--label", str(missing),
                 "--cache-dir", str(world["cache"]), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"note: no record of {data} has the label {str(missing)!r} (the model knows it)" in out


def test_evaluate_notes_duplicates_one_label_and_a_probe_on_the_test_set(world, capsys, tmp_path) -> None:
    import pandas as pd

    frame = pd.read_json(world["test"])
    one_label = frame[frame["label"] == frame["label"].iloc[0]].copy()
    one_label = pd.concat([one_label, one_label.iloc[:2]], ignore_index=True)  # two texts repeated
    test = tmp_path / "test.json"
    one_label.to_json(test, orient="records")
    common = ["--cache-dir", str(world["cache"]), "-q"]
    assert main(["evaluate", str(world["a"]), str(test), *common]) == 0
    out = capsys.readouterr().out
    assert "note: 4 test records share their text with another (2 distinct texts repeated)" in out
    assert "note: the test set has a single label" in out
    report = tmp_path / "report"
    assert main(["evaluate", str(world["a"]), str(world["test"]), "--probe-train", str(world["test"]),
                 "--report", str(report), *common]) == 0
    out = capsys.readouterr().out
    assert "was trained on the test items themselves" in out
    assert "was trained on the test items themselves" in (report / "metrics.md").read_text()
    assert json.loads((report / "metrics.json").read_text())["notes"]
