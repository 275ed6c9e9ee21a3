"""The ``onnx`` export format (`refinery_quaterion.exporters.onnx_serving.OnnxEmbedder` runs such a folder).

``model.onnx`` holds the whole model in one graph -- transformer, pooling, the encoder's
normalisation, the head (as dense layers) and the final normalisation -- with inputs
``input_ids`` and ``attention_mask`` (int64, dynamic batch and sequence axes) and the output
``sentence_embedding`` (float32, unit-length rows). It is written with the TorchScript-based
``torch.onnx.export(..., dynamo=False)`` (the dynamo exporter needs ``onnxscript``), opset 17.
``quantize="int8"`` adds ``model_int8.onnx``: ``onnxruntime.quantization.quantize_dynamic`` with
per-channel int8 weights (per-tensor loses much more accuracy; ``quant_pre_process`` fails on
this graph and is not needed).

``tokenizer.json`` truncates to the model's ``max_length`` and pads each batch to its longest
text, so serving needs only ``onnxruntime``, ``tokenizers`` and ``numpy``.

`write_onnx` is registered as the ``"onnx"`` format in `refinery_quaterion.exporters.formats`.
"""

from __future__ import annotations

from pathlib import Path

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
from refinery_quaterion.exporters.onnx_serving import PROBE_SAMPLE, OnnxEmbedder
from refinery_quaterion.exporters.source import ExportSource, ModelExportError
from refinery_quaterion.model.onnx_graph import INPUTS, OUTPUT, EmbeddingGraph, export_graph
from refinery_quaterion.model.runtime import quantize_int8, require_onnx

__all__ = ["write_onnx"]

MIN_COSINE = 0.9999


def write_onnx(source: ExportSource, folder: Path, settings: ExportSettings) -> dict[str, float]:
    """Write ``model.onnx``, the tokenizer files and, with ``quantize="int8"``, ``model_int8.onnx``.

    Args:
        source: The model, read by `read_model`.
        folder: Empty output folder.
        settings: Export settings (``check``: compare ONNX Runtime's vectors with the library's).

    Returns:
        ``{"min_cosine": ...}`` when checked, and ``int8_min_cosine`` (int8 vs fp32) when quantised.

    Raises:
        ImportError: If onnx or onnxruntime is missing (names ``refinery-quaterion[onnx]``).
        ModelExportError: If the head cannot be expressed, the tokenizer is not a fast one, or the
            check finds different tokens or vectors.
    """
    require_onnx()
    from tokenizers import Tokenizer

    layers = head_layers(source.head, label=source.head_label)
    save_transformer(source, folder, weights=False)
    tokenizer = Tokenizer.from_str(serving_tokenizer_json(source))
    sample = tokenizer.encode_batch(PROBE_SAMPLE)
    graph = EmbeddingGraph(source.transformer, source.pooling, source.normalize, dense_module(layers))
    export_graph(graph, folder / "model.onnx", np.array([e.ids for e in sample]),
                 np.array([e.attention_mask for e in sample]), opset=settings.opset)
    files = ["model.onnx"]
    if settings.quantize == "int8":
        quantize_int8(folder / "model.onnx", folder / "model_int8.onnx")
        files.append("model_int8.onnx")
    dim = layers[-1].out_features if layers else source.raw_dim
    write_json(folder / "refinery_export.json", export_config(
        source, "onnx", dim, models=files, inputs=list(INPUTS), output=OUTPUT, opset=settings.opset))
    checks: dict[str, float] = {}
    if settings.check:
        texts = probe_texts(source)
        served = [e.ids for e in OnnxEmbedder(folder).tokenize(texts)]
        if served != library_tokens(source, texts):
            raise ModelExportError("tokenizer.json tokenizes the probe texts differently from the model's tokenizer")
        fp32 = OnnxEmbedder(folder).encode(texts)
        checks["min_cosine"] = min_cosine(fp32, source.encode(texts))
        if checks["min_cosine"] < MIN_COSINE:
            raise ModelExportError(f"model.onnx differs from the library's encode (min cosine "
                                   f"{checks['min_cosine']:.6f} < {MIN_COSINE} on {len(texts)} probe texts)")
        if "model_int8.onnx" in files:
            checks["int8_min_cosine"] = min_cosine(OnnxEmbedder(folder, "model_int8.onnx").encode(texts), fp32)
    return checks
