"""The OpenVINO encoder backends and export on a tiny random model: fp32 gives the torch vectors,
NNCF int8 close ones; both are built once and kept; the fingerprint tells backends apart; a missing
extra is named; the exported IR folder serves with openvino, tokenizers and numpy only."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_texts

from refinery_quaterion.model import backends
from refinery_quaterion.model.backends import MODELS_FOLDER, calibrate
from refinery_quaterion.model.encoder import TransformerEncoder
from refinery_quaterion.model.openvino_backend import CALIBRATION_SIZE_VARIABLE, calibration_size

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None or
                                    importlib.util.find_spec("nncf") is None,
                                    reason="needs the openvino extra (openvino, nncf)")
INT8_MIN_COSINE = 0.98  # the tiny random model; all-MiniLM-L6-v2 on AG News: mean 0.996, min 0.99
EXPORT_INT8_MIN_COSINE = 0.95  # the export calibrates on its ~10 probe texts only (measured: 0.959)


def texts() -> list[str]:
    long = " ".join(["market news from the league and the lab"] * 40)  # past max_length: truncated
    return [*make_texts(40, seed=5)["text"], "goal", long, "unknownword only"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def encoder_on(folder: Path, backend: str, cache: Path | None, **settings) -> TransformerEncoder:
    return TransformerEncoder.from_pretrained(folder, template="{text}", backend=backend, embedding_cache=cache,
                                              **settings)


@needs_openvino
@pytest.mark.parametrize("settings", [{}, {"pooling": "cls", "normalize": False}])
def test_openvino_backends_give_the_torch_vectors(settings: dict, tiny_model_dir: Path, tmp_path: Path) -> None:
    torch_vectors = encoder_on(tiny_model_dir, "torch", None, **settings).encode(texts())
    fp32 = encoder_on(tiny_model_dir, "openvino", tmp_path, **settings).encode(texts(), batch_size=7)
    int8 = encoder_on(tiny_model_dir, "openvino-int8", tmp_path, **settings).encode(texts())
    assert fp32.shape == int8.shape == torch_vectors.shape and fp32.dtype == int8.dtype == np.float32
    assert cosines(fp32, torch_vectors).min() >= 0.9999
    assert cosines(int8, torch_vectors).min() >= INT8_MIN_COSINE
    if not settings:
        np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)


@needs_openvino
def test_the_int8_model_is_calibrated_once_and_kept(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from refinery_quaterion.model import openvino_backend

    first = encoder_on(tiny_model_dir, "openvino-int8", tmp_path / "cache")
    calibrate(first, texts()[:20])  # a sample of the caller's choice
    vectors = first.encode(texts())
    model = tmp_path / "cache" / MODELS_FOLDER / first.fingerprint() / "model.xml"
    assert model.is_file() and model.with_suffix(".bin").is_file()
    info = json.loads((model.parent / "backend.json").read_text())
    assert info["backend"] == "openvino-int8" and info["key"]["quantization"] == "int8"
    assert info["key"]["calibration_size"] == calibration_size() and set(info["key"]["versions"]) == {"openvino", "nncf"}
    assert not list(model.parent.glob("*.onnx"))  # the intermediate graph is not kept

    def no_build(*args, **kwargs):
        raise AssertionError("the model was built again")

    monkeypatch.setattr(openvino_backend, "convert_onnx", no_build)
    again = encoder_on(tiny_model_dir, "openvino-int8", tmp_path / "cache")
    again.embedding_cache.clear()  # drop the vectors, keep the model
    np.testing.assert_allclose(again.encode(texts()), vectors, atol=1e-6)


@needs_openvino
def test_the_fingerprint_differs_per_backend_and_calibration_size(tiny_model_dir: Path, monkeypatch) -> None:
    names = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
    prints = {name: encoder_on(tiny_model_dir, name, None).fingerprint() for name in names}
    assert len(set(prints.values())) == len(names)
    monkeypatch.setenv(CALIBRATION_SIZE_VARIABLE, "17")
    assert calibration_size() == 17
    assert encoder_on(tiny_model_dir, "openvino-int8", None).fingerprint() != prints["openvino-int8"]
    assert encoder_on(tiny_model_dir, "openvino", None).fingerprint() == prints["openvino"]
    monkeypatch.setenv(CALIBRATION_SIZE_VARIABLE, "many")
    with pytest.raises(ValueError, match=CALIBRATION_SIZE_VARIABLE):
        calibration_size()


def test_auto_picks_openvino_where_it_is_installed(tiny_model_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(backends, "onnx_available", lambda: True)
    monkeypatch.setattr(backends, "openvino_available", lambda: True)
    assert TransformerEncoder.from_pretrained(tiny_model_dir).backend == "openvino"
    assert TransformerEncoder.from_pretrained(tiny_model_dir, trainable=True).backend == "torch"
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    assert TransformerEncoder.from_pretrained(tiny_model_dir).backend == "onnx"


@pytest.mark.parametrize("missing", ["openvino", "nncf"])
def test_a_missing_extra_is_named_in_one_line(missing: str, tiny_model_dir: Path, tmp_path: Path,
                                              monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # what `import openvino` does when it is missing
    encoder = encoder_on(tiny_model_dir, "openvino-int8", tmp_path)
    with pytest.raises(ImportError, match=re.escape("pip install 'refinery-quaterion[openvino]'")) as caught:
        encoder.encode(texts())
    assert "\n" not in str(caught.value)
    assert not (tmp_path / MODELS_FOLDER).exists()
    encoder.backend = "torch"  # the way out: the torch backend still works
    assert encoder.encode(texts()).shape[0] == len(texts())


@needs_openvino
def test_an_openvino_export_serves_without_torch(tiny_model_dir: Path, synthetic_split, tmp_path: Path) -> None:
    from refinery_quaterion import DistilBertSimilarityModel, FitConfig, ModelConfig, fit, load, save
    from refinery_quaterion.exporters import export_model

    train, val = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, template="{text}", loss="triplet"))
    fit(model, train, val, FitConfig(epochs=1, batch_size=16, progress=False))
    save(model, tmp_path / "model")
    result = export_model(tmp_path / "model", tmp_path / "ov", format="openvino", quantize="int8")
    for name in ("model.xml", "model.bin", "model_int8.xml", "model_int8.bin", "tokenizer.json", "README.md"):
        assert (result.path / name).is_file(), name
    expected = load(tmp_path / "model").encode(texts())
    script = f"""
import sys
for blocked in ("torch", "transformers", "refinery_quaterion", "quaterion", "onnxruntime"):
    sys.modules[blocked] = None
import numpy as np
from pathlib import Path
sys.path.insert(0, {str(result.path)!r})
from serve import embed
texts = {texts()!r}
np.save({str(tmp_path / "fp32.npy")!r}, embed(texts))
np.save({str(tmp_path / "int8.npy")!r}, embed(texts, model="model_int8.xml"))
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    assert cosines(np.load(tmp_path / "fp32.npy"), expected).min() >= 0.9999
    assert cosines(np.load(tmp_path / "int8.npy"), expected).min() >= EXPORT_INT8_MIN_COSINE
