"""sentence-transformers-style ``encode`` / ``similarity`` / ``dim`` on trained and loaded models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from refinery_quaterion import FitConfig, ModelConfig
from refinery_quaterion.model.inference import EmbeddingModel
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training.fit import fit
from refinery_quaterion.training.model_files import load, save


@pytest.fixture(scope="module")
def models(tiny_model_dir: Path, synthetic_split, tmp_path_factory) -> dict[str, object]:
    """A briefly trained model and the same model saved and loaded."""
    train, val = synthetic_split
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, lr=0.2))
    fit(model, train, None, FitConfig(epochs=3, batch_size=64, progress=False))
    folder = save(model, tmp_path_factory.mktemp("encode") / "model")
    return {"trained": model, "loaded": load(folder)}


@pytest.mark.parametrize("kind", ["trained", "loaded"])
def test_encode_shapes_dtypes_and_unit_norms(kind: str, models, synthetic_split) -> None:
    model = models[kind]
    _, val = synthetic_split
    one = model.encode(val.texts[0])
    assert one.shape == (model.dim,) and one.dtype == np.float32
    record = model.encode(val.records[0])
    np.testing.assert_allclose(record, one, atol=1e-6)  # a record is rendered with the template
    many = model.encode(val.texts[:5])
    assert many.shape == (5, model.dim) and many.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(many[0], one, atol=1e-6)
    frame = pd.DataFrame(val.records[:5])
    np.testing.assert_allclose(model.encode(frame, batch_size=2, progress=False), many, atol=1e-5)
    assert model.encode([]).shape == (0, model.dim)
    # normalize=False keeps the head's output, and the two differ only in length
    raw = model.encode(val.texts[:5], normalize=False)
    np.testing.assert_allclose(raw, model.apply_head(model.encode_raw(val.texts[:5])), atol=1e-6)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), many, atol=1e-5)


@pytest.mark.parametrize("kind", ["trained", "loaded"])
def test_similarity_is_the_cosine_matrix(kind: str, models, synthetic_split) -> None:
    model = models[kind]
    _, val = synthetic_split
    texts = val.texts[:4]
    vectors = model.encode(texts)
    sims = model.similarity(texts, val.texts[4:7])
    assert sims.shape == (4, 3) and sims.dtype == np.float32
    np.testing.assert_allclose(sims, vectors @ model.encode(val.texts[4:7]).T, atol=1e-5)
    np.testing.assert_allclose(np.diag(model.similarity(texts)), 1.0, atol=1e-5)
    unnormalised = model.encode(texts, normalize=False) * 3
    np.testing.assert_allclose(model.similarity(unnormalised, vectors), model.similarity(texts), atol=1e-5)
    assert model.similarity(texts[0], torch.from_numpy(vectors)).shape == (1, 4)
    with pytest.raises(ValueError, match=rf"vectors of shape \(n, {model.dim}\), got an array of shape \(2, 5\)"):
        model.similarity(np.zeros((2, 5)), texts)


def test_encode_moves_to_a_device_and_dim(models) -> None:
    model = models["loaded"]
    assert isinstance(model, EmbeddingModel)
    assert model.dim == model.head.output_size == 32
    before = model.encode("goal match team")
    np.testing.assert_allclose(model.encode("goal match team", device="cpu"), before, atol=1e-6)
    assert next(model.head.parameters()).device.type == "cpu"


def test_evaluation_metrics_do_not_depend_on_vector_length(models, synthetic_split) -> None:
    from refinery_quaterion.evaluate import precision_at_k

    model = models["trained"]
    _, val = synthetic_split
    labels = np.asarray(val.labels)
    raw = model.encode(val.texts, normalize=False)
    assert precision_at_k(raw, labels, 10) == precision_at_k(model.encode(val.texts), labels, 10)


@pytest.mark.parametrize("kind", ["trained", "loaded"])
def test_encode_takes_sentence_transformers_keywords(kind: str, models, synthetic_split) -> None:
    model = models[kind]
    _, val = synthetic_split
    texts = val.texts[:5]
    vectors = model.encode(texts)
    np.testing.assert_allclose(model.encode(texts, show_progress_bar=False, convert_to_numpy=True), vectors, atol=1e-6)
    tensor = model.encode(texts, convert_to_tensor=True, convert_to_numpy=True)  # the tensor wins, as in ST
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (5, model.dim) and tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor.numpy(), vectors, atol=1e-6)
    assert isinstance(model.encode(texts[0], convert_to_tensor=True), torch.Tensor)
    rows = model.encode(texts, convert_to_numpy=False)
    assert isinstance(rows, list) and len(rows) == 5 and all(isinstance(r, torch.Tensor) and r.shape == (model.dim,)
                                                             for r in rows)
    np.testing.assert_allclose(torch.stack(rows).numpy(), vectors, atol=1e-6)
    # normalize_embeddings is sentence-transformers' name for normalize; when given it decides
    np.testing.assert_allclose(model.encode(texts, normalize_embeddings=False), model.encode(texts, normalize=False),
                               atol=1e-6)
    np.testing.assert_allclose(model.encode(texts, normalize=False, normalize_embeddings=True), vectors, atol=1e-6)
    # prompt goes before every text, and before the rendered text of a record
    prompted = model.encode(texts, prompt="goal ")
    np.testing.assert_allclose(prompted, model.encode(["goal " + t for t in texts]), atol=1e-6)
    np.testing.assert_allclose(model.encode(val.records[0], prompt="goal "), prompted[0], atol=1e-6)
    assert not np.allclose(prompted, vectors, atol=1e-3)
    with pytest.raises(ValueError, match="progress=True and show_progress_bar=False disagree"):
        model.encode(texts, progress=True, show_progress_bar=False)
    with pytest.raises(ValueError, match=r"precision 'fp16' is not supported, must be one of \['float32', 'int8'"):
        model.encode(texts, precision="fp16")


@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_precision_quantizes_as_sentence_transformers_does(precision: str, models, synthetic_split) -> None:
    model = models["loaded"]
    train, val = synthetic_split
    vectors = model.encode(train.texts[:120])
    quantized = model.encode(train.texts[:120], precision=precision)
    dtype = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}
    assert quantized.dtype == dtype[precision]
    assert quantized.shape == (120, model.dim // 8 if precision.endswith("binary") else model.dim)
    if importlib.util.find_spec("sentence_transformers") is not None:
        from sentence_transformers.util import quantize_embeddings

        np.testing.assert_array_equal(quantized, quantize_embeddings(vectors, precision=precision))
    if precision == "ubinary":
        np.testing.assert_array_equal(np.unpackbits(quantized, axis=1)[:, : model.dim], vectors > 0)
    if precision == "uint8":  # bucket b of dimension d covers min_d + b * step_d ... + step_d
        steps = (vectors.max(0) - vectors.min(0)) / 255
        assert (np.abs(vectors.min(0) + quantized * steps - vectors) <= steps + 1e-6).all()
    assert model.encode([], precision=precision).shape[0] == 0
    if precision in ("int8", "uint8"):
        with pytest.raises(ValueError, match="single embedding"):
            model.encode(train.texts[0], precision=precision)
    else:  # one text alone is padded differently: float32 equal up to rounding, the signs equal
        np.testing.assert_allclose(model.encode(train.texts[0], precision=precision), quantized[0], atol=1e-5)
