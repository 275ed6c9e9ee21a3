"""What ``fit`` prints: without a terminal one line per stage and epoch, no Lightning chatter."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from refinery_quaterion import ModelConfig
from refinery_quaterion.model.config import FitConfig

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from conftest import make_texts
from refinery_quaterion.data.dataset import RefineryExportDataset, train_val_split
from refinery_quaterion.model.config import FitConfig, ModelConfig
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training.fit import fit
from refinery_quaterion.training.model_files import save

train_frame, val_frame = train_val_split(make_texts(120), val_size=0.25, seed=1)
train = RefineryExportDataset(train_frame, template="{{text}}")
val = RefineryExportDataset(val_frame, template="{{text}}", label_map=train.label_map)
for run, settings in enumerate([{{}}, {{"progress": "off"}}, {{"progress": False}}, {{"verbose": True}}]):
    print(f"=== run {{run}}", file=sys.stderr, flush=True)
    model = DistilBertSimilarityModel(ModelConfig(pretrained={model!r}))
    fit(model, train, val, FitConfig(epochs=3, batch_size=32, **settings))
    save(model, {out!r} + str(run), label_map=train.label_map)
    sys.stdout.flush(); sys.stderr.flush()
"""


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, tmp_path_factory) -> list[str]:
    """The combined stdout+stderr of four fits in a process without a terminal."""
    out = tmp_path_factory.mktemp("progress")
    code = textwrap.dedent(SCRIPT).format(tests=str(Path(__file__).parent), model=str(tiny_model_dir),
                                          out=str(out / "model"))
    done = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, cwd=out)
    assert done.returncode == 0, done.stdout[-3000:]
    parts = re.split(r"=== run \d\n", done.stdout)
    assert len(parts) == 5, done.stdout[-3000:]
    return parts[1:]


@pytest.mark.slow
def test_without_a_terminal_fit_prints_one_line_per_stage_and_epoch(runs: list[str]) -> None:
    lines = runs[0].splitlines()
    assert len(lines) == 5, runs[0]
    assert re.fullmatch(r"encoding: 120 records in \d+\.\d s", lines[0])
    for epoch, line in enumerate(lines[1:4], start=1):
        assert re.fullmatch(rf"epoch {epoch}/3: loss \d+\.\d{{4}}, validation loss \d+\.\d{{4}}, "
                            rf"P@10 \d\.\d{{4}} \(\d+\.\d s\)", line), line
    assert re.fullmatch(r"training: 3 epoch\(s\) in \d+\.\d s", lines[4])
    assert len(runs[0].encode()) < 400
    assert "GPU available" not in runs[0] and "Writing model shards" not in runs[0]


def test_progress_off_prints_nothing_and_verbose_brings_lightning_back(runs: list[str]) -> None:
    assert runs[1] == "" and runs[2] == ""
    assert "GPU available: False" in runs[3] and "epoch 3/3:" in runs[3]


def test_progress_settings() -> None:
    assert FitConfig().progress == "auto" and FitConfig(progress=True).progress == "auto"
    assert FitConfig(progress=False).progress == "off" and FitConfig(progress="bar").progress == "bar"
    with pytest.raises(ValueError, match=r"progress must be one of \['auto', 'bar', 'lines', 'off'\]"):
        FitConfig(progress="loud")
    with pytest.raises(ValueError, match="verbose must be True or False"):
        FitConfig(verbose="yes")


def test_the_bar_mode_shows_one_bar_per_stage(tiny_model_dir: Path, synthetic_split, capsys) -> None:
    from refinery_quaterion.model.trainable import DistilBertSimilarityModel
    from refinery_quaterion.training.fit import fit

    train, val = synthetic_split
    fit(DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir)), train, val, FitConfig(epochs=2, batch_size=64, progress="bar"))
    err = capsys.readouterr().err
    final = {line.split(":")[0]: line for line in err.replace("\r", "\n").splitlines() if "100%" in line}
    assert set(final) == {"Encoding", "Training"}
    assert "200/200" in final["Encoding"] and "epoch 2/2, loss" in final["Training"] and "P@10" in final["Training"]
