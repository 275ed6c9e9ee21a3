"""Small training sets: does ``min_steps`` (the default ``epochs="auto"``) still help, or overfit?

The default trains at least 600 optimizer steps (`refinery_quaterion.model.config.DEFAULT_MIN_STEPS`),
chosen on the two refinery cases with 1,365 and 2,917 weak labels (55 and 27 epochs). A project
with a few dozen labeled records gets one batch an epoch and so 600 epochs. This benchmark
trains on random subsets of each case's weak labels (60, 150, 400 records and all of them, the
library's defaults otherwise) with ``min_steps=600`` and with ``min_steps=0`` (v0.1's 10
epochs), and scores each head on the *validation* half of the manual labels -- the same half
`refinery_quaterion.lab.cases.run_case` uses for choosing -- together with the raw encoder.

Usage: python benchmarks/bench_small_data.py   (a few minutes on 2 CPU cores with a warm cache)
Writes results/small_data.json and .md (copied into docs/benchmarks.md by update_docs.py).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import machine, refinery_cases, write_results

from refinery_quaterion import FitConfig, LabelConfig, ModelConfig, compare, load, train_model
from refinery_quaterion.data.splits import train_val_split
from refinery_quaterion.lab.cases import markdown_table
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.workflow import prepare_records

SIZES: tuple[int | None, ...] = (60, 150, 400, None)  # None: every weak label
STEPS = (0, 600)
SUBSET_SEED = 1


def run(name: str, case: Any) -> list[dict[str, Any]]:
    """Every size and step budget of one case, scored on the validation half of its manual labels."""
    prepared = prepare_records(case.export, LabelConfig(task=case.task, template=case.template, val_size=case.val_size,
                                                        split_seed=case.seed, holdout="manual"))
    assert prepared.test is not None
    val_half, _ = train_val_split(prepared.test, val_size=0.5, seed=case.seed, template=case.template)
    labels = val_half["label"].astype(str).to_numpy()
    base = ModelConfig(pretrained=case.pretrained, template=case.template, seed=case.seed)
    raw = DistilBertSimilarityModel(base, embedding_cache=True).encode_raw(val_half, progress=False)
    rows = [{"case": name, "records": "–", "min_steps": "–", "epochs": "–",
             "val P@10": float(compare({"raw": raw}, labels, ks=(10,)).loc["raw", "P@10"]), "train s": 0.0}]
    for size in SIZES:
        train = prepared.train if size is None else prepared.train.sample(n=size, random_state=SUBSET_SEED)
        for steps in STEPS:
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                outcome = train_model(train, None, Path(tmp) / "model", model_config=base, embedding_cache=True,
                                      fit_config=FitConfig(min_steps=steps, progress="off"))
                tuned = load(outcome.path, embedding_cache=True).apply_head(raw)
                score = float(compare({"tuned": tuned}, labels, ks=(10,)).loc["tuned", "P@10"])
            rows.append({"case": name, "records": len(train), "min_steps": steps, "epochs": outcome.fit.epochs,
                         "val P@10": score, "train s": round(time.perf_counter() - started, 1)})
            print(f"{name}: {len(train)} records, min_steps={steps}: {outcome.fit.epochs} epochs, "
                  f"val P@10 {score:.3f}", flush=True)
    return rows


def main() -> None:
    rows = [row for name, case in refinery_cases().items() for row in run(name, case)]
    table = pd.DataFrame(rows)
    head = ("Weak-supervision labels of each refinery case, a random subset of the given size (seed "
            f"{SUBSET_SEED}; library defaults otherwise), scored on the validation half of the manual labels; "
            "`min_steps=0` is v0.1's 10 epochs, 600 the default; `raw`: the untrained encoder (records `–`). "
            f"{machine()['cpu_count']} CPU cores, {time.strftime('%Y-%m-%d %H:%M')}.")
    cells = table.astype(str).assign(**{"val P@10": table["val P@10"].map("{:.3f}".format),
                                        "train s": table["train s"].map(lambda s: "–" if s == 0 else f"{s:.1f}")})
    markdown = head + "\n\n" + markdown_table(cells.set_index("case"), digits=3)
    print("\n" + markdown)
    write_results("small_data", {"machine": machine(), "rows": rows}, markdown)


if __name__ == "__main__":
    main()
