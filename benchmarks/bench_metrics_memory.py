"""Time and peak memory of the exact retrieval metrics on 50,000 x 384 embeddings.

Each case runs in a fresh Python process, so its peak RSS (``resource.getrusage``) is its
own: imports + random data + the metric computation. The peak must stay under 2 GiB.

Usage::

    python benchmarks/bench_metrics_memory.py [--n 50000] [--dim 384] [--labels 4]
        [--block-size N] [--out benchmarks/results/metrics_memory.json]

Prints a table and writes the JSON results and ``metrics_memory.md`` (the table of
docs/benchmarks.md, copied there by ``benchmarks/update_docs.py``); exits with status 1 when a
case exceeds the memory limit. ``--render`` only re-writes the Markdown from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

LIMIT_BYTES = 2 * 1024**3
ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "baseline": "imports and random data only",
    "precision_at_k": "precision_at_k, ks=(1, 5, 10, 20, 50, 100) (partial sort)",
    "retrieval_metrics": "retrieval_metrics: P@k, MRR, mAP@100, mAP, R-precision (full sort)",
}


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB on Linux


def _run_case(case: str, n: int, dim: int, n_labels: int, block_size: int | None) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from refinery_quaterion.evaluate import precision_at_k, retrieval_metrics

    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((n, dim), dtype=np.float32)
    labels = rng.integers(0, n_labels, n)
    before = _peak_rss_bytes()
    start = time.perf_counter()
    values: dict[str, float] = {}
    if case == "precision_at_k":
        values = {f"P@{k}": v for k, v in precision_at_k(embeddings, labels, block_size=block_size).items()}
    elif case == "retrieval_metrics":
        values = retrieval_metrics(embeddings, labels, block_size=block_size).as_dict()
    seconds = time.perf_counter() - start
    return {
        "case": case,
        "description": CASES[case],
        "seconds": round(seconds, 2),
        "peak_rss_bytes": _peak_rss_bytes(),
        "rss_before_bytes": before,
        "metrics": {k: round(v, 5) for k, v in values.items()},
    }


_LABELS = {
    "baseline": "baseline (imports + data)",
    "precision_at_k": "`precision_at_k`, ks 1…100",
    "retrieval_metrics": "`retrieval_metrics` (all metrics, full ranking)",
}


def render(payload: dict) -> str:
    """The Markdown table of a results payload: seconds and peak RSS per case."""
    lines = [
        f"{payload['n']:,} random {payload['dim']}-dimensional embeddings, {payload['labels']} labels, every item a "
        f"query; {payload['machine']['cpus']} CPU cores (shared: times vary); peak limit "
        f"{payload['limit_bytes'] / 2**30:.0f} GiB, {'met' if payload['within_limit'] else '**exceeded**'}.",
        "",
        f"| case | seconds ({payload['machine']['cpus']} CPU cores) | peak RSS (MiB) |",
        "|---|---:|---:|",
    ]
    for row in payload["results"]:
        seconds = "–" if row["case"] == "baseline" else f"{row['seconds']:.0f}"
        lines.append(f"| {_LABELS.get(row['case'], row['case'])} | {seconds} | {row['peak_rss_bytes'] / 2**20:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every case in its own process, print the table, write the JSON; 1 if over the limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--labels", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "metrics_memory.json")
    parser.add_argument("--render", action="store_true", help="only re-write the Markdown from the JSON results")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from refinery_quaterion._io import atomic_write_text

    if args.render:
        atomic_write_text(args.out.with_suffix(".md"), render(json.loads(args.out.read_text(encoding="utf-8"))))
        print(f"wrote {args.out.with_suffix('.md')}")
        return 0
    if args.case:
        print(json.dumps(_run_case(args.case, args.n, args.dim, args.labels, args.block_size)))
        return 0

    results = []
    for case in CASES:
        command = [sys.executable, __file__, "--case", case, "--n", str(args.n), "--dim", str(args.dim)]
        command += ["--labels", str(args.labels)]
        if args.block_size is not None:
            command += ["--block-size", str(args.block_size)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            raise SystemExit(f"case {case} failed with status {done.returncode}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))

    print(f"{args.n} x {args.dim} float32 embeddings, {args.labels} labels, all {args.n} queries")
    print(f"{'case':<18} {'seconds':>8} {'peak RSS MiB':>13}  metrics")
    for row in results:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in list(row["metrics"].items())[:4])
        print(f"{row['case']:<18} {row['seconds']:>8.2f} {row['peak_rss_bytes'] / 2**20:>13.0f}  {shown}")
    over = [r["case"] for r in results if r["peak_rss_bytes"] >= LIMIT_BYTES]
    payload = {
        "n": args.n,
        "dim": args.dim,
        "labels": args.labels,
        "block_size": args.block_size,
        "limit_bytes": LIMIT_BYTES,
        "within_limit": not over,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "note": "wall-clock times on a shared machine; other processes may compete for the CPU",
        },
        "results": results,
    }
    atomic_write_text(args.out, json.dumps(payload, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), render(payload))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    if over:
        print(f"peak RSS over {LIMIT_BYTES / 2**30:.0f} GiB in: {over}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
