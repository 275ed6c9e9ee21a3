"""The end-to-end steps: prepare_records / load_prepared, train_model with configs, evaluate_model's one return type."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from refinery_fixtures import sdk_frame

from refinery_quaterion import EvalConfig, LabelConfig
from refinery_quaterion.model.config import FitConfig, ModelConfig
from refinery_quaterion.workflow import (
    EvaluationOutcome,
    PreparedRecords,
    evaluate_model,
    load_prepared,
    prepare_records,
    train_model,
)


def test_prepare_records_in_memory_and_to_a_folder(tmp_path: Path) -> None:
    export = pd.concat([sdk_frame()] * 4, ignore_index=True)
    export["Title"] = [f"{t} {i}" for i, t in enumerate(export["Title"])]
    prepared = prepare_records(export, LabelConfig(task="Topic", template="{Title}. {Description}"))
    assert isinstance(prepared, PreparedRecords) and prepared.path is None
    assert (len(prepared.train), len(prepared.val)) == (15, 5)
    assert prepared.label_map.names == ["Business", "Sports", "World"] and prepared.report.kept == 20

    written = prepare_records(export, LabelConfig(task="Topic", template="{Title}. {Description}", split_seed=1),
                              out=tmp_path / "p")
    assert written.path == tmp_path / "p"
    settings = json.loads((tmp_path / "p" / "prepare.json").read_text())
    assert settings["split_seed"] == 1 and settings["template"] == "{Title}. {Description}"
    back = load_prepared(tmp_path / "p")
    assert back.template == "{Title}. {Description}" and back.label_map == written.label_map and back.report is None
    pd.testing.assert_frame_equal(back.train.reset_index(drop=True)[["Title", "label"]],
                                  written.train.reset_index(drop=True)[["Title", "label"]])
    assert load_prepared(tmp_path / "p", template="{Title}").template == "{Title}"
    with pytest.raises(FileExistsError, match="already exists"):
        prepare_records(export, LabelConfig(task="Topic", template="{Title}"), out=tmp_path / "p")
    with pytest.raises(ValueError, match="uses 'Body'"):
        prepare_records(export, LabelConfig(task="Topic", template="{Body}"))
    with pytest.raises(ValueError, match="no prepare.json, so the text template is unknown; pass template= or prepare the folder first"):
        load_prepared(tmp_path)


def test_train_then_evaluate_returns_one_type(tmp_path: Path, tiny_model_dir: Path, synthetic_frame) -> None:
    frame = synthetic_frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, val, test = frame.iloc[:120], frame.iloc[120:160], frame.iloc[160:]
    with pytest.raises(ValueError, match="needs a text template"):
        train_model(train, val, tmp_path / "m", model_config=ModelConfig(pretrained=str(tiny_model_dir)))
    outcome = train_model(train, val, tmp_path / "m",
                          model_config=(ModelConfig(pretrained=str(tiny_model_dir), lr=0.2)).replace(template="{text}"),
                          fit_config=(FitConfig(epochs=2, batch_size=40)).replace(progress=False),
                          embedding_cache=tmp_path / "cache")
    saved = json.loads((outcome.path / "training_config.json").read_text())
    assert saved["fit"]["epochs"] == 2 and saved["fit"]["progress"] == "off" and saved["model"]["lr"] == 0.2
    assert saved["extra"] == {"train_records": 120, "val_records": 40}

    table_only = evaluate_model(outcome.path, test, EvalConfig(ks=(1, 5), progress=False),
                                embedding_cache=tmp_path / "cache")
    assert isinstance(table_only, EvaluationOutcome) and table_only.report is None and table_only.probe == {}
    assert list(table_only.metrics.index) == ["raw", "fine-tuned"] and "P@5" in table_only.metrics.columns

    with_report = evaluate_model(outcome.path, test, EvalConfig(ks=(1, 5), progress=False), reference=train,
                                 report_dir=tmp_path / "report", embedding_cache=tmp_path / "cache")
    assert isinstance(with_report, EvaluationOutcome) and with_report.report is not None
    assert set(with_report.probe) == {"raw", "fine-tuned"} and (tmp_path / "report" / "metrics.json").is_file()
    pd.testing.assert_frame_equal(with_report.metrics[table_only.metrics.columns], table_only.metrics)
    assert "fine-tuned" in str(with_report) and "report:" in str(with_report)


def _export(copies: int = 4) -> pd.DataFrame:
    export = pd.concat([sdk_frame()] * copies, ignore_index=True)
    export["Title"] = [f"{t} {i}" for i, t in enumerate(export["Title"])]
    return export


def test_prepare_records_auto_threshold_stores_the_value_used(tmp_path: Path) -> None:
    written = prepare_records(_export(), LabelConfig(task="Topic", template="{Title}", min_confidence="auto"),
                              out=tmp_path / "p")
    settings = json.loads((tmp_path / "p" / "prepare.json").read_text())
    assert settings["min_confidence"] == written.report.min_confidence == 0.7  # too few overlaps: the fallback
    assert settings["min_confidence_requested"] == "auto"
    assert settings["report"]["threshold_choice"]["reason"].startswith("min_confidence=0.7 (the default)")
    fixed = json.loads((prepare_records(_export(), LabelConfig(task="Topic", template="{Title}", min_confidence=0.5),
                                        out=tmp_path / "q").path / "prepare.json").read_text())
    assert fixed["min_confidence"] == 0.5 and fixed["min_confidence_requested"] == 0.5


def test_prepare_records_drops_blank_texts_of_the_template() -> None:
    export = _export()
    export.loc[export.index % 10 == 1, "Title"] = "   "  # the "Cup final" records (weak label Sports, 0.95)
    prepared = prepare_records(export, LabelConfig(task="Topic", template="{Title}"))
    assert prepared.report.dropped.get("blank_text") == 4
    assert not (pd.concat([prepared.train, prepared.val])["Title"].str.strip() == "").any()


def test_prepare_records_keeps_identical_texts_on_one_side() -> None:
    export = _export(copies=8)
    export["Title"] = [t.rsplit(" ", 1)[0] + f" {i % 20}" for i, t in enumerate(export["Title"])]  # 2 copies each
    export["Description"] = [f"{d} {i}" for i, d in enumerate(export["Description"])]  # but unique records
    with pytest.warns(UserWarning, match="share their text"):
        prepared = prepare_records(export, LabelConfig(task="Topic", template="{Title}"))
    assert not set(prepared.train["Title"]) & set(prepared.val["Title"])


def test_prepare_records_manual_holdout_writes_test_json(tmp_path: Path) -> None:
    prepared = prepare_records(_export(), LabelConfig(task="Topic", template="{Title}", holdout="manual", val_size=2),
                               out=tmp_path / "p")
    assert set(prepared.test["label_source"]) == {"manual"} and len(prepared.test) == 12
    assert set(prepared.train["label_source"]) == {"weak_supervision"} and len(prepared.val) == 2
    assert prepared.holdout is not None and prepared.holdout.test_only_labels == ["Business"]
    settings = json.loads((tmp_path / "p" / "prepare.json").read_text())
    assert settings["holdout"] == "manual" and settings["test_records"] == 12
    assert settings["test_only_labels"] == ["Business"]
    back = load_prepared(tmp_path / "p")
    pd.testing.assert_frame_equal(back.test[["Title", "label"]], prepared.test[["Title", "label"]])
    assert "12 test records" in str(back)
    assert load_prepared(prepare_records(_export(), LabelConfig(task="Topic", template="{Title}"), out=tmp_path / "q").path).test is None
    with pytest.raises(ValueError, match=r"holdout must be one of \['manual'\]"):
        prepare_records(_export(), LabelConfig(task="Topic", template="{Title}", holdout="weak"))


def test_prepare_records_without_validation_and_existing_out_first(tmp_path: Path) -> None:
    prepared = prepare_records(_export(), LabelConfig(task="Topic", template="{Title}", val_size=0))
    assert (len(prepared.train), len(prepared.val)) == (20, 0)
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="taken already exists"):  # before the (missing) export is read
        prepare_records(tmp_path / "missing.json", LabelConfig(template="{Title}"), out=tmp_path / "taken")


def test_load_prepared_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing: no such folder"):
        load_prepared(tmp_path / "missing")
    (tmp_path / "file.json").write_text("[]")
    with pytest.raises(NotADirectoryError, match=r"file.json: is a file; expected a prepared folder"):
        load_prepared(tmp_path / "file.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no train.json"):
        load_prepared(tmp_path / "empty", template="{text}")
    (tmp_path / "empty" / "prepare.json").write_text('{"text": ')
    with pytest.raises(ValueError, match=r"prepare.json: not valid JSON"):
        load_prepared(tmp_path / "empty")


def test_evaluate_model_checks_the_template_before_encoding(tmp_path: Path, tiny_model_dir: Path,
                                                            synthetic_frame) -> None:
    """Before: a test file without the template's column was embedded as "" and gave plausible metrics."""
    frame = synthetic_frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    outcome = train_model(frame.iloc[:120], None, tmp_path / "m",
                          model_config=(ModelConfig(pretrained=str(tiny_model_dir))).replace(template="{text}"),
                          fit_config=FitConfig(epochs=1, batch_size=40, progress=False), embedding_cache=None)
    renamed = frame.iloc[160:].rename(columns={"text": "body"})
    with pytest.raises(ValueError, match=r"uses 'text', which is not a column of the test records"):
        evaluate_model(outcome.path, renamed, EvalConfig(progress=False), embedding_cache=None)
    path = tmp_path / "renamed.json"
    renamed.to_json(path, orient="records")
    with pytest.raises(ValueError, match=rf"uses 'text', which is not a column of {path}"):
        evaluate_model(outcome.path, path, EvalConfig(progress=False), embedding_cache=None)
    test = tmp_path / "test.json"
    frame.iloc[160:].to_json(test, orient="records")
    with pytest.raises(ValueError, match=rf"not a column of {path}"):
        evaluate_model(outcome.path, test, EvalConfig(progress=False), reference=[test, path], embedding_cache=None)
    with pytest.raises(ValueError, match=rf"{test} has no label column 'topic'"):
        evaluate_model(outcome.path, test, EvalConfig(label_column="topic", progress=False), embedding_cache=None)
    (tmp_path / "report").mkdir()
    with pytest.raises(FileExistsError, match="report already exists"):
        evaluate_model(outcome.path, test, EvalConfig(progress=False), report_dir=tmp_path / "report",
                       embedding_cache=None)
    from_files = evaluate_model(outcome.path, test, EvalConfig(ks=(1, 5), progress=False), reference=[test],
                                report_dir=tmp_path / "r2", embedding_cache=None)
    from_frame = evaluate_model(outcome.path, frame.iloc[160:], EvalConfig(ks=(1, 5), progress=False),
                                embedding_cache=None)
    pd.testing.assert_frame_equal(from_files.metrics[from_frame.metrics.columns], from_frame.metrics)
    assert set(from_files.probe) == {"raw", "fine-tuned"}
