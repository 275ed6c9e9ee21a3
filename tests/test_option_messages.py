"""Bad split sizes, seeds and prepared files: one line naming the option or the file (issue 21, case 9)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_cli import _write_sdk_export

from refinery_quaterion.cli import main
from refinery_quaterion.data.config import LabelConfig
from refinery_quaterion.data.splits import train_val_split
from refinery_quaterion.errors import SettingError
from refinery_quaterion.model.config import ModelConfig


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1, err
    assert "sklearn" not in err and "test_size" not in err and "random_state" not in err, err
    return err


@pytest.mark.parametrize(("value", "expected"), [
    ("0.99", "--val-size 0.99 leaves 20 validation and 0 training records of 20"),
    ("0.01", "--val-size 0.01 leaves 1 validation and 19 training records of 20; a stratified split needs each "
             "of the 3 classes on both sides"),
    ("19", "--val-size 19 leaves 19 validation and 1 training records"),
    ("1000", "--val-size 1000 records: must be at least 1 and fewer than the 20 records"),
])
def test_prepare_names_val_size(value: str, expected: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    export = _write_sdk_export(tmp_path)
    err = _error(["prepare", str(export), "--text", "{Title}", "--out", str(tmp_path / "p"), "--val-size", value],
                 capsys)
    assert expected in err and not (tmp_path / "p").exists()


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_prepare_names_seed(seed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = _write_sdk_export(tmp_path)
    err = _error(["prepare", str(export), "--text", "{Title}", "--out", str(tmp_path / "p"), f"--seed={seed}"],
                 capsys)
    assert f"--seed {seed}: the split seed must be an integer from 0 to 4294967295" in err


def test_api_names_the_settings() -> None:
    with pytest.raises(SettingError, match=r"split_seed=-1: the split seed must be an integer from 0"):
        LabelConfig(split_seed=-1)
    with pytest.raises(SettingError, match=r"seed=-1: the seed must be an integer from 0 to 4294967294"):
        ModelConfig(seed=-1)
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(6)], "label": ["a", "b"] * 3})
    with pytest.raises(SettingError, match=r"val_size=0.9 leaves 6 validation and 0 training records of 6"):
        train_val_split(frame, val_size=0.9, stratify=False)


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    export = _write_sdk_export(tmp_path)
    assert main(["prepare", str(export), "--text", "{Title}", "--out", str(tmp_path / "prepared"), "-q"]) == 0
    return tmp_path / "prepared"


@pytest.mark.parametrize(("case", "expected"), [
    ("empty train", "train.json is empty; expected the records written by prepare"),
    ("no records", "train.json holds no records: nothing to train on"),
    ("val without column", "text template '{Title}' uses 'Title', which is not a column of {val}"),
    ("train without label", "train.json has no label column 'label'"),
])
def test_train_names_the_prepared_file(case: str, expected: str, prepared: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    if case == "empty train":
        (prepared / "train.json").write_text("")
    elif case == "no records":
        (prepared / "train.json").write_text("[]")
    elif case == "val without column":
        val = pd.read_json(prepared / "val.json")
        val.drop(columns=["Title"]).to_json(prepared / "val.json", orient="records")
    else:
        train = pd.read_json(prepared / "train.json")
        train.drop(columns=["label"]).to_json(prepared / "train.json", orient="records")
    err = _error(["train", str(prepared), "--out", str(tmp_path / "model")], capsys)
    assert expected.replace("{val}", str(prepared / "val.json")) in err
    assert not (tmp_path / "model").exists()
