"""Scale-out on Ray (`refinery_quaterion.scale`): ONNX and OpenVINO encoder actors on a local Ray with 2 CPUs.

The Ray runs (marked slow) check that the vectors are the library's own, that every record is
written exactly once with the ids `SimilarityIndex` gives it, and that a batch whose actor died is
run again; each with ONNX Runtime and with OpenVINO (whose int8 model is calibrated on the
records). The parts that need no Ray (the worker's encoder and shard tables, the Qdrant
collection against qdrant-client's in-memory mode, the refusals) run in every test run.
"""

from __future__ import annotations

import builtins
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cosines, make_texts

from refinery_quaterion.model.openvino_backend import DEFAULT_CALIBRATION_SIZE
from refinery_quaterion.scale import RayIndexConfig, index_with_ray
from refinery_quaterion.scale._export import calibration_sample, export_for_workers
from refinery_quaterion.scale._worker import FAULT_ENV, EncoderActor, QdrantTarget, shard_table, upload_batch
from refinery_quaterion.scale.session import check_ray_address, local_ray_options, source_files
from refinery_quaterion.search.points import records_to_points

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
needs_qdrant = pytest.mark.skipif(importlib.util.find_spec("qdrant_client") is None, reason="needs qdrant-client")
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf")
                                    is None, reason="needs openvino and nncf")
RUNTIMES = ["onnx", pytest.param("openvino", marks=needs_openvino)]

INT8_MIN_COSINE = {"onnx": 0.995, "openvino": 0.98}
"""Bounds on int8 vectors vs the library's fp32 ones, tiny random model, 300 records (measured minimum:
ONNX Runtime's dynamic int8 0.9998, OpenVINO's static int8 calibrated on the records 0.9890)."""


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    frame = make_texts(300, seed=7)
    frame.insert(0, "rid", [f"doc-{i}" for i in range(len(frame))])
    return frame


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, records: pd.DataFrame) -> Path:
    """A saved model with a random (non-identity) gated head, template ``{text}``."""
    import torch

    from refinery_quaterion import DistilBertSimilarityModel, ModelConfig, RefineryExportDataset, save

    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, template="{text}", head="gated",
                                                  loss="triplet"))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for weights in model.model.head.parameters():
            weights.copy_(torch.randn(weights.shape, generator=generator) * 0.5)
    folder = tmp_path_factory.mktemp("scale-model") / "model"
    save(model, folder, label_map=RefineryExportDataset(records, template="{text}").label_map)
    return folder


@pytest.fixture(scope="module")
def loaded(model_dir: Path):
    from refinery_quaterion import load

    return load(model_dir)


@pytest.fixture(scope="module")
def exported(loaded):
    return export_for_workers(loaded, None)


@pytest.fixture(scope="module")
def exported_openvino(loaded):
    return export_for_workers(loaded, None, runtime="openvino")


def make_actor(exported, target=None, id_field="rid") -> EncoderActor:
    return EncoderActor(exported.files, exported.model_file, exported.template, runtime=exported.runtime,
                        label_field="label", id_field=id_field, threads=1, encode_batch_size=16, target=target)


# -- without Ray -------------------------------------------------------------------------------


def test_config_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        RayIndexConfig(workers=0)
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        RayIndexConfig(quantize="int4")
    with pytest.raises(ValueError, match="exceeds the local Ray's num_cpus"):
        RayIndexConfig(workers=3, num_cpus=2)
    with pytest.raises(ValueError, match="runtime must be one of 'onnx', 'openvino', got 'tensorrt'"):
        RayIndexConfig(runtime="tensorrt")
    assert RayIndexConfig(address="auto", workers=8).workers == 8


def test_source_files(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    for name in ("b.jsonl", "a.jsonl", "notes.txt"):
        (shards / name).write_text("{}\n")
    assert source_files(shards) == ([str(shards / "a.jsonl"), str(shards / "b.jsonl")], "read_json")
    (tmp_path / "c.csv").write_text("text\nx\n")
    with pytest.raises(ValueError, match="mixes file formats"):
        source_files([shards, tmp_path / "c.csv"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        source_files(tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match="unknown record file type '.txt'"):
        source_files(shards / "notes.txt")


def test_ray_not_installed_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError) as caught:
        index_with_ray("model", tmp_path, out=tmp_path / "out")
    message = str(caught.value)
    assert "refinery-quaterion[scale]" in message and "\n" not in message


def test_openvino_not_installed_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    monkeypatch.setitem(sys.modules, "openvino", None)  # importing it fails
    with pytest.raises(ImportError) as caught:
        index_with_ray("model", tmp_path, out=tmp_path / "out", config=RayIndexConfig(runtime="openvino"))
    message = str(caught.value)
    assert "refinery-quaterion[openvino]" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


class Taken:
    """Stands in for a Ray dataset in `calibration_sample`: ``take(n)`` gives the first ``n`` rows."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def take(self, n: int) -> list[dict]:
        return self.frame.head(n).to_dict("records")


def test_the_calibration_sample_is_the_first_records_rendered(loaded, records: pd.DataFrame) -> None:
    few = records.iloc[:40].copy()
    few.loc[3, "text"] = " \u200b "
    texts = calibration_sample(Taken(few), loaded.template, 300)
    assert len(texts) == 39 and texts[:3] == list(few["text"].iloc[:3]) and texts[3] == few["text"].iloc[4]
    assert len(calibration_sample(Taken(records), loaded.template, 25)) == 25
    assert calibration_sample(Taken(few.iloc[3:4]), loaded.template, 300) is None


def test_an_unreachable_ray_address_fails_fast() -> None:
    address = f"127.0.0.1:{closed_port()}"
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match=f"the Ray cluster at '{address}'"):
        check_ray_address(address)
    with pytest.raises(ValueError, match="not 'auto', 'host:port'"):
        check_ray_address("somewhere")
    assert time.perf_counter() - started < 5


def test_an_unreachable_qdrant_url_fails_fast() -> None:
    from refinery_quaterion.scale.qdrant import check_server

    url = f"http://127.0.0.1:{closed_port()}"
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match=f"the Qdrant server at {url}"):
        check_server(url)
    assert time.perf_counter() - started < 5


def test_the_workers_import_no_torch() -> None:
    code = ("import sys, refinery_quaterion.scale._worker, refinery_quaterion.search.points, "
            "refinery_quaterion.exporters.openvino_serving; "
            "print(sorted(m for m in ('torch', 'quaterion', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_actor_makes_the_librarys_vectors_and_ids(runtime: str, request: pytest.FixtureRequest, loaded,
                                                      records: pd.DataFrame) -> None:
    exported = request.getfixturevalue("exported" if runtime == "onnx" else "exported_openvino")
    assert exported.model_file == {"onnx": "model.onnx", "openvino": "model.xml"}[runtime]
    batch = records.iloc[:40]
    actor = make_actor(exported)
    assert actor.encoder.dim == loaded.dim
    table = actor(batch)
    points, _ = records_to_points(batch, loaded.template, label_field="label", id_field="rid")
    assert table.column("id").to_pylist() == [str(pid) for pid in points]
    vectors = np.array(table.column("vector").to_pylist(), dtype=np.float32)
    assert cosines(vectors, loaded.encode(list(batch["text"]))).min() >= 0.9999
    assert [json.loads(p) for p in table.column("payload").to_pylist()] == [p for _, p in points.values()]


def test_shard_table_of_no_points() -> None:
    table = shard_table([], np.zeros((0, 0), dtype=np.float32), [])
    assert table.num_rows == 0 and str(table.schema.field("vector").type) == "list<item: float>"


@pytest.mark.slow
@needs_qdrant
def test_a_server_collection_opens_as_a_similarity_index(exported, loaded, records: pd.DataFrame) -> None:
    """The driver's collection + the actors' uploads, against qdrant-client's in-memory mode (no server here)."""
    from qdrant_client import QdrantClient

    from refinery_quaterion.scale.qdrant import open_server_index
    from refinery_quaterion.search import IndexConfig, SimilarityIndex

    client = QdrantClient(location=":memory:")
    settings = IndexConfig(collection="docs", id_field="rid")
    with SimilarityIndex(loaded, client=client, config=settings) as index:
        index.build(records.iloc[:10], progress=False)
        assert index.data_fingerprint is not None
    index = open_server_index(loaded, RayIndexConfig(collection="docs", id_field="rid"), client=client)
    assert index.data_fingerprint is None  # it will no longer hold exactly the built records
    batch = records.iloc[:50]
    points, _ = records_to_points(batch, loaded.template, label_field="label", id_field="rid")
    with index.bulk_load():
        vectors = make_actor(exported).encoder.encode([text for text, _ in points.values()])
        upload_batch(client, QdrantTarget(url="memory", collection="docs"), list(points), vectors,
                     [payload for _, payload in points.values()])
    index.close()
    with SimilarityIndex(loaded, client=client, config=settings) as index:
        assert index.count() == 50
        hit = index.search(batch.iloc[3]["text"], k=1)[0]
        assert hit.id == "doc-3" and hit.score > 0.999
        index.add(batch, progress=False)  # the library's own points replace the uploaded ones
        assert index.count() == 50


# -- on a local Ray ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray with 2 CPUs for the module; its workers see `FAULT_ENV` (a flag file, absent)."""
    ray = pytest.importorskip("ray")
    flag = tmp_path_factory.mktemp("fault") / "fail-once"
    os.environ[FAULT_ENV] = str(flag)
    ray.init(**local_ray_options(RayIndexConfig(num_cpus=2)))  # 2 CPUs for the actors, a slot for Ray Data
    yield flag
    ray.shutdown()
    os.environ.pop(FAULT_ENV, None)


def read_shards(folder: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(folder).to_pandas()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_parquet_shards_hold_every_record_once_with_the_librarys_vectors(
    runtime: str, local_ray: Path, model_dir: Path, loaded, records: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "records"
    source.mkdir()
    for i, start in enumerate(range(0, len(records), 100)):
        records.iloc[start:start + 100].to_json(source / f"part-{i}.jsonl", orient="records", lines=True)
    config = RayIndexConfig(workers=2, batch_size=64, id_field="rid", runtime=runtime, progress=False)
    result = index_with_ray(model_dir, source, out=tmp_path / "vectors", config=config)
    assert result.runtime == runtime and result.calibration_texts == 0
    shards = read_shards(tmp_path / "vectors")
    points, _ = records_to_points(records, loaded.template, label_field="label", id_field="rid")
    assert result.points == len(records) == len(shards) and result.files
    assert shards["id"].is_unique and set(shards["id"]) == {str(pid) for pid in points}
    shards = shards.set_index("id").loc[[str(pid) for pid in points]]
    vectors = np.stack(shards["vector"].to_numpy()).astype(np.float32)
    assert vectors.shape == (len(records), loaded.dim)
    assert cosines(vectors, loaded.encode(list(records["text"]))).min() >= 0.9999
    assert [json.loads(p) for p in shards["payload"]] == [p for _, p in points.values()]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        index_with_ray(model_dir, source, out=tmp_path / "vectors", config=config)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_died_actor_is_restarted_and_its_batch_run_again(
    runtime: str, local_ray: Path, model_dir: Path, loaded, records: pd.DataFrame, tmp_path: Path
) -> None:
    """With int8: its vectors stay close to fp32; OpenVINO's int8 model is calibrated on the records."""
    source = tmp_path / "records"
    source.mkdir()
    for i, start in enumerate(range(0, len(records), 100)):
        records.drop(columns="rid").iloc[start:start + 100].to_parquet(source / f"part-{i}.parquet")
    local_ray.write_text("die once")
    config = RayIndexConfig(workers=2, batch_size=50, quantize="int8", runtime=runtime, progress=False)
    result = index_with_ray(model_dir, source, out=tmp_path / "vectors", config=config)
    assert not local_ray.exists()  # an actor took the flag and died
    shards = read_shards(tmp_path / "vectors")
    points, _ = records_to_points(records, loaded.template, label_field="label", id_field=None)
    assert result.points == len(points) == len(shards)
    assert shards["id"].is_unique and set(shards["id"]) == {str(pid) for pid in points}
    assert result.calibration_texts == (min(len(records), DEFAULT_CALIBRATION_SIZE) if runtime == "openvino" else 0)
    vectors = np.stack(shards.set_index("id").loc[[str(pid) for pid in points], "vector"].to_numpy())
    fp32 = loaded.encode([text for text, _ in points.values()])
    assert cosines(vectors, fp32).min() >= INT8_MIN_COSINE[runtime]


@pytest.mark.slow
def test_a_template_column_the_records_lack_is_named_before_encoding(
    local_ray: Path, model_dir: Path, records: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "records.csv"
    records.rename(columns={"text": "body"}).to_csv(source, index=False)
    with pytest.raises(ValueError, match="uses 'text', which is not a column of .*records.csv"):
        index_with_ray(model_dir, source, out=tmp_path / "vectors", config=RayIndexConfig(progress=False))
    assert not (tmp_path / "vectors").exists()


@pytest.mark.slow
def test_a_record_refused_by_an_actor_comes_out_as_its_own_error(
    local_ray: Path, model_dir: Path, records: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "records.jsonl"
    broken = records.copy()
    broken.loc[5, "text"] = "   "
    broken.to_json(source, orient="records", lines=True)
    with pytest.raises(ValueError, match="renders to an empty text"):
        index_with_ray(model_dir, source, out=tmp_path / "vectors", config=RayIndexConfig(progress=False))
    assert not (tmp_path / "vectors").exists()


@pytest.mark.slow
def test_cli_index_on_ray_fills_an_embedded_index_like_the_library_does(
    local_ray: Path, model_dir: Path, records: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`index --ray --path`: Ray's shards are loaded into the Edge index; every record once, searchable."""
    from refinery_quaterion.cli import main
    from refinery_quaterion.search import IndexConfig, SimilarityIndex

    data = tmp_path / "records.jsonl"
    records.to_json(data, orient="records", lines=True)
    index = tmp_path / "index"
    argv = ["index", str(model_dir), str(data), "--path", str(index), "--ray", "--workers", "2", "--id-field", "rid",
            "--no-cache", "-q"]
    assert main(argv) == 0
    assert f"loaded into 'refinery' at {index}" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".index-shards-")]  # the scratch shards are gone
    from refinery_quaterion import load

    model = load(model_dir)
    with SimilarityIndex(model, index, config=IndexConfig(id_field="rid")) as opened:
        assert len(opened) == len(records)
        hit = opened.search(records["text"].iloc[3], k=1)[0]
        assert hit.record["rid"] == records["rid"].iloc[3]


def test_cli_shards_without_ray_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from refinery_quaterion.cli import main

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["index", str(model), str(data), "--shards", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "--shards needs --ray" in capsys.readouterr().err


def test_cli_ray_runtime_reaches_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import refinery_quaterion.scale as scale
    from refinery_quaterion.cli import main

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n')
    seen = {}

    def fake_index_with_ray(model_dir, source, *, config, **target):
        seen.update(config=config, **target)
        return "indexed"

    monkeypatch.setattr(scale, "index_with_ray", fake_index_with_ray)
    argv = ["index", str(model), str(data), "--shards", str(tmp_path / "out"), "--ray", "--quantize", "int8"]
    assert main([*argv, "--ray-runtime", "openvino"]) == 0
    assert seen["config"].runtime == "openvino" and seen["config"].quantize == "int8"
    assert seen["out"] == tmp_path / "out" and "indexed" in capsys.readouterr().out
    assert main(argv) == 0 and seen["config"].runtime == "onnx"
