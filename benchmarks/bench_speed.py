"""Speed on this machine, in one run: encoding, head training with the cache, the whole AG News case.

1. texts/s of our ``TransformerEncoder.encode`` vs sentence-transformers' ``encode`` on the same
   model (all-MiniLM-L6-v2, max length 128) and the same texts, no cache (ratio printed);
2. head-training epochs/s with quaterion's cache, once the embeddings exist;
3. the whole case (train → evaluate on 9,146 test records) cold (empty embedding cache) and warm;
4. peak RSS.

Usage: python benchmarks/bench_speed.py [--texts 2000] [--skip-case]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import TEXT, ag_news, machine, peak_rss_mib, write_results

from refinery_quaterion import (
    EvalConfig,
    FitConfig,
    ModelConfig,
    TextTemplate,
    evaluate_model,
    resolve_pretrained,
    train_model,
)
from refinery_quaterion.model.encoder import TransformerEncoder


def encode_speed(texts: list[str]) -> dict[str, float]:
    from sentence_transformers import SentenceTransformer

    path = resolve_pretrained("minilm")
    ours = TransformerEncoder.from_pretrained(path, max_length=128)
    theirs = SentenceTransformer(path, device="cpu")
    theirs.max_seq_length = 128
    ours.encode(texts[:64], progress=False)  # warm-up
    theirs.encode(texts[:64])
    start = time.perf_counter()
    ours.encode(texts, progress=False)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs.encode(texts, batch_size=64)
    theirs_s = time.perf_counter() - start
    return {"texts": len(texts), "backend": ours.backend, "ours_texts_per_s": len(texts) / ours_s,
            "sentence_transformers_texts_per_s": len(texts) / theirs_s, "ratio": theirs_s / ours_s}


def whole_case(cache: Path) -> dict[str, float]:
    train, val, test = ag_news("train"), ag_news("val"), ag_news("test")
    reference = pd.concat([train, val], ignore_index=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = train_model(train, val, Path(tmp) / "model", model_config=ModelConfig(template=TEXT),
                              fit_config=FitConfig(progress=False), embedding_cache=cache)
        trained = time.perf_counter()
        evaluate_model(outcome.path, test, EvalConfig(progress=False), reference=reference,
                       report_dir=Path(tmp) / "report", embedding_cache=cache)
    end = time.perf_counter()
    return {"train_s": trained - start, "evaluate_s": end - trained, "total_s": end - start,
            "fit_train_s": outcome.fit.train_time_s, "epochs": outcome.fit.epochs,
            "epochs_per_s": outcome.fit.epochs / outcome.fit.train_time_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000, help="texts for the encoding comparison")
    parser.add_argument("--skip-case", action="store_true", help="skip the whole-case timing")
    args = parser.parse_args()

    template = TextTemplate(TEXT)
    texts = template.render_many(ag_news("train").head(args.texts).to_dict(orient="records"))
    results: dict = {"machine": machine(), "encode": encode_speed(texts)}
    enc = results["encode"]
    print(f"encode {enc['texts']} texts: ours {enc['ours_texts_per_s']:.1f}/s, sentence-transformers "
          f"{enc['sentence_transformers_texts_per_s']:.1f}/s (ours {enc['ratio']:.2f}x)", flush=True)
    if not args.skip_case:
        with tempfile.TemporaryDirectory() as cache:
            results["case_cold"] = whole_case(Path(cache))
            print(f"case cold: {results['case_cold']['total_s']:.0f} s", flush=True)
            results["case_warm"] = whole_case(Path(cache))
            print(f"case warm: {results['case_warm']['total_s']:.0f} s", flush=True)
    results["peak_rss_mib"] = peak_rss_mib()

    rows = [
        ("encode, ours (texts/s)", f"{enc['ours_texts_per_s']:.1f}"),
        ("encode, sentence-transformers (texts/s)", f"{enc['sentence_transformers_texts_per_s']:.1f}"),
        ("ours / sentence-transformers", f"{enc['ratio']:.2f}x"),
    ]
    if "case_cold" in results:
        cold, warm = results["case_cold"], results["case_warm"]
        rows += [
            ("head training with cache (epochs/s)", f"{warm['epochs_per_s']:.2f}"),
            ("head training, default recipe (s)", f"{warm['fit_train_s']:.1f}"),
            ("whole case cold: encode 20k texts + train + evaluate (s)", f"{cold['total_s']:.0f}"),
            ("whole case warm: embeddings cached (s)", f"{warm['total_s']:.0f}"),
        ]
    rows.append(("peak RSS (MiB)", f"{results['peak_rss_mib']:.0f}"))
    width = max(len(r[0]) for r in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")
    markdown = (f"Measured by `benchmarks/bench_speed.py` on {time.strftime('%Y-%m-%d')}: "
                f"{results['machine']['cpu_count']} CPU cores, torch {results['machine']['torch']}, "
                f"{'CUDA' if results['machine']['cuda'] else 'no GPU'}; one run (on shared cores encoding speeds "
                f"vary by about ±30 % between runs, the ratio much less). \"ours\" is `TransformerEncoder.encode` "
                f"with the default backend (`\"auto\"`, here `\"{enc['backend']}\"`), no cache; the whole case "
                "trains and evaluates the AG News case with the library's defaults.\n\n"
                "| measure | value |\n|---|---|\n"
                + "\n".join(f"| {name} | {value} |" for name, value in rows))
    write_results("speed", results, markdown)


if __name__ == "__main__":
    main()
