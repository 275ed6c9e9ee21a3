"""Encoder backends on a tiny random model: ONNX Runtime fp32 gives the torch vectors, int8 close
ones; the graph is built once and kept; the embedding cache keeps backends apart; clear refusals."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cosines, encoder_on, make_texts

from refinery_quaterion import DistilBertSimilarityModel, FitConfig, ModelConfig, fit, load, save
from refinery_quaterion.exporters import export_model, onnx_model
from refinery_quaterion.model.backends import BACKENDS, MODELS_FOLDER, check_backend, register_backend
from refinery_quaterion.model.cache import EmbeddingCache
from refinery_quaterion.model.encoder import TransformerEncoder
from refinery_quaterion.model.runtime import length_sorted_batches

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                reason="needs the onnx extra (onnxruntime)")


def texts() -> list[str]:
    long = " ".join(["market news from the league and the lab"] * 40)  # past max_length: truncated
    return [*make_texts(30, seed=5)["text"], "goal", long, "unknownword only"]


@needs_onnx
@pytest.mark.parametrize("settings", [{}, {"pooling": "cls", "normalize": False}])
def test_onnx_backends_give_the_torch_vectors(settings: dict, tiny_model_dir: Path, tmp_path: Path) -> None:
    torch_vectors = encoder_on(tiny_model_dir, "torch", None, **settings).encode(texts())
    fp32 = encoder_on(tiny_model_dir, "onnx", tmp_path, **settings).encode(texts(), batch_size=7)
    int8 = encoder_on(tiny_model_dir, "onnx-int8", tmp_path, **settings).encode(texts())
    assert fp32.shape == int8.shape == torch_vectors.shape and fp32.dtype == np.float32
    assert cosines(fp32, torch_vectors).min() >= 0.9999
    assert cosines(int8, torch_vectors).min() > 0.9
    if not settings:  # the encoder normalises: so do both graphs
        np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)


@needs_onnx
def test_the_graph_is_built_once_and_kept_in_the_cache_folder(tiny_model_dir: Path, tmp_path: Path,
                                                               monkeypatch) -> None:
    first = encoder_on(tiny_model_dir, "onnx-int8", tmp_path / "cache")
    vectors = first.encode(texts())
    graph = tmp_path / "cache" / MODELS_FOLDER / first.fingerprint() / "model.onnx"
    assert graph.is_file() and stat.S_IMODE(graph.stat().st_mode) == 0o666 & ~_umask()
    info = json.loads((graph.parent / "backend.json").read_text())
    assert info["backend"] == "onnx-int8" and info["key"]["quantization"] == "int8"
    assert not [p for p in graph.parent.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left

    def no_export(*args, **kwargs):
        raise AssertionError("the graph was exported again")

    monkeypatch.setattr(onnx_model, "export_graph", no_export)
    again = encoder_on(tiny_model_dir, "onnx-int8", tmp_path / "other-cache")  # no vectors cached there
    again.embedding_cache = EmbeddingCache(tmp_path / "cache")  # ... but the graph is: the same folder
    again.embedding_cache.clear()  # drop the vectors, keep the graph
    np.testing.assert_allclose(again.encode(texts()), vectors, atol=1e-6)


@needs_onnx
def test_the_cache_keeps_backends_apart(tiny_model_dir: Path, tmp_path: Path, count_forward) -> None:
    cache = tmp_path / "cache"
    encoders = {name: encoder_on(tiny_model_dir, name, cache) for name in ("torch", "onnx", "onnx-int8")}
    fingerprints = {name: encoder.fingerprint() for name, encoder in encoders.items()}
    assert len(set(fingerprints.values())) == 3
    plain = TransformerEncoder.from_pretrained(tiny_model_dir, template="{text}", backend="torch")
    assert fingerprints["torch"] == plain.fingerprint()  # torch adds nothing: older caches stay valid
    first = {name: encoder.encode(texts()) for name, encoder in encoders.items()}
    assert sorted(EmbeddingCache(cache).fingerprints()) == sorted(fingerprints.values())

    for name in encoders:  # a fresh encoder of each backend is served its own vectors
        fresh = encoder_on(tiny_model_dir, name, cache)
        counter = count_forward(fresh.transformer)
        np.testing.assert_array_equal(fresh.encode(texts()), first[name])
        assert counter.calls == 0
    assert np.abs(first["onnx-int8"] - first["torch"]).max() > 1e-4  # different vectors, not a shared entry


@needs_onnx
def test_a_model_trains_saves_and_loads_with_an_onnx_backend(tiny_model_dir: Path, synthetic_split,
                                                            tmp_path: Path, count_forward, monkeypatch) -> None:
    monkeypatch.setenv("REFINERY_QUATERION_CACHE", str(tmp_path / "default-cache"))  # load() without a cache
    train, val = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, template="{text}", loss="triplet", encoder_backend="onnx-int8"),
                                      embedding_cache=tmp_path / "cache")
    assert model.encoder.backend == "onnx-int8"
    model.encoder.backend_runner()  # builds the graph (tracing runs the transformer once)
    counter = count_forward(model.encoder.transformer)
    fit(model, train, val, FitConfig(epochs=2, batch_size=64, progress=False))
    assert counter.calls == 0  # the frozen pass ran on ONNX Runtime only
    path = save(model, tmp_path / "model", label_map=train.label_map)
    assert json.loads((path / "training_config.json").read_text())["model"]["encoder_backend"] == "onnx-int8"

    loaded = load(path)
    assert loaded.encoder.backend == "onnx-int8" and loaded.model_config.encoder_backend == "onnx-int8"
    assert not (tmp_path / "default-cache").exists()  # built when first used
    np.testing.assert_allclose(loaded.encode(texts()), model.encode(texts()), atol=1e-5)
    assert (tmp_path / "default-cache" / MODELS_FOLDER / loaded.encoder.fingerprint() / "model.onnx").is_file()
    on_torch = load(path, encoder_backend="torch")
    assert on_torch.encoder.backend == "torch"
    assert cosines(on_torch.encode(texts()), loaded.encode(texts())).min() > 0.9

    # an export holds the torch computation, and is checked against it
    result = export_model(path, tmp_path / "onnx", format="onnx")
    assert result.checks["min_cosine"] >= 0.9999


def test_a_trainable_encoder_refuses_other_backends(tiny_model_dir: Path) -> None:
    message = r"encoder_backend='onnx' runs a frozen encoder only.*trainable_encoder=False"
    with pytest.raises(ValueError, match=message):
        DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, template="{text}", trainable_encoder=True, encoder_backend="onnx"))
    with pytest.raises(ValueError, match=message):
        encoder_on(tiny_model_dir, "onnx", None, trainable=True)
    trainable = encoder_on(tiny_model_dir, "torch", None, trainable=True)
    with pytest.raises(ValueError, match=r"encoder_backend='onnx-int8' runs a frozen encoder only"):
        trainable.backend = "onnx-int8"
    assert trainable.backend == "torch"


def test_unknown_backends_are_refused_naming_the_valid_ones(tiny_model_dir: Path) -> None:
    message = re.escape("encoder_backend must be one of ['auto', 'torch', 'onnx', 'onnx-int8', 'openvino', "
                        "'openvino-int8'], got 'tflite'")
    with pytest.raises(ValueError, match=message):
        ModelConfig(encoder_backend="tflite")
    with pytest.raises(ValueError, match=message):
        encoder_on(tiny_model_dir, "tflite", None)
    assert ModelConfig.from_dict(ModelConfig(encoder_backend="onnx").to_dict()).encoder_backend == "onnx"
    assert ModelConfig.from_dict({"pretrained": "minilm"}).encoder_backend == "torch"  # older files


def test_missing_onnxruntime_names_the_extra(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` does when it is missing
    encoder = encoder_on(tiny_model_dir, "onnx", tmp_path)
    with pytest.raises(ImportError, match=re.escape("pip install 'refinery-quaterion[onnx]'")):
        encoder.encode(texts())
    assert not (tmp_path / MODELS_FOLDER).exists()
    encoder.backend = "torch"  # the way out the error leaves: the torch backend still works
    assert encoder.encode(texts()).shape[0] == len(texts())


def test_a_new_backend_is_one_function_and_one_registration(tiny_model_dir: Path) -> None:
    calls = []

    @register_backend("torch-spy", description="torch, counting batches")
    def _spy(encoder: TransformerEncoder):
        torch_run = BACKENDS["torch"].build(encoder)

        def run(input_ids: np.ndarray, attention_mask: np.ndarray):
            calls.append(input_ids.shape)
            return torch_run(input_ids, attention_mask)

        return run

    try:
        with pytest.raises(ValueError, match="already registered"):
            register_backend("torch-spy", description="again")(_spy)
        assert check_backend("torch-spy") == "torch-spy"
        spy = encoder_on(tiny_model_dir, "torch-spy", None)
        reference = encoder_on(tiny_model_dir, "torch", None)
        np.testing.assert_allclose(spy.encode(texts(), batch_size=8), reference.encode(texts()), atol=1e-5)
        assert len(calls) == -(-len(set(texts())) // 8) and spy.fingerprint() != reference.fingerprint()
        with spy.using_backend("torch"):
            assert spy.fingerprint() == reference.fingerprint()
        assert spy.backend == "torch-spy"
    finally:
        BACKENDS.unregister("torch-spy")


def test_length_sorted_batches_pad_to_the_longest_of_each_batch() -> None:
    ids = [[1, 2], [3], [4, 5, 6], [7]]
    batches = list(length_sorted_batches(ids, 2, pad_id=0))
    assert [rows.tolist() for rows, _, _ in batches] == [[2, 0], [1, 3]]
    assert batches[0][1].tolist() == [[4, 5, 6], [1, 2, 0]] and batches[0][2].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batches[1][1].shape == (2, 1)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@needs_onnx
def test_auto_is_onnx_for_a_frozen_encoder_and_torch_otherwise(tiny_model_dir: Path, monkeypatch) -> None:
    from refinery_quaterion.model import backends

    monkeypatch.setattr(backends, "openvino_available", lambda: False)  # tests/test_openvino.py: "auto" with OpenVINO
    assert TransformerEncoder.from_pretrained(tiny_model_dir).backend == "onnx"
    assert TransformerEncoder.from_pretrained(tiny_model_dir, trainable=True).backend == "torch"
    assert DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, trainable_encoder=True)).encoder.backend == "torch"
    import torch

    with monkeypatch.context() as patch:  # a CUDA GPU: torch encodes there, faster than ONNX Runtime on the CPU
        patch.setattr(torch.cuda, "is_available", lambda: True)
        assert backends.cuda_visible() and TransformerEncoder.from_pretrained(tiny_model_dir).backend == "torch"
    monkeypatch.setattr(backends, "onnx_available", lambda: False)  # where onnxruntime is not installed
    assert TransformerEncoder.from_pretrained(tiny_model_dir).backend == "torch"
    assert backends.resolve_backend("onnx-int8") == "onnx-int8"
