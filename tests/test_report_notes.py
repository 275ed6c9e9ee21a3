"""Report notes, the precision ceiling, the model card's weights and the threshold reason (issue 21, cases 11, 13)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refinery_quaterion.evaluate import ProbeSet, evaluation_report
from refinery_quaterion.evaluate.notes import duplicate_text_note, label_notes, precision_ceiling, probe_notes
from refinery_quaterion.evaluate.plots import plot_topk_curve
from refinery_quaterion.exporters.model_card import _training_lines


def test_precision_ceiling_follows_the_class_sizes() -> None:
    labels = ["a"] * 10 + ["b"] * 40 + ["c"]  # "c" occurs once: not a query
    ceiling = precision_ceiling(labels, [1, 9, 100])
    assert ceiling[1] == 1.0 and ceiling[9] == 1.0
    assert ceiling[100] == pytest.approx((10 * 9 / 100 + 40 * 39 / 100) / 50)
    assert np.isnan(precision_ceiling(["a", "b"], [1])[1])


def test_the_topk_plot_draws_and_labels_the_ceiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.axes import Axes

    labels_seen: list[str] = []
    original = Axes.plot

    def spy(self, *args, **kwargs):
        labels_seen.append(kwargs.get("label", ""))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    plot_topk_curve({"m": {1: 0.9, 100: 0.25}}, tmp_path / "t.png", ceiling={1: 1.0, 100: 0.26})
    assert "ceiling (best P@k the class sizes allow)" in labels_seen and (tmp_path / "t.png").stat().st_size


def test_notes() -> None:
    assert duplicate_text_note(["A b", "a  B", "c"])[0].startswith("2 test records share their text")
    assert duplicate_text_note(["a", "b"]) == []
    assert "single label ('x')" in label_notes(["x", "x"])[0] and label_notes(["x", "y"]) == []
    rng = np.random.default_rng(0)
    test = rng.standard_normal((8, 4)).astype(np.float32)
    labels = ["a", "b"] * 4
    same = probe_notes({"m": ProbeSet(test, labels, test, labels)})
    assert any("trained on the test items themselves" in note for note in same)
    disjoint = probe_notes({"m": ProbeSet(test + 1, ["c", "d"] * 4, test, labels)})
    assert any("none in common" in note for note in disjoint)


def test_the_report_writes_notes_and_the_ceiling(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((12, 4)).astype(np.float32)
    labels = ["a"] * 6 + ["b"] * 6
    report = evaluation_report(tmp_path / "r", {"m": vectors}, labels, ks=[1, 5, 10],
                               probe={"m": ProbeSet(vectors, labels, vectors, labels)}, notes=["a caller's note"])
    summary = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert summary["notes"][0] == "a caller's note" and any("themselves" in n for n in summary["notes"])
    assert summary["precision_ceiling"]["P@10"] == pytest.approx(0.5)
    md = (tmp_path / "r" / "metrics.md").read_text()
    assert "## Notes" in md and "The dashed line is the ceiling" in md
    assert "note: a caller's note" in str(report)


@pytest.mark.parametrize(("training", "expected"), [
    ({"epochs": 70, "best_epoch": 12, "restored_best": False, "monitor": "val_loss"},
     "those of the last epoch (70), not of the best epoch (12)"),
    ({"epochs": 70, "best_epoch": 12, "restored_best": True, "monitor": "val_loss"},
     "those of the best epoch (12 by val_loss), restored after the last epoch (70)"),
    ({"epochs": 70, "best_epoch": 70, "restored_best": False, "monitor": "val_loss"},
     "those of the last epoch (70), which is also the best by val_loss"),
])
def test_the_model_card_says_which_weights_the_folder_holds(training: dict, expected: str) -> None:
    lines = _training_lines({"training": training})
    assert f"| weights saved | {expected}" in "\n".join(lines)


def test_the_threshold_reason_names_the_thresholds_the_table_shows() -> None:
    from test_labels import _banded_export

    from refinery_quaterion.cli._data import DEFAULT_THRESHOLDS
    from refinery_quaterion.data.labels import threshold_report
    from refinery_quaterion.data.thresholds import AUTO_CANDIDATES

    values = [float(v) for v in DEFAULT_THRESHOLDS.split(",")]
    assert values == list(AUTO_CANDIDATES)  # the CLI's table and plot show every candidate
    table = threshold_report(_banded_export(), thresholds=values)
    reason = table.attrs["threshold_choice"]["reason"]
    eligible = int((table["compared"] >= 30).sum())
    assert f"among the {eligible} of the 20 candidate thresholds (0, 0.05, …, 0.95) with at least 30" in reason
    assert len(table) == 20
