#!/usr/bin/env bash
# The AG News case end to end: train → evaluate (prints the metrics table) → search.
# Offline; embeddings are cached (~/.cache/refinery-quaterion/embeddings), so a re-run is fast.
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
start=$(date +%s)
python train.py "$@"
python search.py
python evaluate.py
echo "AG News case done in $(( $(date +%s) - start )) s"
