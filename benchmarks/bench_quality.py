"""Quality on the AG News test set: raw MiniLM vs the notebook's recipe vs our default (+ alternatives).

All 9,146 test queries, text "{Title}. {Description}", precision@k with the query excluded.
Every recipe trains on the train split and is validated on the val split; the frozen encoder's
vectors come from the embedding cache, so after the first run each recipe takes seconds.

Usage: python benchmarks/bench_quality.py [--quick]   (--quick: raw, notebook and default only)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import TEXT, ag_news, machine, write_results

from refinery_quaterion import ModelConfig, compare, load, to_markdown, train_model
from refinery_quaterion.evaluate import DEFAULT_KS

BASE = ModelConfig(pretrained="minilm", text=TEXT)
# Each recipe: the ModelConfig settings that differ from BASE.
RECIPES: dict[str, dict] = {
    "notebook (skip_connection + triplet hard)": {"loss": "triplet"},
    "default (skip_connection + arcface)": {},
    "triplet, mining=all": {"loss": "triplet", "loss_options": {"mining": "all"}},
    "softmax": {"loss": "softmax"},
    "arcface, 2 skip layers": {"head_options": {"n_layers": 2}},
    "arcface, widening head": {"head": "widening"},
}
QUICK = ("notebook (skip_connection + triplet hard)", "default (skip_connection + arcface)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only raw, the notebook recipe and the default")
    args = parser.parse_args()

    train, val, test = ag_news("train"), ag_news("val"), ag_news("test")
    labels = test["label"].astype(str).to_numpy()
    rows, seconds, raw = [], {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in RECIPES.items():
            if args.quick and name not in QUICK:
                continue
            outcome = train_model(train, val, Path(tmp) / "model", model_config=BASE.replace(**options),
                                  overwrite=True, progress=False)
            model = load(outcome.path, embedding_cache=True)
            raw = model.encode_raw(test) if raw is None else raw
            embeddings = {"raw MiniLM": raw} if not rows else {}
            embeddings[name] = model.apply_head(raw)
            table = compare(embeddings, labels, ks=DEFAULT_KS)
            seconds[name] = outcome.fit.train_time_s
            rows.append(table)
            print(f"{name}: P@10 {table.loc[name, 'P@10']:.3f}, P@1000 {table.loc[name, 'P@1000']:.3f}, "
                  f"training {outcome.fit.train_time_s:.1f} s ({outcome.fit.epochs} epochs)", flush=True)
    table = pd.concat(rows)
    table["train s"] = [seconds.get(name, 0.0) for name in table.index]
    print()
    print(to_markdown(table, digits=3))
    columns = [f"P@{k}" for k in (1, 10, 100, 1000)] + ["MRR", "train s"]
    markdown = ("AG News test set, all 9,146 queries (machine: "
                f"{machine()['cpu_count']} CPU cores).\n\n" + to_markdown(table[columns], digits=3))
    write_results("quality", {"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M"),
                              "recipes": {k: v for k, v in RECIPES.items()},
                              "metrics": table.reset_index().to_dict(orient="records")}, markdown)


if __name__ == "__main__":
    main()
