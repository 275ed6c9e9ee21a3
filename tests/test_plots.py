"""Each plot writes a real PNG (opened with PIL) and rejects bad input clearly."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from refinery_quaterion.evaluate.label_plots import (
    NONE_LABEL,
    confusion_table,
    plot_confusion_matrix,
    plot_threshold_curve,
)
from refinery_quaterion.evaluate.plots import plot_precision_distribution, plot_topk_curve


def assert_png(path, min_width=400, min_height=300):
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width >= min_width and height >= min_height, (width, height)
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"


def threshold_report():
    return pd.DataFrame(
        {
            "threshold": [0.9, 0.0, 0.5, 0.7],
            "kept": [30, 100, 80, 60],
            "share": [0.3, 1.0, 0.8, 0.6],
            "weak_supervision": [10, 50, 40, 30],
            "agreement": [0.95, 0.7, 0.8, np.nan],
            "compared": [10, 50, 40, 0],
        }
    )


def test_topk_curve_from_frame_and_mapping(tmp_path):
    frame = pd.DataFrame(
        {"P@1": [0.4, 0.9], "P@10": [0.35, 0.85], "P@100": [0.3, 0.7], "MRR": [0.5, 0.95]},
        index=pd.Index(["raw", "fine-tuned"], name="model"),
    )
    path = plot_topk_curve(frame, tmp_path / "deep" / "dir" / "topk.png")
    assert path == tmp_path / "deep" / "dir" / "topk.png"
    assert_png(path)
    assert_png(plot_topk_curve({"raw": {1: 0.4, 5: 0.38}, "tuned": {1: 0.9, 5: 0.8}}, tmp_path / "m.png"))
    assert_png(plot_topk_curve({"one k": {10: 0.5}}, tmp_path / "single.png"))


def test_topk_curve_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"no precision columns named like 'P@10'"):
        plot_topk_curve(pd.DataFrame({"MRR": [0.5]}), tmp_path / "a.png")
    with pytest.raises(ValueError, match="results is empty"):
        plot_topk_curve({}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="outside 0..1"):
        plot_topk_curve({"raw": {1: 1.5}}, tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"k=0"):
        plot_topk_curve({"raw": {0: 0.5}}, tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"must end in \.png"):
        plot_topk_curve({"raw": {1: 0.5}}, tmp_path / "a.jpg")
    with pytest.raises(TypeError, match="DataFrame with 'P@k' columns"):
        plot_topk_curve([0.5], tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()


def test_precision_distribution(tmp_path):
    rng = np.random.default_rng(0)
    per_query = {
        "raw": rng.integers(0, 11, 300) / 10,
        "fine-tuned": np.r_[rng.integers(7, 11, 300) / 10, np.nan],  # NaN (excluded query) dropped
        "perfect": np.ones(20),  # no spread: box only
    }
    assert_png(plot_precision_distribution(per_query, tmp_path / "dist.png", k=10))
    with pytest.raises(ValueError, match="non-empty mapping"):
        plot_precision_distribution({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"per_query\['raw'\] must be 1-D"):
        plot_precision_distribution({"raw": np.ones((3, 2))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"per_query\['raw'\] has no value"):
        plot_precision_distribution({"raw": [np.nan]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="outside 0..1"):
        plot_precision_distribution({"raw": [2.0]}, tmp_path / "x.png")


def test_confusion_table_with_missing_predictions():
    reference = ["a", "b", "c", "a", "b", None, "c"]
    predicted = ["a", "b", "a", None, float("nan"), "b", "c"]
    table = confusion_table(predicted, reference)
    assert list(table.index) == ["a", "b", "c"]
    assert list(table.columns) == ["a", "b", "c", NONE_LABEL]
    assert table.loc["a", NONE_LABEL] == 1 and table.loc["b", NONE_LABEL] == 1
    assert table.loc["c", "a"] == 1 and table.to_numpy().sum() == 6  # the record without reference dropped
    full = confusion_table(["a", "b"], ["a", "b"], labels=["b", "a", "z"])
    assert list(full.index) == ["b", "a", "z"] and NONE_LABEL not in full.columns


def test_confusion_matrix_plot(tmp_path):
    rng = np.random.default_rng(1)
    reference = rng.choice(["Business", "Sports", "World", "Sci/Tech"], 200).tolist()
    predicted = [r if rng.random() < 0.7 else rng.choice(["Business", "World", None]) for r in reference]
    assert_png(plot_confusion_matrix(predicted, reference, tmp_path / "conf.png"))
    assert_png(plot_confusion_matrix(reference, reference, tmp_path / "perfect.png", title="Perfect"))
    many = [f"label {i}" for i in range(40)] * 3
    assert_png(plot_confusion_matrix(many, many, tmp_path / "many.png"), min_width=800)


def test_confusion_matrix_bad_input(tmp_path):
    with pytest.raises(ValueError, match="predicted_labels has 2 entries but reference_labels has 3"):
        plot_confusion_matrix(["a", "b"], ["a", "b", "c"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no record has a reference label"):
        plot_confusion_matrix(["a"], [None], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"labels \['c'\] occur in the data but are not in labels"):
        plot_confusion_matrix(["a", "c"], ["a", "b"], tmp_path / "x.png", labels=["a", "b"])
    with pytest.raises(TypeError, match="reference_labels must be a sequence"):
        plot_confusion_matrix(["a"], "a", tmp_path / "x.png")


def test_threshold_curve(tmp_path):
    assert_png(plot_threshold_curve(threshold_report(), tmp_path / "thr.png"))
    no_overlap = threshold_report().assign(agreement=np.nan, compared=0)
    assert_png(plot_threshold_curve(no_overlap, tmp_path / "none.png"))


def test_threshold_curve_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"report lacks columns \['agreement'\]"):
        plot_threshold_curve(threshold_report().drop(columns="agreement"), tmp_path / "x.png")
    with pytest.raises(ValueError, match="report has no rows"):
        plot_threshold_curve(threshold_report().iloc[:0], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"report\['share'\] must lie in 0..1"):
        plot_threshold_curve(threshold_report().assign(share=[1, 2, 0, 0]), tmp_path / "x.png")
    with pytest.raises(TypeError, match="report must be a pandas DataFrame"):
        plot_threshold_curve({"threshold": [0.5]}, tmp_path / "x.png")


def test_plots_leave_matplotlib_state_alone(tmp_path):
    backend = matplotlib.get_backend()
    plot_topk_curve({"raw": {1: 0.5, 10: 0.4}}, tmp_path / "a.png")
    assert matplotlib.get_backend() == backend
    import sys

    if "matplotlib.pyplot" in sys.modules:  # another test imported pyplot: no figure of ours is open
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def _red_pixels(path) -> int:
    """Pixels of the chosen-threshold line's colour (matplotlib's tab:red, #d62728)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array([214, 39, 40])).sum(axis=2) < 40).sum())


def test_threshold_curve_marks_the_chosen_threshold(tmp_path):
    plain = threshold_report()
    assert _red_pixels(plot_threshold_curve(plain, tmp_path / "plain.png")) == 0
    marked = plain.assign(chosen=[False, False, True, False])  # the row of threshold 0.5
    assert _red_pixels(plot_threshold_curve(marked, tmp_path / "column.png")) > 200
    from_attrs = plain.copy()
    from_attrs.attrs["threshold_choice"] = {"value": 0.55, "reason": "best expected correct labels"}
    assert _red_pixels(plot_threshold_curve(from_attrs, tmp_path / "attrs.png")) > 200
    assert _red_pixels(plot_threshold_curve(plain, tmp_path / "arg.png", chosen=0.7)) > 200
    with Image.open(tmp_path / "column.png") as a, Image.open(tmp_path / "arg.png") as b:
        assert np.asarray(a).shape == np.asarray(b).shape and (np.asarray(a) != np.asarray(b)).any()


def test_threshold_curve_from_threshold_report(tmp_path):
    from refinery_fixtures import sdk_frame

    from refinery_quaterion.data.thresholds import threshold_report as make_report

    report = make_report(sdk_frame(), "Topic", thresholds=[0.5, 0.9])
    assert report["chosen"].sum() == 1
    assert _red_pixels(plot_threshold_curve(report, tmp_path / "real.png")) > 200


def test_threshold_curve_bad_chosen(tmp_path):
    with pytest.raises(ValueError, match="marks 2 rows as chosen"):
        plot_threshold_curve(threshold_report().assign(chosen=[True, True, False, False]), tmp_path / "x.png")
    with pytest.raises(ValueError, match="chosen must be a threshold between 0 and 1"):
        plot_threshold_curve(threshold_report(), tmp_path / "x.png", chosen=1.5)
