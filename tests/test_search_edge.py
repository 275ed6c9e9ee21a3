"""The index back ends: Qdrant Edge's folder (old engine, lock, bulk load, settings), precomputed vectors,
IndexConfig, and the qdrant-client back end's bulk-load practice."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qdrant_edge")
pytest.importorskip("qdrant_client")

from refinery_quaterion.search import INDEX_BACKENDS, IndexConfig, SimilarityIndex, point_id_for  # noqa: E402
from tests.test_search import BACKENDS, RECORDS, HashEncoder, Opener  # noqa: E402


@pytest.fixture(params=BACKENDS)
def open_index(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    opener = Opener(request.param, tmp_path)
    yield opener
    opener.close()


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_both_backends_are_registered() -> None:
    assert INDEX_BACKENDS.choices == ["edge", "qdrant-client"] and INDEX_BACKENDS.default == "edge"


def test_add_vectors_existing_ids_and_bulk_load(open_index: Opener) -> None:
    vectors = _unit(30, 64)
    ids = [point_id_for(record_id=f"doc-{i}") for i in range(20)] + list(range(10))
    payloads = [{"label": "Sports" if i % 2 else "World", "n": i} for i in range(30)]
    with open_index() as idx:
        with idx.bulk_load():
            idx.add_vectors(ids[:15], vectors[:15], payloads[:15])
            idx.add_vectors(ids[15:], vectors[15:], payloads[15:])
        assert len(idx) == 30 and idx.count("Sports") == 15
        assert idx.existing_ids([ids[0], ids[25], 99, point_id_for(record_id="nope")]) == {ids[0], ids[25]}
        idx.add_vectors(ids[:5], vectors[:5], payloads[:5])  # replaces, never duplicates
        assert len(idx) == 30 and idx.data_fingerprint is None
        idx.flush()
        with pytest.raises(ValueError, match="vectors have dimension 32, but the index holds 64-dimensional"):
            idx.add_vectors(ids[:2], _unit(2, 32), payloads[:2])
        with pytest.raises(ValueError, match="got 2 ids but 1 payloads"):
            idx.add_vectors(ids[:2], vectors[:2], payloads[:1])
        with pytest.raises(ValueError, match="NaN or infinite"):
            idx.add_vectors(ids[:1], np.full((1, 64), np.nan), payloads[:1])


def test_settings_reach_the_engine_and_search_still_finds_records(tmp_path: Any) -> None:
    config = IndexConfig(hnsw_m=8, hnsw_ef_construct=32, search_ef=16, quantization="int8", oversampling=3.0,
                         on_disk=True, batch_size=3)
    with SimilarityIndex(HashEncoder(), tmp_path / "index", config=config) as idx:
        idx.add(RECORDS, progress=False)
        assert idx.search("Stocks rally. Markets climb on strong earnings", k=1)[0].record["Title"] == "Stocks rally"
    stored = json.loads((tmp_path / "index" / "refinery" / "edge_config.json").read_text())
    assert stored["hnsw_config"]["m"] == 8 and stored["vectors"][""]["on_disk"] is True
    assert stored["quantization_config"]["scalar"]["type"] == "int8"
    with SimilarityIndex(HashEncoder(), tmp_path / "index", config=IndexConfig(exact=True)) as idx:
        assert idx._store._shard.info().payload_schema["label"].points == len(RECORDS)  # keyword index on label
        assert idx.search(RECORDS[1], k=1)[0].record["Title"] == "Cup final"


def test_bulk_load_builds_the_graph_once_at_the_end(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from refinery_quaterion.search.edge import EdgeStore

    calls: list[bool] = []
    finish = EdgeStore.finish_bulk
    monkeypatch.setattr(EdgeStore, "finish_bulk", lambda self, complete: (calls.append(complete),
                                                                          finish(self, complete=complete)))
    with SimilarityIndex(HashEncoder(), tmp_path / "index", config=IndexConfig(batch_size=2)) as idx:
        idx.add(RECORDS, progress=False)  # 4 batches, one graph build
        assert calls == [True]
        with pytest.raises(KeyboardInterrupt), idx.bulk_load():
            idx.add(RECORDS[:2], progress=False)
            raise KeyboardInterrupt
        assert calls == [True, False] and len(idx) == len(RECORDS)  # interrupted: usable, no build


def test_old_engine_folder_is_refused_with_how_to_rebuild(tmp_path: Any) -> None:
    folder = tmp_path / "old"
    (folder / "collection" / "refinery").mkdir(parents=True)
    (folder / "meta.json").write_text('{"collections": {"refinery": {}}, "aliases": {}}')
    for opening in (lambda: SimilarityIndex(HashEncoder(), folder), lambda: SimilarityIndex.from_path(HashEncoder(),
                                                                                                        folder)):
        with pytest.raises(ValueError, match="written by the old engine") as caught:
            opening()
        message = str(caught.value)
        assert str(folder) in message and "SimilarityIndex(model, path=...).build(records)" in message
        assert "delete the folder and build again" in message and "--" not in message
    assert sorted(p.name for p in folder.iterdir()) == ["collection", "meta.json"]  # untouched


def test_an_index_open_in_another_process_is_refused_and_stays_intact(tmp_path: Any) -> None:
    folder = tmp_path / "index"
    with SimilarityIndex(HashEncoder(), folder) as idx:
        idx.add(RECORDS, progress=False)
    code = (
        "import sys, time\n"
        "from refinery_quaterion.search import SimilarityIndex\n"
        "from tests.test_search import HashEncoder\n"
        f"idx = SimilarityIndex(HashEncoder(), {str(folder)!r})\n"
        "print('open', flush=True)\n"
        "sys.stdin.readline()\n"
        "idx.close()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "open"
        with pytest.raises(RuntimeError, match=f"the index folder {folder} is open in another process"):
            SimilarityIndex(HashEncoder(), folder)
    finally:
        child.communicate("\n", timeout=60)
    with SimilarityIndex.from_path(HashEncoder(), folder) as idx:  # released, and nothing was damaged
        assert len(idx) == len(RECORDS)
        assert idx.search(RECORDS[0], k=1)[0].record["Title"] == RECORDS[0]["Title"]


def test_in_memory_index_leaves_nothing_behind() -> None:
    idx = SimilarityIndex(HashEncoder())
    folder = idx._store.root
    idx.add(RECORDS, progress=False)
    assert folder.is_dir() and idx.location == ":memory:" and idx.backend == "edge"
    idx.close()
    assert not folder.exists()


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("hnsw_m", 2, r"IndexConfig.hnsw_m must be an integer from 4 to 128, got 2"),
        ("hnsw_ef_construct", 0, r"IndexConfig.hnsw_ef_construct must be an integer from 4 to 4096"),
        ("search_ef", 0, r"IndexConfig.search_ef must be an integer from 1 to 4096"),
        ("exact", "yes", r"IndexConfig.exact must be True or False"),
        ("quantization", "int4", r"IndexConfig.quantization must be None or 'int8', got 'int4'"),
        ("oversampling", 0.5, r"IndexConfig.oversampling must be a number from 1.0 to 16.0, got 0.5"),
        ("batch_size", 0, r"IndexConfig.batch_size must be an integer >= 1, got 0"),
        ("parallel", 0, r"IndexConfig.parallel must be an integer from 1 to 64"),
        ("max_retries", -1, r"IndexConfig.max_retries must be an integer from 0 to 100"),
        ("label_field", "", r"IndexConfig.label_field must be a non-empty string"),
    ],
)
def test_index_config_is_validated(field: str, value: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IndexConfig(**{field: value})


def test_server_bulk_load_defers_indexing_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from qdrant_client import QdrantClient

    from refinery_quaterion.search import server

    monkeypatch.setattr(server, "is_local", lambda client: False)  # act as a real server
    client = QdrantClient(location=":memory:")
    updates: list[Any] = []
    uploads: list[dict[str, Any]] = []
    update, upload = client.update_collection, client.upload_points
    monkeypatch.setattr(client, "update_collection", lambda name, **kw: (updates.append(kw.get("optimizers_config")),
                                                                          update(name, **kw))[1])
    monkeypatch.setattr(client, "upload_points", lambda name, **kw: (uploads.append(kw), upload(name, **kw))[1])
    monkeypatch.setattr(client, "create_payload_index", lambda *a, **kw: None)
    monkeypatch.setattr(client, "query_batch_points", lambda *a, **kw: [])
    config = IndexConfig(parallel=2, max_retries=5, batch_size=3)
    with SimilarityIndex(HashEncoder(), client=client, config=config) as idx:
        idx.add(RECORDS, progress=False)
    thresholds = [u.indexing_threshold for u in updates if u is not None]
    assert thresholds[0] == 0 and thresholds[-1] not in (0, None)
    assert uploads and all(u["parallel"] == 2 and u["max_retries"] == 5 for u in uploads)
    client.close()


def test_unreachable_url_fails_fast_naming_it() -> None:
    with pytest.raises(ConnectionError, match="cannot reach the Qdrant server at http://127.0.0.1:1"):
        SimilarityIndex(HashEncoder(), url="http://127.0.0.1:1")
