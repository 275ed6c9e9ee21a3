"""The ``openvino`` export format: an OpenVINO IR folder that serves with openvino, tokenizers and numpy.

``model.xml`` + ``model.bin`` hold the whole model -- transformer, pooling, the encoder's
normalisation, the head (as dense layers) and the final normalisation -- converted from the same
graph as the ``onnx`` export (inputs ``input_ids`` and ``attention_mask``, int64, dynamic batch
and sequence axes; output ``sentence_embedding``, float32 unit-length rows), fp32 weights.
``quantize="int8"`` adds ``model_int8.xml`` + ``model_int8.bin``: NNCF post-training static
quantisation (``ModelType.TRANSFORMER``) calibrated on the settings' ``calibration_texts`` (your
texts, up to `DEFAULT_CALIBRATION_SIZE` spread evenly over them) or, without them, on the export's
probe texts (a few sentences and the labels: a less faithful int8 model). The check
``int8_calibration_texts`` says how many texts it was calibrated on.

``tokenizer.json`` truncates to the model's ``max_length``; ``serve.py`` (`SERVE_SCRIPT`) embeds
texts with nothing but ``openvino``, ``tokenizers`` and ``numpy``::

    from serve import embed            # with the export folder on sys.path
    vectors = embed(["a text", "another"])                       # fp32
    vectors = embed(["a text"], model="model_int8.xml")          # int8

`write_openvino` is registered as the ``"openvino"`` format in `refinery_quaterion.exporters.formats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion.exporters._files import write_json
from refinery_quaterion.exporters._hf import (
    export_config,
    library_tokens,
    min_cosine,
    probe_texts,
    save_transformer,
    serving_tokenizer_json,
)
from refinery_quaterion.exporters.formats import ExportSettings
from refinery_quaterion.exporters.heads import dense_module, head_layers
from refinery_quaterion.exporters.model_card import CALIBRATION_CHECK
from refinery_quaterion.exporters.onnx_serving import PROBE_SAMPLE
from refinery_quaterion.exporters.source import ExportSource, ModelExportError
from refinery_quaterion.model.onnx_graph import INPUTS, OUTPUT, EmbeddingGraph, export_graph
from refinery_quaterion.model.openvino_backend import (
    DEFAULT_CALIBRATION_SIZE,
    calibration_inputs,
    compile_ir,
    convert_onnx,
    require_openvino,
)
from refinery_quaterion.model.runtime import length_sorted_batches, require_onnx

__all__ = ["SERVE_SCRIPT", "write_openvino"]

MIN_COSINE = 0.9999

SERVE_SCRIPT = '''"""Embed texts with this OpenVINO export; needs only openvino, tokenizers and numpy.

    from serve import embed
    vectors = embed(["a text", "another"])               # model.xml (fp32)
    vectors = embed(["a text"], model="model_int8.xml")  # int8, if exported
"""

from pathlib import Path

import numpy as np
import openvino as ov
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
_compiled = {}


def _model(name):
    if name not in _compiled:
        _compiled[name] = ov.Core().compile_model(str(HERE / name), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return _compiled[name]


def embed(texts, model="model.xml", batch_size=64):
    """Unit-length float32 vectors of texts, in input order; batches of similar length."""
    tokenizer = Tokenizer.from_file(str(HERE / "tokenizer.json"))
    pad_id = int((tokenizer.padding or {}).get("pad_id", 0))
    tokenizer.no_padding()
    ids = [e.ids for e in tokenizer.encode_batch(list(texts))]
    order = np.argsort([-len(i) for i in ids], kind="stable")
    compiled, out = _model(model), None
    for start in range(0, len(ids), batch_size):
        rows = order[start:start + batch_size]
        batch = np.full((len(rows), len(ids[rows[0]])), pad_id, dtype=np.int64)
        mask = np.zeros_like(batch)
        for j, r in enumerate(rows):
            batch[j, :len(ids[r])], mask[j, :len(ids[r])] = ids[r], 1
        vectors = compiled({"input_ids": batch, "attention_mask": mask})[0]
        if out is None:
            out = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
        out[rows] = vectors
    return out
'''
"""The ``serve.py`` written into the export folder."""


def write_openvino(source: ExportSource, folder: Path, settings: ExportSettings) -> dict[str, float]:
    """Write ``model.xml``/``.bin``, tokenizer files, ``serve.py`` and, with ``quantize="int8"``, ``model_int8.xml``.

    Args:
        source: The model, read by `read_model`.
        folder: Empty output folder.
        settings: Export settings (``check``: compare OpenVINO's vectors with the library's).

    Returns:
        ``{"min_cosine": ...}`` when checked, and ``int8_min_cosine`` (int8 vs fp32) when quantised;
        ``int8_calibration_texts`` (texts the int8 model was calibrated on) whenever quantised.

    Raises:
        ImportError: If openvino, nncf (for int8) or onnx is missing (names the extra).
        ModelExportError: If the head cannot be expressed, the tokenizer is not a fast one, or the
            check finds different tokens or vectors.
    """
    require_openvino("openvino", *(("nncf",) if settings.quantize else ()))
    require_onnx("onnx")
    from tokenizers import Tokenizer

    layers = head_layers(source.head, label=source.head_label)
    save_transformer(source, folder, weights=False)
    tokenizer = Tokenizer.from_str(serving_tokenizer_json(source))
    sample = tokenizer.encode_batch(PROBE_SAMPLE)
    graph = EmbeddingGraph(source.transformer, source.pooling, source.normalize, dense_module(layers))
    onnx_path = folder / "model_fp32.onnx"
    export_graph(graph, onnx_path, np.array([e.ids for e in sample]), np.array([e.attention_mask for e in sample]),
                 opset=settings.opset)
    files = ["model.xml"]
    convert_onnx(onnx_path, folder / "model.xml")
    calibrated = 0
    if settings.quantize == "int8":
        calibrated = _write_int8(source, onnx_path, folder / "model_int8.xml", tokenizer, settings.calibration_texts)
        files.append("model_int8.xml")
    onnx_path.unlink()
    (folder / "serve.py").write_text(SERVE_SCRIPT, encoding="utf-8")
    dim = layers[-1].out_features if layers else source.raw_dim
    write_json(folder / "refinery_export.json", export_config(
        source, "openvino", dim, models=files, inputs=list(INPUTS), output=OUTPUT, opset=settings.opset))
    checks = _check(source, folder, files) if settings.check else {}
    return {**checks, CALIBRATION_CHECK: calibrated} if calibrated else checks


def _write_int8(source: ExportSource, onnx_path: Path, target: Path, tokenizer: Any,
                texts: Sequence[str] | None) -> int:
    """Write the int8 model, calibrated on ``texts`` (else the probe texts); return how many texts calibrated it."""
    tokenizer.no_padding()
    ids = [e.ids for e in tokenizer.encode_batch(list(texts) if texts else probe_texts(source))]
    calibration = calibration_inputs(ids, DEFAULT_CALIBRATION_SIZE)
    convert_onnx(onnx_path, target, calibration=calibration)
    return len(calibration)


def _check(source: ExportSource, folder: Path, files: list[str]) -> dict[str, float]:
    """Compare the exported models' tokens and vectors with the library's on the probe texts."""
    from tokenizers import Tokenizer

    texts = probe_texts(source)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    pad_id = int((tokenizer.padding or {}).get("pad_id", 0))
    tokenizer.no_padding()
    ids = [e.ids for e in tokenizer.encode_batch(texts)]
    if ids != library_tokens(source, texts):
        raise ModelExportError("tokenizer.json tokenizes the probe texts differently from the model's tokenizer")
    vectors = {name: _embed(folder / name, ids, pad_id) for name in files}
    checks = {"min_cosine": min_cosine(vectors["model.xml"], source.encode(texts))}
    if checks["min_cosine"] < MIN_COSINE:
        raise ModelExportError(f"model.xml differs from the library's encode (min cosine "
                               f"{checks['min_cosine']:.6f} < {MIN_COSINE} on {len(texts)} probe texts)")
    if "model_int8.xml" in vectors:
        checks["int8_min_cosine"] = min_cosine(vectors["model_int8.xml"], vectors["model.xml"])
    return checks


def _embed(model: Path, ids: list[list[int]], pad_id: int) -> np.ndarray:
    """Vectors of tokenized texts by one exported IR, in input order."""
    run = compile_ir(model)
    pieces = {}
    for rows, batch, mask in length_sorted_batches(ids, 64, pad_id):
        pieces.update(zip(rows.tolist(), run(batch, mask)))
    return np.stack([pieces[i] for i in range(len(ids))])
