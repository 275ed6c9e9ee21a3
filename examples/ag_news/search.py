"""Index the AG News test records in embedded Qdrant and print the top 5 for each query.

Usage: python search.py "oil prices climb" "new smartphone released" [--label Business]
"""

import argparse
from pathlib import Path

from refinery_quaterion import SimilarityIndex, load, load_records

HERE = Path(__file__).parent

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("queries", nargs="*", default=["Oil prices climb as supply fears grow",
                                                    "New chip makes laptops faster",
                                                    "Striker scores twice in cup final"])
parser.add_argument("--model", type=Path, default=HERE / "output" / "model")
parser.add_argument("--index", type=Path, default=None,
                    help="keep the embedded Qdrant index in this folder (default: in memory, rebuilt each run)")
parser.add_argument("--label", default=None, help="only show records with this label")
parser.add_argument("-k", type=int, default=5)
args = parser.parse_args()

model = load(args.model, embedding_cache=True)
with SimilarityIndex(model, path=args.index) as index:
    if len(index) == 0:
        index.add(load_records(HERE / "data" / "labeled_data_test.json.gz"))
    for query in args.queries:
        print(f"\n{query}")
        for rank, hit in enumerate(index.search(query, k=args.k, filter_label=args.label), 1):
            print(f"  {rank}. {hit.score:.3f} [{hit.label}] {model.template(hit.record)[:100]}")
