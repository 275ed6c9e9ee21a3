"""Fine-tune all-MiniLM-L6-v2 (bundled, offline) on the AG News weak labels and save it.

Usage: python train.py [--epochs N] [--out output/model]
"""

import argparse
from pathlib import Path

from refinery_quaterion import FitConfig, ModelConfig, load_records, train_model

HERE = Path(__file__).parent
TEXT = "{Title}. {Description}"

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the library default)")
parser.add_argument("--out", type=Path, default=HERE / "output" / "model")
args = parser.parse_args()

train = load_records(HERE / "data" / "labeled_data_train.json.gz")
val = load_records(HERE / "data" / "labeled_data_val.json.gz")
print(f"train {len(train)} records, val {len(val)} records, text {TEXT!r}")

fit_config = FitConfig() if args.epochs is None else FitConfig(epochs=args.epochs)
outcome = train_model(train, val, args.out, model_config=ModelConfig(pretrained="minilm", template=TEXT),
                      fit_config=fit_config, overwrite=True)
print(outcome.fit)
print(f"model saved to {outcome.path} in {outcome.seconds:.1f} s")
