"""Streaming bulk indexing: chunked readers, bounded memory, resume after an interrupt, vector shards."""

from __future__ import annotations

import json
import tracemalloc
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("qdrant_edge")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from refinery_quaterion.data.dataset import LabelMap  # noqa: E402
from refinery_quaterion.data.text import TextTemplate  # noqa: E402
from refinery_quaterion.search import SimilarityIndex  # noqa: E402
from refinery_quaterion.search.config import IndexConfig  # noqa: E402
from refinery_quaterion.search.points import point_id_for, point_id_from_text, point_id_text  # noqa: E402
from refinery_quaterion.search.sources import count_records, record_chunks  # noqa: E402
from refinery_quaterion.search.streaming import index_records, load_vector_shards  # noqa: E402

DIM = 8

qdrant_client = pytest.importorskip("qdrant_client")


class StubEncoder:
    """Stand-in model: a deterministic unit vector per text; counts the texts it encodes."""

    def __init__(self, fail_after: int | None = None, keep_texts: bool = True):
        self.dim = DIM
        self.template = TextTemplate("{text}")
        self.label_map = LabelMap(["a", "b"])
        self.encoded: list[str] = []
        self.calls = 0
        self.fail_after = fail_after
        self.keep_texts = keep_texts

    def encode(self, items: Sequence[Mapping[str, Any] | str], batch_size: int = 64,
               progress: bool = False) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        texts = [self.template(item) if isinstance(item, Mapping) else item for item in items]
        if self.keep_texts:
            self.encoded.extend(texts)
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(DIM) for t in texts]) \
            if texts else np.zeros((0, DIM))
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def fingerprint(self) -> str:
        return "stub-encoder"


def corpus(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": range(n), "text": [f"record number {i}" for i in range(n)],
                         "label": ["a" if i % 3 else "b" for i in range(n)]})


def config() -> IndexConfig:
    return IndexConfig(id_field="id")


def all_ids(index: SimilarityIndex, n: int) -> set[Any]:
    return index.existing_ids(list(range(n)))


# ------------------------------------------------------------------ sources


TRICKY = [
    {"id": 1, "text": "NA", "label": "a", "note": "null"},
    {"id": 2, "text": "None", "label": "b", "note": None},
    {"id": 3, "text": "plain", "label": "a", "note": "NaN"},
    {"id": 4, "text": "ünïcode, \"quoted\"", "label": None, "note": "x"},
    {"id": 5, "text": "last", "label": "b", "note": ""},
]


def write_all_formats(tmp_path: Path, records: list[dict[str, Any]]) -> dict[str, Path]:
    paths = {"jsonl": tmp_path / "r.jsonl", "csv": tmp_path / "r.csv", "parquet": tmp_path / "r.parquet",
             "json": tmp_path / "r.json"}
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    frame = pd.DataFrame(records)
    frame.to_csv(paths["csv"], index=False)
    pq.write_table(pa.Table.from_pylist(records), paths["parquet"], row_group_size=2)
    paths["json"].write_text(json.dumps(records), encoding="utf-8")
    return paths


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "json"])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 100])
def test_chunks_give_the_same_records_as_reading_whole(tmp_path: Path, fmt: str, chunk_size: int) -> None:
    path = write_all_formats(tmp_path, TRICKY)[fmt]
    whole = next(iter(record_chunks(path, chunk_size=10**6)))
    chunks = list(record_chunks(path, chunk_size=chunk_size))
    assert all(len(c) <= chunk_size for c in chunks)
    assert [r for c in chunks for r in c] == whole
    assert len(whole) == len(TRICKY)
    assert count_records(path) in (len(TRICKY), None)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_na_strings_survive_and_empty_cells_are_missing(tmp_path: Path, fmt: str) -> None:
    path = write_all_formats(tmp_path, TRICKY)[fmt]
    rows = [r for c in record_chunks(path, chunk_size=2) for r in c]
    assert [r["text"] for r in rows][:3] == ["NA", "None", "plain"]
    assert rows[0]["note"] == "null" and rows[2]["note"] == "NaN"
    assert rows[1]["note"] is None and rows[3]["label"] is None
    # CSV cannot tell "" from a missing value: both are an empty cell, read as missing
    assert rows[4]["note"] == ("" if fmt != "csv" else None)


def test_csv_matches_pandas_with_explicit_na(tmp_path: Path) -> None:
    path = write_all_formats(tmp_path, TRICKY)["csv"]
    expected = pd.read_csv(path, keep_default_na=False, na_values=[""])
    rows = [r for c in record_chunks(path, chunk_size=2) for r in c]
    assert [r["text"] for r in rows] == expected["text"].tolist()
    assert count_records(path) == len(TRICKY)


def test_dataframe_and_iterable_sources(tmp_path: Path) -> None:
    frame = corpus(7)
    chunks = list(record_chunks(frame, chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert chunks[2][0] == {"id": 6, "text": "record number 6", "label": "b"}
    generated = (r for r in frame.to_dict(orient="records"))
    assert [r for c in record_chunks(generated, chunk_size=4) for r in c] == frame.to_dict(orient="records")
    assert count_records(frame) == 7 and count_records(iter([])) is None


def test_bad_sources_give_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 2 is a JSON list; expected a JSON object"):
        list(record_chunks(bad, chunk_size=10))
    with pytest.raises(FileNotFoundError, match="no such file"):
        record_chunks(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        record_chunks(corpus(2), chunk_size=0)
    with pytest.raises(TypeError, match="record 1 is a int"):
        list(record_chunks([{"a": 1}, 5], chunk_size=10))


# ------------------------------------------------------------------ index_records


def test_index_records_writes_every_record_once(tmp_path: Path) -> None:
    frame = corpus(50)
    path = tmp_path / "corpus.jsonl"
    frame.to_json(path, orient="records", lines=True)
    with SimilarityIndex(StubEncoder(), path=tmp_path / "index", config=config()) as index:
        result = index_records(index, path, chunk_size=16, progress=False)
        assert (result.read, result.written, result.skipped) == (50, 50, 0)
        assert len(index) == 50 and all_ids(index, 50) == set(range(50))
        hit = index.search("record number 7", k=1)[0]
        assert hit.id == 7 and hit.payload["label"] == "a"
        again = index_records(index, path, chunk_size=16, progress=False)
        assert (again.written, again.skipped, len(index)) == (0, 50, 50)


def test_interrupted_run_is_completed_by_a_second_run(tmp_path: Path) -> None:
    frame = corpus(100)
    folder = tmp_path / "index"
    first = StubEncoder(fail_after=2)
    with SimilarityIndex(first, path=folder, config=config()) as index:
        with pytest.raises(KeyboardInterrupt):
            index_records(index, frame, chunk_size=20, progress=False)
        first.fail_after = None
        assert len(index) == 40  # the two chunks written before Ctrl-C are there and searchable
        assert index.search("record number 3", k=1)[0].id == 3
    encoder = StubEncoder()
    with SimilarityIndex.from_path(encoder, folder, config=config()) as index:
        result = index_records(index, frame, chunk_size=20, progress=False)
        assert (result.written, result.skipped) == (60, 40)
        assert len(index) == 100 and all_ids(index, 100) == set(range(100))
    assert len(encoder.encoded) == 60 and "record number 0" not in encoder.encoded  # nothing re-encoded


def test_resume_on_the_server_protocol() -> None:
    qdrant_client = pytest.importorskip("qdrant_client")
    client = qdrant_client.QdrantClient(":memory:")  # stands in for a Qdrant server
    frame = corpus(60)
    first = StubEncoder(fail_after=1)
    with SimilarityIndex(first, client=client, config=config()) as index:
        with pytest.raises(KeyboardInterrupt):
            index_records(index, frame, chunk_size=25, progress=False)
        assert len(index) == 25
    encoder = StubEncoder()
    with SimilarityIndex(encoder, client=client, config=config()) as index:
        result = index_records(index, frame, chunk_size=25, progress=False)
        assert (result.written, result.skipped, len(index)) == (35, 25, 60)
    assert len(encoder.encoded) == 35


def test_text_derived_ids_and_record_errors(tmp_path: Path) -> None:
    records = [{"text": "alpha", "label": "a"}, {"text": "beta", "label": "b"}, {"text": "alpha", "label": "b"}]
    with SimilarityIndex(StubEncoder(), config=IndexConfig()) as index:
        result = index_records(index, records, chunk_size=2, progress=False)
        # the second "alpha" (another chunk) has another label: it replaces the first, as in add()
        assert (result.read, result.written, result.skipped) == (3, 3, 0)
        assert index.count(filter_label="b") == 2
        assert index.existing_ids([point_id_for(text="alpha")]) == {point_id_for(text="alpha")}
        with pytest.raises(ValueError, match=r"records 2 to 3 .*record 1 renders to an empty text"):
            index_records(index, [*records[:2], {"text": "gamma", "label": "a"}, {"text": " ", "label": "a"}],
                          chunk_size=2, progress=False)


def test_progress_line_when_piped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimilarityIndex(StubEncoder(), config=config()) as index:
        index_records(index, corpus(30), chunk_size=8)
    err = capsys.readouterr().err
    assert "Indexing: 30 points in" in err


def _peak_bytes(n: int, tmp_path: Path) -> int:
    path = tmp_path / f"c{n}.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps({"id": i, "text": f"r{i}", "label": "a"}) + "\n")
    with SimilarityIndex(StubEncoder(keep_texts=False), path=tmp_path / f"i{n}", config=config()) as index:
        tracemalloc.start()
        index_records(index, path, chunk_size=250, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.slow
def test_peak_python_memory_does_not_grow_with_the_corpus(tmp_path: Path) -> None:
    small, large = _peak_bytes(2_000, tmp_path), _peak_bytes(20_000, tmp_path)
    assert large < 1.5 * small + 2**20, (small, large)


def test_chunk_bounds_the_records_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import refinery_quaterion.search.streaming as streaming

    seen: list[int] = []
    original = streaming.records_to_points
    monkeypatch.setattr(streaming, "records_to_points", lambda rows, *a, **k: (seen.append(len(rows)),
                                                                                original(rows, *a, **k))[1])
    with SimilarityIndex(StubEncoder(), config=config()) as index:
        index_records(index, (r for r in corpus(1000).to_dict(orient="records")), chunk_size=64, progress=False)
        assert len(index) == 1000
    assert max(seen) == 64 and sum(seen) == 1000


# ------------------------------------------------------------------ vector shards


def write_shard(path: Path, ids: list[str], vectors: np.ndarray, payloads: list[Any]) -> None:
    table = pa.table({"id": pa.array(ids, pa.string()),
                      "vector": pa.array(list(vectors), pa.list_(pa.float32())),
                      "payload": pa.array([p if isinstance(p, str) else json.dumps(p) for p in payloads],
                                          pa.string())})
    pq.write_table(table, path, row_group_size=7)


def test_parquet_shards_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((30, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    uid = str(uuid.uuid4())
    ids = [point_id_text(i) for i in range(29)] + [uid]
    payloads = [{"label": "a" if i % 2 else "b", "text": f"t{i}"} for i in range(30)]
    (tmp_path / "shards" / "sub").mkdir(parents=True)
    write_shard(tmp_path / "shards" / "part-0.parquet", ids[:12], vectors[:12], payloads[:12])
    write_shard(tmp_path / "shards" / "sub" / "part-1.parquet", ids[12:], vectors[12:], payloads[12:])
    with SimilarityIndex(StubEncoder(), path=tmp_path / "index", config=config()) as index:
        result = load_vector_shards(index, tmp_path / "shards", chunk_size=5, progress=False)
        assert (result.read, result.written) == (30, 30) and len(index) == 30
        load_vector_shards(index, tmp_path / "shards", progress=False)  # again: replaced, not duplicated
        assert len(index) == 30 and index.existing_ids([uid, 3]) == {uid, 3}
        assert index.count(filter_label="b") == 15


def test_bad_shards_name_the_file_column_and_row(tmp_path: Path) -> None:
    vectors = np.ones((3, DIM), dtype=np.float32) / np.sqrt(DIM)
    with SimilarityIndex(StubEncoder(), config=config()) as index:
        with pytest.raises(FileNotFoundError, match="holds no .parquet vector shards"):
            load_vector_shards(index, tmp_path, progress=False)
        write_shard(tmp_path / "a.parquet", ["1", "x", "3"], vectors, [{}] * 3)
        with pytest.raises(ValueError, match=r"a\.parquet: column 'id', row 1"):
            load_vector_shards(index, tmp_path / "a.parquet", progress=False)
        write_shard(tmp_path / "a.parquet", ["1", "2", "3"], vectors, [{}, "[1]", {}])
        with pytest.raises(ValueError, match=r"a\.parquet: column 'payload', row 1"):
            load_vector_shards(index, tmp_path / "a.parquet", progress=False)
        write_shard(tmp_path / "a.parquet", ["1", "2", "3"], np.ones((3, DIM + 1), dtype=np.float32), [{}] * 3)
        with pytest.raises(ValueError, match=r"a\.parquet: rows 0 to 2: vectors have dimension 9"):
            load_vector_shards(index, tmp_path / "a.parquet", progress=False)
        pq.write_table(pa.table({"id": ["1"]}), tmp_path / "a.parquet")
        with pytest.raises(ValueError, match=r"lacks the column\(s\) 'vector', 'payload'"):
            load_vector_shards(index, tmp_path / "a.parquet", progress=False)


def test_point_id_text_round_trip() -> None:
    uid = str(uuid.uuid4())
    assert point_id_from_text(point_id_text(42)) == 42
    assert point_id_from_text(point_id_text(uid)) == uid
    with pytest.raises(ValueError, match="neither a non-negative int nor a UUID"):
        point_id_from_text("-3")


@pytest.mark.parametrize("backend", ["edge", "qdrant-client"])
def test_a_changed_label_is_rewritten_and_unchanged_records_are_skipped(backend, tmp_path) -> None:
    """Resuming must not keep a stale payload: a record whose label changed is embedded and written again."""
    records = [{"text": f"record number {i}", "label": "a" if i % 2 else "b"} for i in range(40)]
    encoder = StubEncoder()
    options = ({"client": qdrant_client.QdrantClient(":memory:")} if backend == "qdrant-client"
               else {"path": tmp_path / "index"})
    with SimilarityIndex(encoder, config=IndexConfig(), **options) as index:
        first = index_records(index, records, chunk_size=16, progress=False)
        changed = [dict(r, label="c") if i < 5 else r for i, r in enumerate(records)]
        encoded_before = len(encoder.encoded)
        second = index_records(index, changed, chunk_size=16, progress=False)
        assert (first.written, second.written, second.skipped) == (40, 5, 35)
        assert len(encoder.encoded) - encoded_before == 5
        assert index.count(filter_label="c") == 5 and len(index) == 40
