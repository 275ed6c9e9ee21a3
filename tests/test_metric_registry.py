"""The metric registry is complete, and one registration puts a metric in every output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refinery_quaterion.evaluate import (
    METRICS,
    RankedBlock,
    compare,
    evaluation_report,
    format_table,
    metric_names,
    register_metric,
    retrieval_metrics,
    to_markdown,
)

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "evaluation.md"


def clustered(seed: int = 0, n: int = 60, d: int = 6, n_labels: int = 3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_labels, n)
    return rng.standard_normal((n, d)) + 2.0 * np.eye(d)[labels], [f"c{v}" for v in labels]


@pytest.fixture
def registry_snapshot():
    """Restore the registry after a test that registers metrics."""
    with METRICS.restoring():
        yield


def test_every_registered_metric_is_complete_and_computed(tmp_path: Path) -> None:
    assert list(METRICS) == ["P@k", "MRR", "mAP@k", "mAP", "R-precision"]
    x, labels = clustered()
    result = retrieval_metrics(x, labels, (1, 5), map_ks=(5,))
    frame = compare({"m": x}, labels, (1, 5), map_ks=(5,))
    report = evaluation_report(tmp_path / "r", {"m": x}, labels, ks=(1, 5), map_ks=(5,), extra_plots=False)
    definitions = json.loads((tmp_path / "r" / "metrics.json").read_text())["metric_definitions"]
    from refinery_quaterion.cli._reference import family_markdown

    assert "<!-- registry: metrics -->" in GUIDE.read_text(encoding="utf-8")  # the guide shows the generated table
    guide = family_markdown("metrics")
    for name, metric in METRICS.items():
        assert metric.name == name and callable(metric.compute), name
        assert metric.description.strip() and "\n" not in metric.description, name
        assert (metric.k_values is None) != name.endswith("@k"), name
        columns = [metric.column(k) for k in metric.cutoffs((1, 5), (5,))]
        assert columns, name
        for column in columns:
            assert column in result.values and column in frame.columns, column
            assert column in report.metrics.columns and f"| {column} " in to_markdown(frame), column
        assert definitions[name] == metric.description
        assert f"`{name}`" in guide, f"the metrics table of docs/guides/evaluation.md does not describe {name}"
    assert list(result.values) == metric_names((1, 5), (5,))


def test_one_registration_adds_a_metric_everywhere(tmp_path: Path, registry_snapshot: None) -> None:
    def recall(block: RankedBlock, k: int | None) -> np.ndarray:
        return block.hits[:, k - 1] / np.maximum(block.n_relevant, 1)

    def hit_rate(block: RankedBlock, k: int | None) -> np.ndarray:
        return block.relevant.any(axis=1).astype(float)

    register_metric("Recall@k", recall, k_values="ks", description="share of the same-label items in the top k")
    register_metric("Hit", hit_rate, description="whether any neighbour has the query's label")
    x, labels = clustered(1)
    result = retrieval_metrics(x, labels, (1, 5), map_ks=(5,), per_query=True)
    assert list(result.values)[-3:] == ["Recall@1", "Recall@5", "Hit"]
    r = np.array([labels.count(label) - 1 for label in labels])
    np.testing.assert_allclose(result.per_query["Recall@1"], result.per_query["P@1"] / r)
    assert result.values["Hit"] == 1.0
    assert "Hit" not in retrieval_metrics(x, labels, (1,), full=False).values  # a full-ranking metric
    frame = compare({"a": x, "b": x[::-1]}, labels, (1, 5))
    assert {"Recall@1", "Recall@5", "Hit"} <= set(frame.columns)
    assert "Recall@5" in format_table(frame) and "| Recall@5 |" in to_markdown(frame)
    report = evaluation_report(tmp_path / "r", {"a": x}, labels, ks=(1, 5), extra_plots=False)
    assert "Recall@5" in (tmp_path / "r" / "metrics.csv").read_text()
    md = (tmp_path / "r" / "metrics.md").read_text()
    assert "| Recall@5 |" in md and "`Hit`: whether any neighbour" in md
    assert report.metrics.loc["a", "Recall@5"] == pytest.approx(result.values["Recall@5"])


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("P@k", lambda b, k: b.hits[:, 0]), {"k_values": "ks", "description": "x"}, ValueError, "already registered"),
        (("Recall@k", lambda b, k: 0), {"description": "x"}, ValueError, "needs k_values='ks' or 'map_ks'"),
        (("Hit", lambda b, k: 0), {"k_values": "ks", "description": "x"}, ValueError, "full-ranking metric"),
        (("A@5", lambda b, k: 0), {"description": "x"}, ValueError, "may hold '@' only in a final '@k'"),
        (("", lambda b, k: 0), {"description": "x"}, ValueError, "non-empty string"),
        (("Hit", "not callable"), {"description": "x"}, TypeError, "must be callable"),
        (("Hit", lambda b, k: 0), {"description": " "}, ValueError, "needs a one-line description"),
    ],
)
def test_bad_registrations_are_refused(args, kwargs, error, match, registry_snapshot: None) -> None:
    with pytest.raises(error, match=match):
        register_metric(*args, **kwargs)
    assert list(METRICS) == ["P@k", "MRR", "mAP@k", "mAP", "R-precision"]


def test_a_metric_of_the_wrong_shape_is_named(registry_snapshot: None) -> None:
    register_metric("Broken", lambda block, k: np.zeros(3), description="returns the wrong shape")
    x, labels = clustered(2)
    with pytest.raises(ValueError, match=r"metric 'Broken' returned shape \(3,\) for a block of 7 queries"):
        retrieval_metrics(x, labels, (1,), block_size=7)
