"""An index folder never overwrites its inputs: the model folder and the data file (issue 21)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from refinery_quaterion.cli import main
from refinery_quaterion.data.dataset import LabelMap
from refinery_quaterion.data.text import TextTemplate
from refinery_quaterion.errors import SettingError

pytest.importorskip("qdrant_edge")


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = tmp_path / "data" / "records.jsonl"
    data.parent.mkdir()
    data.write_text("\n".join(json.dumps({"text": f"record {i}", "label": "a"}) for i in range(3)) + "\n")
    return model, data


class _Encoder:
    dim = 4
    template = TextTemplate("{text}")
    label_map = LabelMap(["a"])

    def __init__(self, path: Path):
        self.path = path

    def encode(self, items, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return np.eye(4, dtype=np.float32)[[len(str(i)) % 4 for i in items]]

    def fingerprint(self) -> str:
        return "stub"


@pytest.mark.parametrize(("where", "relation"), [("model", "is"), ("model/index", "lies inside"), (".", "contains")])
@pytest.mark.parametrize("command", ["index", "search"])
def test_cli_refuses_an_index_over_its_inputs(command: str, where: str, relation: str, inputs: tuple[Path, Path],
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, data = inputs
    before = _digest(tmp_path)
    target = tmp_path / where
    flag = "--path" if command == "index" else "--index-path"
    argv = [command, str(model), str(data), flag, str(target)]
    if command == "index":
        argv.append("--rebuild")
    else:
        argv.append("a query")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and f"{flag} {target} {relation}" in err and "destroy the input" in err, err
    assert _digest(tmp_path) == before and not (model / "index").exists()


def test_cli_refuses_an_index_folder_that_is_the_data_file(inputs: tuple[Path, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    model, data = inputs
    before = data.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["index", str(model), str(data), "--path", str(data.parent), "--rebuild"])
    assert exit_info.value.code == 2
    assert f"--path {data.parent} contains DATA {data}" in capsys.readouterr().err
    assert data.read_bytes() == before


def test_api_refuses_an_index_inside_the_model_folder(inputs: tuple[Path, Path]) -> None:
    from refinery_quaterion.search import SimilarityIndex

    model, _ = inputs
    before = _digest(model)
    for target in (model, model / "index"):
        with pytest.raises(SettingError, match="lies inside the model folder|is the model folder"):
            SimilarityIndex(_Encoder(model), target)
    assert _digest(model) == before and not (model / "index").exists()


def test_index_records_refuses_an_index_holding_the_data_file(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    from refinery_quaterion.search import SimilarityIndex
    from refinery_quaterion.search.streaming import index_records

    model, data = inputs
    with SimilarityIndex(_Encoder(model), tmp_path / "idx") as index:
        with pytest.raises(SettingError, match=r"path=.*contains the data file"):
            # a data file inside the index folder would be replaced by a rebuild of the folder
            moved = tmp_path / "idx" / "records.jsonl"
            moved.write_bytes(data.read_bytes())
            index_records(index, moved)
        assert len(index) == 0
