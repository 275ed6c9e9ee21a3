"""Start-up time in fresh processes: `import refinery_quaterion`, the data-layer imports, and `--help`.

Each measure runs a new Python process (median of `--runs`, 5 by default) and records whether torch
was imported. `--checkout DIR` also measures another checkout of the package (for example the
previous release, `git worktree add /tmp/old v0.1`) in the same run, for a before/after table.

Usage: python benchmarks/bench_startup.py [--runs 5] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, machine, write_results

MEASURES: dict[str, str] = {
    "import refinery_quaterion": "import refinery_quaterion",
    "from refinery_quaterion import load_export, combine_labels":
        "from refinery_quaterion import load_export, combine_labels",
    "refinery-quaterion --help": "run('--help')",
    "refinery-quaterion train --help": "run('train', '--help')",
}
"""Measure name -> Python code run after `PRELUDE` in a fresh process."""

PRELUDE = """\
import contextlib, io, runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]  # an editable install's finder
sys.path.insert(0, {checkout!r})
def run(*argv):
    sys.argv = ["refinery-quaterion", *argv]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        runpy.run_module("refinery_quaterion", run_name="__main__")
"""
EPILOGUE = "\nimport refinery_quaterion\nprint(refinery_quaterion.__file__, 'torch' in sys.modules)\n"


def measure(code: str, checkout: Path, runs: int) -> tuple[float, bool]:
    """Median wall seconds of running `code` against `checkout` in a fresh process, and whether torch was loaded."""
    program = PRELUDE.format(checkout=str(checkout)) + code + EPILOGUE
    times, out = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
        times.append(time.perf_counter() - start)
    where, torch_loaded = out.split()[-2:]
    if not Path(where).resolve().is_relative_to(checkout):
        raise SystemExit(f"measured {where}, not {checkout}")
    return statistics.median(times), torch_loaded == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="processes per measure (median)")
    parser.add_argument("--checkout", type=Path, default=None, help="another checkout to measure, e.g. v0.1")
    args = parser.parse_args()

    checkouts = {"this checkout": ROOT}
    if args.checkout is not None:
        checkouts = {f"{args.checkout}": args.checkout.resolve(), **checkouts}
    results: dict = {"machine": machine(), "runs": args.runs, "measures": {}}
    header = "| measure | " + " | ".join(checkouts) + " |"
    lines = [header, "|---|" + "---:|" * len(checkouts)]
    for name, command in MEASURES.items():
        cells = []
        for label, path in checkouts.items():
            seconds, torch_loaded = measure(command, path, args.runs)
            results["measures"].setdefault(name, {})[label] = {"seconds": seconds, "torch_imported": torch_loaded}
            note = " (torch)" if torch_loaded else " (no torch)"
            cells.append(f"{seconds:.2f} s{note}")
            print(f"{name} [{label}]: {seconds:.3f} s{note}", flush=True)
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    markdown = (f"Fresh process per run, median of {args.runs}, {results['machine']['cpu_count']} CPU cores.\n\n"
                + "\n".join(lines))
    print()
    print(markdown)
    write_results("startup", results, markdown)


if __name__ == "__main__":
    main()
