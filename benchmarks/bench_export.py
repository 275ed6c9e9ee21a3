"""Exported models and ONNX encoder backends vs the library, in one run.

The AG News case (all-MiniLM-L6-v2 frozen, text "{Title}. {Description}", the default recipe
trained on the train split and validated on the val split, as ``bench_quality.py`` does):

(c)+(d) Case, per encoder backend (``--backends``, default torch, onnx-int8, onnx): the whole
   case cold -- an empty embedding cache, so ~20,000 texts are encoded (the ONNX graph is built
   inside the timing) -- ``train_model`` then ``evaluate_model`` (all 9,146 test queries, linear
   probe on train + val), as ``bench_speed.py`` times it. Gives P@10 / P@1000 of each backend
   vs torch and the cold time of each; the verdict picks the fastest backend whose P@10 and
   P@1000 are within 0.005 of torch.
(a) Equality: the torch model exported as a sentence-transformers folder and as ONNX (fp32 +
   int8); min cosine of sentence-transformers and ONNX fp32 vs ``load(path).encode`` over 1,000
   test texts (a random sample, seed 0: the test file is sorted by label).
(b) Speed on 2,000 test texts (the sample, extended), interleaved rounds (each runtime once per
   round, median): sentence-transformers (torch), ONNX Runtime fp32 and int8 (the exported
   folders), all with the CPUs this process may use; int8 vs fp32: mean / min cosine and the share
   of identical top-10 neighbours.

Results go to ``results/export.json`` and ``results/export.md``; ``benchmarks/update_docs.py``
then copies the markdown into ``docs/guides/use-elsewhere.md`` (its ``bench:export`` block).
``--case`` runs only (c)+(d), ``--skip-case`` only (a)+(b)
(training the torch model with the default embedding cache); a partial run keeps the other
part's results from the last run.

(e) Batch size: the runner of each OpenVINO backend on the same texts at each of ``--batch-sizes``
   (interleaved rounds, median), which is how the encoder's OpenVINO batch cap was chosen.

Usage: python benchmarks/bench_export.py [--case | --skip-case] [--backends torch,onnx-int8,onnx]
       [--texts 2000] [--equal 1000] [--rounds 3] [--batch-sizes 8,16,32,64] [--merge] [--render]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import RESULTS, TEXT, ag_news, machine, peak_rss_mib, write_results

from refinery_quaterion import (
    EvalConfig,
    FitConfig,
    ModelConfig,
    TextTemplate,
    compare,
    evaluate_model,
    load,
    train_model,
)
from refinery_quaterion._io import atomic_write_text
from refinery_quaterion.exporters import OnnxEmbedder, export_model
from refinery_quaterion.model.backends import OPENVINO_BATCH, resolve_backend
from refinery_quaterion.model.encoder import TransformerEncoder
from refinery_quaterion.model.pretrained import quiet_transformers
from refinery_quaterion.model.runtime import usable_cpus

BASE = ModelConfig(pretrained="minilm", template=TEXT)
TOLERANCE = 0.005  # P@10 and P@1000 of a backend must be within this of torch
SPEED_GOAL = 2.0  # ONNX int8 texts/s vs sentence-transformers
CASE_GOAL_S = 150  # the whole AG News case, cold, with the default backend
OPENVINO_GOALS = {"openvino": 2.0, "openvino-int8": 5.0}  # texts/s vs sentence-transformers
ST, FP32, INT8 = "sentence-transformers (torch)", "ONNX Runtime fp32", "ONNX Runtime int8"
OV_FP32, OV_INT8 = "encoder backend openvino", "encoder backend openvino-int8"
STARTED = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.0f} s] {message}", flush=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each text's top-k neighbours (cosine, itself excluded) under ``a`` also top-k under ``b``."""

    def top(vectors: np.ndarray) -> np.ndarray:
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        sims = unit @ unit.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]

    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top(a), top(b))]))


# --------------------------------------------------------------------------------------
# (c) + (d): the AG News case per backend, cold
# --------------------------------------------------------------------------------------


def split(name: str, sample: int) -> pd.DataFrame:
    """A split of the case; with ``sample`` a random sample of that many records (a smoke test)."""
    frame = ag_news(name)
    return frame.sample(n=min(sample, len(frame)), random_state=0) if sample else frame


def cold_case(backend: str, work: Path, sample: int) -> tuple[dict[str, Any], Path]:
    """Train + evaluate with ``backend`` from an empty embedding cache: times and P@k, and the model folder."""
    train, val, test = split("train", sample), split("val", sample), split("test", sample)
    reference = pd.concat([train, val], ignore_index=True)
    cache = work / f"cache-{backend}"  # fresh: every text is encoded, the ONNX graph built
    say(f"case {backend}: encoder (+ ONNX graph), then train_model ({len(train)} + {len(val)} records, empty cache)")
    start = time.perf_counter()
    c = BASE  # the model's encoder: same settings, so the same fingerprint and graph
    TransformerEncoder.from_pretrained(c.pretrained, pooling=c.pooling, max_length=c.max_length, normalize=c.normalize,
                                       backend=backend, embedding_cache=cache).backend_runner()
    built = time.perf_counter()
    outcome = train_model(train, val, work / f"model-{backend}", model_config=BASE.replace(encoder_backend=backend),
                          fit_config=FitConfig(progress=False), embedding_cache=cache)
    trained = time.perf_counter()
    say(f"case {backend}: encoder ready in {built - start:.0f} s, trained in {trained - built:.0f} s; "
        f"evaluate_model ({len(test)} queries)")
    evaluation = evaluate_model(outcome.path, test, EvalConfig(progress=False), reference=reference,
                                report_dir=work / f"report-{backend}", embedding_cache=cache)
    end = time.perf_counter()
    used = load(outcome.path).encoder.backend
    if used != backend:
        sys.exit(f"the model was trained with encoder backend {used!r}, not {backend!r}: "
                 "DistilBertSimilarityModel.configure_encoders must pass backend=model_config.encoder_backend")
    metrics = evaluation.metrics
    row = {name: {col: float(metrics.loc[name, col]) if col in metrics else float("nan")  # k > queries: NaN
                  for col in ("P@1", "P@10", "P@100", "P@1000", "MRR")} for name in metrics.index}
    say(f"case {backend}: {end - start:.0f} s cold; fine-tuned P@10 {row['fine-tuned']['P@10']:.4f}, "
        f"P@1000 {row['fine-tuned']['P@1000']:.4f}")
    return {"build_s": built - start, "train_s": trained - built, "evaluate_s": end - trained, "total_s": end - start,
            "texts": len(train) + len(val) + len(test), "epochs": outcome.fit.epochs, "metrics": row}, outcome.path


def merged_runs(previous: dict[str, Any], runs: dict[str, Any]) -> dict[str, Any]:
    """The last run's case results of the backends not run now (torch first), then this run's."""
    kept = {b: {**r, "from_earlier_run": r.get("from_earlier_run") or previous.get("time", "an earlier run")}
            for b, r in previous.get("runs", {}).items()
            if b not in runs}
    if "torch" not in runs and "torch" not in kept:
        sys.exit("--merge needs a torch run: in this run or in results/export.json")
    merged = {b: kept.pop(b) for b in ("torch",) if b in kept}
    return {**merged, **kept, **runs}


def verdict(case: dict[str, Any]) -> dict[str, Any]:
    """Which backends keep P@10 and P@1000 within `TOLERANCE` of torch, and the fastest of them."""
    torch_p = case["torch"]["metrics"]["fine-tuned"]
    holds = {}
    for backend, run in case.items():
        p = run["metrics"]["fine-tuned"]
        keys = [k for k in ("P@10", "P@1000") if not np.isnan(torch_p[k])]  # P@1000 needs > 1000 queries
        holds[backend] = all(abs(p[k] - torch_p[k]) <= TOLERANCE for k in keys)
    fastest = min((b for b, ok in holds.items() if ok), key=lambda b: case[b]["total_s"])
    return {"quality_holds": holds, "fastest_holding": fastest,
            "cold_speedup_vs_torch": case["torch"]["total_s"] / case[fastest]["total_s"]}


# --------------------------------------------------------------------------------------
# (a) + (b): exports vs the library
# --------------------------------------------------------------------------------------


def export_part(model_path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    threads = usable_cpus()
    torch.set_num_threads(threads)
    test = ag_news("test")  # sorted by label: sample it, or the first texts are all of one class
    test = test.sample(n=min(args.sample, len(test)), random_state=1) if args.sample else test
    test = test.sample(n=min(max(args.texts, args.equal), len(test)), random_state=0)
    texts = TextTemplate(TEXT).render_many(test.to_dict(orient="records"))
    labels = test["label"].astype(str).to_numpy()

    say("export: sentence-transformers and ONNX + int8")
    st_result = export_model(model_path, work / "exports" / "st")
    onnx_result = export_model(model_path, work / "exports" / "onnx", format="onnx", quantize="int8")
    ours = load(model_path)
    with quiet_transformers():
        st = SentenceTransformer(str(st_result.path), device="cpu")
    runtimes = {
        ST: lambda t: st.encode(t, batch_size=64),
        FP32: OnnxEmbedder(onnx_result.path, threads=threads).encode,
        INT8: OnnxEmbedder(onnx_result.path, "model_int8.onnx", threads=threads).encode,
        **backend_runtimes(args.backends_speed, work, args.calibration),
    }
    say(f"(a) equality on {args.equal} texts")
    reference = ours.encode(texts[: args.equal], progress=False)
    equal = {name: float(cosines(runtimes[name](texts[: args.equal]), reference).min()) for name in (ST, FP32)}
    say(f"(a) min cosine: {equal}")

    speed_texts = texts[: args.texts]
    for encode in runtimes.values():  # warm-up
        encode(speed_texts[:64])
    seconds: dict[str, list[float]] = {name: [] for name in runtimes}
    vectors: dict[str, np.ndarray] = {}
    for round_ in range(args.rounds):
        for name, encode in runtimes.items():
            start = time.perf_counter()
            vectors[name] = np.asarray(encode(speed_texts))
            seconds[name].append(time.perf_counter() - start)
        say(f"(b) round {round_ + 1}/{args.rounds}: " + ", ".join(f"{n} {len(speed_texts) / s[-1]:.0f}/s"
                                                                  for n, s in seconds.items()))
    speed = {name: len(speed_texts) / statistics.median(s) for name, s in seconds.items()}
    batches = batch_sweep(runtimes, speed_texts, args)
    openvino = openvino_quality(vectors, ours.encoder, speed_texts)
    int8_cos = cosines(vectors[INT8], vectors[FP32])
    p10 = compare(vectors, labels[: args.texts], ks=[10])["P@10"].to_dict()
    return {
        "threads": threads,
        "equality_texts": args.equal,
        "min_cosine_vs_library": equal,
        "export_checks": {"sentence-transformers": st_result.checks, "onnx": onnx_result.checks},
        "export_s": {"sentence-transformers": st_result.seconds, "onnx + int8": onnx_result.seconds},
        "speed_texts": len(speed_texts),
        "rounds": args.rounds,
        "texts_per_s_median": speed,
        "texts_per_s_rounds": {n: [len(speed_texts) / s for s in v] for n, v in seconds.items()},
        "int8_vs_fp32": {"mean_cosine": float(int8_cos.mean()), "min_cosine": float(int8_cos.min()),
                         "top10_shared": neighbour_overlap(vectors[INT8], vectors[FP32])},
        "p_at_10_speed_texts": p10,
        "batch_sweep": batches,
        "openvino": openvino,
        "onnx_mib": {name: (onnx_result.path / name).stat().st_size / 2**20
                     for name in ("model.onnx", "model_int8.onnx")},
    }


def batch_sweep(runtimes: dict[str, Any], texts: list[str], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Texts/s of each encoder backend per batch size (interleaved rounds, median): how the default was chosen."""
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    names = [f"encoder backend {b.strip()}" for b in args.sweep_backends.split(",") if b.strip()]
    names = [name for name in names if name in runtimes]
    if not sizes or not names:
        return {}
    seconds: dict[str, dict[int, list[float]]] = {name: {b: [] for b in sizes} for name in names}
    for round_ in range(args.rounds):
        for size in sizes:
            for name in names:
                start = time.perf_counter()
                runtimes[name](texts, size, True)
                seconds[name][size].append(time.perf_counter() - start)
        say(f"(e) batch sizes, round {round_ + 1}/{args.rounds}")
    return {name: {str(b): len(texts) / statistics.median(s) for b, s in by.items()} for name, by in seconds.items()}


def run_batches(encoder: TransformerEncoder, texts: list[str], batch_size: int) -> list[np.ndarray]:
    """The encoder's backend runner on ``texts`` in length-sorted batches of exactly ``batch_size`` (no cap)."""
    from refinery_quaterion.model.runtime import length_sorted_batches

    ids = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)["input_ids"]
    run = encoder.backend_runner()
    batches = [(i, m) for _, i, m in length_sorted_batches(ids, batch_size, encoder.tokenizer.pad_token_id or 0)]
    run_all = getattr(run, "run_all", None)
    return list(run_all(batches)) if run_all else [run(i, m) for i, m in batches]


def backend_runtimes(names: str, work: Path, calibration: int) -> dict[str, Any]:
    """``encode`` of the frozen all-MiniLM-L6-v2 encoder per backend (no head), models built and calibrated first.

    The int8 backends calibrate on ``calibration`` AG News *train* texts (the user's own texts,
    not the timed ones). The embedding cache is dropped once the runner is built, so every
    round encodes.
    """
    from refinery_quaterion.model.backends import calibrate

    train = ag_news("train").sample(n=calibration, random_state=2)
    sample = TextTemplate(TEXT).render_many(train.to_dict(orient="records"))
    c, runtimes = BASE, {}
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        encoder = TransformerEncoder.from_pretrained(c.pretrained, pooling=c.pooling, max_length=c.max_length,
                                                     normalize=c.normalize, backend=name,
                                                     embedding_cache=work / "backend-cache")
        start = time.perf_counter()
        calibrate(encoder, sample)
        say(f"backend {name}: built in {time.perf_counter() - start:.0f} s")
        encoder.embedding_cache = None
        runtimes[f"encoder backend {name}"] = (lambda e: lambda t, b=None, raw=False: (
            run_batches(e, t, b) if raw else e.encode(t, batch_size=b, progress=False)))(encoder)
    return runtimes


def openvino_quality(vectors: dict[str, np.ndarray], encoder: Any, texts: list[str]) -> dict[str, Any]:
    """OpenVINO fp32 and int8 vs the torch encoder (no head) on the timed texts: cosines and top-10 overlap."""
    if OV_FP32 not in vectors:
        return {}
    with encoder.using_backend("torch"):
        reference = encoder.encode(texts, progress=False)
    out: dict[str, Any] = {"min_cosine_fp32_vs_torch": float(cosines(vectors[OV_FP32], reference).min())}
    if OV_INT8 in vectors:
        c = cosines(vectors[OV_INT8], vectors[OV_FP32])
        out["int8_vs_fp32"] = {"mean_cosine": float(c.mean()), "min_cosine": float(c.min()),
                               "top10_shared": neighbour_overlap(vectors[OV_INT8], vectors[OV_FP32])}
    return out


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header)))
             + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def openvino_rows(ov: dict[str, Any]) -> list[tuple[str, str]]:
    """The OpenVINO rows of the export table: exactness and int8 faithfulness."""
    rows = []
    if "min_cosine_fp32_vs_torch" in ov:
        rows.append(("OpenVINO fp32 vs torch encoder: min cosine", f"{ov['min_cosine_fp32_vs_torch']:.6f}"))
    if "int8_vs_fp32" in ov:
        i8 = ov["int8_vs_fp32"]
        rows += [("OpenVINO int8 vs fp32: mean / min cosine", f"{i8['mean_cosine']:.4f} / {i8['min_cosine']:.4f}"),
                 ("OpenVINO int8 vs fp32: top-10 neighbours shared", f"{i8['top10_shared']:.3f}")]
    return rows


def openvino_goals(export: dict[str, Any]) -> list[str]:
    """One line per OpenVINO speed goal: met or not, with the figure."""
    speed, lines = export["texts_per_s_median"], []
    for backend, goal in OPENVINO_GOALS.items():
        name = f"encoder backend {backend}"
        if name in speed:
            ratio = speed[name] / speed[ST]
            lines.append(f"Goal `{backend}` ≥ {goal:.0f}× sentence-transformers' texts/s: "
                         f"**{'met' if ratio >= goal else 'not met'}** ({ratio:.2f}×).")
    return ["\n".join(lines)] if lines else []


def sweep_table(sweep: dict[str, dict[str, float]]) -> list[str]:
    """Texts/s per batch size and backend (how the OpenVINO batch cap was chosen), or nothing."""
    if not sweep:
        return []
    sizes = sorted({int(b) for by in sweep.values() for b in by})
    rows = [(f"`{name.removeprefix('encoder backend ')}`", *(f"{by[str(b)]:.0f}" if str(b) in by else "–"
                                                          for b in sizes)) for name, by in sweep.items()]
    return ["**Batch size** (texts/s of the backend's runner on the same texts, interleaved rounds, median; "
            "OpenVINO runs its batches in parallel streams; the encoder caps OpenVINO batches at "
            f"{OPENVINO_BATCH} texts):\n\n" + table(rows, ("backend", *(f"batch {b}" for b in sizes)))]


def case_goals(export: dict[str, Any], case: dict[str, Any]) -> str:
    """The case's goals: each int8 backend's speed and quality, and the default backend's cold time."""
    v, speed, lines = case["verdict"], export["texts_per_s_median"], []
    for backend, runtime, goal in (("onnx-int8", INT8, SPEED_GOAL), ("openvino-int8", OV_INT8, 5.0)):
        if backend not in v["quality_holds"] or runtime not in speed:
            continue
        ratio, holds = speed[runtime] / speed[ST], v["quality_holds"][backend]
        lines.append(f"Goal `{backend}` ≥ {goal:.0f}× sentence-transformers' texts/s with P@10 and P@1000 within "
                     f"{TOLERANCE} of torch: **{'met' if ratio >= goal and holds else 'not met'}** ({ratio:.2f}×; "
                     f"quality {'holds' if holds else 'does not hold'}).")
    auto = case.get("auto_backend")
    if auto in case["runs"]:
        total = case["runs"][auto]["total_s"]
        lines.append(f"Goal whole case cold ≤ {CASE_GOAL_S} s with the default backend (`auto`, here `{auto}`): "
                     f"**{'met' if total <= CASE_GOAL_S else 'not met'}** ({total:.0f} s).")
    lines.append(f"Fastest backend whose quality holds: `{v['fastest_holding']}`, whole case cold "
                 f"{v['cold_speedup_vs_torch']:.2f}× faster than torch.")
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    """The markdown of ``results/export.md`` (and of the guide's benchmark block)."""
    m = results["machine"]
    parts = [f"Measured by `benchmarks/bench_export.py` on {m['cpu_count']} shared CPU cores (no GPU), "
             f"torch {m['torch']}, onnxruntime {m.get('onnxruntime')}; all-MiniLM-L6-v2 frozen + the default head "
             "(`skip_connection` + `arcface`) trained on the AG News train split. Encoding speeds on such a "
             "machine vary by ±30 % between runs; the ratios much less."]
    export = results.get("export")
    if export:
        speed = export["texts_per_s_median"]
        base = speed[ST]
        rows = [(f"min cosine vs `load(path).encode`, sentence-transformers ({export['equality_texts']:,} texts)",
                 f"{export['min_cosine_vs_library'][ST]:.6f}"),
                (f"min cosine vs `load(path).encode`, ONNX fp32 ({export['equality_texts']:,} texts)",
                 f"{export['min_cosine_vs_library'][FP32]:.6f}")]
        rows += [(f"texts/s, {name}", f"{value:.1f} ({value / base:.2f}x)") for name, value in speed.items()]
        i8 = export["int8_vs_fp32"]
        rows += [("int8 vs fp32: mean / min cosine", f"{i8['mean_cosine']:.4f} / {i8['min_cosine']:.4f}"),
                 ("int8 vs fp32: top-10 neighbours shared", f"{i8['top10_shared']:.3f}"),
                 ("`model.onnx` / `model_int8.onnx` (MiB)",
                  f"{export['onnx_mib']['model.onnx']:.1f} / {export['onnx_mib']['model_int8.onnx']:.1f}")]
        rows += openvino_rows(export.get("openvino") or {})
        parts.append(f"**Exports** ({export['speed_texts']:,} AG News test texts, {export['rounds']} interleaved "
                     f"rounds, median; {export['threads']} threads for every runtime; ratios vs "
                     "sentence-transformers):\n\n" + table(rows, ("measure", "value")))
        parts += openvino_goals(export)
        parts += sweep_table(export.get("batch_sweep") or {})
        if results.get("peak_rss_mib"):
            parts.append(f"Peak RSS of the benchmark process: {results['peak_rss_mib']:,.0f} MiB (every runtime above "
                         "loaded at once, plus the training of the case).")
    case = results.get("case")
    if case:
        torch_run = case["runs"]["torch"]
        rows = []
        for backend, run in case["runs"].items():
            p = run["metrics"]["fine-tuned"]
            d10 = p["P@10"] - torch_run["metrics"]["fine-tuned"]["P@10"]
            d1000 = p["P@1000"] - torch_run["metrics"]["fine-tuned"]["P@1000"]
            earlier = " (earlier run)" if run.get("from_earlier_run") else ""
            rows.append((f"`{backend}`{earlier}", f"{p['P@10']:.4f}", f"{p['P@1000']:.4f}",
                         f"{d10:+.4f} / {d1000:+.4f}",
                         "yes" if case["verdict"]["quality_holds"][backend] else "no",
                         f"{run['total_s']:.0f} ({run['build_s']:.0f} + {run['train_s']:.0f} + "
                         f"{run['evaluate_s']:.0f})", f"{torch_run['total_s'] / run['total_s']:.2f}x"))
        parts.append(f"**AG News case per encoder backend** (`encoder_backend=`; all {case['queries']:,} test "
                     f"queries; each run cold: an empty embedding cache, {torch_run['texts']:,} texts encoded, the "
                     "ONNX graph built, then `train_model` + `evaluate_model`):\n\n"
                     + table(rows, ("backend", "P@10", "P@1000", "Δ vs torch (P@10 / P@1000)",
                                    f"within {TOLERANCE}", "cold case, s (encoder + graph, train, evaluate)",
                                    "speed-up"))
                     + ("\n\nRows marked *(earlier run)* are kept from an earlier run of this benchmark "
                        "(`--merge`): their P@k hold (the runs are deterministic), but their times were taken on "
                        "cores shared with other work, so the speed-ups against them overstate the gain."
                        if any(run.get("from_earlier_run") for run in case["runs"].values()) else ""))
    if export and case:
        parts.append(case_goals(export, case))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--case", action="store_true", help="only (c)+(d): the AG News case per backend, cold")
    part.add_argument("--skip-case", action="store_true", help="only (a)+(b): the exports")
    parser.add_argument("--backends", default="torch,onnx-int8,onnx", help="encoder backends of the case (torch first)")
    parser.add_argument("--texts", type=int, default=2000, help="texts for the speed comparison")
    parser.add_argument("--equal", type=int, default=1000, help="texts for the equality check")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--backends-speed", default="onnx,onnx-int8,openvino,openvino-int8",
                        help="encoder backends timed in (b) (the frozen encoder, no head)")
    parser.add_argument("--calibration", type=int, default=300, help="AG News train texts the int8 backends "
                        "calibrate on in (b)")
    parser.add_argument("--batch-sizes", default="8,16,32,64",
                        help="batch sizes tried in (e) (empty: skip)")
    parser.add_argument("--sweep-backends", default="openvino,openvino-int8",
                        help="encoder backends whose batch sizes (e) tries (of --backends-speed)")
    parser.add_argument("--merge", action="store_true", help="keep the last run's case results of the backends "
                        "not run now (torch among them, if it is not run now)")
    parser.add_argument("--sample", type=int, default=0, help="records per split (a smoke test; 0: all)")
    parser.add_argument("--render", action="store_true", help="only rewrite results/export.md from its JSON")
    args = parser.parse_args()
    if args.render:
        results = json.loads((RESULTS / "export.json").read_text())
        write_results("export", results, render(results))
        return
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if backends[:1] != ["torch"] and not args.merge:
        parser.error("--backends must start with torch (the reference), or --merge must keep the last torch run")

    from importlib.metadata import version

    previous = json.loads((RESULTS / "export.json").read_text()) if (RESULTS / "export.json").is_file() else {}
    results: dict[str, Any] = {"machine": {**machine(), "onnxruntime": version("onnxruntime"),
                                           "openvino": version("openvino"), "nncf": version("nncf")},
                               "time": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_case:
            runs, models = {}, {}
            for backend in backends:
                runs[backend], models[backend] = cold_case(backend, work, args.sample)
            if args.merge:
                runs = merged_runs(previous.get("case") or {}, runs)
            results["case"] = {"queries": len(split("test", args.sample)), "runs": runs, "verdict": verdict(runs),
                               "time": results["time"], "auto_backend": resolve_backend("auto")}
            model_path = models.get("torch") or next(iter(models.values()))
            checkpoint = {**results, "export": previous.get("export")}  # a later failure keeps the case (--skip-case)
            atomic_write_text(RESULTS / "export.json", json.dumps(checkpoint, indent=2, default=str) + "\n")
        else:
            results["case"] = previous.get("case")
            say("training the torch model (default embedding cache)")
            model_path = train_model(split("train", args.sample), split("val", args.sample), work / "model",
                                     model_config=BASE, fit_config=FitConfig(progress=False)).path
        results["export"] = export_part(model_path, work, args) if not args.case else previous.get("export")
    results["peak_rss_mib"] = peak_rss_mib()
    markdown = render(results)
    print()
    print(markdown)
    write_results("export", results, markdown)
    print("run benchmarks/update_docs.py to copy it into the docs")


if __name__ == "__main__":
    main()
