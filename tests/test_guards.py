"""Issue 21: outputs never destroy inputs; broken training and broken models are errors, not results."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refinery_quaterion._io import refuse_output_over_inputs
from refinery_quaterion.cli import main
from refinery_quaterion.errors import SettingError
from refinery_quaterion.training._guards import (
    TrainedModelError,
    check_learnable,
    check_trained_vectors,
    vectors_problem,
)


def _digest(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _fail(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# -- case 1: an output over an input -------------------------------------------------------------


@pytest.mark.parametrize(("output", "relation"), [("d", "is"), (".", "contains"), ("d/sub", "lies inside")])
def test_refuse_output_over_inputs_names_the_relation(tmp_path: Path, output: str, relation: str) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(SettingError, match=rf"out='.*' {relation} the data .*d; writing it would destroy the input"):
        refuse_output_over_inputs(tmp_path / output, {"the data": tmp_path / "d", "nothing": None})
    refuse_output_over_inputs(tmp_path / "elsewhere", {"the data": tmp_path / "d"})
    refuse_output_over_inputs(None, {"the data": tmp_path / "d"})


def test_prepare_refuses_an_out_folder_holding_the_export(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    export = folder / "export.json"
    export.write_text(json.dumps([{"text": "a", "label": "x"}]))
    before = _digest(folder)
    err = _fail(["prepare", str(export), "--out", str(folder), "--overwrite"], capsys)
    assert f"--out {folder} contains the export {export}" in err
    assert _digest(folder) == before


def test_train_refuses_out_equal_to_its_data(tmp_path: Path, capsys) -> None:
    data = tmp_path / "prepared"
    data.mkdir()
    (data / "train.json").write_text(json.dumps([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]))
    (data / "prepare.json").write_text(json.dumps({"template": "{text}"}))
    before = _digest(data)
    err = _fail(["train", str(data), "--out", str(data), "--overwrite"], capsys)
    assert f"--out {data} is the prepared data {data}" in err
    assert _digest(data) == before


def test_evaluate_refuses_a_report_over_the_model_or_the_test_folder(tmp_path: Path, capsys) -> None:
    model, data = tmp_path / "model", tmp_path / "prepared"
    model.mkdir()
    data.mkdir()
    (model / "config.json").write_text("{}")
    test = data / "test.json"
    test.write_text("[]")
    before = {**_digest(model), **_digest(data)}
    err = _fail(["evaluate", str(model), str(test), "--report", str(model), "--overwrite"], capsys)
    assert f"--report {model} is MODEL_DIR {model}" in err
    err = _fail(["evaluate", str(model), str(test), "--report", str(data), "--overwrite"], capsys)
    assert f"--report {data} contains TEST {test}" in err
    assert {**_digest(model), **_digest(data)} == before


def test_the_api_refuses_outputs_over_inputs(tmp_path: Path, tiny_model_dir: Path) -> None:
    from refinery_quaterion.model.config import ModelConfig
    from refinery_quaterion.workflow import evaluate_model, prepare_records, train_model

    export = tmp_path / "export.json"
    export.write_text("[]")
    with pytest.raises(SettingError, match="out=.* contains the export"):
        prepare_records(export, out=tmp_path, overwrite=True)
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    before = _digest(tiny_model_dir)
    with pytest.raises(SettingError, match="out=.* is the pretrained model"):
        train_model(frame, None, tiny_model_dir, model_config=ModelConfig(pretrained=str(tiny_model_dir),
                                                                          template="{text}"), overwrite=True)
    assert _digest(tiny_model_dir) == before
    test = tmp_path / "t" / "test.json"
    test.parent.mkdir()
    test.write_text("[]")
    with pytest.raises(SettingError, match="report_dir=.* contains the test records"):
        evaluate_model(tmp_path / "model", test, report_dir=test.parent, overwrite=True)
    assert test.read_text() == "[]"


# -- case 3: training that cannot learn, vectors that are broken -------------------------------------


def test_training_that_cannot_learn_is_an_error() -> None:
    groups, ones = np.array([0, 1, 0, 1]), np.ones(4)
    with pytest.raises(SettingError, match=r"every record of train_dataset weighs 0.*sample_weighting='none'"):
        check_learnable(groups, np.zeros(4), weighted=True, needs_positives=False)
    check_learnable(groups, np.zeros(4), weighted=False, needs_positives=False)
    with pytest.raises(ValueError, match="records of one label only"):
        check_learnable(np.zeros(4, dtype=int), ones, weighted=False, needs_positives=False)
    with pytest.raises(ValueError, match="no label with two records"):
        check_learnable(np.array([0, 1, 2, 3]), ones, weighted=False, needs_positives=True)
    check_learnable(np.array([0, 1, 2, 3]), ones, weighted=False, needs_positives=False)


def test_vectors_problem_names_what_is_broken() -> None:
    good = np.eye(3, dtype=np.float32)
    assert vectors_problem(good) is None
    assert vectors_problem(np.array([[1.0, np.nan], [0.0, 1.0]])) == "1 of 2 vectors hold NaN or infinite values"
    assert vectors_problem(np.array([[0.0, 0.0], [0.0, 1.0]])) == "1 of 2 vectors have zero length"
    assert vectors_problem(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])) == (
        "all 3 sample records map to one point (the vectors collapsed)")


def test_check_trained_vectors_refuses_a_collapsed_model() -> None:
    class Collapsed:
        def __init__(self):
            self.template = lambda record: record["text"]

        def parameters(self):
            return []

        def encode(self, records, normalize=True, progress=None):
            return np.ones((len(records), 4), dtype=np.float32)

    records = [{"text": f"t{i}"} for i in range(10)]
    with pytest.raises(TrainedModelError, match="all 10 sample records map to one point.*out was not saved"):
        check_trained_vectors(Collapsed(), records, where="out")


def test_a_zero_weight_training_set_is_refused_by_fit(tiny_model_dir: Path, synthetic_frame) -> None:
    from refinery_quaterion.data.dataset import RefineryExportDataset
    from refinery_quaterion.model.config import FitConfig, ModelConfig
    from refinery_quaterion.model.trainable import DistilBertSimilarityModel
    from refinery_quaterion.training.fit import fit

    frame = synthetic_frame.assign(weight=0.0)
    train = RefineryExportDataset(frame, template="{text}")
    if getattr(train, "weights", None) is None:
        pytest.skip("this dataset carries no weights")
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir))
    with pytest.raises(SettingError, match="weighs 0"):
        fit(model, train, None, FitConfig(epochs=1, progress=False, sample_weighting="confidence"))


def test_a_non_finite_loss_stops_training_naming_epoch_and_step(tiny_model_dir: Path, synthetic_split, monkeypatch,
                                                               tmp_path: Path) -> None:
    import torch
    from quaterion import TrainableModel

    from refinery_quaterion.model.config import FitConfig, ModelConfig
    from refinery_quaterion.model.trainable import DistilBertSimilarityModel, TrainingDiverged
    from refinery_quaterion.training.fit import fit
    from refinery_quaterion.training.model_files import save

    train, _ = synthetic_split
    original = TrainableModel._common_step

    def nan_at_step_2(self, batch, batch_idx, stage, **kwargs):
        loss = original(self, batch=batch, batch_idx=batch_idx, stage=stage, **kwargs)
        return loss * torch.tensor(float("nan")) if batch_idx == 1 else loss

    monkeypatch.setattr(TrainableModel, "_common_step", nan_at_step_2)
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir))
    with pytest.raises(TrainingDiverged, match=r"the train loss is nan at epoch 1, step 2; nothing was saved"):
        fit(model, train, None, FitConfig(epochs=2, batch_size=32, progress=False))
    with pytest.raises(ValueError, match="diverged"):
        save(model, tmp_path / "m")
    assert not (tmp_path / "m").exists()


# -- case 4: a tokenizer that maps ordinary text to [UNK] ----------------------------------------------


def test_a_tokenizer_without_its_vocabulary_is_refused(tmp_path: Path) -> None:
    from refinery_quaterion.model.pretrained import ModelNotFoundError, load_pretrained, resolve_pretrained

    source = Path(resolve_pretrained("minilm"))
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in os.listdir(source):
        if name not in ("tokenizer.json", "vocab.txt") and (source / name).is_file():
            (folder / name).symlink_to(source / name)
    with pytest.raises(ModelNotFoundError, match=r"maps 1\d of 1\d tokens of ordinary text to '\[UNK\]'"):
        load_pretrained(folder)


# -- case 6: blank texts and null labels in evaluation -----------------------------------------------------


def test_evaluate_refuses_blank_texts_and_missing_labels_before_encoding() -> None:
    from refinery_quaterion.data.text import TextTemplate
    from refinery_quaterion.workflow.evaluate import _check_records

    template = TextTemplate("{text}")
    blank = pd.DataFrame({"text": ["a", "\u200b ", None], "label": ["x", "y", "x"]})
    with pytest.raises(ValueError, match=r"test.json: 2 record\(s\) render to an empty text.*first: record 1"):
        _check_records(blank, "test.json", template, "label")
    unlabeled = pd.DataFrame({"text": ["a", "b"], "label": ["x", None]})
    with pytest.raises(ValueError, match=r"test.json: 1 record\(s\) have no label in column 'label'"):
        _check_records(unlabeled, "test.json", template, "label")


# -- case 5: the raw row of a fine-tuned encoder is the pretrained encoder ----------------------------------


def test_the_raw_row_of_a_trainable_encoder_model_is_the_pretrained_encoder(tiny_model_dir: Path, synthetic_split,
                                                                             synthetic_frame) -> None:
    from refinery_quaterion.evaluate import compare
    from refinery_quaterion.model.config import FitConfig, ModelConfig
    from refinery_quaterion.model.encoder import TransformerEncoder
    from refinery_quaterion.model.trainable import DistilBertSimilarityModel
    from refinery_quaterion.training.fit import fit
    from refinery_quaterion.workflow import evaluate_model

    train, _ = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=str(tiny_model_dir), trainable_encoder=True,
                                                  encoder_lr=3e-3))
    fit(model, train, None, FitConfig(epochs=1, batch_size=64, progress=False))
    test = synthetic_frame.iloc[::4].reset_index(drop=True)
    outcome = evaluate_model(model.embedding_model(), test, embedding_cache=None)
    fresh = TransformerEncoder.from_pretrained(str(tiny_model_dir), template="{text}", backend="torch")
    expected = compare({"raw": fresh.encode(test)}, test["label"].astype(str).to_numpy(),
                       ks=[k for k in (1, 5, 10) if k < len(test)])
    assert outcome.metrics.loc["raw", "P@1"] == pytest.approx(expected.loc["raw", "P@1"])


# -- case 7: SIGTERM during training is handled like Ctrl-C ------------------------------------------------


def test_sigterm_during_training_exits_like_ctrl_c(tmp_path: Path, tiny_model_dir: Path, synthetic_frame) -> None:
    import signal
    import subprocess
    import sys
    import time

    data, scratch = tmp_path / "prepared", tmp_path / "tmp"
    data.mkdir()
    scratch.mkdir()
    synthetic_frame.to_json(data / "train.json", orient="records")
    (data / "prepare.json").write_text(json.dumps({"template": "{text}"}))
    env = {**os.environ, "TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "refinery_quaterion", "train", str(data), "--pretrained",
                                str(tiny_model_dir), "--out", str(tmp_path / "model"), "--epochs", "100000",
                                "--no-cache", "--quiet"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(scratch.glob("refinery-quaterion-fit-*")) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "refinery-quaterion train: interrupted" in err and "nothing was saved" in err
    assert not (tmp_path / "model").exists() and not list(scratch.glob("refinery-quaterion-fit-*"))


# -- case 8: output checks before the work ---------------------------------------------------------------------


def test_thresholds_checks_its_plot_before_the_work(tmp_path: Path, capsys) -> None:
    export = tmp_path / "missing-export.json"  # never read: the plot is checked first
    err = _fail(["thresholds", str(export), "--plot", str(tmp_path / "t.jpg")], capsys)
    assert f"--plot {tmp_path / 't.jpg'}: expected a .png file, got '.jpg'" in err
    folder = tmp_path / "plots.png"
    folder.mkdir()
    err = _fail(["thresholds", str(export), "--plot", str(folder)], capsys)
    assert f"--plot {folder} is a folder" in err
    existing = tmp_path / "curve.png"
    existing.write_bytes(b"old")
    err = _fail(["thresholds", str(export), "--plot", str(existing)], capsys)
    assert f"{existing} already exists (--plot); pass --overwrite to replace it" in err
    assert existing.read_bytes() == b"old"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_before_training(tmp_path: Path, capsys) -> None:
    data, locked = tmp_path / "prepared", tmp_path / "locked"
    data.mkdir()
    locked.mkdir()
    locked.chmod(0o555)
    try:
        err = _fail(["train", str(data), "--out", str(locked / "model")], capsys)
    finally:
        locked.chmod(0o755)
    assert f"--out {locked / 'model'}: the folder {locked} is not writable" in err


# -- case 10: a closed stdout is an error, not a silent success ---------------------------------------------------


def test_a_closed_stdout_exits_141(tmp_path: Path) -> None:
    import subprocess
    import sys

    from refinery_fixtures import sdk_frame

    export = tmp_path / "export.json"
    export.write_text(pd.concat([sdk_frame()] * 4, ignore_index=True).to_json(orient="records"))
    process = subprocess.Popen([sys.executable, "-m", "refinery_quaterion", "thresholds", str(export)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.close()  # as `| head` does once it has read its lines
    process.wait(timeout=120)
    assert process.returncode == 141


# -- cases 9 and 12: the embedding cache checks its chunks and survives a garbled meta.json ---------------------


def test_a_cache_chunk_whose_bytes_changed_is_not_served(tmp_path: Path) -> None:
    from refinery_quaterion.model.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path)
    cache.put_many(["a", "b"], np.array([[1.0, 2.0], [3.0, 4.0]]), fingerprint="f")
    (chunk,) = (tmp_path / "f").glob("*.chunk.npy")
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the last vector
    chunk.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=r"ignoring unreadable embedding cache chunk .*bytes changed"):
        found, _ = EmbeddingCache(tmp_path).get_many(["a", "b"], fingerprint="f")
    assert not found.any()


def test_a_garbled_cache_meta_json_is_named_and_rebuilt(tmp_path: Path) -> None:
    from refinery_quaterion.model.cache import EmbeddingCache

    EmbeddingCache(tmp_path).put_many(["a"], np.array([[1.0, 2.0]]), fingerprint="f")
    (tmp_path / "f" / "meta.json").write_text("{garbled")
    with pytest.warns(RuntimeWarning, match=r"ignoring unreadable embedding cache file .*meta.json"):
        found, vectors = EmbeddingCache(tmp_path).get_many(["a"], fingerprint="f")
    assert found.all() and vectors.shape == (1, 2)
