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
from refinery_quaterion.errors import MISSING, Fix, OutputExistsError, SettingError

COMMANDS = ["prepare", "thresholds", "train", "evaluate", "search", "index", "export"]


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


HEAVY = ("torch", "transformers", "pytorch_lightning", "lightning_fabric", "quaterion", "quaterion_models")


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_imports_no_training_stack(command: str) -> None:
    """`refinery-quaterion [COMMAND] --help` stays fast: torch, transformers, Lightning and quaterion are not imported."""
    argv = [sys.executable, "-X", "importtime", "-m", "refinery_quaterion", *([command] if command else []), "--help"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert "usage: refinery-quaterion" in done.stdout


def test_train_help_lists_every_head_and_loss_of_the_registry(capsys) -> None:
    from refinery_quaterion.model.components import HEADS, LOSSES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for registry in (HEADS, LOSSES):
        for name, component in registry.items():
            assert f"{name}{' (default)' if name == registry.default else ''}: " in text
            assert " ".join(component.description.rstrip(".").split()) in text.replace("- ", "-")
    # Python 3.13's argparse names the metavar once: "--pretrained, --model NAME"
    assert "--pretrained NAME, --model NAME" in text or "--pretrained, --model NAME" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "x", "--out", "y", "--loss", "contrastive"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'contrastive'" in capsys.readouterr().err


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
    assert config["template"] == "{Title}. {Description}" and config["task"] == "Topic"
    assert config["report"]["kept"] == 20 and config["report"]["total"] == 40
    assert "kept 20 of 40 records" in (out / "report.txt").read_text()
    assert "kept 20 of 40 records" in capsys.readouterr().out
    # an existing folder is refused without --overwrite
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(export), "--text", "{Title}", "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{out} already exists (--out); pass --overwrite to replace it" in err and "overwrite=True" not in err


def test_prepare_auto_threshold_and_manual_holdout(tmp_path, capsys) -> None:
    export = _write_sdk_export(tmp_path)
    out = tmp_path / "prepared"
    assert main(["prepare", str(export), "--task", "Topic", "--min-confidence", "auto", "--text", "{Title}",
                 "--holdout", "manual", "--val-size", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["labels.json", "prepare.json", "report.txt", "test.json",
                                                      "train.json", "val.json"]
    config = json.loads((out / "prepare.json").read_text())
    # the value actually used is stored (too few overlaps here: the documented fallback), not "auto"
    assert config["min_confidence"] == 0.7 and config["min_confidence_requested"] == "auto"
    assert config["report"]["threshold_choice"]["fell_back"] is True
    assert config["holdout"] == "manual" and config["test_records"] == 12
    test = pd.read_json(out / "test.json")
    train, val = pd.read_json(out / "train.json"), pd.read_json(out / "val.json")
    assert set(test["label_source"]) == {"manual"} and len(test) == 12
    assert set(train["label_source"]) | set(val["label_source"]) == {"weak_supervision"}
    assert (len(train), len(val)) == (6, 2)  # --val-size 2: a count of records, as its help promises
    assert "test.json (12)" in printed and "test 12 (manual labels)" in printed


def test_prepare_val_size_zero_keeps_every_record_for_training(tmp_path) -> None:
    export = _write_sdk_export(tmp_path)
    out = tmp_path / "prepared"
    assert main(["prepare", str(export), "--text", "{Title}", "--val-size", "0", "--out", str(out), "-q"]) == 0
    assert len(pd.read_json(out / "train.json")) == 20 and json.loads((out / "val.json").read_text()) == []


def test_thresholds_prints_the_table_and_plots(tmp_path, capsys) -> None:
    export = _write_sdk_export(tmp_path, copies=1)
    plot = tmp_path / "thresholds.png"
    assert main(["thresholds", str(export), "--thresholds", "0.5,0.7,0.9", "--plot", str(plot)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["threshold", "kept", "share", "weak_supervision", "agreement", "compared",
                                "expected_correct", "expected_wrong", "chosen"]
    rows = [line.split() for line in lines[2:5]]
    assert [r[:2] for r in rows] == [["0.500", "7"], ["0.700", "5"], ["0.900", "4"]]
    assert [r[-1] for r in rows] == ["2.000", "yes", "0.000"]  # the chosen row is marked
    # too few records with both labels: the documented fallback, and the reason is printed
    assert "chosen threshold: 0.7 (min_confidence=0.7 (the default): only 2 records have both" in "\n".join(lines)
    assert plot.stat().st_size > 1000
    assert f"plot: {plot}" in lines


def test_thresholds_marks_a_given_min_confidence(tmp_path, capsys) -> None:
    export = _write_sdk_export(tmp_path, copies=1)
    assert main(["thresholds", str(export), "--thresholds", "0.5,0.9", "--min-confidence", "0.6"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:6]}
    assert set(rows) == {"0.500", "0.600", "0.700", "0.900"}  # the automatic choice (0.7) is shown too
    assert [r[0] for r in rows.values() if r[-1] == "yes"] == ["0.600"]
    assert "chosen threshold: 0.6 (given with --min-confidence); the automatic choice would be 0.7" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prepare", "missing.json", "--out", "x"], "missing.json: no such file"),
        (["prepare", "{export}", "--task", "Nope", "--out", "{tmp}/x"], "no classification task 'Nope'"),
        (["prepare", "{export}", "--text", "{{Body}}", "--out", "{tmp}/x"], "uses 'Body'"),
        (["thresholds", "{export}", "--thresholds", "a,b"], "--thresholds: expected comma-separated numbers"),
        (["evaluate", "{tmp}", "{export}", "--ks", "0,5"], "--ks: values must be >= 1"),
        (["train", "{tmp}", "--out", "{tmp}/model"], "no prepare.json, so the text template is unknown; pass --text"),
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

    assert main(["train", str(prepared), "--pretrained", str(tiny_model_dir), "--out", str(model), "--epochs", "3",
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
    for written, note in ((40, ""), (0, "; 40 already indexed")):  # a rerun skips what is there, never duplicates
        assert main(["index", str(model), str(test), "--path", str(index), "--cache-dir", str(cache), "--quiet"]) == 0
        assert f"indexed {written} records into 'refinery' at {index} (40 points{note})" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (OutputExistsError("out"), "out already exists; pass --overwrite to replace it"),
        (SettingError("cannot stratify: class(es) ['a'] have a single record", fixes=(Fix("stratify", False),),
                      alternative="label more"),
         "cannot stratify: class(es) ['a'] have a single record; pass --no-stratify or label more"),
        (SettingError("no record left ({min_confidence})", settings={"min_confidence": 0.9},
                      fixes=(Fix("min_confidence", MISSING, "with a lower value"),), alternative="label more records"),
         "no record left (--min-confidence 0.9); pass --min-confidence with a lower value or label more records"),
        (SettingError("no record has a manual label", fixes=(Fix("holdout", None),),
                      alternative="label some records in refinery"),
         "no record has a manual label; leave out --holdout or label some records in refinery"),
        (SettingError("{min_weight} drops all 3 records", settings={"min_weight": 0.9},
                      fixes=(Fix("min_weight", MISSING, "with a lower value"),)),
         "--min-weight 0.9 drops all 3 records; pass --min-weight with a lower value"),
        (SettingError("{encoder_backend} runs a frozen encoder only", settings={"encoder_backend": "onnx"},
                      fixes=(Fix("encoder_backend", "torch"), Fix("trainable_encoder", False))),
         "--backend onnx runs a frozen encoder only; pass --backend torch or leave out --trainable-encoder"),
        (SettingError("x is protected", fixes=(Fix("password", MISSING),)), "x is protected; pass --password"),
        (SettingError("several tasks", fixes=(Fix("task", MISSING, "to name one"),)),
         "several tasks; pass --task to name one"),
        (SettingError("no cache", fixes=(Fix("embedding_cache", None),)), "no cache; pass --no-cache"),
        (FileNotFoundError(2, "No such file or directory", "data/x.json"), "data/x.json: No such file or directory"),
        (KeyError("label 'x' is not in the label map ['a', 'b']"), "label 'x' is not in the label map ['a', 'b']"),
        (ValueError("first line\n  second line"), "first line second line"),
    ],
)
def test_library_messages_speak_in_options(error, message) -> None:
    """Errors carry the settings as data; the CLI spells them as the flags of the command (here: train/prepare)."""
    from refinery_quaterion.cli import _command_parser, build_parser
    from refinery_quaterion.cli._errors import FlagSpeaker, user_message

    parser = build_parser()
    speakers = [_command_parser(parser, command) for command in ("prepare", "train")]
    if isinstance(error, SettingError):  # the flag lives on one of the two commands
        rendered = [user_message(error, p) for p in speakers]
        assert message in rendered, rendered
        assert "=" not in message or "=" in error.template
        assert FlagSpeaker(None).fix(Fix("overwrite", True)) == "pass overwrite=True"  # no parser: the API's words
    else:
        assert user_message(error) == message


@pytest.mark.parametrize("error", [KeyError(5018994430540684683), TypeError("x"), AttributeError("y"),
                                   RuntimeError("CUDA out of memory")])
def test_other_errors_count_as_bugs(error) -> None:
    from refinery_quaterion.cli._errors import user_message

    assert user_message(error) is None
