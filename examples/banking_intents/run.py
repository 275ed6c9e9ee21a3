"""The banking-intents case end to end, offline: a real refinery project snapshot → similarity model.

1. threshold report: records kept and agreement of the weak labels with the 250 manual ones per
   confidence threshold, and the threshold chosen from them (plot: output/thresholds.png);
2. combine_labels with the library defaults, the manual labels held out as the test set;
3. train on the weak-supervision labels only (all-MiniLM-L6-v2 bundled, frozen, cached);
4. evaluate raw vs fine-tuned on the 250 manual labels (leave-one-out retrieval) and print the table;
5. search: index the labeled records (weak and manual) in embedded Qdrant, print the nearest to a few queries.

Usage: python examples/banking_intents/run.py [--out DIR] [--docs DIR] [QUERY ...]
       (--docs docs/images: also write the figures and the table of the docs walkthrough)
"""

import argparse
from pathlib import Path

from refinery_quaterion.lab.cases import RefineryCase, run_case
from refinery_quaterion.lab.recipes import Recipe

HERE = Path(__file__).parent
RESULTS = HERE.parents[1] / "benchmarks" / "results"
CASE = RefineryCase(HERE / "data" / "snapshot_data.json.zip", task="intent", template="{text}",
                    name="banking intents")
QUERIES = ["I think someone stole my card", "how much money do I have left", "can I roll over my retirement plan"]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("queries", nargs="*", default=QUERIES, help="search queries (default: three examples)")
parser.add_argument("--out", type=Path, default=HERE / "output", help="models and plots (default: %(default)s)")
parser.add_argument("--docs", type=Path, default=None,
                    help="also write banking_thresholds.png and banking_precision.png there, and the metrics "
                         "table to benchmarks/results/quality_banking_example.md (for benchmarks/update_docs.py)")
args = parser.parse_args()

result = run_case(CASE, {"fine-tuned": Recipe()}, out=args.out / "models", progress=True)
print(f"\n{result.threshold_text()}")
print(f"plot: {result.plot_thresholds(args.out / 'thresholds.png')}\n")
print(result.runs["fine-tuned"].report)
print(f"\n{result.runs['fine-tuned'].fit}\n")
print(result.summary(["P@1", "P@5", "P@10", "P@25", "MRR", "mAP", "weak labels", "train s"]))

print(result.runs["fine-tuned"].nearest_text(args.queries))

if args.docs:
    print(f"\nwrote {result.plot_thresholds(args.docs / 'banking_thresholds.png')}")
    print(f"wrote {result.plot_precision(args.docs / 'banking_precision.png', ks=(1, 5, 10, 25))}")
    table = RESULTS / "quality_banking_example.md"
    table.write_text(result.to_markdown(["P@1", "P@5", "P@10", "P@25", "MRR", "mAP", "train s"]) + "\n")
    print(f"wrote {table}")
