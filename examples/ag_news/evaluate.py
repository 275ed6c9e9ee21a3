"""Raw vs fine-tuned MiniLM on the AG News test set (9,146 records the filter left out).

Precision@k for k in 1..1000 over all queries, MRR, mAP, R-precision and a linear probe
trained on train+val; writes output/report/ (metrics.json/.md/.csv and PNG plots).
"""

import argparse
from pathlib import Path

import pandas as pd

from refinery_quaterion import evaluate_model, format_table, load_records

HERE = Path(__file__).parent
DATA = HERE / "data"

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--model", type=Path, default=HERE / "output" / "model")
parser.add_argument("--report", type=Path, default=HERE / "output" / "report")
args = parser.parse_args()

test = load_records(DATA / "labeled_data_test.json.gz")
reference = pd.concat([load_records(DATA / f"labeled_data_{s}.json.gz") for s in ("train", "val")], ignore_index=True)

outcome = evaluate_model(args.model, test, reference=reference, report_dir=args.report, overwrite=True)
for name, probe in outcome.probe.items():
    print(f"\nlinear probe on {name} embeddings:\n{probe}")
print(f"\nreport: {args.report}/metrics.md\n")
print(format_table(outcome.metrics, digits=3))
