"""refinery_quaterion.lab.cases: a refinery project evaluated with its manual labels as the held-out truth."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import make_texts

from refinery_quaterion.lab.cases import CaseResult, RefineryCase, choose_recipe, run_case
from refinery_quaterion.lab.recipes import CASE_RECIPES, Recipe
from refinery_quaterion.model.config import FitConfig


def _export_frame(n: int = 160, manual: int = 48, seed: int = 0) -> pd.DataFrame:
    """An SDK-style export: every record has a weak label; ``manual`` of them also a manual one.

    Weak labels are right except on every 7th record, where they are wrong with a low confidence.
    """
    texts = make_texts(n, seed=seed)
    labels = sorted(texts["label"].unique())
    rng = np.random.default_rng(seed)
    weak, confidence = [], []
    for i, label in enumerate(texts["label"]):
        if i % 7 == 3:
            weak.append(labels[(labels.index(label) + 1) % len(labels)])
            confidence.append(round(float(rng.uniform(0.2, 0.5)), 3))
        else:
            weak.append(label)
            confidence.append(round(float(rng.uniform(0.4, 0.99)), 3))
    return pd.DataFrame({
        "text": texts["text"],
        "__topic__MANUAL": [label if i < manual else None for i, label in enumerate(texts["label"])],
        "__topic__WEAK_SUPERVISION": weak,
        "__topic__WEAK_SUPERVISION__confidence": confidence,
    })


@pytest.fixture(scope="module")
def case_result(tiny_model_dir, tmp_path_factory) -> CaseResult:
    case = RefineryCase(_export_frame(), task="topic", template="{text}", name="synthetic",
                        pretrained=str(tiny_model_dir))
    recipes = {
        "fixed 0.7": Recipe(min_confidence=0.7, sample_weighting="none", min_steps=0, fit={"epochs": 2}),
        "weighted": Recipe(min_confidence="auto", sample_weighting="confidence", min_steps=12),
        "cleaned": Recipe(min_confidence="auto", clean="drop", clean_k=5, fit={"epochs": 2}),
    }
    out = tmp_path_factory.mktemp("case")
    return run_case(case, recipes, out=out, embedding_cache=out / "cache")


def test_run_case_evaluates_every_recipe_on_the_manual_labels(case_result: CaseResult) -> None:
    metrics = case_result.metrics
    assert list(metrics.index) == ["raw", "fixed 0.7", "weighted", "cleaned"]
    assert len(case_result.test) == 48
    assert set(case_result.test["label_source"]) == {"manual"}
    for column in ("P@1", "P@10", "MRR", "val P@10", "test P@10", "threshold", "weak labels", "epochs", "train s"):
        assert column in metrics.columns, column
    assert metrics.loc["raw", "train s"] == 0
    assert metrics.loc["fixed 0.7", "threshold"] == pytest.approx(0.7)
    # epochs="auto" with min_steps=12 and one batch per epoch: 12 epochs instead of 10; explicit epochs stay
    assert metrics.loc["fixed 0.7", "epochs"] == 2
    assert metrics.loc["weighted", "epochs"] == 12 == case_result.runs["weighted"].epochs
    # no manual record is trained on; the fixed threshold keeps fewer weak labels than "auto"
    for run in case_result.runs.values():
        assert set(run.prepared.train["label_source"]) == {"weak_supervision"}
        assert not set(run.prepared.train["text"]) & set(case_result.test["text"])
    assert metrics.loc["fixed 0.7", "weak labels"] < metrics.loc["weighted", "weak labels"]
    assert case_result.runs["cleaned"].report.cleaning is not None
    assert metrics.loc["cleaned", "weak labels"] == len(case_result.runs["cleaned"].prepared.train)
    assert (metrics[["P@1", "P@10", "MRR"]].to_numpy() <= 1).all()


def test_the_halves_split_the_manual_labels(case_result: CaseResult) -> None:
    assert case_result.halves is not None
    val, test = case_result.halves
    assert len(val) + len(test) == len(case_result.test)
    assert not set(val["text"]) & set(test["text"])
    assert set(val["label"]) == set(test["label"])  # stratified


def test_tables_and_summary(case_result: CaseResult, tmp_path) -> None:
    table = case_result.table()
    assert list(table.columns) == ["P@1", "P@10", "MRR", "train s"]
    markdown = case_result.to_markdown(["P@10", "weak labels", "train s"])
    assert markdown.splitlines()[0].startswith("| model")
    assert "| raw |" in markdown and "| – |" in markdown
    summary = case_result.summary()
    assert "synthetic: 48 manually labeled records" in summary
    assert "automatic threshold: min_confidence=" in summary
    with pytest.raises(ValueError, match="none of"):
        case_result.table(["nope"])
    assert case_result.plot_thresholds(tmp_path / "t.png").stat().st_size > 0
    assert case_result.plot_precision(tmp_path / "p.png", models=["raw", "weighted"]).stat().st_size > 0
    assert case_result.plot_precision(tmp_path / "p2.png", ks=(1, 5)).stat().st_size > 0


def test_models_are_kept_in_out(case_result: CaseResult) -> None:
    for run in case_result.runs.values():
        assert (run.path / "training_config.json").is_file()
        assert len(run.records) == len(run.prepared.train) + len(run.prepared.val) + len(case_result.test)


def test_nearest_text_lists_the_nearest_records_of_each_query(case_result: CaseResult) -> None:
    pytest.importorskip("qdrant_client")
    run = case_result.runs["weighted"]
    records = run.records.drop_duplicates("text")
    first, second = records["text"].iloc[0], records["text"].iloc[5]
    text = run.nearest_text([first, second], k=3)
    lines = text.split("\n")
    # per query: an empty line, the query, then k hits "  rank. score [label] text", best first
    assert len(lines) == 2 * (2 + 3)
    assert (lines[0], lines[1], lines[5], lines[6]) == ("", first, "", second)
    hit = re.compile(r"  (\d)\. (-?\d\.\d{3}) \[(\w+)\] (.+)")
    for query, block in ((first, lines[2:5]), (second, lines[7:10])):
        matches = [hit.fullmatch(line) for line in block]
        assert all(matches), block
        assert [int(m[1]) for m in matches] == [1, 2, 3]
        scores = [float(m[2]) for m in matches]
        assert scores == sorted(scores, reverse=True)
        # the query is a record's text: that record comes first, with its label, at cosine 1
        label = records.loc[records["text"] == query, "label"].iloc[0]
        assert (matches[0][2], matches[0][3], matches[0][4]) == ("1.000", label, query)
        for m in matches:
            assert m[4] in set(run.records["text"])
            assert m[3] in set(run.records.loc[run.records["text"] == m[4], "label"])
    assert run.nearest_text([], k=3) == ""
    with pytest.raises(ValueError, match="empty query"):
        run.nearest_text([""])


def test_choose_recipe_uses_the_validation_column(case_result: CaseResult) -> None:
    name, scores = choose_recipe(case_result)
    assert name in case_result.runs
    assert scores[name] == scores.max()
    assert scores[name] == pytest.approx(case_result.metrics.loc[name, "val P@10"])
    name, _ = choose_recipe([case_result, case_result], candidates=["fixed 0.7"])
    assert name == "fixed 0.7"
    with pytest.raises(ValueError, match="no column"):
        choose_recipe(case_result, metric="val P@1000")


def test_recipe_settings_and_validation() -> None:
    assert Recipe().describe() == "library defaults"
    recipe = Recipe(min_confidence="auto", sample_weighting="confidence", clean="drop", min_steps=500,
                    model={"loss": "softmax"}, fit={"epochs": 3})
    assert recipe.fit_settings() == {"epochs": 3, "sample_weighting": "confidence", "min_steps": 500}
    assert recipe.describe() == ("min_confidence=auto, epochs=3, sample_weighting=confidence, "
                                 "clean=drop (k=10, majority 0.7), min_steps=500, loss=softmax")
    assert Recipe(min_confidence="0.5").min_confidence == 0.5
    for bad, error in [
        ({"min_confidence": 1.5}, ValueError),
        ({"sample_weighting": "proportional"}, ValueError),
        ({"clean": "fix"}, ValueError),
        ({"clean_majority": 0.5}, ValueError),
        ({"min_steps": -1}, ValueError),
        ({"min_steps": 10, "fit": {"min_steps": 5}}, TypeError),
        ({"model": {"heads": "linear"}}, TypeError),
        ({"fit": {"epoch": 3}}, TypeError),
        ({"sample_weighting": "none", "fit": {"sample_weighting": "confidence"}}, TypeError),
        ({"fit": {"seed": 1}}, TypeError),
    ]:
        with pytest.raises(error):
            Recipe(**bad)
    assert set(CASE_RECIPES) == {"fixed 0.7", "auto threshold", "confidence-weighted", "cleaned", "default"}


def test_min_steps_raises_the_auto_epochs_of_small_training_sets_only() -> None:
    assert FitConfig().epochs_for(11) == 55  # banking: 1,365 records, 11 batches an epoch
    assert FitConfig().epochs_for(64) == 10  # AG News: 8,140 records; 10 epochs are 640 steps
    assert FitConfig(min_steps=0).epochs_for(11) == 10  # v0.1
    assert FitConfig(epochs=3).epochs_for(1) == 3  # an explicit number of epochs is trained as given
    assert Recipe(min_steps=0).fit_settings() == {"min_steps": 0}


def test_case_label() -> None:
    assert RefineryCase("data/snapshot_data.json.zip").label == "snapshot_data"
    assert RefineryCase("x.json", name="banking").label == "banking"
    assert RefineryCase(pd.DataFrame()).label == "case"


def test_run_case_refuses_bad_recipes(tiny_model_dir) -> None:
    case = RefineryCase(_export_frame(), task="topic", pretrained=str(tiny_model_dir))
    with pytest.raises(ValueError, match="empty"):
        run_case(case, {})
    with pytest.raises(ValueError, match="untrained encoder"):
        run_case(case, {"raw": Recipe()})


def test_importing_cases_imports_no_torch() -> None:
    code = "import sys, refinery_quaterion.lab.cases; print('torch' in sys.modules, 'quaterion' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
