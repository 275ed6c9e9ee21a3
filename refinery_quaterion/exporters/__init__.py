"""Take a trained model anywhere: sentence-transformers, ONNX and OpenVINO exports.

`export_model` writes a folder that works without this library, quaterion or Lightning:

* ``format="sentence-transformers"``: ``SentenceTransformer(out)`` loads it (Transformer ->
  Pooling -> Normalize -> the trained head as ``Dense`` modules -> Normalize);
* ``format="onnx"``: ``model.onnx`` (the whole model in one graph) and ``tokenizer.json``,
  served with ``onnxruntime``, ``tokenizers`` and ``numpy`` only; ``quantize="int8"`` adds
  ``model_int8.onnx``. Needs the ``refinery-quaterion[onnx]`` extra;
* ``format="openvino"``: OpenVINO IR (``model.xml`` + ``model.bin``) and ``tokenizer.json``,
  served with ``openvino``, ``tokenizers`` and ``numpy`` only; ``quantize="int8"`` adds
  ``model_int8.xml``, statically quantised by NNCF and calibrated on ``calibration_texts``
  (your own texts; the probe texts otherwise). Needs the ``refinery-quaterion[openvino]`` extra.

`OnnxEmbedder` and `OpenVinoEmbedder` run those folders without torch (the serving side, and
Ray's encoder actors).

Formats are a registry (`EXPORT_FORMATS`, `register_format`): a new format is one writer
function and one registration. The names below are imported on first use, so reading
`EXPORT_FORMATS` (the command line's ``--help``) imports no torch. Heads become dense layers through another registry
(`HEAD_CONVERTERS`); a head no converter handles gets an `ModelExportError` naming it.

Example:
    ```python
    from refinery_quaterion.exporters import export_model

    print(export_model("my-model", "my-model-st"))                        # sentence-transformers
    print(export_model("my-model", "my-model-onnx", format="onnx", quantize="int8"))
    ```
"""

from __future__ import annotations

from refinery_quaterion._lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "formats": ("EXPORT_FORMATS", "ExportFormat", "ExportResult", "ExportSettings", "export_model", "register_format"),
    "heads": ("HEAD_CONVERTERS", "DenseLayer", "register_head_converter"),
    "onnx_serving": ("OnnxEmbedder",),
    "openvino_serving": ("OpenVinoEmbedder",),
    "refinery_project": ("ToRefineryConfig", "ToRefineryResult", "to_refinery"),
    "source": ("ExportSource", "ModelExportError", "read_model"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
