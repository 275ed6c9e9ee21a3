"""Does refinery's active learner do better on the fine-tuned embedding than on the raw one? (banking intents)

Refinery's seed active learner (`DistilbertLR` in the banking snapshot) is a scikit-learn
``LogisticRegression()`` with its defaults, fitted on the stored tensors of the manually
labeled records; its predictions become labels where the top probability exceeds
``min_confidence = 0.5``. This benchmark does the same on the 250 manual labels of the
banking-intents snapshot: it fits on a stratified part of them (2 and 5 per label, and half,
20 draws each) and scores the rest.

Embeddings (all of all-MiniLM-L6-v2, the bundled encoder):

* **raw, as refinery stores it**: the raw encoder's vectors, PCA to 64 fitted on the first 640
  records (refinery-embedder's ``PCASentenceReducer``), not normalised;
* **raw, full**: the raw 384-dim vectors (unit length);
* **fine-tuned, `to-refinery` (64)**: the model trained on the weak labels only (the manual
  labels held out, as `run_case` does), the tensors read back from the snapshot `to_refinery`
  writes (PCA-64 over all records, unit length);
* **fine-tuned, `to-refinery --dimension full`**: its full vectors.

Usage: python benchmarks/bench_refinery.py [--draws 20]
Writes benchmarks/results/refinery.json and refinery.md (copied into docs/guides/refinery.md
by benchmarks/update_docs.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, refinery_cases, write_results  # noqa: E402

from refinery_quaterion.exporters.refinery_project import to_refinery  # noqa: E402
from refinery_quaterion.lab.cases import run_case  # noqa: E402
from refinery_quaterion.lab.recipes import Recipe  # noqa: E402
from refinery_quaterion.training.model_files import load  # noqa: E402

TRAIN_SIZES = {"2 per label": 2, "5 per label": 5, "half": 0.5}
MIN_CONFIDENCE = 0.5  # the seed learner's params_inference(min_confidence=0.5)


def manual_labels(snapshot: Path) -> tuple[pd.DataFrame, pd.Series]:
    """All records, and the single manual label of each manually labeled record (by row)."""
    from refinery_quaterion.data.refinery import load_export

    export = load_export(snapshot)
    task = export.task("intent")
    labels = export.records[task.manual_column].dropna()
    labels = labels[labels.isin(task.labels)]
    return export.records, labels


def refinery_pca(vectors: np.ndarray) -> np.ndarray:
    """What refinery-embedder stores: sklearn PCA(64) fitted on the first 5 batches of 128 records."""
    from sklearn.decomposition import PCA

    return PCA(n_components=64).fit(vectors[:640]).transform(vectors).astype(np.float32)


def tensors_of(snapshot: Path, embedding: str) -> np.ndarray:
    """The tensors of one embedding in a snapshot zip, in records_data order."""
    with zipfile.ZipFile(snapshot) as archive:
        payload = json.loads(archive.read(archive.namelist()[0]))
    (item,) = [e for e in payload["embeddings_data"] if e["name"] == embedding]
    by_record = {row["record_id"]: row["data"] for row in payload["embedding_tensors_data"]
                 if row["embedding_id"] == item["id"]}
    return np.asarray([by_record[record["id"]] for record in payload["records_data"]], dtype=np.float32)


def draws(labels: pd.Series, size: float, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` stratified (train rows, test rows) splits: ``size`` per label, or that share of each label."""
    splits = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        train = []
        for _, rows in labels.groupby(labels).groups.items():
            rows = np.asarray(rows)
            take = int(size) if size >= 1 else max(1, round(len(rows) * size))
            train.extend(rng.choice(rows, size=min(take, len(rows) - 1), replace=False))
        train = np.asarray(sorted(train))
        splits.append((train, np.setdiff1d(labels.index.to_numpy(), train)))
    return splits


def score(vectors: np.ndarray, labels: pd.Series, splits: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean accuracy, macro F1, and coverage/precision at min_confidence, of LogisticRegression() over the splits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    results = []
    for train, test in splits:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression().fit(vectors[train], labels[train])
        proba = model.predict_proba(vectors[test])
        predicted = model.classes_[proba.argmax(axis=1)]
        truth = labels[test].to_numpy()
        confident = proba.max(axis=1) > MIN_CONFIDENCE
        results.append({
            "accuracy": float((predicted == truth).mean()),
            "macro F1": float(f1_score(truth, predicted, average="macro")),
            "coverage": float(confident.mean()),
            "precision": float((predicted[confident] == truth[confident]).mean()) if confident.any() else float("nan"),
        })
    frame = pd.DataFrame(results)
    return {**frame.mean().round(4).to_dict(), "accuracy sd": round(float(frame["accuracy"].std()), 4)}


def markdown(rows: list[dict]) -> str:
    lines = ["| embedding | dim | train labels | accuracy | macro F1 | labeled at p > 0.5 | precision there |",
             "|:---|---:|:---|---:|---:|---:|---:|"]
    for row in rows:
        precision = "–" if row["precision"] != row["precision"] else f"{row['precision']:.3f}"  # NaN: none labeled
        lines.append(f"| {row['embedding']} | {row['dim']} | {row['train']} | {row['accuracy']:.3f} "
                     f"± {row['accuracy sd']:.3f} | {row['macro F1']:.3f} | {row['coverage']:.3f} | {precision} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=20, help="splits per train size (default: %(default)s)")
    args = parser.parse_args()
    case = refinery_cases()["banking"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-refinery-") as tmp:
        run_case(case, {"fine-tuned": Recipe()}, out=tmp, progress=False)
        model_dir = Path(tmp) / "fine-tuned"
        train_s = round(time.perf_counter() - started, 1)
        records, labels = manual_labels(case.export)
        model = load(model_dir)
        raw = model.encode_raw(records)
        raw = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        written = {}
        for dimension in (64, "full"):
            out = Path(tmp) / f"snapshot-{dimension}.json.zip"
            result = to_refinery(model_dir, case.export, out, dimension=dimension)
            print(result)
            written[dimension] = tensors_of(out, result.embedding)
    embeddings = {
        "raw MiniLM, as refinery stores it (PCA-64)": refinery_pca(raw),
        "raw MiniLM, full": raw,
        "fine-tuned, to-refinery (PCA-64)": written[64],
        "fine-tuned, to-refinery --dimension full": written["full"],
    }
    rows = []
    for train_name, size in TRAIN_SIZES.items():
        splits = draws(labels, size, args.draws)
        for name, vectors in embeddings.items():
            rows.append({"embedding": name, "dim": int(vectors.shape[1]), "train": f"{train_name} "
                         f"({len(splits[0][0])})", **score(vectors, labels, splits)})
            print(rows[-1])
    table = markdown(rows)
    print("\n" + table)
    payload = {"case": "banking", "manual_labels": int(len(labels)), "draws": args.draws,
               "learner": "sklearn LogisticRegression() (defaults), as refinery's seed DistilbertLR",
               "min_confidence": MIN_CONFIDENCE, "train_s": train_s, "rows": rows, "machine": machine()}
    write_results("refinery", payload, table)


if __name__ == "__main__":
    main()
