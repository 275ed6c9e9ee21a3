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
from conftest import cosines, encoder_on, make_texts

from refinery_quaterion.errors import SettingError
from refinery_quaterion.model import backends
from refinery_quaterion.model.backends import MODELS_FOLDER, calibrate
from refinery_quaterion.model.encoder import TransformerEncoder
from refinery_quaterion.model.openvino_backend import DEFAULT_CALIBRATION_SIZE

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None or
                                    importlib.util.find_spec("nncf") is None,
                                    reason="needs the openvino extra (openvino, nncf)")
INT8_MIN_COSINE = 0.98  # the tiny random model; all-MiniLM-L6-v2 on AG News: mean 0.996, min 0.99
EXPORT_INT8_MIN_COSINE = 0.95  # the export calibrates on its ~10 probe texts only (measured: 0.959)


def texts() -> list[str]:
    long = " ".join(["market news from the league and the lab"] * 40)  # past max_length: truncated
    return [*make_texts(40, seed=5)["text"], "goal", long, "unknownword only"]


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
def test_streamed_batches_give_the_vectors_of_one_batch_at_a_time(tiny_model_dir: Path, tmp_path: Path) -> None:
    from refinery_quaterion.model.openvino_backend import CompiledIR
    from refinery_quaterion.model.runtime import length_sorted_batches

    encoder = encoder_on(tiny_model_dir, "openvino", tmp_path)
    encoder.encode(texts()[:2])  # builds the IR
    model = CompiledIR(tmp_path / MODELS_FOLDER / encoder.fingerprint() / "model.xml", threads=2)
    ids = encoder.tokenizer(texts(), truncation=True, max_length=encoder.max_length)["input_ids"]
    batches = [(batch, mask) for _, batch, mask in length_sorted_batches(ids, 5, 0)]
    one_by_one = [model(batch, mask) for batch, mask in batches]
    streamed = list(model.run_all(batches))
    assert len(batches) == len(streamed) == 9 and model._streams  # the throughput model ran them
    for single, stream in zip(one_by_one, streamed, strict=True):
        assert single.shape == stream.shape
        assert cosines(single, stream).min() >= 0.99999


@needs_openvino
def test_the_int8_model_is_calibrated_once_and_kept(tiny_model_dir: Path, tmp_path: Path, monkeypatch,
                                                    capfd) -> None:
    from refinery_quaterion.model import openvino_backend

    convert, calibrated = openvino_backend.convert_onnx, []

    def counting(onnx_path, target, *, calibration=None):
        calibrated.append(len(calibration))
        convert(onnx_path, target, calibration=calibration)

    monkeypatch.setattr(openvino_backend, "convert_onnx", counting)
    first = encoder_on(tiny_model_dir, "openvino-int8", tmp_path / "cache", calibration_size=12)
    capfd.readouterr()
    calibrate(first, texts()[:20])  # a sample of the caller's choice, 12 of its 20 texts calibrate
    assert calibrated == [12]
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""  # NNCF's progress bars and notes are silenced
    vectors = first.encode(texts())
    model = tmp_path / "cache" / MODELS_FOLDER / first.fingerprint() / "model.xml"
    assert model.is_file() and model.with_suffix(".bin").is_file()
    info = json.loads((model.parent / "backend.json").read_text())
    assert info["backend"] == "openvino-int8" and info["key"]["quantization"] == "int8"
    assert info["key"]["calibration_size"] == 12 and set(info["key"]["versions"]) == {"openvino", "nncf"}
    assert not list(model.parent.glob("*.onnx"))  # the intermediate graph is not kept

    def no_build(*args, **kwargs):
        raise AssertionError("the model was built again")

    monkeypatch.setattr(openvino_backend, "convert_onnx", no_build)
    again = encoder_on(tiny_model_dir, "openvino-int8", tmp_path / "cache", calibration_size=12)
    again.embedding_cache.clear()  # drop the vectors, keep the model
    np.testing.assert_allclose(again.encode(texts()), vectors, atol=1e-6)


def test_the_fingerprint_differs_per_backend_and_int8_calibration_size(tiny_model_dir: Path) -> None:
    names = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
    prints = {name: encoder_on(tiny_model_dir, name, None).fingerprint() for name in names}
    assert len(set(prints.values())) == len(names)
    resized = {name: encoder_on(tiny_model_dir, name, None, calibration_size=17).fingerprint() for name in names}
    assert resized["openvino-int8"] != prints["openvino-int8"]  # another size: another cached int8 model
    assert {name: resized[name] for name in names[:4]} == {name: prints[name] for name in names[:4]}
    encoder = encoder_on(tiny_model_dir, "openvino-int8", None)
    assert encoder.calibration_size == DEFAULT_CALIBRATION_SIZE and encoder.fingerprint() == prints["openvino-int8"]
    encoder.calibration_size = 17  # a new size is a new fingerprint at once
    assert encoder.fingerprint() == resized["openvino-int8"]
    for size in (0, -1, "x"):
        with pytest.raises(SettingError, match="calibration_size"):
            encoder_on(tiny_model_dir, "openvino-int8", None, calibration_size=size)


def test_the_calibration_size_reaches_the_encoder_and_its_saved_settings(tiny_model_dir: Path,
                                                                        tmp_path: Path) -> None:
    from refinery_quaterion import DistilBertSimilarityModel, ModelConfig

    config = ModelConfig(pretrained=tiny_model_dir, template="{text}", loss="triplet", calibration_size=17)
    encoder = DistilBertSimilarityModel(config).encoder
    assert encoder.calibration_size == 17
    encoder.save(tmp_path / "encoder")
    assert TransformerEncoder.load(tmp_path / "encoder").calibration_size == 17
    settings_file = tmp_path / "encoder" / "encoder.json"
    settings = json.loads(settings_file.read_text())
    del settings["calibration_size"]  # saved before the setting existed
    settings_file.write_text(json.dumps(settings))
    assert TransformerEncoder.load(tmp_path / "encoder").calibration_size == DEFAULT_CALIBRATION_SIZE


@pytest.mark.parametrize(("settings", "message"), [
    ({"format": "openvino"}, "they need quantize='int8' and a format that calibrates, ['openvino']"),
    ({"format": "onnx", "quantize": "int8"}, "(got format 'onnx', quantize='int8')"),
    ({"format": "openvino", "quantize": "int8", "calibration_texts": "one text"}, "must be a list of texts, got str"),
    ({"format": "openvino", "quantize": "int8", "calibration_texts": []}, "one or more texts (str), got none"),
    ({"format": "openvino", "quantize": "int8", "calibration_texts": ["a", 1]}, "one or more texts (str), got a int"),
])
def test_calibration_texts_need_a_calibrated_int8_model(settings: dict, message: str) -> None:
    from refinery_quaterion.exporters.formats import ExportSettings

    with pytest.raises(ValueError, match=re.escape(message)):
        ExportSettings(**{"calibration_texts": ["a text"], **settings})
    assert ExportSettings("openvino", "int8", calibration_texts=["a", "b"]).calibration_texts == ("a", "b")


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
    probes = result.checks["int8_calibration_texts"]  # without calibration texts: the few probe texts
    assert 5 <= probes <= 13 and result.checks["int8_min_cosine"] >= EXPORT_INT8_MIN_COSINE
    assert (f"The int8 model was calibrated on {probes} texts (the export's probe texts)."
            in (result.path / "README.md").read_text())
    own = export_model(tmp_path / "model", tmp_path / "ov-own", format="openvino", quantize="int8", check=False,
                       calibration_texts=texts())
    assert own.checks == {"int8_calibration_texts": len(texts())}
    assert f"The int8 model was calibrated on {len(texts())} texts (your texts)." in (own.path / "README.md").read_text()
    assert str(own).endswith(f"int8_calibration_texts: {len(texts())}")  # a count, not 43.000000
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
