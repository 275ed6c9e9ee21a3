"""The command line's errors: one line naming the file/option/value and exit code 2; 130 on Ctrl-C; 1 for a bug.

The cases that need a trained model (corrupt weights, stale or locked indexes, an unreachable
Qdrant server) are in ``test_cli_models.py``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from refinery_fixtures import sdk_frame

from refinery_quaterion.cli import build_parser, main


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """An SDK export, a prepare folder, a prepare folder without prepare.json, corrupt files, a records file."""
    frame = pd.concat([sdk_frame()] * 4, ignore_index=True)
    frame["Title"] = [f"{t} {i}" for i, t in enumerate(frame["Title"])]
    export = tmp_path / "export.json"
    export.write_text(frame.to_json(orient="records"))
    prepared = tmp_path / "prepared"
    assert main(["prepare", str(export), "--text", "{Title}", "--out", str(prepared), "-q"]) == 0
    bare = tmp_path / "bare"
    bare.mkdir()
    pd.DataFrame({"text": ["a b", "c d"], "label": ["x", "y"]}).to_json(bare / "train.json", orient="records")
    corrupt = tmp_path / "corrupt.json.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage that is not deflate")
    existing = tmp_path / "existing"
    existing.mkdir()
    duplicated = tmp_path / "duplicated.json"  # every text four times: a class with one distinct text
    duplicated.write_text(pd.concat([sdk_frame()] * 4, ignore_index=True).to_json(orient="records"))
    return {"tmp": tmp_path, "export": export, "duplicated": duplicated, "prepared": prepared, "bare": bare, "corrupt": corrupt,
            "existing": existing, "records": prepared / "train.json"}


CASES = [
    # (id, argv, expected message fragment)
    ("prepare-missing-export", ["prepare", "{tmp}/missing.json", "--out", "{tmp}/x"], "{tmp}/missing.json: no such file"),
    ("prepare-corrupt-gzip", ["prepare", "{corrupt}", "--out", "{tmp}/x"], "{corrupt}: not a valid gzip file"),
    ("prepare-export-is-a-folder", ["prepare", "{tmp}", "--out", "{tmp}/x"], "{tmp}: is a folder"),
    ("prepare-unknown-task", ["prepare", "{export}", "--task", "Nope", "--out", "{tmp}/x"],
     "no classification task 'Nope'"),
    ("prepare-template-field", ["prepare", "{export}", "--text", "{{Body}}", "--out", "{tmp}/x"], "uses 'Body'"),
    ("prepare-out-exists", ["prepare", "{export}", "--out", "{existing}"],
     "{existing} already exists (--out); pass --overwrite to replace it"),
    ("prepare-cannot-stratify", ["prepare", "{duplicated}", "--text", "{{Title}}", "--out", "{tmp}/x"],
     "have a single distinct text (identical texts stay together); pass --no-stratify or label more records"),
    ("prepare-val-size-too-large", ["prepare", "{export}", "--text", "{{Title}}", "--val-size", "500", "--out",
                                    "{tmp}/x"], "--val-size 500 records"),
    ("thresholds-bad-list", ["thresholds", "{export}", "--thresholds", "a,b"],
     "--thresholds: expected comma-separated numbers"),
    ("thresholds-missing-export", ["thresholds", "{tmp}/nope.csv"], "{tmp}/nope.csv: no such file"),
    ("train-missing-folder", ["train", "{tmp}/missing", "--out", "{tmp}/model"], "{tmp}/missing: no such folder"),
    ("train-file-not-folder", ["train", "{export}", "--out", "{tmp}/model"],
     "{export}: is a file; expected a prepared folder (with train.json"),
    ("train-no-prepare-json", ["train", "{bare}", "--out", "{tmp}/model"], "no prepare.json, so the text template is unknown; pass --text or prepare the folder first"),
    ("train-out-exists", ["train", "{prepared}", "--out", "{existing}"],
     "{existing} already exists (--out); pass --overwrite"),
    ("train-negative-min-steps", ["train", "{prepared}", "--out", "{tmp}/model", "--min-steps", "-1"],
     "min_steps must be an integer >= 0 (0: 10 epochs when epochs='auto'), got -1"),
    ("evaluate-missing-model", ["evaluate", "{tmp}/nomodel", "{records}"], "MODEL_DIR {tmp}/nomodel: no such folder"),
    ("evaluate-model-is-a-file", ["evaluate", "{export}", "{records}"], "MODEL_DIR {export} is a file"),
    ("evaluate-test-is-a-folder", ["evaluate", "{existing}", "{prepared}"],
     "TEST {prepared} is a folder; expected a file of records"),
    ("evaluate-missing-test", ["evaluate", "{existing}", "{tmp}/test.json"], "TEST {tmp}/test.json: no such file"),
    ("evaluate-bad-ks", ["evaluate", "{existing}", "{records}", "--ks", "0,5"], "--ks: values must be >= 1"),
    ("evaluate-report-exists", ["evaluate", "{existing}", "{records}", "--report", "{existing}"],
     "{existing} already exists (--report); pass --overwrite"),
    ("search-missing-data", ["search", "{existing}", "{tmp}/data.json", "q"], "DATA {tmp}/data.json: no such file"),
    ("search-bad-k", ["search", "{existing}", "{records}", "q", "-k", "0"], "-k must be >= 1, got 0"),
    ("index-missing-data", ["index", "{existing}", "{tmp}/data.json", "--path", "{tmp}/i"],
     "DATA {tmp}/data.json: no such file"),
    ("export-int8-needs-onnx", ["export", "{existing}", "{tmp}/out", "--int8"],
     "--int8 quantises an ONNX or OpenVINO model; add --format onnx or --format openvino"),
    ("export-calibration-needs-openvino-int8", ["export", "{existing}", "{tmp}/out", "--format", "onnx", "--int8",
                                               "--calibration-data", "{records}"],
     "--calibration-data calibrates a statically quantised int8 model; add --format openvino --int8"),
    ("export-missing-calibration-data", ["export", "{existing}", "{tmp}/out", "--format", "openvino", "--int8",
                                         "--calibration-data", "{tmp}/sample.json"],
     "--calibration-data {tmp}/sample.json: no such file"),
    ("export-corrupt-calibration-data", ["export", "{existing}", "{tmp}/out", "--format", "openvino", "--int8",
                                         "--calibration-data", "{corrupt}"], "{corrupt}: not a valid gzip file"),
    ("train-calibration-size-zero", ["train", "{prepared}", "--out", "{tmp}/model", "--calibration-size", "0"],
     "--calibration-size 0: the int8 calibration size must be a positive integer"),
    ("export-missing-model", ["export", "{tmp}/nomodel", "{tmp}/out"], "MODEL_DIR {tmp}/nomodel: no such folder"),
    ("export-out-exists", ["export", "{existing}", "{prepared}"], "{prepared} already exists (OUT); pass --overwrite"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_errors_print_one_line_and_exit_2(files, capsys, argv, message) -> None:
    argv = [a.format(**files) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if ": warning: " not in line]
    assert len(lines) == 1, lines
    err = lines[0]
    assert err.startswith(f"refinery-quaterion {argv[0]}: error: "), err
    assert message.format(**files) in err, err
    assert "Traceback" not in err and "overwrite=True" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prepare", "e.json", "--out", "x", "--val-size", "-1"], "expected a share between 0 and 1"),
        (["prepare", "e.json", "--out", "x", "--min-confidence", "1.5"], "expected 'auto' or a number"),
        (["export", "m", "o", "--format", "pickle"], "invalid choice: 'pickle'"),
        (["train", "p", "--out", "m", "--backend", "jax"], "invalid choice: 'jax'"),
        (["prepare", "e.json", "--out", "x", "--quiet", "-v"], "--quiet and --verbose contradict"),
    ],
)
def test_invalid_option_values_exit_2(capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_val_size_accepts_a_share_a_count_and_zero() -> None:
    parser = build_parser()
    parse = lambda value: parser.parse_args(["prepare", "e.json", "--out", "x", "--val-size", value]).val_size  # noqa: E731
    assert parse("0.2") == 0.2 and parse("150") == 150 and isinstance(parse("150"), int) and parse("0") == 0


def test_output_options_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--quiet", "--debug", "train", "p", "--out", "m"])
    after = parser.parse_args(["train", "p", "--out", "m", "-q", "--debug"])
    neither = parser.parse_args(["train", "p", "--out", "m"])
    assert (before.quiet, before.debug) == (after.quiet, after.debug) == (True, True)
    assert (neither.quiet, neither.debug, neither.verbose) == (False, False, 0)
    assert parser.parse_args(["-v", "train", "p", "--out", "m"]).verbose == 1
    assert parser.parse_args(["train", "p", "--out", "m", "-v"]).verbose == 1


class _TrainingInterrupted(KeyboardInterrupt):
    """Like the one `fit` raises: a KeyboardInterrupt carrying the epochs done."""

    def __init__(self, epochs: int):
        super().__init__(f"interrupted after {epochs} epochs")
        self.epochs = epochs


def _train_interrupted_by(error: BaseException, files, capsys, monkeypatch) -> tuple[str, Path]:
    """Run ``train`` with a `fit` that raises ``error``; assert exit code 130, return (stderr, out folder)."""
    import refinery_quaterion.workflow.train as workflow

    def interrupted_fit(*args, **kwargs):
        raise error

    monkeypatch.setattr(workflow, "fit", interrupted_fit)
    monkeypatch.setattr(workflow, "DistilBertSimilarityModel", lambda *args, **kwargs: object())
    out = files["tmp"] / "model"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(files["prepared"]), "--out", str(out), "--no-cache"])
    assert exit_info.value.code == 130
    return capsys.readouterr().err.strip(), out


def test_ctrl_c_during_training_exits_130_and_saves_nothing(files, capsys, monkeypatch) -> None:
    err, out = _train_interrupted_by(_TrainingInterrupted(3), files, capsys, monkeypatch)
    assert err == f"refinery-quaterion train: interrupted after 3 epochs; nothing was saved to {out}"
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_training_interrupted_of_fit_names_the_epochs(files, capsys, monkeypatch) -> None:
    from refinery_quaterion.training.fit import TrainingInterrupted

    err, out = _train_interrupted_by(TrainingInterrupted(2, 10, "training"), files, capsys, monkeypatch)
    assert err == f"refinery-quaterion train: interrupted after 2 of 10 epochs; nothing was saved to {out}"
    assert not out.exists()


def test_output_options_reach_the_fit_config() -> None:
    from refinery_quaterion.cli._model import fit_output_options
    from refinery_quaterion.model.config import FitConfig

    parser = build_parser()
    quiet = FitConfig(**fit_output_options(parser.parse_args(["-q", "train", "p", "--out", "m"])))
    verbose = FitConfig(**fit_output_options(parser.parse_args(["train", "p", "--out", "m", "-v"])))
    default = FitConfig(**fit_output_options(parser.parse_args(["train", "p", "--out", "m"])))
    assert (quiet.progress, quiet.verbose) == ("off", False)
    assert (verbose.progress, verbose.verbose) == ("auto", True)
    assert default == FitConfig()


def test_ctrl_c_anywhere_exits_130_without_half_written_output(files, capsys, monkeypatch) -> None:
    from refinery_quaterion.data.dataset import LabelMap

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(LabelMap, "save", interrupted)  # inside the atomic write of the folder
    out = files["tmp"] / "prepared-again"
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(files["export"]), "--text", "{Title}", "--out", str(out), "-q"])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == f"refinery-quaterion prepare: interrupted; {out} was not written"
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_a_bug_is_one_line_and_the_traceback_needs_debug(files, capsys, monkeypatch) -> None:
    import refinery_quaterion.workflow.prepare as workflow

    def broken(*args, **kwargs):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(workflow, "combine_labels", broken)
    argv = ["prepare", str(files["export"]), "--out", str(files["tmp"] / "x")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "internal error: TypeError: unsupported operand (this is a bug; run again with --debug" in err
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--debug"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in broken" in err


def test_debug_shows_the_traceback_of_a_user_error(files, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--debug", "train", str(files["tmp"] / "missing"), "--out", str(files["tmp"] / "m")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err and "FileNotFoundError" in err
    assert err.strip().splitlines()[-1].startswith("refinery-quaterion train: error: ")


def test_library_warnings_are_one_line_each(tmp_path, capsys) -> None:
    frame = pd.concat([sdk_frame()] * 4, ignore_index=True)  # every text four times: duplicates are reported
    export = tmp_path / "export.json"
    export.write_text(frame.to_json(orient="records"))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["prepare", str(export), "--text", "{Title}", "--out", str(tmp_path / "p"), "-q",
                     "--no-stratify"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err and all(line.startswith("refinery-quaterion prepare: warning: ") for line in err), err
    assert any("share their text" in line for line in err)
    settings = json.loads((tmp_path / "p" / "prepare.json").read_text())
    assert settings["train_records"] + settings["val_records"] == 20


def test_a_closed_stdout_stops_quietly(tmp_path) -> None:
    """``refinery-quaterion ... | head``: no traceback and no error line when the reader goes away."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from refinery_quaterion.cli import _data, main\n"
        "def lines(args):\n"
        "    for i in range(200000):\n"
        "        print('line', i)\n"
        "_data._cmd_thresholds = lines\n"
        "sys.exit(main(['thresholds', 'export.json']))\n"
    )
    reader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=tmp_path)
    assert reader.stdout.readline().startswith(b"line 0")
    reader.stdout.close()
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 141 and err == ""
