"""SimilarityIndex on both back ends (Qdrant Edge in memory and on disk, qdrant-client's ":memory:" server
stand-in), with a fake hashing encoder."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

import refinery_quaterion.search.index as search_module  # noqa: E402
from refinery_quaterion.data.dataset import LabelMap  # noqa: E402
from refinery_quaterion.data.text import TextTemplate  # noqa: E402
from refinery_quaterion.search import (  # noqa: E402
    IndexConfig,
    SimilarityIndex,
    StaleIndexError,
    SupportsEncode,
    model_fingerprint,
    point_id_for,
)

RECORDS = [
    {
        "id": 1,
        "Title": "Stocks rally",
        "Description": "Markets climb on strong earnings",
        "label": "Business",
    },
    {"id": 2, "Title": "Cup final", "Description": "Home team wins the cup in extra time", "label": "Sports"},
    {"id": 3, "Title": "Summit held", "Description": "Leaders meet in Geneva for talks", "label": "World"},
    {"id": 4, "Title": "Oil prices", "Description": "Crude hits a new yearly high", "label": "Business"},
    {"id": 5, "Title": "Transfer news", "Description": "Striker signs a record deal", "label": "Sports"},
    {"id": 6, "Title": "Election day", "Description": "Voters head to the polls", "label": "World"},
    {"id": 7, "Title": "Merger talks", "Description": "Two banks discuss a merger", "label": "Business"},
    {"id": 8, "Title": "Marathon record", "Description": "Runner breaks the world best", "label": "Sports"},
]


class HashEncoder:
    """Deterministic stand-in for the trained model: normalised hashed bag of words."""

    def __init__(self, dim: int = 64, template: str = "{Title}. {Description}"):
        self.dim = dim
        self.template = TextTemplate(template)
        self.label_map = LabelMap(["Business", "Sports", "World"])
        self.calls = 0

    def encode(
        self, items: Sequence[Mapping[str, Any] | str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for row, item in enumerate(items):
            for word in re.findall(r"\w+", self.template(item).lower()):
                slot = int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim
                out[row, slot] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out


def text_of(record: Mapping[str, Any]) -> str:
    return f"{record['Title']}. {record['Description']}"


BACKENDS = ["edge-memory", "edge-disk", "qdrant-client"]


class Opener:
    """``opener(encoder=None, *, reopen=False, **options)``: a SimilarityIndex on one back end.

    Each call opens a new index, unless ``reopen``: then the last place is opened again (the same
    folder, or the same qdrant-client ":memory:" client, which stands in for a server).
    """

    def __init__(self, backend: str, tmp_path: Any) -> None:
        self.backend, self.tmp_path = backend, tmp_path
        self.client: Any = None
        self.places: list[Any] = []

    def __call__(self, encoder: Any = None, *, reopen: bool = False, **options: Any) -> SimilarityIndex:
        encoder = HashEncoder() if encoder is None else encoder
        if self.backend == "qdrant-client":
            if self.client is None:
                from qdrant_client import QdrantClient

                self.client = QdrantClient(location=":memory:")
            return SimilarityIndex(encoder, client=self.client, **options)
        if self.backend == "edge-memory":
            assert not reopen, "an in-memory index cannot be reopened"
            return SimilarityIndex(encoder, **options)
        if not reopen or not self.places:
            self.places.append(self.tmp_path / f"index-{len(self.places)}")
        return SimilarityIndex(encoder, self.places[-1], **options)

    @property
    def where(self) -> str:
        """The location of the last index, as messages name it."""
        return "client" if self.backend == "qdrant-client" else str(self.places[-1])

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


@pytest.fixture(params=BACKENDS)
def open_index(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """An `Opener` for each back end: Edge in memory, Edge in a folder, qdrant-client's ":memory:"."""
    opener = Opener(request.param, tmp_path)
    yield opener
    opener.close()


@pytest.fixture(params=["edge-disk", "qdrant-client"])
def reopenable(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """An `Opener` for the back ends whose index outlives `SimilarityIndex.close`."""
    opener = Opener(request.param, tmp_path)
    yield opener
    opener.close()


@pytest.fixture
def index(open_index: Any) -> Any:
    with open_index() as idx:
        idx.add(RECORDS, progress=False)
        yield idx


def test_fake_encoder_satisfies_protocol() -> None:
    assert isinstance(HashEncoder(), SupportsEncode)


def test_nearest_neighbour_of_own_text_is_itself(index: SimilarityIndex) -> None:
    assert len(index) == len(RECORDS)
    for record in RECORDS:
        for query in (text_of(record), record):
            hits = index.search(query, k=3)
            assert len(hits) == 3
            assert hits[0].record["Title"] == record["Title"]
            assert hits[0].label == record["label"]
            assert hits[0].score == pytest.approx(1.0, abs=1e-5)
            assert hits[0].id == point_id_for(text=text_of(record))
            assert hits[0].score >= hits[1].score >= hits[2].score
    assert len(index.search("Stocks rally", k=100)) == len(RECORDS)


def test_search_many_matches_search(index: SimilarityIndex) -> None:
    queries = [text_of(r) for r in RECORDS[:5]] + [RECORDS[5]]
    batched = index.search_many(queries, k=2, batch_size=4)
    assert len(batched) == len(queries)
    for query, hits in zip(queries, batched):
        single = index.search(query, k=2)
        assert [h.point_id for h in hits] == [h.point_id for h in single]
        assert [h.score for h in hits] == pytest.approx([h.score for h in single])
    assert index.search_many([], k=3) == []


def test_label_filter(index: SimilarityIndex) -> None:
    hits = index.search("Striker wins the cup", k=10, filter_label="Business")
    assert hits and {h.label for h in hits} == {"Business"}
    assert len(hits) == 3
    hits = index.search("Striker wins the cup", k=10, filter_label=["Sports", "World"])
    assert {h.label for h in hits} == {"Sports", "World"}
    assert len(hits) == 5
    many = index.search_many(["markets", "cup"], k=10, filter_label="World")
    assert all(h.label == "World" for hits in many for h in hits)
    assert index.count("Sports") == 3
    assert index.count(["Sports", "World"]) == 5


def test_label_filter_errors(index: SimilarityIndex) -> None:
    with pytest.raises(ValueError, match="unknown label 'Sport'.*Business"):
        index.search("cup", filter_label="Sport")
    with pytest.raises(ValueError, match="empty list"):
        index.search("cup", filter_label=[])
    with pytest.raises(ValueError, match="non-empty label"):
        index.search("cup", filter_label=["Sports", ""])
    with pytest.raises(TypeError, match="filter_label must be"):
        index.search("cup", filter_label=3)  # type: ignore[arg-type]


def test_label_outside_label_map_is_searchable(open_index: Opener) -> None:
    with open_index() as idx:
        idx.add([{"Title": "Rain", "Description": "Storm ahead", "label": "Weather"}], progress=False)
        assert [h.label for h in idx.search("storm", filter_label="Weather")] == ["Weather"]


def test_readding_replaces_instead_of_duplicating(index: SimilarityIndex) -> None:
    assert index.add(RECORDS) == len(RECORDS)  # with the default progress bar
    assert index.add(pd.DataFrame(RECORDS), batch_size=3, progress=False) == len(RECORDS)
    assert len(index) == len(RECORDS)


def test_id_field_ints_and_strings(open_index: Opener) -> None:
    records = [dict(r, key=f"doc-{r['id']}") for r in RECORDS]
    with open_index(config=IndexConfig(id_field="id")) as idx:
        idx.add(RECORDS, progress=False)
        changed = dict(RECORDS[0], Description="Markets fall after weak earnings")
        idx.add([changed], progress=False)
        assert len(idx) == len(RECORDS)
        hit = idx.search(text_of(changed), k=1)[0]
        assert hit.id == 1 and hit.point_id == 1
        assert hit.record["Description"] == changed["Description"]
    with open_index(config=IndexConfig(id_field="key", collection="keys")) as idx:
        idx.add(records, progress=False)
        idx.add(records[:3], progress=False)
        assert len(idx) == len(records)
        hit = idx.search(text_of(records[2]), k=1)[0]
        assert hit.id == "doc-3"
        assert hit.point_id == point_id_for(record_id="doc-3")
        with pytest.raises(ValueError, match=r"record 1 has no 'key'"):
            idx.add([records[0], {"Title": "x", "Description": "y"}], progress=False)
    with open_index(config=IndexConfig(id_field="n", collection="numbers")) as idx:
        with pytest.raises(ValueError, match="record 0: record id -1 is negative"):
            idx.add([{"Title": "a", "Description": "b", "n": -1}], progress=False)


def test_duplicate_texts_in_one_call_are_merged_with_warning(open_index: Opener) -> None:
    with open_index() as idx:
        with pytest.warns(UserWarning, match="1 record.*same text"):
            assert idx.add(RECORDS + [dict(RECORDS[0], label="World")], progress=False) == len(RECORDS)
        assert idx.search(text_of(RECORDS[0]), k=1)[0].label == "World"  # the last one wins


def test_payload_is_json_safe(open_index: Opener) -> None:
    frame = pd.DataFrame(
        {
            "Title": ["Alpha", "Beta"],
            "Description": ["first text", None],
            "score": [np.float32(0.5), np.nan],
            "count": np.array([3, 4], dtype=np.int64),
            "when": pd.to_datetime(["2024-01-02", None]),
            "label": ["Business", np.nan],
        }
    )
    with open_index() as idx:
        assert idx.add(frame, progress=False) == 2
        alpha = idx.search("Alpha first text", k=1)[0].record
        beta = idx.search("Beta", k=1)[0]
    assert alpha == {
        "Title": "Alpha",
        "Description": "first text",
        "score": 0.5,
        "count": 3,
        "when": "2024-01-02T00:00:00",
        "label": "Business",
    }
    assert type(alpha["count"]) is int
    assert beta.label is None
    assert beta.record["score"] is None and beta.record["when"] is None and beta.record["Description"] is None


def test_persistence_reopen(tmp_path: Any) -> None:
    path = tmp_path / "index"
    queries = ["Striker wins the cup", RECORDS[3]]
    with SimilarityIndex(HashEncoder(), path=path) as idx:
        idx.add(RECORDS, progress=False)
        before = idx.search_many(queries, k=4)
        with pytest.raises(RuntimeError, match=f"the index folder {re.escape(str(path))} is open in another process"):
            SimilarityIndex(HashEncoder(), path=path)
    assert idx.closed
    with pytest.raises(RuntimeError, match="closed"):
        idx.search("cup")

    with SimilarityIndex(HashEncoder(), path=str(path)) as idx:
        assert len(idx) == len(RECORDS)
        after = idx.search_many(queries, k=4)
    reopened = SimilarityIndex.from_path(HashEncoder(), path)
    try:
        assert [h.point_id for h in reopened.search(queries[1], k=4)] == [h.point_id for h in before[1]]
    finally:
        reopened.close()
    for old, new in zip(before, after):
        assert [(h.point_id, h.label, h.record) for h in old] == [
            (h.point_id, h.label, h.record) for h in new
        ]
        assert [h.score for h in old] == pytest.approx([h.score for h in new])


def test_from_path_needs_an_existing_index(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match="not a similarity index folder"):
        SimilarityIndex.from_path(HashEncoder(), tmp_path / "nothing")
    SimilarityIndex(HashEncoder(), path=tmp_path / "idx").close()
    with pytest.raises(ValueError, match="no collection 'other'.*'refinery'"):
        SimilarityIndex.from_path(HashEncoder(), tmp_path / "idx", config=IndexConfig(collection="other"))
    # the failed open released the folder lock
    SimilarityIndex.from_path(HashEncoder(), tmp_path / "idx").close()


def test_dim_and_distance_mismatch(reopenable: Opener) -> None:
    with reopenable(HashEncoder(dim=64)) as idx:
        idx.add(RECORDS[:2], progress=False)
    with pytest.raises(
        ValueError, match="holds 64-dimensional vectors, but the encoder makes 32-dimensional"
    ):
        reopenable(HashEncoder(dim=32), reopen=True)
    with pytest.raises(ValueError, match="uses distance 'cosine', not 'dot'"):
        reopenable(HashEncoder(dim=64), reopen=True, distance="dot")
    with pytest.warns(UserWarning, match="template="):
        reopenable(HashEncoder(template="{Title}"), reopen=True).close()
    # each failed open released the lock; another collection in the same place can have its own dim
    with reopenable(HashEncoder(dim=32), reopen=True, config=IndexConfig(collection="small")) as idx:
        assert len(idx) == 0


@pytest.mark.parametrize(("module", "options"), [("qdrant_edge", {}), ("qdrant_client", {"url": "http://x:6333"})])
def test_missing_qdrant_package(monkeypatch: pytest.MonkeyPatch, module: str, options: dict[str, Any]) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    # the module itself imports without qdrant-client ...
    spec = importlib.util.spec_from_file_location("_search_without_qdrant", search_module.__file__)
    assert spec and spec.loader
    fresh = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, fresh)
    spec.loader.exec_module(fresh)
    # ... and only building an index asks for it, naming the extra
    for cls in (fresh.SimilarityIndex, SimilarityIndex):
        with pytest.raises(ImportError, match=r'pip install "refinery-quaterion\[search\]"'):
            cls(HashEncoder(), **options)


def test_query_and_k_errors(index: SimilarityIndex) -> None:
    with pytest.raises(ValueError, match="empty query"):
        index.search("")
    with pytest.raises(ValueError, match="empty query"):
        index.search("   ")
    with pytest.raises(ValueError, match="empty query"):
        index.search("\u200b \u200d")  # invisible characters are blank, as everywhere in the library
    with pytest.raises(ValueError, match="empty query record"):
        index.search({"Title": None, "Description": None})
    with pytest.raises(TypeError, match="a query must be a text"):
        index.search(42)  # type: ignore[arg-type]
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"k must be a positive integer \(>= 1\), got"):
            index.search("cup", k=k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query 1: empty query"):
        index.search_many(["cup", ""])
    with pytest.raises(TypeError, match="sequence of queries"):
        index.search_many("cup")
    with pytest.raises(ValueError, match="k must be"):
        index.search_many(["cup"], k=0)


def test_add_errors(open_index: Opener) -> None:
    with open_index() as idx:
        assert idx.add([], progress=False) == 0
        with pytest.raises(TypeError, match="wrap a single record in a list"):
            idx.add(RECORDS[0], progress=False)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="record 1 is a str"):
            idx.add([RECORDS[0], "text"], progress=False)  # type: ignore[list-item]
        with pytest.raises(ValueError, match="record 1 renders to an empty text"):
            idx.add([RECORDS[0], {"Title": None, "Description": float("nan")}], progress=False)
        with pytest.raises(ValueError, match="record 1 renders to an empty text"):
            idx.add([RECORDS[0], {"Title": "\u200b", "Description": "\ufeff"}], progress=False)
        with pytest.raises(ValueError, match="'Description'.*not a column"):
            idx.add([{"Title": "only a title"}], progress=False)
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            idx.add(RECORDS, batch_size=0)
        assert len(idx) == 0


def test_constructor_errors() -> None:
    with pytest.raises(TypeError, match="object lacks encode, dim, template"):
        SimilarityIndex(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distance must be one of"):
        SimilarityIndex(HashEncoder(), distance="l2")
    with pytest.raises(ValueError, match="only one of path=, url= or client=, got path and url"):
        SimilarityIndex(HashEncoder(), path=":memory:", url="http://localhost:6333")
    with pytest.raises(ValueError, match="api_key= is only used with url="):
        SimilarityIndex(HashEncoder(), api_key="secret")
    with pytest.raises(ValueError, match="IndexConfig.collection must be a non-empty string"):
        SimilarityIndex(HashEncoder(), config=IndexConfig(collection=""))
    with pytest.raises(TypeError, match="config must be an IndexConfig, got dict"):
        SimilarityIndex(HashEncoder(), config={"collection": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="collection 'a/b' cannot name an embedded index"):
        SimilarityIndex(HashEncoder(), config=IndexConfig(collection="a/b"))


def test_external_client_is_left_open() -> None:
    from qdrant_client import QdrantClient

    client = QdrantClient(location=":memory:")
    with SimilarityIndex(HashEncoder(), client=client, config=IndexConfig(collection="news")) as idx:
        idx.add(RECORDS, progress=False)
    assert client.count("news").count == len(RECORDS)
    assert "closed" in repr(idx)
    client.close()


def test_encoder_output_is_checked(open_index: Opener) -> None:
    class Broken(HashEncoder):
        def encode(self, items: Sequence[Any], batch_size: int = 64, progress: bool = False) -> np.ndarray:
            return np.zeros((len(items), self.dim + 1), dtype=np.float32)

    with open_index(Broken()) as idx:
        with pytest.raises(ValueError, match=r"shape \(1, 65\).*expected \(1, 64\)"):
            idx.search("cup")


# ---------------------------------------------------------------------- freshness (issue 11, item 2)


class VersionedEncoder(HashEncoder):
    """A hashing encoder whose 'weights' change with ``version``, with a fingerprint like a real model."""

    def __init__(self, version: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.version = version

    def fingerprint(self) -> str:
        return hashlib.sha1(f"weights-{self.version}".encode()).hexdigest()

    def encode(
        self, items: Sequence[Mapping[str, Any] | str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        out = super().encode(items, batch_size, progress)
        return np.roll(out, self.version, axis=1)  # another model: other vectors for the same texts


def test_reopening_with_another_model_is_refused_naming_both_fingerprints(reopenable: Opener) -> None:
    old, new = VersionedEncoder(1), VersionedEncoder(2)
    with reopenable(old) as idx:
        idx.add(RECORDS, progress=False)
    with pytest.raises(StaleIndexError) as caught:
        reopenable(new, reopen=True)
    message = str(caught.value)
    assert old.fingerprint()[:16] in message and new.fingerprint()[:16] in message
    assert reopenable.where in message and "if_stale='rebuild'" in message
    if reopenable.backend == "edge-disk":
        with pytest.raises(StaleIndexError):
            SimilarityIndex.from_path(new, reopenable.where)
    # the failed opens released the lock, and the same model still opens the index as it was
    with reopenable(VersionedEncoder(1), reopen=True) as idx:
        assert len(idx) == len(RECORDS) and idx.rebuilt is None


def test_rebuild_re_embeds_with_the_new_model(reopenable: Opener) -> None:
    with reopenable(VersionedEncoder(1)) as idx:
        assert idx.build(RECORDS, progress=False) == len(RECORDS)
    new = VersionedEncoder(2)
    with reopenable(new, reopen=True, if_stale="rebuild") as idx:
        assert idx.rebuilt is not None and "another model" in idx.rebuilt
        assert len(idx) == 0  # the stale vectors are gone, none is served
        assert idx.build(RECORDS, progress=False) == len(RECORDS)
        hit = idx.search(text_of(RECORDS[2]), k=1)[0]
        assert hit.record["Title"] == RECORDS[2]["Title"] and hit.score == pytest.approx(1.0, abs=1e-5)
    with reopenable(new, reopen=True) as idx:  # fresh now: nothing to redo
        assert idx.rebuilt is None and len(idx) == len(RECORDS) and idx.build(RECORDS, progress=False) == 0


def test_build_embeds_only_when_the_records_change(open_index: Opener) -> None:
    encoder = VersionedEncoder(1)
    with open_index(encoder) as idx:
        assert idx.data_fingerprint is None
        assert idx.build(RECORDS, progress=False) == len(RECORDS)
        first, calls = idx.data_fingerprint, encoder.calls
        assert first is not None
        assert idx.build(list(reversed(RECORDS)), progress=False) == 0  # same records: order does not matter
        assert encoder.calls == calls and idx.data_fingerprint == first
        changed = [dict(RECORDS[0], Description="Markets fall after weak earnings"), *RECORDS[1:5]]
        assert idx.build(changed, progress=False) == 5
        assert len(idx) == 5 and idx.data_fingerprint not in (None, first)
        assert idx.search(text_of(changed[0]), k=1)[0].record["Description"] == changed[0]["Description"]
        assert RECORDS[7]["Title"] not in {h.record["Title"] for h in idx.search("Runner breaks", k=5)}
        relabelled = [dict(r, label="World") if i == 1 else r for i, r in enumerate(changed)]
        assert idx.build(relabelled, progress=False) == 5  # a changed label is a change of data too
        assert idx.search(text_of(changed[1]), k=1)[0].label == "World"


def test_from_path_checks_the_data(tmp_path: Any) -> None:
    path = tmp_path / "index"
    with SimilarityIndex(VersionedEncoder(1), path=path) as idx:
        idx.build(RECORDS, progress=False)
        built = idx.data_fingerprint
    SimilarityIndex.from_path(VersionedEncoder(1), path, data=pd.DataFrame(RECORDS)).close()
    other = RECORDS[:6]
    with pytest.raises(StaleIndexError, match="built from other records") as caught:
        SimilarityIndex.from_path(VersionedEncoder(1), path, data=other)
    assert built[:16] in str(caught.value) and "6 points" in str(caught.value)
    with pytest.raises(ValueError, match="needs data="):
        SimilarityIndex.from_path(VersionedEncoder(2), path, if_stale="rebuild")
    with SimilarityIndex.from_path(VersionedEncoder(2), path, data=other, if_stale="rebuild") as idx:
        assert len(idx) == 6 and idx.data_fingerprint not in (None, built)
        assert idx.search(text_of(RECORDS[0]), k=1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_add_after_build_forgets_which_records_the_index_holds(reopenable: Opener) -> None:
    with reopenable(VersionedEncoder(1)) as idx:
        idx.build(RECORDS[:4], progress=False)
        idx.add(RECORDS[4:], progress=False)
        assert idx.data_fingerprint is None
    if reopenable.backend == "edge-disk":
        with pytest.raises(StaleIndexError, match="built from other records"):
            SimilarityIndex.from_path(VersionedEncoder(1), reopenable.where, data=RECORDS[:4])
    with reopenable(VersionedEncoder(1), reopen=True) as idx:
        assert idx.build(RECORDS, progress=False) == len(RECORDS)  # unknown content: rebuilt once
        assert idx.build(RECORDS, progress=False) == 0


def test_index_without_a_stored_model_fingerprint_is_stale_for_a_known_model(tmp_path: Any) -> None:
    path = tmp_path / "index"
    with SimilarityIndex(HashEncoder(), path=path) as idx:  # an encoder without fingerprint()
        idx.add(RECORDS, progress=False)
        assert idx.model_fingerprint is None
        # what an index written before fingerprints were stored holds
        metadata = idx._store.read_metadata()
        metadata.pop("model_fingerprint")
        metadata.pop("data_fingerprint")
        idx._store.write_metadata(metadata)
    SimilarityIndex(HashEncoder(), path=path).close()  # nothing to compare: opens as before
    with pytest.raises(StaleIndexError, match="stored no model fingerprint"):
        SimilarityIndex(VersionedEncoder(1), path=path)


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"train.json": "[]", "prepare.json": "{}"}, r"not a similarity index folder: it holds prepare.json, train.json"),
        ({"meta.json": "{not json"}, r"not a similarity index folder: it holds meta.json and no index"),
    ],
)
def test_a_folder_that_is_not_an_index_is_refused(tmp_path: Any, files: dict[str, str], match: str) -> None:
    folder = tmp_path / "prepared"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_text(content)
    with pytest.raises(ValueError, match=match) as caught:
        SimilarityIndex(HashEncoder(), path=folder)
    assert str(folder) in str(caught.value)
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # nothing written into it
    empty = tmp_path / "empty"
    empty.mkdir()
    SimilarityIndex(HashEncoder(), path=empty).close()  # an empty folder is fine


def test_model_fingerprint_of_encoders_and_trained_models(tiny_model_dir: Any) -> None:
    import torch

    from refinery_quaterion import DistilBertSimilarityModel, ModelConfig

    assert model_fingerprint(HashEncoder()) is None
    assert model_fingerprint(VersionedEncoder(3)) == VersionedEncoder(3).fingerprint()
    model = DistilBertSimilarityModel(ModelConfig(pretrained=str(tiny_model_dir), template="{text}"))
    trained = model.embedding_model()
    before = model_fingerprint(trained)
    assert before is not None and model_fingerprint(model) == before
    assert before != model.encoder.fingerprint()  # the head counts too
    with torch.no_grad():
        next(trained.head.parameters()).add_(0.01)  # a retrained head on the same frozen encoder
    after = model_fingerprint(trained)
    assert after != before and model_fingerprint(model) == after  # same head object
