"""The clickbait case, offline: a real refinery sample project with low weak-supervision confidences.

3,000 headlines, weak labels on all of them (median confidence about 0.66), 83 manual labels.
Trains on the weak labels twice -- with v0.1's default (keep confidence > 0.7, every record
weighing the same) and with the library's current defaults -- and evaluates raw vs both on the
83 manual labels as the held-out truth (leave-one-out retrieval).

Usage: python examples/clickbait/run.py [--out DIR] [QUERY ...]
"""

import argparse
from pathlib import Path

from refinery_quaterion.lab.cases import RefineryCase, run_case
from refinery_quaterion.lab.recipes import CASE_RECIPES, Recipe

HERE = Path(__file__).parent
CASE = RefineryCase(HERE / "data" / "clickbait.zip", task="clickbait", template="{headline}", name="clickbait")
QUERIES = ["You won't believe what this cat did next", "Senate passes budget bill after long debate"]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("queries", nargs="*", default=QUERIES, help="search queries (default: two examples)")
parser.add_argument("--out", type=Path, default=HERE / "output", help="models and plots (default: %(default)s)")
args = parser.parse_args()

recipes = {"v0.1 default (fixed 0.7)": CASE_RECIPES["fixed 0.7"], "new default": Recipe()}
result = run_case(CASE, recipes, out=args.out / "models", progress=True)
print(f"\n{result.threshold_text()}")
print(f"plot: {result.plot_thresholds(args.out / 'thresholds.png')}\n")
for name, run in result.runs.items():
    print(f"--- {name}: {run.recipe.describe()}\n{run.report}\n{run.fit}\n")
print(result.summary(["P@1", "P@5", "P@10", "P@25", "MRR", "mAP", "threshold", "weak labels", "epochs", "train s"]))

print(result.runs["new default"].nearest_text(args.queries))
