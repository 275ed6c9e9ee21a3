"""Load exported models in refinery's pinned embedder stacks and in FastEmbed; compare the vectors.

refinery's embedder loads models with ``SentenceTransformer(name)`` and calls
``model.encode(texts, show_progress_bar=False)``. Its CPU image pins sentence-transformers 2.2.2
and its GPU image 3.0.1, both with transformers 4.41.2 and tokenizers 0.19.1
(code-kern-ai/refinery-embedder ``requirements.txt`` / ``gpu-requirements.txt``). FastEmbed
(Qdrant's ONNX embedding library) loads an ONNX export through its custom-model API. This
script checks that the folders ``export_model`` writes load there and give the vectors of
``load(model).encode``:

1. exports MODEL (``format="sentence-transformers"`` and ``format="onnx"``) into a temporary
   folder and computes the library's vectors of the probe texts (the banking snapshot's first
   ``--texts`` records, a few short texts and one longer than ``max_length``);
2. builds (or reuses) one venv per stack under ``--venvs``:
   - ``st-2.2.2`` and ``st-3.0.1``: the pinned sentence-transformers, transformers,
     tokenizers, huggingface-hub (< 0.26: 2.2.2 imports its ``cached_download``) and
     safetensors, installed without their dependencies; torch, numpy, scikit-learn and the
     other dependencies come from this project's venv through a ``.pth`` file placed after the
     venv's own packages, so the pinned versions win and no torch wheel is downloaded;
   - ``fastembed-0.9.1``: ``pip install fastembed==0.9.1`` with its dependencies (no torch;
     it needs huggingface-hub < 2, which is why it is not in this project's lock);
3. loads the export in each venv as refinery's embedder (or FastEmbed) does, and compares:
   min cosine >= 0.9999 passes.

It prints a Markdown table and writes ``benchmarks/results/refinery_stack.json``. It needs the
package index (pip) the first time and takes minutes, so it is not part of the tests or CI.

Usage: python tools/refinery_stack.py [MODEL] [--stacks st-2.2.2,st-3.0.1,fastembed-0.9.1]
       [--venvs DIR] [--texts 300] [--out benchmarks/results/refinery_stack.json] [--docs]

``--docs`` also puts the table into ``docs/guides/use-elsewhere.md`` (between
``<!-- refinery-stack -->`` and ``<!-- /refinery-stack -->``).

Without MODEL it saves a demo model: the bundled all-MiniLM-L6-v2 with the default head, its
weights drawn at random (seed 0) so that the head is not the identity.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guides" / "use-elsewhere.md"
BANKING = ROOT / "examples" / "banking_intents" / "data" / "snapshot_data.json.zip"
MIN_COSINE = 0.9999
PINNED = ["transformers==4.41.2", "tokenizers==0.19.1", "huggingface_hub==0.25.2", "safetensors==0.4.5"]


@dataclass(frozen=True)
class Stack:
    """A venv to load an export in: what to install and which export it loads."""

    name: str
    packages: list[str]
    export: str  # "sentence-transformers" or "onnx"
    project_torch: bool  # torch and the other dependencies from this project's venv (.pth)
    notes: str = ""


STACKS = {
    "st-2.2.2": Stack("st-2.2.2", ["sentence-transformers==2.2.2", *PINNED, "nltk==3.8.1"], "sentence-transformers",
                      True, "refinery-embedder CPU image (v1.15.0 to dev HEAD)"),
    "st-3.0.1": Stack("st-3.0.1", ["sentence-transformers==3.0.1", *PINNED], "sentence-transformers", True,
                      "refinery-embedder GPU image (v1.16.0, dev HEAD)"),
    "fastembed-0.9.1": Stack("fastembed-0.9.1", ["fastembed==0.9.1"], "onnx", False,
                             "FastEmbed custom ONNX model (fp32 model.onnx)"),
}

ST_CHILD = """
import json, sys
import numpy as np
import sentence_transformers, transformers, tokenizers, huggingface_hub, torch
from sentence_transformers import SentenceTransformer

folder, texts_file, out = sys.argv[1:4]
texts = json.load(open(texts_file))
model = SentenceTransformer(folder).to(torch.device("cpu"))  # as refinery-embedder loads a model
vectors = np.array(model.encode(texts, show_progress_bar=False).tolist(), dtype=np.float32)
np.save(out, vectors)
print(json.dumps({"sentence-transformers": sentence_transformers.__version__,
                  "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                  "huggingface-hub": huggingface_hub.__version__, "torch": torch.__version__,
                  "numpy": np.__version__, "modules": [type(m).__name__ for m in model]}))
"""

FASTEMBED_CHILD = """
import json, sys
import numpy as np
import fastembed, onnxruntime, tokenizers, huggingface_hub
from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType

folder, texts_file, out = sys.argv[1:4]
texts = json.load(open(texts_file))
dim = json.load(open(f"{folder}/refinery_export.json"))["dim"]
TextEmbedding.add_custom_model(
    model="local/refinery-quaterion", pooling=PoolingType.DISABLED, normalization=False,
    sources=ModelSource(hf="local/refinery-quaterion"), dim=dim, model_file="model.onnx",
    output_name="sentence_embedding")
model = TextEmbedding("local/refinery-quaterion", specific_model_path=folder)
np.save(out, np.array(list(model.embed(texts)), dtype=np.float32))
print(json.dumps({"fastembed": fastembed.__version__, "onnxruntime": onnxruntime.__version__,
                  "tokenizers": tokenizers.__version__, "huggingface-hub": huggingface_hub.__version__,
                  "numpy": np.__version__}))
"""


def probe_texts(n: int) -> list[str]:
    """The banking snapshot's first ``n`` record texts (when present) and a few short and long texts."""
    texts = ["what do i need to do to apply for a visa card", "a", "Stocks rally on strong earnings",
             " ".join(["my card payment was declined twice and the app shows no reason"] * 60)]
    if BANKING.is_file() and n > 0:
        with zipfile.ZipFile(BANKING) as archive:
            data = json.loads(archive.read(archive.namelist()[0]))
        for record in data["records_data"][:n]:
            fields = record["data"]
            texts.append((ast.literal_eval(fields) if isinstance(fields, str) else fields)["text"])
    return texts


def demo_model(folder: Path) -> Path:
    """Save MiniLM with the default head, its weights random (seed 0), to ``folder``."""
    import torch

    from refinery_quaterion import DistilBertSimilarityModel, LabelMap, ModelConfig, save

    model = DistilBertSimilarityModel(ModelConfig(pretrained="minilm", template="{text}", loss="triplet"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weights in model.model.head.parameters():
            weights.copy_(torch.randn(weights.shape, generator=generator) * 0.05)
    return save(model, folder, label_map=LabelMap(["demo"]))


def ensure_venv(stack: Stack, root: Path) -> Path:
    """The venv of ``stack`` under ``root``, built on first use; returns its python."""
    folder = root / stack.name
    python = folder / "bin" / "python"
    marker = folder / ".refinery-stack-ready"
    if marker.is_file() and marker.read_text() == json.dumps(stack.packages):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if stack.project_torch:
        subprocess.run([*pip, "--no-deps", *stack.packages], check=True)
        own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
        # "zz": after the venv's own packages on sys.path, so the pinned versions win
        (Path(own) / "zz_project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    else:
        subprocess.run([*pip, *stack.packages], check=True)
    marker.write_text(json.dumps(stack.packages))
    return python


def run_stack(stack: Stack, python: Path, folder: Path, texts_file: Path, expected: np.ndarray) -> dict[str, Any]:
    """Load ``folder`` with ``python`` (the stack's venv), encode the texts and compare with ``expected``."""
    out = texts_file.with_name(f"{stack.name}.npy")
    child = ST_CHILD if stack.export == "sentence-transformers" else FASTEMBED_CHILD
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    done = subprocess.run([str(python), "-c", child, str(folder), str(texts_file), str(out)],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"stack": stack.name, "notes": stack.notes, "ok": False,
                "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    vectors = np.load(out)
    cosines = row_cosines(vectors, expected)
    return {"stack": stack.name, "notes": stack.notes, "export": stack.export,
            "versions": json.loads(done.stdout.strip().splitlines()[-1]), "texts": len(expected),
            "dim": int(vectors.shape[1]), "min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean()),
            "max_abs_diff": float(np.abs(vectors - expected).max()),
            "max_norm_error": float(np.abs(np.linalg.norm(vectors, axis=1) - 1).max()),
            "seconds": round(seconds, 1), "ok": bool(cosines.min() >= MIN_COSINE)}


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(n, d)`` arrays (a shape mismatch gives ``-inf``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return np.full(len(b), -np.inf)
    return np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = ["| stack | loads | versions | texts | dim | 1 - min cosine | max abs diff | max norm error |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if not row["ok"] and "min_cosine" not in row:
            lines.append(f"| {row['stack']} | **no**: {row['error']} | | | | | | |")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in row["versions"].items() if k != "modules")
        lines.append(f"| {row['stack']} ({row['notes']}) | {'yes' if row['ok'] else '**differs**'} | {versions} | "
                     f"{row['texts']} | {row['dim']} | {1 - row['min_cosine']:.1e} | {row['max_abs_diff']:.1e} | "
                     f"{row['max_norm_error']:.1e} |")
    return "\n".join(lines)


def update_guide(table: str, guide: Path = GUIDE) -> None:
    """Replace the block between ``<!-- refinery-stack -->`` and ``<!-- /refinery-stack -->`` in ``guide``."""
    start, end = "<!-- refinery-stack -->\n", "<!-- /refinery-stack -->"
    text = guide.read_text(encoding="utf-8")
    before, found, rest = text.partition(start)
    if not found or end not in rest:
        raise SystemExit(f"{guide} has no {start.strip()} ... {end} block")
    guide.write_text(before + start + table + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")


def export_and_encode(model: Path, work: Path, texts: list[str]) -> tuple[dict[str, Path], np.ndarray]:
    """Both exports of ``model`` under ``work`` and the library's vectors of ``texts``."""
    from refinery_quaterion import load
    from refinery_quaterion.exporters import export_model

    folders = {fmt: export_model(model, work / fmt, format=fmt).path for fmt in ("sentence-transformers", "onnx")}
    return folders, load(model).encode(texts, progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", type=Path, help="saved model folder (default: a demo model)")
    parser.add_argument("--stacks", default=",".join(STACKS), help=f"comma-separated, from {list(STACKS)}")
    parser.add_argument("--venvs", type=Path, default=Path.home() / ".cache" / "refinery-quaterion" / "refinery-stack")
    parser.add_argument("--texts", type=int, default=300, help="banking records to encode (plus 4 probe texts)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "refinery_stack.json")
    parser.add_argument("--docs", action="store_true", help=f"put the table into {GUIDE.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    stacks = [STACKS[name] for name in args.stacks.split(",")]
    texts = probe_texts(args.texts)
    with tempfile.TemporaryDirectory(prefix="refinery-stack-") as tmp:
        work = Path(tmp)
        model = args.model or demo_model(work / "model")
        folders, expected = export_and_encode(model, work, texts)
        texts_file = work / "texts.json"
        texts_file.write_text(json.dumps(texts))
        rows = [run_stack(stack, ensure_venv(stack, args.venvs), folders[stack.export], texts_file, expected)
                for stack in stacks]
    table = markdown(rows)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model) if args.model else "demo: minilm + random default head",
                                    "min_cosine_required": MIN_COSINE, "results": rows, "markdown": table},
                                   indent=2) + "\n")
    if args.docs:
        update_guide(table)
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
