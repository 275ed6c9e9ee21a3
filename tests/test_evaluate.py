"""Retrieval metrics against a brute-force reference, reports and input checks."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from refinery_quaterion import evaluate
from refinery_quaterion.evaluate import (
    LinearProbeReport,
    ProbeSet,
    compare,
    evaluation_report,
    format_table,
    linear_probe_report,
    mean_average_precision,
    mean_reciprocal_rank,
    metric_names,
    precision_at_k,
    print_table,
    r_precision,
    retrieval_metrics,
    save_table,
    to_markdown,
)
from refinery_quaterion.evaluate import metrics as engine

# --------------------------------------------------------------------------------------------
# Brute-force reference: full n x n similarity matrix, Python loops, same tie rule.
# --------------------------------------------------------------------------------------------


def brute_force(x, labels, ks, map_ks):
    """Per-query metrics: rank by (-similarity, index), the query itself excluded."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    norms[norms == 0] = 1.0
    emb = (x / norms[:, None]).astype(np.float32)
    sims = emb @ emb.T
    n = len(x)
    out = {name: [] for name in metric_names(ks, map_ks)}
    for i in range(n):
        order = sorted((j for j in range(n) if j != i), key=lambda j: (-float(sims[i, j]), j))
        rel = [labels[j] == labels[i] for j in order]
        r = sum(rel)
        if r == 0:
            for values in out.values():
                values.append(math.nan)
            continue
        for k in ks:
            out[f"P@{k}"].append(sum(rel[:k]) / k)
        out["MRR"].append(1.0 / (rel.index(True) + 1))
        hits, ap, ap_k = 0, 0.0, dict.fromkeys(map_ks, 0.0)
        for p, is_rel in enumerate(rel, start=1):
            if is_rel:
                hits += 1
                ap += hits / p
                for k in map_ks:
                    if p <= k:
                        ap_k[k] += hits / p
        out["mAP"].append(ap / r)
        for k in map_ks:
            out[f"mAP@{k}"].append(ap_k[k] / min(k, r))
        out["R-precision"].append(sum(rel[:r]) / r)
    return {name: np.array(values) for name, values in out.items()}


def assert_matches(result, reference):
    assert set(result.values) == set(reference)
    for name, per in reference.items():
        assert result.values[name] == pytest.approx(float(np.nanmean(per)), abs=1e-6), name
        if result.per_query is not None:
            np.testing.assert_allclose(result.per_query[name], per, atol=1e-6, equal_nan=True, err_msg=name)


def random_data(seed, n=70, d=6, n_labels=4, duplicates=0, zeros=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    labels = rng.integers(0, n_labels, n)
    if duplicates:  # exact duplicate vectors with mixed labels: exact ties
        src = rng.choice(n, duplicates, replace=False)
        dst = rng.choice(np.setdiff1d(np.arange(n), src), duplicates, replace=False)
        x[dst] = x[src]
    if zeros:
        x[rng.choice(n, zeros, replace=False)] = 0.0
    return x, labels


KS = (1, 3, 10, 25)  # classes hold ~17 items: k=25 is larger than a class
MAP_KS = (5, 25)


@pytest.mark.parametrize(
    ("seed", "duplicates", "zeros"),
    [(0, 0, 0), (1, 0, 0), (2, 20, 0), (3, 12, 3)],
)
def test_metrics_match_brute_force(seed, duplicates, zeros):
    x, labels = random_data(seed, duplicates=duplicates, zeros=zeros)
    reference = brute_force(x, labels, KS, MAP_KS)
    for block_size in (3, 1000):
        result = retrieval_metrics(x, labels, KS, map_ks=MAP_KS, block_size=block_size, per_query=True)
        assert_matches(result, reference)
        assert result.n_queries == len(x) and result.n_excluded == 0


def test_fast_path_matches_full_path_and_brute_force():
    x, labels = random_data(4, duplicates=15)
    reference = brute_force(x, labels, KS, MAP_KS)
    fast = retrieval_metrics(x, labels, KS, map_ks=MAP_KS, full=False, block_size=5, per_query=True)
    assert list(fast.values) == ["P@1", "P@3", "P@10", "P@25", "mAP@5", "mAP@25"]
    assert fast.mrr is None and fast.mean_ap is None and fast.r_precision is None
    for name, value in fast.values.items():
        assert value == pytest.approx(np.mean(reference[name]), abs=1e-6)
        np.testing.assert_allclose(fast.per_query[name], reference[name], atol=1e-6)


def test_blocked_equals_unblocked_exactly():
    x, labels = random_data(5, n=90, duplicates=25, zeros=2)
    small = retrieval_metrics(x, labels, KS, map_ks=MAP_KS, block_size=3, per_query=True)
    large = retrieval_metrics(x, labels, KS, map_ks=MAP_KS, block_size=10_000, per_query=True)
    assert small.values == large.values
    for name in small.per_query:
        np.testing.assert_array_equal(small.per_query[name], large.per_query[name])
    assert small.block_size == 3 and large.block_size == 10_000


def test_k_up_to_n_minus_1_and_larger_than_class():
    x, labels = random_data(6, n=20, n_labels=2)
    reference = brute_force(x, labels, (19,), (19,))
    result = retrieval_metrics(x, labels, 19, map_ks=19)
    assert result.precision[19] == pytest.approx(np.mean(reference["P@19"]), abs=1e-9)
    # at k = n - 1 every other item is retrieved: P@(n-1) is the share of same-label items
    expected = np.mean([(np.sum(labels == lab) - 1) / 19 for lab in labels])
    assert result.precision[19] == pytest.approx(expected)


# --------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------


def test_tiny_case_by_hand_with_tie_rule():
    # 0: (1,0) A   1: (0,1) B   2: (0,1) A (duplicate of 1)   3: (-1,0) B
    x = np.array([[1, 0], [0, 1], [0, 1], [-1, 0]], dtype=np.float32)
    labels = ["A", "B", "A", "B"]
    # Query 0: sims 1->0, 2->0 (tie: index 1 first), 3->-1: ranking 1(B) 2(A) 3(B) -> RR 1/2
    # Query 1: ranking 2(A, sim 1) 0(A, 0) 3(B, 0)                                   -> RR 1/3
    # Query 2: ranking 1(B, sim 1) 0(A, 0) 3(B, 0)                                   -> RR 1/2
    # Query 3: ranking 1(B, 0) 2(A, 0) 0(A, -1)                                      -> RR 1
    result = retrieval_metrics(x, labels, (1, 2), map_ks=(1, 2), per_query=True)
    np.testing.assert_allclose(result.per_query["MRR"], [1 / 2, 1 / 3, 1 / 2, 1])
    assert result.mrr == pytest.approx((1 / 2 + 1 / 3 + 1 / 2 + 1) / 4)
    assert result.mean_ap == pytest.approx(result.mrr)  # one relevant item per query
    assert result.r_precision == pytest.approx(1 / 4)
    assert result.precision == pytest.approx({1: 1 / 4, 2: (1 / 2 + 0 + 1 / 2 + 1 / 2) / 4})
    # AP@2 with one relevant item: 1/rank if rank <= 2
    assert result.map_at_k[2] == pytest.approx((1 / 2 + 0 + 1 / 2 + 1) / 4)
    assert mean_reciprocal_rank(x, labels) == pytest.approx(result.mrr)
    assert mean_average_precision(x, labels) == pytest.approx(result.mean_ap)
    assert r_precision(x, labels) == pytest.approx(1 / 4)


def test_tie_rule_lower_index_first():
    # query 0 has two identical neighbours: 1 (other label) and 2 (same label) -> index 1 ranks first
    x = np.array([[1, 0], [0, 1], [0, 1], [0, 1], [-1, 0]], dtype=np.float32)
    result = retrieval_metrics(x, ["A", "B", "A", "B", "A"], (1,), per_query=True)
    assert result.per_query["MRR"][0] == pytest.approx(1 / 2)
    # swapping the labels of 1 and 2 puts the same-label neighbour first
    swapped = retrieval_metrics(x, ["A", "A", "B", "B", "A"], (1,), per_query=True)
    assert swapped.per_query["MRR"][0] == pytest.approx(1.0)
    # an all-zero query: every similarity ties at 0, so the ranking is by index
    x0 = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    zero = retrieval_metrics(x0, ["A", "B", "B", "A"], (1,), per_query=True)
    assert zero.per_query["MRR"][0] == pytest.approx(1 / 3)
    assert "lower index first" in evaluate.TIE_RULE


def test_rank_keys_order_is_descending_similarity_then_index():
    rng = np.random.default_rng(3)
    sims = rng.choice(np.array([-1.0, -0.5, -0.0, 0.0, 0.25, 0.5, 1.0], dtype=np.float32), size=(6, 40))
    sims = np.concatenate([sims, rng.uniform(-1, 1, (6, 40)).astype(np.float32)], axis=1)
    n = sims.shape[1]
    rows = np.arange(6)
    keys = engine._rank_keys(sims.copy(), rows, np.arange(n, dtype=np.uint64))
    for i in rows:
        got = (np.sort(keys[i]) & np.uint64(0xFFFFFFFF)).astype(int).tolist()
        # -0.0 and 0.0 compare equal in Python, so they tie and go by index; the query goes last
        expected = sorted((j for j in range(n) if j != i), key=lambda j: (-float(sims[i, j]), j)) + [i]
        assert got == expected


def test_average_precision_by_hand():
    angles = np.deg2rad([0, 10, 20, 30, 40])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = ["A", "A", "B", "A", "B"]
    # query 0 ranks 1(A) 2(B) 3(A) 4(B): relevant at ranks 1 and 3
    result = retrieval_metrics(x, labels, (1, 2, 3), map_ks=(2, 3), per_query=True)
    q = {name: values[0] for name, values in result.per_query.items()}
    assert q["mAP"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert q["mAP@2"] == pytest.approx(1 / 2)  # (1/1) / min(2, 2)
    assert q["mAP@3"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert q["MRR"] == pytest.approx(1.0)
    assert q["R-precision"] == pytest.approx(1 / 2)
    assert q["P@3"] == pytest.approx(2 / 3)


def test_singleton_labels_are_excluded():
    x, labels = random_data(7, n=40)
    labels = labels.astype(object)
    labels[5] = "only-one"
    reference = brute_force(x, list(labels), (1, 5), (5,))
    result = retrieval_metrics(x, labels, (1, 5), map_ks=5, per_query=True)
    assert result.n_excluded == 1 and result.n_queries == 39
    assert all(np.isnan(values[5]) for values in result.per_query.values())
    assert_matches(result, reference)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def test_accepts_torch_and_any_hashable_labels():
    x, labels = random_data(8, n=30)
    base = retrieval_metrics(x, labels, (1, 5))
    as_torch = retrieval_metrics(torch.from_numpy(x).to(torch.float64).requires_grad_(), labels, (1, 5))
    as_strings = retrieval_metrics(x, [f"label-{v}" for v in labels], (1, 5))
    as_tensor_labels = retrieval_metrics(x.tolist(), torch.from_numpy(labels), (1, 5))
    mixed = retrieval_metrics(x, [("t", int(v)) if v % 2 else str(v) for v in labels], (1, 5))
    for other in (as_torch, as_strings, as_tensor_labels, mixed):
        assert other.values == pytest.approx(base.values, abs=1e-6)


def test_default_ks_fit_small_data():
    x, labels = random_data(9, n=30)
    result = retrieval_metrics(x, labels)
    # DEFAULT_KS is the one default list since the restructure: (1, 5, 10, 25, 50, 100, 250, 1000)
    assert result.ks == (1, 5, 10, 25) and result.map_ks == (25,)
    assert list(result.values) == ["P@1", "P@5", "P@10", "P@25", "MRR", "mAP@25", "mAP", "R-precision"]
    assert precision_at_k(x, labels, 5) == pytest.approx({5: result.precision[5]})
    means, per = precision_at_k(x, labels, (1, 5), return_per_query=True)
    assert set(per) == {1, 5} and per[5].shape == (30,)
    assert float(np.mean(per[5])) == pytest.approx(means[5])
    assert mean_average_precision(x, labels, 25) == pytest.approx(result.map_at_k[25])


@pytest.mark.parametrize(
    ("embeddings", "labels", "kwargs", "error", "match"),
    [
        (np.ones(4), [0, 0, 1, 1], {}, ValueError, r"embeddings must be 2-D .* got 1-D"),
        (np.ones((0, 3)), [], {}, ValueError, r"embeddings is empty"),
        (np.ones((4, 0)), [0, 0, 1, 1], {}, ValueError, r"0 dimensions"),
        (np.ones((1, 3)), [0], {}, ValueError, r"at least 2 items"),
        (np.ones((4, 2)), [0, 0, 1], {}, ValueError, r"labels has 3 entries but the embeddings have 4 rows"),
        (np.ones((4, 2)), [0, None, 1, 1], {}, ValueError, r"labels\[1\] is missing"),
        (np.ones((4, 2)), [0, float("nan"), 1, 1], {}, ValueError, r"labels\[1\] is missing"),
        (np.ones((4, 2)), [0, [1], 1, 1], {}, TypeError, r"labels\[1\] = \[1\] is not hashable"),
        (np.ones((4, 2)), "aabb", {}, TypeError, r"labels must be a sequence"),
        (np.ones((4, 2)), [0, 1, 2, 3], {}, ValueError, r"every label occurs only once"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"ks": 0}, ValueError, r"ks must hold k >= 1; got k=0"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"ks": (1, 4)}, ValueError, r"k=4 in ks exceeds the 3 neighbours"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"ks": ()}, ValueError, r"ks is empty"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"ks": (1.5,)}, TypeError, r"ks must hold integers"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"map_ks": 9}, ValueError, r"k=9 in map_ks exceeds"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"block_size": 0}, ValueError, r"block_size must be >= 1"),
        (
            np.array([[1, np.nan], [1, 1]]),
            [0, 0],
            {},
            ValueError,
            r"NaN or infinite values \(first in row 0\)",
        ),
        (np.array([["a", "b"], ["c", "d"]]), [0, 0], {}, TypeError, r"must hold real numbers"),
    ],
)
def test_bad_inputs(embeddings, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        retrieval_metrics(embeddings, labels, **kwargs)


def test_precision_at_k_bad_k():
    x, labels = random_data(10, n=10)
    with pytest.raises(ValueError, match=r"k=10 in ks exceeds the 9 neighbours"):
        precision_at_k(x, labels, 10)
    with pytest.raises(ValueError, match=r"k >= 1; got k=-1"):
        mean_average_precision(x, labels, -1)


# --------------------------------------------------------------------------------------------
# compare, tables, linear probe, report folder
# --------------------------------------------------------------------------------------------


def clustered(seed, n=120, d=8, n_labels=3, spread=3.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_labels, n)
    raw = rng.standard_normal((n, d))
    tuned = raw + spread * np.eye(d)[labels]
    return raw, tuned, np.array([f"class {v}" for v in labels])


def test_compare_table_and_formats(tmp_path):
    raw, tuned, labels = clustered(11)
    frame = compare({"raw": raw, "fine-tuned": tuned}, labels, (1, 10), map_ks=10)
    assert list(frame.index) == ["raw", "fine-tuned"] and frame.index.name == "model"
    assert list(frame.columns) == ["P@1", "P@10", "MRR", "mAP@10", "mAP", "R-precision"]
    assert frame.loc["fine-tuned", "P@10"] > frame.loc["raw", "P@10"]
    assert frame.attrs["n_items"] == 120 and frame.attrs["ks"] == [1, 10]
    assert frame.loc["raw", "MRR"] == pytest.approx(mean_reciprocal_rank(raw, labels))

    md = to_markdown(frame).splitlines()
    assert md[0] == "| model | P@1 | P@10 | MRR | mAP@10 | mAP | R-precision |"
    assert md[1] == "|:---|---:|---:|---:|---:|---:|---:|"
    assert md[2].startswith("| raw | ") and len(md) == 4
    text = format_table(frame, digits=3)
    assert "fine-tuned" in text and f"{frame.loc['raw', 'mAP']:.3f}" in text
    buffer = io.StringIO()
    print_table(frame, file=buffer)
    assert buffer.getvalue().startswith("model")

    csv = save_table(frame, tmp_path / "out" / "m.csv")
    back = pd.read_csv(csv, index_col="model")
    pd.testing.assert_frame_equal(back, frame, check_exact=False, atol=1e-12)
    data = json.loads(save_table(frame, tmp_path / "m.json").read_text())
    assert data["raw"]["P@1"] == pytest.approx(frame.loc["raw", "P@1"])
    assert save_table(frame, tmp_path / "m.md").read_text().startswith("| model |")
    with pytest.raises(ValueError, match=r"use a \.csv, \.json or \.md suffix"):
        save_table(frame, tmp_path / "m.txt")
    nan_frame = pd.DataFrame({"a": [np.nan, 1.5], "b|c": ["x|y", "z"]}, index=["r1", "r2"])
    assert "| n/a | x\\|y |" in to_markdown(nan_frame)
    assert json.loads(save_table(nan_frame, tmp_path / "nan.json").read_text())["r1"]["a"] is None


def test_compare_errors():
    raw, tuned, labels = clustered(12, n=30)
    with pytest.raises(ValueError, match="embeddings_by_name is empty"):
        compare({}, labels)
    with pytest.raises(ValueError, match=r"embeddings_by_name\['tuned'\] has 29 rows but labels has 30"):
        compare({"raw": raw, "tuned": tuned[:29]}, labels)
    with pytest.raises(ValueError, match=r"embeddings_by_name\['raw'\] must be 2-D"):
        compare({"raw": raw[0]}, labels)
    with pytest.raises(TypeError, match="must be a mapping"):
        compare([raw], labels)


def test_linear_probe_report():
    raw, tuned, labels = clustered(13, n=200, spread=5.0)
    report = linear_probe_report(tuned[:150], labels[:150], tuned[150:], labels[150:])
    assert isinstance(report, LinearProbeReport)
    assert report.accuracy == pytest.approx(1.0) and report.macro_f1 == pytest.approx(1.0)
    assert list(report.per_class.columns) == ["precision", "recall", "f1-score", "support"]
    assert set(report.per_class.index) == {"class 0", "class 1", "class 2"}
    assert int(report.per_class["support"].sum()) == 50 and report.n_train == 150
    assert "accuracy 1.0000" in str(report) and "class 1" in str(report)
    again = linear_probe_report(tuned[:150], labels[:150], tuned[150:], labels[150:])
    assert again.accuracy == report.accuracy
    weak = linear_probe_report(raw[:150], labels[:150], raw[150:], labels[150:])
    assert weak.accuracy < report.accuracy
    json.dumps(report.to_dict())
    with pytest.raises(ValueError, match="single class"):
        linear_probe_report(tuned[:10], ["a"] * 10, tuned[10:20], ["a"] * 10)
    with pytest.raises(ValueError, match="train_emb has 8 dimensions but test_emb has 7"):
        linear_probe_report(tuned[:10], labels[:10], tuned[10:20, :7], labels[10:20])
    with pytest.raises(ValueError, match="test_labels has 9 entries"):
        linear_probe_report(tuned[:10], labels[:10], tuned[10:20], labels[10:19])


def test_evaluation_report_folder(tmp_path):
    from refinery_quaterion.evaluate.label_plots import plot_confusion_matrix

    raw, tuned, labels = clustered(14, n=150)
    out = tmp_path / "report"
    probe = {"fine-tuned": ProbeSet(tuned[:100], labels[:100], tuned[100:], labels[100:])}
    extra = {"confusion": lambda p: plot_confusion_matrix(labels[::-1], labels, p)}
    report = evaluation_report(
        out, {"raw": raw, "fine-tuned": tuned}, labels, ks=(1, 5, 10), probe=probe, extra_plots=extra
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "confusion.png",
        "metrics.csv",
        "metrics.json",
        "metrics.md",
        "precision_distribution.png",
        "probe_fine-tuned.csv",
        "topk_curve.png",
    ]
    assert all(path.exists() and path.parent == out for path in report.paths.values())
    data = json.loads((out / "metrics.json").read_text())
    assert data["n_items"] == 150 and data["ks"] == [1, 5, 10] and "lower index first" in data["tie_rule"]
    assert data["models"]["fine-tuned"]["P@10"] == pytest.approx(report.metrics.loc["fine-tuned", "P@10"])
    assert data["linear_probe"]["fine-tuned"]["accuracy"] == report.probe["fine-tuned"].accuracy
    assert "probe accuracy" in report.metrics.columns and np.isnan(
        report.metrics.loc["raw", "probe accuracy"]
    )
    md = (out / "metrics.md").read_text()
    assert "| model | P@1 |" in md and "](topk_curve.png)" in md and "## Linear probe" in md
    assert report.details["raw"].per_query["P@10"].shape == (150,)

    with pytest.raises(FileExistsError, match="overwrite=True"):
        evaluation_report(out, {"raw": raw}, labels, ks=(1, 5))
    again = evaluation_report(out, {"raw": raw}, labels, ks=(1, 5), extra_plots=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.csv",
        "metrics.json",
        "metrics.md",
        "topk_curve.png",
    ]
    assert list(again.metrics.index) == ["raw"]
    with pytest.raises(ValueError, match="probe name 'other' is not a model"):
        evaluation_report(tmp_path / "x", {"raw": raw}, labels, probe={"other": probe["fine-tuned"]})
    with pytest.raises(TypeError, match=r"probe\['raw'\] must be a ProbeSet, got tuple"):
        evaluation_report(tmp_path / "x", {"raw": raw}, labels, probe={"raw": (raw, labels, raw, labels)})
    with pytest.raises(ValueError, match="distribution_k=7 is not one of ks"):
        evaluation_report(tmp_path / "y", {"raw": raw}, labels, ks=(1, 5), distribution_k=7)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
