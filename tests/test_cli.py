"""The command line: help, prepare/thresholds on hand-built exports, the model commands end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from refinery_fixtures import sdk_frame

from refinery_quaterion.cli import build_parser, main

COMMANDS = ["prepare", "thresholds", "train", "evaluate", "search", "index"]


def _write_sdk_export(tmp_path: Path, copies: int = 4) -> Path:
    """An SDK export written with ``download_to=`` (strings everywhere), enlarged for a split."""
    frame = pd.concat([sdk_frame()] * copies, ignore_index=True)
    frame["Title"] = [f"{t} {i}" for i, t in enumerate(frame["Title"])]
    path = tmp_path / "export.json"
    path.write_text(frame.to_json(orient="records"))
    return path


def test_help_of_each_subcommand(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert f"usage: refinery-quaterion {command}" in text and "--" in text


def test_console_script_and_module_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "refinery_quaterion", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "refinery-quaterion 0.1.0"


def test_prepare_writes_the_expected_files(tmp_path, capsys) -> None:
    export = _write_sdk_export(tmp_path)
    out = tmp_path / "prepared"
    assert main(["prepare", str(export), "--task", "Topic", "--min-confidence", "0.7",
                 "--text", "{Title}. {Description}", "--out", str(out), "--val-size", "0.25"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["labels.json", "prepare.json", "report.txt", "train.json",
                                                      "val.json"]
    train = pd.read_json(out / "train.json")
    val = pd.read_json(out / "val.json")
    assert (len(train), len(val)) == (15, 5)  # 5 kept records x 4 copies, 25% validation
    assert set(train["label"]) | set(val["label"]) == {"Business", "Sports", "World"}
    assert set(train.columns) >= {"Title", "Description", "label", "label_source", "confidence"}
    assert json.loads((out / "labels.json").read_text()) == {"labels": ["Business", "Sports", "World"]}
    config = json.loads((out / "prepare.json").read_text())
    assert config["text"] == "{Title}. {Description}" and config["task"] == "Topic"
    assert config["report"]["kept"] == 20 and config["report"]["total"] == 40
    assert "kept 20 of 40 records" in (out / "report.txt").read_text()
    assert "kept 20 of 40 records" in capsys.readouterr().out
    # an existing folder is refused without --overwrite
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(export), "--text", "{Title}", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "already exists" in capsys.readouterr().err


def test_thresholds_prints_the_table_and_plots(tmp_path, capsys) -> None:
    export = _write_sdk_export(tmp_path, copies=1)
    plot = tmp_path / "thresholds.png"
    assert main(["thresholds", str(export), "--thresholds", "0.5,0.7,0.9", "--plot", str(plot)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["threshold", "kept", "share", "weak_supervision", "agreement", "compared"]
    rows = [line.split() for line in lines[2:5]]
    assert [r[:2] for r in rows] == [["0.500", "7"], ["0.700", "5"], ["0.900", "4"]]
    assert plot.stat().st_size > 1000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prepare", "missing.json", "--out", "x"], "missing.json: no such file"),
        (["prepare", "{export}", "--task", "Nope", "--out", "{tmp}/x"], "no classification task 'Nope'"),
        (["prepare", "{export}", "--text", "{{Body}}", "--out", "{tmp}/x"], "uses 'Body'"),
        (["thresholds", "{export}", "--thresholds", "a,b"], "--thresholds: expected comma-separated numbers"),
        (["evaluate", "{tmp}", "{export}", "--ks", "0,5"], "--ks: values must be >= 1"),
        (["train", "{tmp}", "--out", "{tmp}/model"], "no prepare.json; pass --text"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, capsys, argv, message) -> None:
    export = _write_sdk_export(tmp_path, copies=1)
    argv = [a.format(export=export, tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_argparse_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train"])
    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_train_evaluate_search_end_to_end(tmp_path, tiny_model_dir, synthetic_frame, capsys) -> None:
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    frame = synthetic_frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame.iloc[:120].to_json(prepared / "train.json", orient="records")
    frame.iloc[120:160].to_json(prepared / "val.json", orient="records")
    (prepared / "prepare.json").write_text(json.dumps({"text": "{text}"}))
    test = tmp_path / "test.json"
    frame.iloc[160:].to_json(test, orient="records")
    model, cache = tmp_path / "model", tmp_path / "cache"

    assert main(["train", str(prepared), "--model", str(tiny_model_dir), "--out", str(model), "--epochs", "3",
                 "--batch-size", "40", "--lr", "0.2", "--cache-dir", str(cache), "--quiet"]) == 0
    assert (model / "label_map.json").is_file() and (model / "training_config.json").is_file()
    assert "saved model to" in capsys.readouterr().out

    report = tmp_path / "report"
    assert main(["evaluate", str(model), str(test), "--report", str(report), "--ks", "1,5,10",
                 "--probe-train", str(prepared / "train.json"), "--cache-dir", str(cache), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "raw" in out and "fine-tuned" in out and "P@10" in out
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics  # written, non-empty
    assert (report / "topk_curve.png").stat().st_size > 1000

    assert main(["search", str(model), str(test), frame.iloc[170]["text"], "-k", "3", "--cache-dir", str(cache),
                 "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[1].strip().startswith("1. 1.000") and frame.iloc[170]["text"][:60] in lines[1]
    assert len(lines) == 4

    index = tmp_path / "index"
    for _ in range(2):  # re-indexing the same records replaces them
        assert main(["index", str(model), str(test), "--path", str(index), "--cache-dir", str(cache), "--quiet"]) == 0
        assert f"indexed 40 records into 'refinery' at {index} (40 points)" in capsys.readouterr().out
