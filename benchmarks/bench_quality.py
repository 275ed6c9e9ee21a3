"""Retrieval quality: the AG News case and two real refinery projects (banking intents, clickbait).

Sections (``--case``, repeatable; default: all three):

* ``banking``, ``clickbait`` -- a refinery project snapshot from ``examples/``. Training uses the
  weak-supervision labels of the records without a manual label; the manually labeled records
  are the queries (leave-one-out retrieval, `refinery_quaterion.lab.cases.run_case`). Rows: raw
  MiniLM, the v0.1 default (fixed threshold 0.7), the automatic threshold, confidence-weighted
  training, label cleaning and the library's defaults (since round 2: the automatic threshold,
  confidence weighting and at least 600 training steps, the recipe that won the choice); further
  candidate recipes are run for the choice only. The manual labels are split in two halves:
  recipes are compared on the *validation* half (``val P@10``) only; ``test P@10`` is the other
  half, and P@1 / P@10 / MRR use all manual labels. Fixed seeds; all rows from the same run.
* ``ag_news`` -- all 9,146 test queries of the AG News case, text "{Title}. {Description}". Every
  recipe trains on the train split and is validated on the val split.

The frozen encoder's vectors come from the embedding cache, so after the first run each recipe
takes seconds. Writes ``results/quality_<case>.json/.md`` and ``quality_<case>_short.md`` (the README's
short table; for AG News ``quality.json/.md`` and ``quality_ag_news.md``) and ``quality_choice.md`` (mean validation
P@10 of every candidate over the two refinery cases); `benchmarks/update_docs.py` copies the
tables into README.md and the docs.

Usage: python benchmarks/bench_quality.py [--case banking|clickbait|ag_news ...] [--quick] [--finetune] [--render]
  --quick: AG News only raw, the notebook recipe and the default
  --finetune: refinery cases also with full fine-tuning of the encoder (3 epochs: minutes on a CPU)
  --render: only re-write the Markdown files from the JSON results (no training)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import RESULTS, ROOT, TEXT, ag_news, machine, refinery_cases, write_results

from refinery_quaterion import FitConfig
from refinery_quaterion._io import atomic_write_text
from refinery_quaterion.lab.cases import markdown_table, run_case
from refinery_quaterion.lab.recipes import CASE_RECIPES, Recipe

SECTIONS = ("banking", "clickbait", "ag_news")

# --------------------------------------------------------------------------------------
# Refinery cases
# --------------------------------------------------------------------------------------

# The rows of each case's table (the rows; "new default" = Recipe(), the library's defaults).
CASE_ROWS: dict[str, Recipe] = {
    "fixed 0.7 (v0.1 default)": CASE_RECIPES["fixed 0.7"],
    "auto threshold": CASE_RECIPES["auto threshold"],
    "confidence-weighted": CASE_RECIPES["confidence-weighted"],
    "cleaned": CASE_RECIPES["cleaned"],
    "new default": Recipe(),
}
# Further combinations, run for the choice only (quality_choice.md and the JSON results). The winner on the
# validation halves, "auto, weighted, min 600 steps", is what the library's defaults now are (spelled out here,
# so the choice stays reproducible when a default changes).
CANDIDATES: dict[str, Recipe] = {
    "auto, weighted, min 600 steps": Recipe(min_confidence="auto", sample_weighting="confidence", min_steps=600),
    "auto, weighted, cleaned": Recipe(min_confidence="auto", sample_weighting="confidence", clean="drop", min_steps=0),
    "fixed 0.7, min 600 steps": Recipe(min_confidence=0.7, sample_weighting="none", min_steps=600),
    "auto, min 600 steps": Recipe(min_confidence="auto", sample_weighting="none", min_steps=600),
    "auto, weighted, min 300 steps": Recipe(min_confidence="auto", sample_weighting="confidence", min_steps=300),
    "auto, weighted, min 1000 steps": Recipe(min_confidence="auto", sample_weighting="confidence", min_steps=1000),
    "auto, weighted, cleaned, min 600 steps": Recipe(min_confidence="auto", sample_weighting="confidence",
                                                     clean="drop", min_steps=600),
}
# Full fine-tuning of the encoder (--finetune): minutes per epoch on a CPU, so not run by default.
FINETUNE: dict[str, Recipe] = {
    "full fine-tuning, 3 epochs": Recipe(min_confidence="auto", sample_weighting="confidence", min_steps=0,
                                         model={"trainable_encoder": True}, fit={"epochs": 3, "batch_size": 32}),
}
CASE_COLUMNS = ["P@1", "P@10", "MRR", "val P@10", "test P@10", "threshold", "weak labels", "epochs", "train s"]
# Not candidates for the default: the current defaults (what is being chosen) and the slow full fine-tuning.
CHOICE_EXCLUDED = ("new default", *FINETUNE)


def run_refinery_case(name: str, finetune: bool = False) -> dict[str, Any]:
    """Run one refinery case with every row and candidate; write its results; return the payload."""
    case = refinery_cases()[name]
    started = time.perf_counter()
    rows = {**CASE_ROWS, **(FINETUNE if finetune else {})}
    result = run_case(case, {**rows, **CANDIDATES}, progress=False)
    print(f"\n{result.threshold_text()}\n\n{result.summary(CASE_COLUMNS)}", flush=True)
    test = result.test
    payload = {
        "case": name, "export": str(Path(case.export).relative_to(ROOT)), "task": case.task,
        "text": case.template, "seed": case.seed, "machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": round(time.perf_counter() - started, 1), "queries": len(test),
        "labels": int(test["label"].nunique()),
        "halves": [len(h) for h in result.halves] if result.halves else None,
        "threshold_choice": result.threshold_choice,
        "rows": ["raw", *rows], "candidates": list(CANDIDATES),
        "recipes": {n: r.describe() for n, r in {**rows, **CANDIDATES}.items()},
        "metrics": result.metrics.reset_index().to_dict(orient="records"),
    }
    write_case(payload)
    return payload


def _frame(payload: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(payload["metrics"]).set_index("model")


def _cells(table: pd.DataFrame) -> pd.DataFrame:
    """Counts as integers, seconds with one decimal, a dash where nothing was trained."""
    out = table.astype(object)
    for column, fmt in (("weak labels", "{:.0f}"), ("epochs", "{:.0f}"), ("threshold", "{:g}"), ("train s", "{:.1f}")):
        if column in out.columns:
            out[column] = ["–" if pd.isna(v) or (column == "train s" and v == 0) else fmt.format(v)
                           for v in table[column]]
    return out


SHORT_COLUMNS = ["P@1", "P@10", "MRR", "train s"]


def render_short(payload: dict[str, Any]) -> str:
    """The README's table of one refinery case: its rows at P@1, P@10, MRR and training seconds."""
    return markdown_table(_cells(_frame(payload).loc[payload["rows"], SHORT_COLUMNS]), digits=3)


def write_case(payload: dict[str, Any]) -> None:
    """``quality_<case>.json/.md`` and ``quality_<case>_short.md``."""
    write_results(f"quality_{payload['case']}", payload, render_case(payload))
    atomic_write_text(RESULTS / f"quality_{payload['case']}_short.md", render_short(payload) + "\n")


def render_case(payload: dict[str, Any]) -> str:
    """The Markdown of one refinery case: what was measured, then the table of its rows."""
    table = _frame(payload).loc[payload["rows"], CASE_COLUMNS]
    val, test = payload["halves"] or ("–", "–")
    recipes = "; ".join(f"**{n}**: {payload['recipes'][n]}" for n in payload["rows"] if n != "raw")
    return (
        f"{payload['case']}: {payload['queries']} manually labeled records ({payload['labels']} labels) as queries "
        f"(`{payload['export']}`, task `{payload['task']}`, text `{payload['text']}`); training on the "
        "weak-supervision labels of the other records; all-MiniLM-L6-v2 (frozen unless the row says otherwise), "
        f"seed {payload['seed']}; "
        f"{payload['machine']['cpu_count']} CPU cores, {payload['time']}. `val P@10` / `test P@10`: the two halves "
        f"of the manual labels ({val} / {test} queries); recipes are compared on `val` only. Recipes: {recipes}.\n\n"
        + markdown_table(_cells(table), digits=3)
    )


def render_choice(payloads: list[dict[str, Any]]) -> str:
    """Mean validation P@10 of every candidate over the refinery cases, best first."""
    frames = {p["case"]: _frame(p) for p in payloads}
    names = [n for n in payloads[0]["rows"] + payloads[0]["candidates"] if n != "raw" and n not in CHOICE_EXCLUDED
             and all(n in f.index for f in frames.values())]
    table = pd.DataFrame({f"val P@10 {case}": frame.loc[names, "val P@10"] for case, frame in frames.items()})
    table["mean val P@10"] = table.mean(axis=1)
    for case, frame in frames.items():
        table[f"test P@10 {case}"] = frame.loc[names, "test P@10"]
    table = table.sort_values("mean val P@10", ascending=False, kind="stable")
    table.index.name = "recipe"
    best = table.index[0]
    recipes = payloads[0]["recipes"]
    return (f"Every candidate on the validation halves of the manual labels ({', '.join(frames)}), best mean "
            f"validation P@10 first: **{best}** ({recipes[best]}). The test columns (the other halves) are for "
            "reference only, not for choosing.\n\n" + markdown_table(table, digits=3))


# --------------------------------------------------------------------------------------
# AG News
# --------------------------------------------------------------------------------------

AG_NEWS_RECIPES: dict[str, dict] = {
    "notebook (skip_connection + triplet hard)": {"loss": "triplet"},
    "default (skip_connection + arcface)": {},
    "triplet, mining=all": {"loss": "triplet", "loss_options": {"mining": "all"}},
    "softmax": {"loss": "softmax"},
    "arcface, 2 skip layers": {"head_options": {"n_layers": 2}},
    "arcface, widening head": {"head": "widening"},
}
QUICK = ("notebook (skip_connection + triplet hard)", "default (skip_connection + arcface)")
README_ROWS = ("raw MiniLM", *QUICK)


def run_ag_news(quick: bool) -> None:
    """Every AG News recipe: train on train, validate on val, evaluate on all test queries."""
    from refinery_quaterion import ModelConfig, compare, load, train_model
    from refinery_quaterion.evaluate import DEFAULT_KS

    base = ModelConfig(pretrained="minilm", template=TEXT)
    train, val, test = ag_news("train"), ag_news("val"), ag_news("test")
    labels = test["label"].astype(str).to_numpy()
    rows, seconds, raw = [], {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in AG_NEWS_RECIPES.items():
            if quick and name not in QUICK:
                continue
            outcome = train_model(train, val, Path(tmp) / "model", model_config=base.replace(**options),
                                  fit_config=FitConfig(progress=False), overwrite=True)
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
    payload = {"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M"), "recipes": AG_NEWS_RECIPES,
               "metrics": table.reset_index().to_dict(orient="records")}
    write_results("quality", payload, render_ag_news(payload))
    atomic_write_text(RESULTS / "quality_ag_news.md", render_ag_news(payload, short=True) + "\n")


def render_ag_news(payload: dict[str, Any], *, short: bool = False) -> str:
    """The AG News table: every recipe, or (``short``) raw / notebook / default at k = 1, 10, 100, 1000."""
    table = _frame(payload)
    columns = [f"P@{k}" for k in (1, 10, 100, 1000)] + ["MRR", "train s"]
    if short:
        table = table.loc[[n for n in README_ROWS if n in table.index]]
    head = (f"AG News test set, all 9,146 queries; {payload['machine']['cpu_count']} CPU cores, {payload['time']}; "
            "`train s`: head training with the encoder's vectors cached.")
    return head + "\n\n" + markdown_table(_cells(table[columns]), digits=3)


# --------------------------------------------------------------------------------------


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def render_all() -> None:
    """Re-write every Markdown result from its JSON (no training)."""
    cases = [p for p in (_load(f"quality_{n}") for n in ("banking", "clickbait")) if p is not None]
    for payload in cases:
        atomic_write_text(RESULTS / f"quality_{payload['case']}.md", render_case(payload) + "\n")
        atomic_write_text(RESULTS / f"quality_{payload['case']}_short.md", render_short(payload) + "\n")
    ag = _load("quality")
    if ag is not None:
        atomic_write_text(RESULTS / "quality.md", render_ag_news(ag) + "\n")
        atomic_write_text(RESULTS / "quality_ag_news.md", render_ag_news(ag, short=True) + "\n")
    if len(cases) == 2:
        atomic_write_text(RESULTS / "quality_choice.md", render_choice(cases) + "\n")
    print(f"re-wrote the Markdown results in {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=SECTIONS, help="section(s) to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="AG News: only raw, the notebook recipe and the default")
    parser.add_argument("--render", action="store_true", help="only re-write the Markdown from the JSON results")
    parser.add_argument("--finetune", action="store_true",
                        help="refinery cases: also fully fine-tune the encoder (3 epochs; minutes on a CPU)")
    args = parser.parse_args()
    if args.render:
        render_all()
        return
    sections = args.case or list(SECTIONS)
    for name in ("banking", "clickbait"):
        if name in sections:
            run_refinery_case(name, finetune=args.finetune)
    cases = [p for p in (_load(f"quality_{n}") for n in ("banking", "clickbait")) if p is not None]
    if len(cases) == 2:
        choice = render_choice(cases)
        atomic_write_text(RESULTS / "quality_choice.md", choice + "\n")
        print(f"\n{choice}")
    if "ag_news" in sections:
        run_ag_news(args.quick)


if __name__ == "__main__":
    main()
