"""Label cleaning by nearest neighbours (issue 14): a pure function on arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from refinery_quaterion.data.cleaning import clean_labels
from refinery_quaterion.data.labels import combine_labels

# Three tight clusters of 20 records; in cluster A, records 10-12 carry the weak label "B"
# (wrong) and record 0 the manual label "B" (wrong too, but manual labels are never touched).
WRONG_WEAK = [10, 11, 12]


def _clusters() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = {"A": np.eye(8)[0], "B": np.eye(8)[1], "C": np.eye(8)[2]}
    rows, vectors = [], []
    for label, centre in centres.items():
        for i in range(20):
            given = "B" if label == "A" and (i in WRONG_WEAK or i == 0) else label
            manual = given if i < 5 else None
            rows.append({"text": f"{label} {i}", "__T__MANUAL": manual,
                         "__T__WEAK_SUPERVISION": None if manual else given,
                         "__T__WEAK_SUPERVISION__confidence": None if manual else 0.9})
            vectors.append(centre + rng.normal(scale=0.05, size=8))
    return pd.DataFrame(rows), np.array(vectors)


def test_drops_weak_labels_their_neighbours_contradict() -> None:
    frame, vectors = _clusters()
    records, report = combine_labels(frame, template="{text}")
    assert records["text"].tolist() == frame["text"].tolist()  # rows stay aligned with the vectors
    cleaned, cleaning = clean_labels(records, vectors, k=10, majority=0.7, report=report)
    dropped = sorted(set(records["text"]) - set(cleaned["text"]))
    assert dropped == ["A 10", "A 11", "A 12"]
    assert "A 0" in set(cleaned["text"])  # the wrong manual label stays
    assert cleaning.checked == 45 and cleaning.flagged == 3
    assert cleaning.dropped_by_class == {"B": 3} and cleaning.suggested == {"B": {"A": 3}}
    # The label report counts them per class.
    assert report.dropped["neighbour_disagreement"] == 3
    assert report.dropped_by_class["neighbour_disagreement"] == {"B": 3}
    assert report.kept == len(cleaned) and report.kept_by_class["B"]["weak_supervision"] == 15
    assert report.by_class().set_index("label")["dropped_neighbour_disagreement"].to_dict() == {
        "A": 0, "B": 3, "C": 0}
    assert "Label cleaning (k=10, majority 0.7): dropped 3 of 45" in str(report)


def test_downweight_multiplies_the_weight_by_the_agreeing_share() -> None:
    frame, vectors = _clusters()
    records, _ = combine_labels(frame, template="{text}")
    cleaned, cleaning = clean_labels(records, vectors, k=10, action="downweight")
    assert len(cleaned) == len(records) and cleaning.downweighted_by_class == {"B": 3}
    changed = cleaned["weight"] != records["weight"]
    assert sorted(cleaned.loc[changed, "text"]) == ["A 10", "A 11", "A 12"]
    # Each wrong record's other wrong neighbours (two weak, one manual) are its only support.
    for row in np.flatnonzero(changed):
        sims = vectors @ vectors[row] / np.linalg.norm(vectors, axis=1) / np.linalg.norm(vectors[row])
        sims[row] = -np.inf
        near = np.argsort(-sims)[:10]
        share = (records["label"].to_numpy()[near] == "B").mean()
        assert cleaned["weight"][row] == pytest.approx(0.9 * share)
        assert share < 0.5


def test_a_record_is_not_its_own_neighbour() -> None:
    records = pd.DataFrame({"label": ["A", "B", "C", "C"],
                            "label_source": ["weak_supervision", "manual", "manual", "manual"],
                            "weight": [0.8, 1.0, 1.0, 1.0]})
    vectors = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.0, 1.01]])
    cleaned, cleaning = clean_labels(records, vectors, k=1, majority=1.0)
    assert cleaning.flagged_by_class == {"A": 1} and cleaned["label"].tolist() == ["B", "C", "C"]


@pytest.mark.parametrize(("k", "majority", "flagged"), [(2, 1.0, 1), (3, 0.6, 1), (3, 0.7, 0), (3, 1.0, 0)])
def test_only_a_clear_majority_flags(k, majority, flagged) -> None:
    # The weak "A" record's neighbours: B, B, C (nearest first).
    records = pd.DataFrame({"label": ["A", "B", "B", "C", "D"],
                            "label_source": ["weak_supervision"] + ["manual"] * 4})
    vectors = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, 0.2], [1.0, 0.3], [-1.0, 0.0]])
    _, cleaning = clean_labels(records, vectors, k=k, majority=majority)
    assert cleaning.flagged == flagged  # B needs ceil(majority × k) of the k votes
