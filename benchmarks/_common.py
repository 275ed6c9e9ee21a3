"""Shared bits of the benchmark scripts: the AG News data, the refinery cases, machine info, result files."""

from __future__ import annotations

import json
import os
import platform
import resource
from pathlib import Path
from typing import Any

import pandas as pd

from refinery_quaterion import load_records
from refinery_quaterion._io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "ag_news" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
TEXT = "{Title}. {Description}"
EXAMPLES = ROOT / "examples"


def refinery_cases() -> dict[str, Any]:
    """The real refinery projects shipped in ``examples/``, as `refinery_quaterion.lab.cases.RefineryCase` s."""
    from refinery_quaterion.lab.cases import RefineryCase

    return {
        "banking": RefineryCase(EXAMPLES / "banking_intents" / "data" / "snapshot_data.json.zip", task="intent",
                                template="{text}", name="banking"),
        "clickbait": RefineryCase(EXAMPLES / "clickbait" / "data" / "clickbait.zip", task="clickbait",
                                  template="{headline}", name="clickbait"),
    }


def ag_news(split: str) -> pd.DataFrame:
    """One split of the AG News case: ``train``, ``val`` or ``test``."""
    return load_records(DATA / f"labeled_data_{split}.json.gz")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(name: str, payload: dict[str, Any], markdown: str) -> None:
    """Write ``results/<name>.json`` and ``results/<name>.md`` atomically."""
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(payload, indent=2, default=str) + "\n")
    atomic_write_text(RESULTS / f"{name}.md", markdown + "\n")
    print(f"\nwrote {RESULTS / (name + '.json')} and {name}.md")
