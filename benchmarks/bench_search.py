"""Search at scale: build time, query latency, recall@10, peak RSS and disk size of the index engines.

Engines (each runs in its own subprocess, so its peak RSS (``VmHWM``) is its own):

- ``edge``: Qdrant Edge (qdrant-edge-py, Qdrant's Rust engine in-process) used directly: vectors
  bulk-loaded, HNSW (+ int8 scalar quantization with rescoring) built once by ``optimize()``;
- ``index``: the same engine through our `SimilarityIndex` (``add_vectors`` inside ``bulk_load()``),
  with a stand-in encoder, so only the index is timed;
- ``client``: qdrant-client's local mode (the old embedded engine; 20k and 100k only, and a
  build that passes ``--client-budget`` seconds is abandoned and reported as skipped);
- ``exact``: exact cosine search with numpy over all vectors in memory.

Data (``--data``):

- ``synthetic``: clustered unit vectors ("embedding-like": 1,000 cluster centres, points spread
  in a rank-48 subspace around them plus a little isotropic noise), generated chunk by chunk from
  a seed, so 1M x 384 never has to be held at once; queries from the same distribution (another
  seed), at each of ``--sizes``;
- ``ag_news``: the real vectors of the AG News case's model (all-MiniLM-L6-v2 + the default head,
  trained on the case's train split): the 20,000 records as the corpus, 200 test titles alone as
  the queries.

Recall@10 is measured against exact search. ``--throughput`` also times encode + index of the
20,000 AG News texts in one process and on a local Ray (2 workers), with ONNX and OpenVINO int8;
``--streaming 100000,1000000`` streams JSON Lines files of those sizes through `index_records`
(a stand-in encoder) and reports the peak memory of each.

Usage: python benchmarks/bench_search.py [--data synthetic,ag_news] [--sizes 20000,100000]
       [--engines edge,index,client,exact] [--throughput] [--streaming N,...] [--work DIR]
       [--quick] [--name search]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

HERE = Path(__file__).resolve().parent
CHUNK = 20_000
CLUSTERS = 1_000
RANK = 48
K = 10
ENGINES = ("edge", "index", "client", "exact")
CLIENT_MAX = 100_000
AG_NEWS_DATA = ("corpus: the case's 20,000 records (train, val and test) rendered with the model's template; "
                "queries: 200 test titles alone, as a user would type them")
EDGE = {"m": 16, "ef_construct": 128, "quantile": 0.99, "oversampling": 2.0}
EFS = (64, 128, 256, 512, 1024, 2048)
NOTE = ("2 CPU cores (Intel Xeon, AVX-512), no GPU; each engine in its own process, one after the other, on "
        "cores no other work was using (the load average at the start of each run is in the JSON). The AG News "
        "vectors are the only real ones: the case has 20,000 texts, so the 100k and 1M rows are synthetic")


# ---------------------------------------------------------------- data


def _basis(dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 0])
    centres = rng.standard_normal((CLUSTERS, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis = rng.standard_normal((RANK, dim)).astype(np.float32) / np.sqrt(RANK)
    return centres, basis


def _sample(rng: np.random.Generator, n: int, centres: np.ndarray, basis: np.ndarray) -> np.ndarray:
    dim = centres.shape[1]
    x = centres[rng.integers(CLUSTERS, size=n)]
    x = x + 0.7 * (rng.standard_normal((n, RANK)).astype(np.float32) @ basis)
    x = x + (0.15 / np.sqrt(dim)) * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def chunks(n: int, dim: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, vectors)`` for the ``n`` corpus vectors, ``CHUNK`` at a time (deterministic per chunk)."""
    centres, basis = _basis(dim, seed)
    for k, start in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng([seed, 1, k])
        yield start, _sample(rng, min(CHUNK, n - start), centres, basis)


def corpus_chunks(spec: dict[str, Any]) -> Iterator[tuple[int, np.ndarray]]:
    """The corpus of ``spec``, ``CHUNK`` vectors at a time: synthetic, or the saved AG News vectors."""
    if not spec.get("vectors"):
        yield from chunks(spec["n"], spec["dim"], spec["seed"])
        return
    x = np.load(Path(spec["vectors"]) / "corpus.npy", mmap_mode="r")
    for start in range(0, len(x), CHUNK):
        yield start, np.asarray(x[start:start + CHUNK], dtype=np.float32)


def query_vectors(spec: dict[str, Any]) -> np.ndarray:
    """The queries of ``spec``: synthetic (another seed), or the saved AG News query vectors."""
    if spec.get("vectors"):
        return np.load(Path(spec["vectors"]) / "queries.npy")[: spec["queries"]]
    return queries(spec["queries"], spec["dim"], spec["seed"] + 1)


def queries(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` query vectors from the corpus distribution (another stream of the same seed)."""
    centres, basis = _basis(dim, seed)
    return _sample(np.random.default_rng([seed, 2]), n, centres, basis)


def exact_top_k(q: np.ndarray, corpus: Iterator[tuple[int, np.ndarray]]) -> np.ndarray:
    """Ids of the exact top-``K`` neighbours of each query, merged chunk by chunk (bounded memory)."""
    best_ids = np.zeros((len(q), 0), dtype=np.int64)
    best_scores = np.zeros((len(q), 0), dtype=np.float32)
    for start, x in corpus:
        scores = np.concatenate([best_scores, q @ x.T], axis=1)
        ids = np.concatenate([best_ids, np.broadcast_to(np.arange(start, start + len(x)), (len(q), len(x)))], axis=1)
        keep = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_ids = np.take_along_axis(ids, keep, axis=1)
    return best_ids


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    """Mean fraction of the exact top-``K`` found."""
    return float(np.mean([len(set(f[:K]) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))


# ---------------------------------------------------------------- measuring helpers


def disk_mib(path: Path) -> float:
    """Allocated size (like ``du``) of a folder, MiB; preallocated-but-unused file space is not counted."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total / 2**20


def latencies(search: Any, q: np.ndarray) -> dict[str, float]:
    """p50/p95 of single-query latency (ms) over ``q`` (after one warm-up pass over them), and the found ids.

    The warm-up pass matters: an index whose vectors are memory-mapped answers its first
    queries several times slower, while the pages come in.
    """
    for v in q:
        search(v)
    times, found = [], []
    for v in q:
        start = time.perf_counter()
        found.append(search(v))
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)), "found": found}


def timed_batch(search_many: Any, q: np.ndarray, batch: int = 32) -> float:
    """Mean latency per query (ms) when queries go in batches of ``batch``."""
    start = time.perf_counter()
    for s in range(0, len(q), batch):
        search_many(q[s:s + batch])
    return (time.perf_counter() - start) * 1000 / len(q)


def _rss_mib() -> float:
    """Peak resident memory of this process (``VmHWM``, MiB).

    Not ``ru_maxrss``: Linux carries it over ``exec``, so a worker started by a driver that had
    loaded torch would report the driver's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AnonPeak:
    """Samples ``RssAnon`` (resident memory not backed by files) twice a second; ``peak_mib`` is its maximum.

    ``ru_maxrss`` also counts the pages of memory-mapped files (Edge maps its segments and WAL),
    which the kernel can drop at any time; ``RssAnon`` is the memory the process really needs.
    """

    def __init__(self) -> None:
        import threading

        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> None:
        """Read ``RssAnon`` now."""
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_mib = max(self.peak_mib, int(line.split()[1]) / 1024)
        except OSError:
            pass

    def stop(self) -> float:
        """Stop sampling; the peak (MiB)."""
        self._stop.set()
        self.sample()
        return self.peak_mib


# ---------------------------------------------------------------- engines (each runs in a worker process)


def edge_config(dim: int, m: int = EDGE["m"], ef_construct: int = EDGE["ef_construct"]) -> Any:
    """The Edge settings benchmarked: HNSW (m=16 unless asked), int8 scalar quantization in RAM, vectors on disk."""
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeVectorParams,
        HnswIndexConfig,
        ScalarQuantizationConfig,
        ScalarType,
    )

    return EdgeConfig(
        vectors={"emb": EdgeVectorParams(size=dim, distance=Distance.Cosine, on_disk=True)},
        hnsw_config=HnswIndexConfig(m=m, ef_construct=ef_construct, full_scan_threshold=10_000),
        quantization_config=ScalarQuantizationConfig(type=ScalarType.Int8, quantile=EDGE["quantile"],
                                                     always_ram=True),
    )


def run_edge(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Qdrant Edge used directly: upsert chunk-wise, ``optimize()`` once, query at several ``hnsw_ef``."""
    import qdrant_edge as qe

    n, dim = spec["n"], spec["dim"]
    path = work / f"edge_{n}"
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    shard = qe.EdgeShard.create(str(path), edge_config(dim, spec.get("hnsw_m", EDGE["m"]),
                                                      spec.get("ef_construct", EDGE["ef_construct"])))
    for first, x in corpus_chunks(spec):
        for s in range(0, len(x), 1000):
            shard.update(qe.UpdateOperation.upsert_points(
                [qe.Point(first + i, {"emb": x[i]}, {"label": f"L{(first + i) % 10}"})
                 for i in range(s, min(s + 1000, len(x)))]))
    loaded = time.perf_counter()
    shard.optimize()
    shard.update(qe.UpdateOperation.create_field_index("label", qe.PayloadSchemaType.Keyword))
    shard.flush()
    built = time.perf_counter()
    out = {"upsert_s": loaded - start, "hnsw_s": built - loaded, "build_s": built - start,
           "indexed": shard.info().indexed_vectors_count, "m": spec.get("hnsw_m", EDGE["m"]),
           "ef_construct": spec.get("ef_construct", EDGE["ef_construct"])}
    q, truth = _queries_and_truth(spec, work)
    out["by_ef"] = {}
    for ef in EFS:
        params = qe.SearchParams(hnsw_ef=ef, quantization=qe.QuantizationSearchParams(
            rescore=True, oversampling=EDGE["oversampling"]))

        def request(v: np.ndarray, params: Any = params) -> Any:
            return qe.QueryRequest(query=qe.Query.Nearest(v, using="emb"), limit=K, params=params)

        lat = latencies(lambda v, request=request: [p.id for p in shard.query(request(v))], q)
        batched = timed_batch(lambda b, request=request: shard.query_batch(
            qe.QueryBatchRequest([request(v) for v in b])), q)
        out["by_ef"][ef] = {"p50_ms": lat["p50_ms"], "p95_ms": lat["p95_ms"], "batched_ms": batched,
                            "recall": recall(lat["found"], truth)}
    shard.close()
    out["disk_mib"] = disk_mib(path)
    return _pick_ef(out)


def _pick_ef(out: dict[str, Any]) -> dict[str, Any]:
    """Headline figures: the smallest ``hnsw_ef`` reaching recall 0.98 (else the best recall)."""
    runs = out["by_ef"]
    good = [ef for ef in sorted(runs) if runs[ef]["recall"] >= 0.98]
    ef = good[0] if good else max(runs, key=lambda e: runs[e]["recall"])
    out.update({"ef": ef, **runs[ef]})
    return out


class _VectorEncoder:
    """Stand-in model for `SimilarityIndex`: a query text ``"q<i>"`` encodes to query vector ``i``."""

    def __init__(self, q: np.ndarray):
        from refinery_quaterion.data.dataset import LabelMap
        from refinery_quaterion.data.text import TextTemplate

        self.q = q
        self.dim = q.shape[1]
        self.template = TextTemplate("{text}")
        self.label_map = LabelMap([f"L{i}" for i in range(10)])

    def encode(self, items: Any, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return np.stack([self.q[int(str(t)[1:])] for t in items]) if len(items) else np.zeros((0, self.dim))

    def fingerprint(self) -> str:
        return "bench-vectors"


def run_index(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Our `SimilarityIndex` on Edge: ``add_vectors`` chunk-wise inside ``bulk_load()``, then ``search``."""
    from refinery_quaterion.search import SimilarityIndex

    if not hasattr(SimilarityIndex, "add_vectors"):
        return {"skipped": "SimilarityIndex.add_vectors is not available yet"}
    from refinery_quaterion.search.config import IndexConfig

    n = spec["n"]
    path = work / f"index_{n}"
    shutil.rmtree(path, ignore_errors=True)
    q, truth = _queries_and_truth(spec, work)
    config = IndexConfig(search_ef=spec["index_ef"],  # the library's HNSW defaults
                         quantization="int8", oversampling=EDGE["oversampling"], on_disk=True)
    start = time.perf_counter()
    index = SimilarityIndex(_VectorEncoder(q), path=path, config=config)
    with index.bulk_load():
        for first, x in corpus_chunks(spec):
            ids = list(range(first, first + len(x)))
            index.add_vectors(ids, x, [{"label": f"L{i % 10}"} for i in ids])
    index.flush()
    out: dict[str, Any] = {"build_s": time.perf_counter() - start}
    lat = latencies(lambda v: [h.id for h in index.search(f"q{_row(q, v)}", k=K)], q)
    out["batched_ms"] = timed_batch(lambda b: index.search_many([f"q{_row(q, v)}" for v in b], k=K), q)
    out.update({"p50_ms": lat["p50_ms"], "p95_ms": lat["p95_ms"], "recall": recall(lat["found"], truth),
                "ef": config.search_ef})
    index.close()
    out["disk_mib"] = disk_mib(path)
    return out


def _row(q: np.ndarray, v: np.ndarray) -> int:
    return int(np.flatnonzero((q == v).all(axis=1))[0])


def run_client(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """qdrant-client local mode (pure Python): upload in batches of 256, then ``query_points``."""
    from qdrant_client import QdrantClient, models

    n, dim = spec["n"], spec["dim"]
    if n > CLIENT_MAX:
        return {"skipped": f"local mode is only measured up to {CLIENT_MAX:,} points"}
    path = work / f"client_{n}"
    shutil.rmtree(path, ignore_errors=True)
    client = QdrantClient(path=str(path))
    client.create_collection("bench", vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
    start = time.perf_counter()
    for first, x in corpus_chunks(spec):
        for s in range(0, len(x), 256):
            client.upsert("bench", points=[models.PointStruct(id=first + i, vector=x[i].tolist(),
                                                              payload={"label": f"L{(first + i) % 10}"})
                                           for i in range(s, min(s + 256, len(x)))])
            if time.perf_counter() - start > spec["client_budget"]:
                client.close()
                shutil.rmtree(path, ignore_errors=True)
                return {"skipped": f"build passed {spec['client_budget']} s at {first + s:,} points"}
    out: dict[str, Any] = {"build_s": time.perf_counter() - start}
    q, truth = _queries_and_truth(spec, work)
    q = q[: spec["client_queries"]]
    lat = latencies(lambda v: [p.id for p in client.query_points("bench", query=v.tolist(), limit=K).points], q)
    out["batched_ms"] = timed_batch(lambda b: client.query_batch_points("bench", [
        models.QueryRequest(query=v.tolist(), limit=K) for v in b]), q, batch=len(q))
    out.update({"p50_ms": lat["p50_ms"], "p95_ms": lat["p95_ms"], "recall": recall(lat["found"], truth[: len(q)]),
                "queries": len(q)})
    client.close()
    out["disk_mib"] = disk_mib(path)
    return out


def run_exact(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Exact cosine search with numpy: all vectors in one float32 matrix, ``argpartition`` for the top 10."""
    n, dim = spec["n"], spec["dim"]
    start = time.perf_counter()
    x = np.empty((n, dim), dtype=np.float32)
    for first, part in corpus_chunks(spec):
        x[first:first + len(part)] = part
    out: dict[str, Any] = {"build_s": time.perf_counter() - start}
    q, truth = _queries_and_truth(spec, work)
    q = q[: spec["exact_queries"]]

    def top(scores: np.ndarray) -> np.ndarray:
        return np.argpartition(-scores, K - 1, axis=-1)[..., :K]

    lat = latencies(lambda v: top(x @ v).tolist(), q)
    out["batched_ms"] = timed_batch(lambda b: top(b @ x.T), q)
    out.update({"p50_ms": lat["p50_ms"], "p95_ms": lat["p95_ms"], "recall": recall(lat["found"], truth[: len(q)]),
                "disk_mib": None, "queries": len(q)})
    return out


def _queries_and_truth(spec: dict[str, Any], work: Path) -> tuple[np.ndarray, np.ndarray]:
    return query_vectors(spec), np.load(work / f"truth_{spec['data']}_{spec['n']}.npy")




def worker(spec: dict[str, Any]) -> None:
    """Run one engine on one size and print its figures as one JSON line."""
    work = Path(spec["work"])
    anon = AnonPeak()
    try:
        out = globals()[f"run_{spec['engine']}"](spec, work)
    except Exception as err:  # a failing engine is reported, the others still run
        out = {"error": f"{type(err).__name__}: {err}"}
    out["peak_rss_mib"] = _rss_mib()
    out["peak_anon_mib"] = anon.stop()
    print(json.dumps(out, default=str), flush=True)


# ---------------------------------------------------------------- driver


def run_engine(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One engine on one size in a fresh Python process; its JSON line, or why there is none."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"did not finish within {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": f"worker exited {done.returncode} without a result"}


def machine() -> dict[str, Any]:
    """What the numbers were measured on, and how busy it was."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "numpy": np.__version__, "qdrant_edge_py": ver("qdrant-edge-py"), "qdrant_client": ver("qdrant-client"),
            "note": NOTE}


def run_size(n: int, args: argparse.Namespace, work: Path, vectors: Path | None = None) -> dict[str, Any]:
    """Every selected engine on ``n`` points; the exact top 10 is computed first, chunk-wise.

    ``vectors``: a folder with ``corpus.npy`` and ``queries.npy`` (the AG News vectors) instead of
    the synthetic data.
    """
    data = "ag_news" if vectors else "synthetic"
    base = {"n": n, "dim": args.dim, "seed": args.seed, "queries": args.queries, "data": data,
            "vectors": str(vectors) if vectors else None, "work": str(work)}
    start = time.perf_counter()
    truth = exact_top_k(query_vectors(base), corpus_chunks(base))
    np.save(work / f"truth_{data}_{n}.npy", truth)
    tag = f"{data} {n:,}"
    print(f"[{tag}] exact top {K} of {args.queries} queries: {time.perf_counter() - start:.1f} s", flush=True)
    results: dict[str, Any] = {}
    for engine in args.engines:
        spec = {**base, "engine": engine, "hnsw_m": args.hnsw_m, "ef_construct": args.ef_construct,
                "client_queries": min(args.queries, 50),
                "exact_queries": min(args.queries, 50 if n > 200_000 else 200),
                "client_budget": args.client_budget, "index_ef": args.index_ef}
        key = engine if (args.hnsw_m, args.ef_construct) == (EDGE["m"], EDGE["ef_construct"]) or engine != "edge" \
            else f"edge@{args.hnsw_m}/{args.ef_construct}"
        results[key] = run_engine(spec, timeout=args.timeout)
        print(f"[{tag}] {key}: {summary(results[key])}", flush=True)
    return results


# ---------------------------------------------------------------- the AG News case: real vectors, throughput


def ag_news_texts() -> tuple[Any, list[dict[str, Any]]]:
    """The 20,000 AG News records of the case (train, val, test) and the 200 query records (test, sampled)."""
    import pandas as pd
    from _common import ag_news

    frames = [ag_news(name) for name in ("train", "val", "test")]
    records = pd.concat(frames, ignore_index=True)[["Title", "Description", "label"]]
    queries_ = frames[2].sample(n=200, random_state=0)[["Title"]].to_dict(orient="records")
    return records, queries_


def ag_news_model(work: Path) -> Path:
    """The case's model (all-MiniLM-L6-v2 + the default head, trained on train/val), trained once per run."""
    from _common import TEXT, ag_news

    from refinery_quaterion import FitConfig, ModelConfig, train_model

    folder = work / "ag_news_model"
    if not (folder / "config.json").is_file():
        print("[ag_news] training the case's model (the default embedding cache)", flush=True)
        train_model(ag_news("train"), ag_news("val"), folder, model_config=ModelConfig(pretrained="minilm",
                    template=TEXT), fit_config=FitConfig(progress=False))
    return folder


def ag_news_vectors(work: Path) -> Path:
    """Encode the 20,000 AG News records (the corpus) and 200 test titles (the queries) with the case's model.

    The queries are titles only -- short, as a user types them -- encoded with the template
    ``"{Title}"``; the corpus is every record rendered with the model's own template.
    """
    from refinery_quaterion import load
    from refinery_quaterion.data.text import TextTemplate

    folder = work / "ag_news_vectors"
    if (folder / "queries.npy").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    model = load(ag_news_model(work), embedding_cache=True)
    records, query_records = ag_news_texts()
    start = time.perf_counter()
    corpus = model.encode(records.to_dict(orient="records"), progress=False)
    titles = TextTemplate("{Title}").render_many(query_records)
    np.save(folder / "corpus.npy", np.asarray(corpus, dtype=np.float32))
    np.save(folder / "queries.npy", np.asarray(model.encode(titles, progress=False), dtype=np.float32))
    print(f"[ag_news] {len(corpus):,} corpus and {len(titles)} query vectors in {time.perf_counter() - start:.0f} s "
          f"(backend {model.encoder.backend})", flush=True)
    return folder


def run_single(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Encode + index in one process: `load` with the runtime's int8 backend, no embedding cache, `index_records`."""
    from refinery_quaterion import load
    from refinery_quaterion.search import SimilarityIndex, index_records

    start = time.perf_counter()
    backend = f"{spec['runtime']}-int8"
    model = load(spec["model"], embedding_cache=None, encoder_backend=backend)
    path = work / "single_index"
    shutil.rmtree(path, ignore_errors=True)
    with SimilarityIndex(model, path=path) as index:
        done = index_records(index, spec["records"], progress=False)
        seconds = time.perf_counter() - start
        count = len(index)
    return {"seconds": seconds, "points": count, "texts_per_s": spec["texts"] / seconds, "written": done.written,
            "workers": 1, "how": f"one process: load(model, encoder_backend='{backend}') + index_records"}


def run_ray(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Encode on a local Ray (2 workers, the runtime's int8 export) into Parquet shards, then load them into Edge."""
    from refinery_quaterion import load
    from refinery_quaterion.scale import RayIndexConfig, index_with_ray
    from refinery_quaterion.search import SimilarityIndex, load_vector_shards

    start = time.perf_counter()
    shards, path = work / "ray_shards", work / "ray_index"
    shutil.rmtree(path, ignore_errors=True)
    config = RayIndexConfig(num_cpus=2, workers=2, cpus_per_worker=1, quantize="int8", overwrite=True,
                            runtime=spec["runtime"])
    encoded = index_with_ray(spec["model"], spec["records"], out=shards, config=config)
    with SimilarityIndex(load(spec["model"], embedding_cache=None), path=path) as index:
        load_vector_shards(index, shards)
        count = len(index)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "points": count, "texts_per_s": spec["texts"] / seconds,
            "ray_seconds": encoded.seconds, "workers": config.workers,
            "how": f"local Ray (2 CPUs, 2 encoder actors, {spec['runtime']} int8) -> Parquet shards -> "
                   "load_vector_shards"}


class _HashEncoder:
    """Stand-in model for the streaming run: each text encodes to a unit vector seeded by its CRC-32 (fast)."""

    def __init__(self, dim: int):
        from refinery_quaterion.data.dataset import LabelMap
        from refinery_quaterion.data.text import TextTemplate

        self.dim = dim
        self.template = TextTemplate("{text}")
        self.label_map = LabelMap([f"L{i}" for i in range(10)])

    def encode(self, items: Any, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        import zlib

        out = np.stack([np.random.default_rng(zlib.crc32(str(t).encode())).standard_normal(self.dim)
                        for t in items]) if len(items) else np.zeros((0, self.dim))
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32) if len(items) else out

    def fingerprint(self) -> str:
        return f"bench-hash-{self.dim}"


def write_records(path: Path, n: int) -> None:
    """``n`` JSON Lines records ``{"id", "text", "label"}`` (about 120 bytes each), written in blocks."""
    words = np.array("market team season court price energy vote storm launch profit league study".split())
    rng = np.random.default_rng(7)
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, n, 50_000):
            rows = range(start, min(start + 50_000, n))
            picks = rng.integers(len(words), size=(len(rows), 12))
            handle.writelines(json.dumps({"id": i, "text": f"record {i}: " + " ".join(words[p]), "label": f"L{i % 10}"})
                              + "\n" for i, p in zip(rows, picks, strict=True))


def run_streaming(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """`index_records` over a JSON Lines file of ``n`` records into an Edge folder: time and peak memory.

    The encoder is a stand-in (`_HashEncoder`, 32-d), so the run measures what streaming costs --
    reading, chunking, ids, payloads, upserts, the HNSW build -- not a model.
    """
    from refinery_quaterion.search import SimilarityIndex, index_records
    from refinery_quaterion.search.config import IndexConfig

    n, source, path = spec["n"], Path(spec["file"]), work / f"stream_index_{spec['n']}"
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    config = IndexConfig(id_field="id", on_disk=spec.get("on_disk", False))
    with SimilarityIndex(_HashEncoder(32), path=path, config=config) as index:
        streaming = AnonPeak()
        with index.bulk_load():  # joined by index_records' own: the HNSW graph is built when this block ends
            done = index_records(index, source, chunk_size=4096, progress=False)
            streamed, stream_anon = time.perf_counter(), streaming.stop()
        count = len(index)
    return {"records": n, "seconds": time.perf_counter() - start, "points": count, "written": done.written,
            "stream_s": streamed - start, "stream_anon_mib": stream_anon, "on_disk": config.on_disk,
            "file_mib": source.stat().st_size / 2**20, "disk_mib": disk_mib(path)}


def run_streaming_sizes(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Stream files of each ``--streaming`` size; peak memory should not grow with the file."""
    out = {}
    for n in (int(v) for v in args.streaming.split(",") if v.strip()):
        file = work / f"records_{n}.jsonl"
        if not file.is_file():
            write_records(file, n)
        out[str(n)] = r = run_engine({"engine": "streaming", "n": n, "file": str(file), "work": str(work)},
                                     timeout=args.timeout)
        line = r.get("skipped") or r.get("error") or (f"{r['seconds']:.0f} s, {r['points']:,} points, peak RSS "
                                                      f"{r['peak_rss_mib']:.0f} MiB (anonymous "
                                                      f"{r['peak_anon_mib']:.0f} MiB)")
        print(f"[streaming {n:,}] {line}", flush=True)
        file.unlink()
    return out


def run_throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Encode + index the 20,000 AG News texts: one process vs a local Ray with 2 workers (each cold), ONNX then
    OpenVINO int8."""
    model = ag_news_model(work)
    records, _ = ag_news_texts()
    path = work / "ag_news_records.jsonl"
    records.to_json(path, orient="records", lines=True)
    out = {"texts": len(records)}
    for engine, runtime in (("single", "onnx"), ("ray", "onnx"), ("single", "openvino"), ("ray", "openvino")):
        spec = {"engine": engine, "runtime": runtime, "model": str(model), "records": str(path),
                "texts": len(records), "work": str(work)}
        key = engine if runtime == "onnx" else f"{engine}_{runtime}"
        out[key] = r = run_engine(spec, timeout=args.timeout)
        line = r.get("skipped") or r.get("error") or (f"{r['seconds']:.0f} s, {r['texts_per_s']:.0f} texts/s, "
                                                      f"{r['points']:,} points")
        print(f"[throughput] {key}: {line}", flush=True)
    return out


def summary(r: dict[str, Any]) -> str:
    """One line for the console."""
    if "skipped" in r or "error" in r:
        return r.get("skipped") or r["error"]
    return (f"build {r['build_s']:.1f} s, p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms, "
            f"batched {r['batched_ms']:.2f} ms/q, recall@10 {r['recall']:.3f}, RSS {r['peak_rss_mib']:.0f} MiB "
            f"(anonymous {r['peak_anon_mib']:.0f} MiB)")


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


ENGINE_NAMES = {"edge": "Qdrant Edge (HNSW, int8)", "index": "SimilarityIndex (Edge, default HNSW)",
                "client": "qdrant-client local mode", "exact": "exact (numpy)"}


def engine_label(engine: str, r: dict[str, Any]) -> str:
    """``Qdrant Edge (HNSW, int8), ef=512``; a variant ``edge@32/128`` names its graph settings."""
    name = ENGINE_NAMES[engine.split("@")[0]]
    if "@" in engine:
        name = name.replace("(HNSW,", f"(HNSW m={r.get('m')}, ef_construct={r.get('ef_construct')},")
    return name + (f", ef={r['ef']}" if r.get("ef") else "")


def engine_table(sizes: dict[str, Any], dim: int) -> list[str]:
    """One row per size and engine: build, latencies, recall, memory, disk."""
    lines = ["| points × dim | engine | build (s) | query p50 (ms) | p95 (ms) | batched (ms/query) | recall@10 "
             "| peak RSS (MiB) | of it not file-backed (MiB) | on disk (MiB) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, engines in sorted(sizes.items(), key=lambda kv: int(kv[0])):
        for engine, r in engines.items():
            label = engine_label(engine, r)
            if "skipped" in r or "error" in r:
                lines.append(f"| {int(n):,} × {dim} | {label} | {r.get('skipped') or r['error']} ||||||||")
                continue
            build = f"{r['build_s']:.1f}" + (f" ({r['upsert_s']:.1f} + {r['hnsw_s']:.1f})" if "hnsw_s" in r else "")
            lines.append(f"| {int(n):,} × {dim} | {label} | {build} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
                         f"| {r['batched_ms']:.2f} | {r['recall']:.3f} | {r['peak_rss_mib']:.0f} "
                         f"| {r['peak_anon_mib']:.0f} | {_fmt(r.get('disk_mib'), '.0f')} |")
    return lines


def throughput_lines(t: dict[str, Any]) -> list[str]:
    """Encode + index throughput: one process vs a local Ray."""
    lines = [f"**Encode + index, {t['texts']:,} AG News texts** (cold: no embedding cache; the model export "
             "and the index build are inside the time):", "",
             "| how | wall time (s) | texts/s | points | peak RSS of the driver (MiB) |", "|---|---:|---:|---:|---:|"]
    for engine in ("single", "ray", "single_openvino", "ray_openvino"):
        r = t.get(engine, {})
        if not r:
            continue
        if "seconds" not in r:
            lines.append(f"| {engine} | {r.get('skipped') or r.get('error')} ||||")
            continue
        lines.append(f"| {r['how']} | {r['seconds']:.0f} | {r['texts_per_s']:.0f} | {r['points']:,} "
                     f"| {r['peak_rss_mib']:.0f} |")
    return lines


def streaming_lines(runs: dict[str, Any]) -> list[str]:
    """`index_records` over files of growing size: memory stays flat."""
    lines = ["**Streaming bulk indexing** (`index_records` over a JSON Lines file into an Edge folder; a stand-in "
             "32-d encoder, so only the streaming is timed; chunks of 4,096 records). \"Streaming\" is reading, "
             "embedding and upserting; the HNSW graph is built once after it:", "",
             "| records | file (MiB) | streaming (s) | of it not file-backed, peak (MiB) | whole run with the HNSW "
             "build (s) | peak RSS (MiB) | of it not file-backed (MiB) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for n, r in sorted(runs.items(), key=lambda kv: int(kv[0])):
        if "seconds" not in r:
            lines.append(f"| {int(n):,} | {r.get('skipped') or r.get('error')} ||||||")
            continue
        lines.append(f"| {int(n):,} | {r['file_mib']:.0f} | {_fmt(r.get('stream_s'), '.0f')} "
                     f"| {_fmt(r.get('stream_anon_mib'), '.0f')} | {r['seconds']:.0f} | {r['peak_rss_mib']:.0f} "
                     f"| {r['peak_anon_mib']:.0f} |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The tables for the docs (generated; see benchmarks/update_docs.py)."""
    dim = results["settings"]["dim"]
    lines = [f"**Synthetic vectors** ({results['settings']['data']}):", "",
             *engine_table(results.get("sizes", {}), dim)]
    if results.get("ag_news"):
        lines += ["", f"**Real vectors: the AG News case's model** ({AG_NEWS_DATA}):", "",
                  *engine_table(results["ag_news"], dim)]
    lines += ["", "Build of Qdrant Edge: total (upsert + HNSW/quantization build). Edge by search `ef`:", "",
              *ef_lines(results)]
    if results.get("throughput"):
        lines += ["", *throughput_lines(results["throughput"])]
    if results.get("streaming"):
        lines += ["", *streaming_lines(results["streaming"])]
    lines += ["", *goal_lines(results), "", f"_{results['machine']['note']}._"]
    return "\n".join(lines)


def ef_lines(results: dict[str, Any]) -> list[str]:
    """Recall and latency of Edge at each search ``ef`` (the trade-off to tune)."""
    lines = ["| data | points | ef | p50 (ms) | p95 (ms) | batched (ms/query) | recall@10 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for data, key in (("synthetic", "sizes"), ("AG News", "ag_news")):
        for n, engines in sorted(results.get(key, {}).items(), key=lambda kv: int(kv[0])):
            for engine in (e for e in engines if e.startswith("edge")):
                graph = "" if "@" not in engine else f" (m={engines[engine]['m']}, ef_construct=" \
                    f"{engines[engine]['ef_construct']})"
                for ef, r in sorted(engines[engine].get("by_ef", {}).items(), key=lambda kv: int(kv[0])):
                    lines.append(f"| {data} | {int(n):,}{graph} | {ef} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
                                 f"| {r['batched_ms']:.2f} | {r['recall']:.3f} |")
    return lines


def goal_lines(results: dict[str, Any]) -> list[str]:
    """The issue's goals, checked against what was measured."""
    out = []
    million = results.get("sizes", {}).get("1000000", {})
    for engine, big in ((e, r) for e, r in million.items() if e.startswith("edge") and "build_s" in r):
        out.append(f"1M embedded ({engine_label(engine, big)}): build {big['build_s'] / 60:.1f} min (goal ≤ 15), "
                   f"p50 {big['p50_ms']:.2f} ms (goal ≤ 5) at recall@10 {big['recall']:.3f} (goal ≥ 0.98), "
                   f"peak RSS {big['peak_rss_mib'] / 1024:.2f} GiB, of which {big['peak_anon_mib'] / 1024:.2f} GiB "
                   "not file-backed (goal ≤ 2; the rest are pages of Edge's memory-mapped files, which the kernel "
                   "drops under memory pressure).")
    for data, key in (("synthetic", "sizes"), ("AG News", "ag_news")):
        out += small_goal_lines(data, results.get(key, {}).get("20000", {}))
    return out + throughput_goal_lines(results)


def throughput_goal_lines(results: dict[str, Any]) -> list[str]:
    """One line per runtime: one process against a local Ray."""
    out: list[str] = []
    t = results.get("throughput", {})
    for runtime, suffix in (("ONNX", ""), ("OpenVINO", "_openvino")):
        single, ray = t.get(f"single{suffix}", {}), t.get(f"ray{suffix}", {})
        if "seconds" in single and "seconds" in ray:
            out.append(f"Encode + index of {t['texts']:,} AG News texts, {runtime} int8: "
                       f"{single['texts_per_s']:.0f} texts/s in one process, {ray['texts_per_s']:.0f} texts/s on a "
                       f"local Ray with {ray['workers']} workers ({ray['texts_per_s'] / single['texts_per_s']:.2f}×; "
                       "with 2 cores Ray has nothing to spread over: it pays off with more CPUs or machines).")
    return out


ISSUE_BASELINE = {"build_s": 78.0, "p50_ms": 197.0}
"""The old embedded engine (qdrant-client local mode) at 20k x 384 as the issue measured it (2 shared cores)."""


def small_goal_lines(data: str, small: dict[str, Any]) -> list[str]:
    """The 20k goals (build >= 20x, queries >= 100x faster than local mode) for one data set."""
    client, lines = small.get("client", {}), []
    for engine in ("edge", "index"):
        r = small.get(engine, {})
        if "build_s" not in r or "build_s" not in client:
            continue
        lines.append(f"20k {data}, {ENGINE_NAMES[engine]}: builds {client['build_s'] / r['build_s']:.1f}× faster "
                     f"(goal ≥ 20×) and answers {client['p50_ms'] / r['p50_ms']:.0f}× faster (p50; goal ≥ 100×) "
                     f"than local mode measured in the same run ({client['build_s']:.0f} s, "
                     f"{client['p50_ms']:.0f} ms); against the issue's local-mode figures "
                     f"({ISSUE_BASELINE['build_s']:.0f} s, {ISSUE_BASELINE['p50_ms']:.0f} ms): "
                     f"{ISSUE_BASELINE['build_s'] / r['build_s']:.0f}× and "
                     f"{ISSUE_BASELINE['p50_ms'] / r['p50_ms']:.0f}×.")
    return lines


def load_previous(name: str) -> dict[str, Any]:
    """Earlier results of this benchmark (kept, except the engines and sizes run now)."""
    path = HERE / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save(name: str, part: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Merge ``part`` (``{"sizes": ...}``, ``{"ag_news": ...}`` or ``{"throughput": ...}``) into
    ``results/<name>.json`` and rewrite the Markdown."""
    from _common import write_results

    results = load_previous(name)
    for key, value in part.items():
        if key in ("throughput", "streaming"):
            results[key] = value
            continue
        for n, engines in value.items():
            results.setdefault(key, {}).setdefault(n, {}).update(engines)
    if part or "machine" not in results:
        results["machine"] = machine()
    results["machine"]["note"] = NOTE
    results["settings"] = {"dim": args.dim, "seed": args.seed, "queries": args.queries, "edge": EDGE, "efs": EFS,
                           "data": f"synthetic clustered unit vectors ({CLUSTERS} clusters, rank-{RANK} spread, "
                                   f"seed {args.seed}); {args.queries} queries (fewer for local mode and exact)"}
    write_results(name, results, markdown(results))
    if results.get("throughput"):  # the Ray guide shows this part alone
        from refinery_quaterion._io import atomic_write_text

        text = "\n".join([*throughput_lines(results["throughput"]), "", *throughput_goal_lines(results)])
        atomic_write_text(HERE / "results" / f"{name}_throughput.md", text + "\n")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000,100000", help="comma-separated corpus sizes")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--client-budget", type=float, default=300.0, help="abandon a local-mode build after this")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per engine and size, seconds")
    parser.add_argument("--quick", action="store_true", help="5,000 points, 50 queries, results name search_quick")
    parser.add_argument("--name", default=None, help="results file name (default: search)")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder, kept: the AG News model and vectors are reused from it "
                        "(default: a temporary one)")
    parser.add_argument("--hnsw-m", type=int, default=EDGE["m"], help="HNSW m of the edge engine")
    parser.add_argument("--ef-construct", type=int, default=EDGE["ef_construct"],
                        help="HNSW ef_construct of the edge engine (a non-default pair is stored as its own row)")
    parser.add_argument("--index-ef", type=int, default=512, help="search_ef of the SimilarityIndex engine")
    parser.add_argument("--data", default="synthetic,ag_news",
                        help="comma-separated: synthetic (at --sizes), ag_news (the case's 20,000 real vectors)")
    parser.add_argument("--throughput", action="store_true",
                        help="also time encode + index of the 20,000 AG News texts: one process vs local Ray")
    parser.add_argument("--streaming", default="", help="comma-separated record counts: stream a JSON Lines "
                        "file of each size through index_records (e.g. 100000,1000000)")
    parser.add_argument("--render", action="store_true", help="only rewrite results/<name>.md from its JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.render:
        name = args.name or "search"
        save(name, {}, argparse.Namespace(**{**vars(args), **load_previous(name)["settings"]}))
        return
    if args.quick:
        args.sizes, args.queries = "5000", 50
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    name = args.name or ("search_quick" if args.quick else "search")
    data = {d.strip() for d in args.data.split(",") if d.strip()}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "ag_news" in data:
            vectors = ag_news_vectors(work)
            n = len(np.load(vectors / "corpus.npy", mmap_mode="r"))
            save(name, {"ag_news": {str(n): run_size(n, args, work, vectors)}}, args)
        if "synthetic" in data:
            for n in (int(s) for s in args.sizes.split(",") if s.strip()):
                save(name, {"sizes": {str(n): run_size(n, args, work)}}, args)
        if args.throughput:
            save(name, {"throughput": run_throughput(args, work)}, args)
        if args.streaming:
            save(name, {"streaming": run_streaming_sizes(args, work)}, args)


if __name__ == "__main__":
    main()
