"""Copy the benchmark result tables into README.md and the docs, between markers.

A block in a Markdown file

    <!-- bench:quality:banking -->
    (anything: replaced)
    <!-- /bench -->

gets the content of ``benchmarks/results/quality_banking.md`` (``:`` in the key becomes ``_``).
Every figure in the README and the docs that comes from a benchmark sits in such a block, so
none is copied by hand: run a benchmark, then this script.

Usage: python benchmarks/update_docs.py [--check] [FILE ...]
  (default files: README.md and docs/**/*.md; --check: change nothing, exit 1 if a block is stale)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- bench:(?P<key>[A-Za-z0-9_:.-]+) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.DOTALL)


def result_file(key: str) -> Path:
    """The results file of a marker key: ``quality:banking`` -> ``benchmarks/results/quality_banking.md``."""
    return RESULTS / f"{key.replace(':', '_')}.md"


def render(text: str, *, where: str = "") -> tuple[str, list[str]]:
    """``text`` with every marked block replaced by its results file, and the keys that changed.

    Raises:
        FileNotFoundError: If a marker names a results file that does not exist.
    """
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        key = match.group("key")
        source = result_file(key)
        if not source.is_file():
            raise FileNotFoundError(f"{where}: marker bench:{key} names {source}, which does not exist; run the "
                                    "benchmark that writes it first")
        body = source.read_text(encoding="utf-8").strip() + "\n"
        if body != match.group("body"):
            changed.append(key)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text), changed


def default_files() -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md, docs/**/*.md)")
    parser.add_argument("--check", action="store_true", help="only check: exit 1 when a block differs from its results")
    args = parser.parse_args(argv)
    stale = 0
    for path in args.files or default_files():
        text = path.read_text(encoding="utf-8")
        new, changed = render(text, where=str(path))
        if not changed:
            continue
        stale += len(changed)
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        if args.check:
            print(f"{name}: stale block(s) {', '.join(changed)}")
        else:
            path.write_text(new, encoding="utf-8")
            print(f"{name}: updated {', '.join(changed)}")
    if args.check and stale:
        print("run: python benchmarks/update_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
