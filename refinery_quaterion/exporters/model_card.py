"""The model card (``README.md``) and label map of an export folder.

The card says what a user of the exported model must know: the base model, the text template
records must be rendered with before embedding, the labels, what the model was trained on
(from ``training_config.json``), the evaluation table when one is given, and how to load it.
Its YAML header is what the Hugging Face Hub reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from refinery_quaterion.exporters._files import write_json
from refinery_quaterion.exporters.source import ExportSource

__all__ = ["CALIBRATION_CHECK", "front_matter", "model_card", "write_card"]

CALIBRATION_CHECK = "int8_calibration_texts"
"""The check that counts the texts a statically quantised int8 model was calibrated on."""
_EXPORTED_AS = {"sentence-transformers": "a sentence-transformers model", "onnx": "an ONNX model for ONNX Runtime",
                "openvino": "an OpenVINO model"}

_HUB_ALIASES = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}
_BASE_LICENSES = {
    "sentence-transformers/all-MiniLM-L6-v2": "apache-2.0", "sentence-transformers/all-MiniLM-L12-v2": "apache-2.0",
    "sentence-transformers/all-mpnet-base-v2": "apache-2.0", "distilbert-base-uncased": "apache-2.0",
    "distilbert/distilbert-base-uncased": "apache-2.0", "bert-base-uncased": "apache-2.0",
    "google-bert/bert-base-uncased": "apache-2.0", "BAAI/bge-small-en-v1.5": "mit",
}
"""Licenses of common base models; a fine-tuned model inherits its base model's license."""
_FILES = (  # (file name or pattern, what it is), first match wins
    ("README.md", "this model card"), ("modules.json", "the sentence-transformers pipeline (module types and folders)"),
    ("sentence_bert_config.json", "max tokens and lower-casing of the Transformer module"),
    ("config_sentence_transformers.json", "sentence-transformers settings (layout version, similarity: cosine)"),
    ("config.json", "the transformer's configuration"), ("model.safetensors", "the transformer's weights"),
    ("tokenizer.json", "the tokenizer (truncates to max tokens, pads each batch to its longest text)"),
    ("tokenizer_config.json", "tokenizer settings (model_max_length = max tokens)"),
    ("special_tokens_map.json", "the tokenizer's special tokens"), ("vocab.txt", "the tokenizer's vocabulary"),
    ("label_map.json", "the labels the model was trained on (index = group id)"),
    ("refinery_export.json", "export settings: template, pooling, head, dimensions, labels"),
    ("model.onnx", "the whole model as one ONNX graph (fp32)"),
    ("model_int8.onnx", "the same graph with int8 weights (faster on CPU, slightly less exact)"),
    ("model.xml", "the whole model as OpenVINO IR (fp32): the graph"), ("model.bin", "its weights"),
    ("model_int8.xml", "the OpenVINO IR with int8 weights and activations (NNCF, calibrated)"),
    ("model_int8.bin", "its weights"), ("serve.py", "encode texts with only openvino, tokenizers and numpy"),
    ("Pooling/config.json", "the pooling settings"), ("Dense/config.json", "a dense layer's sizes and activation"),
    ("Dense/model.safetensors", "a dense layer's weights"),
    ("Dense/pytorch_model.bin", "the same weights for sentence-transformers 2.x"),
    ("Normalize/config.json", "scales vectors to unit length (no settings)"),
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRAINING_KEYS = (
    ("train_records", "training records"), ("val_records", "validation records"), ("epochs", "epochs run"),
    ("max_epochs", "max epochs"), ("best_epoch", "best epoch"), ("monitor", "monitor"),
    ("best_score", "best score"), ("batch_size", "batch size"), ("seed", "seed"),
)
_MODEL_KEYS = (
    ("head", "head"), ("head_options", "head options"), ("loss", "loss"), ("loss_options", "loss options"),
    ("optimizer", "optimizer"), ("lr", "learning rate"), ("trainable_encoder", "encoder fine-tuned"),
)


def write_card(source: ExportSource, folder: Path, *, format: str, evaluation: Any = None,
               checks: Mapping[str, float] | None = None, calibrated_on: str = "the export's probe texts") -> None:
    """Write ``README.md`` and (when the labels are known) ``label_map.json`` into ``folder`` (see `model_card`)."""
    if source.labels is not None:
        write_json(folder / "label_map.json", {"labels": list(source.labels)})
    files = sorted({p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} | {"README.md"})
    text = model_card(source, format=format, files=files, evaluation=evaluation, checks=checks,
                      calibrated_on=calibrated_on)
    (folder / "README.md").write_text(text, encoding="utf-8")


def hub_base_model(name: str) -> str | None:
    """``name`` as a Hugging Face Hub id (``"minilm"`` -> its Hub id), or ``None`` for a local folder."""
    name = _HUB_ALIASES.get(name.lower(), name)
    return name if _HUB_ID.match(name) and not Path(name).exists() else None


def model_card(source: ExportSource, *, format: str, files: Sequence[str] = (), evaluation: Any = None,
               checks: Mapping[str, float] | None = None, calibrated_on: str = "the export's probe texts") -> str:
    """The model card as Markdown with a Hub YAML header.

    Args:
        source: The exported model.
        format: ``"sentence-transformers"``, ``"onnx"`` or ``"openvino"``.
        files: Files of the export folder.
        evaluation: An evaluation table (DataFrame) or ``None``.
        checks: Check values of the export (e.g. ``min_cosine``; `CALIBRATION_CHECK`, the number
            of texts an int8 model was calibrated on).
        calibrated_on: What those calibration texts were, in words (``"your texts"``).

    Returns:
        The text of ``README.md``.
    """
    base = hub_base_model(source.base_model)
    st = format == "sentence-transformers"
    header = front_matter(source, format=format)
    dim = int(getattr(source.head, "output_size", source.raw_dim))
    lines = [*header, "", "# Fine-tuned text embeddings (refinery-quaterion)", ""]
    lines += [f"Text embeddings fine-tuned on labeled records with "
              f"[refinery-quaterion](https://github.com/code-kern-ai/refinery), exported as "
              f"{_EXPORTED_AS.get(format, f'the {format} format')}. "
              f"Output: {dim}-dimensional unit-length vectors; compare them by cosine similarity "
              "(for unit vectors, the dot product).", ""]
    lines += ["| | |", "|---|---|",
              f"| base model | `{source.base_model or 'unknown'}`"
              f"{f' ([{base}](https://huggingface.co/{base}))' if base else ''} |",
              f"| pipeline | {_pipeline(source, dim)} |",
              f"| max tokens | {source.max_length} (longer texts are truncated) |", ""]
    lines += ["## Text template", "", *_template_lines(source), ""]
    if source.labels:
        lines += ["## Labels", "", f"Trained to separate {len(source.labels)} labels (`label_map.json`, "
                  "index = group id): " + ", ".join(f"`{label}`" for label in source.labels) + ".", ""]
    lines += _training_lines(source.config)
    if evaluation is not None:
        from refinery_quaterion.evaluate.tables import to_markdown

        lines += ["## Evaluation", "", to_markdown(evaluation), ""]
    usage = _st_usage(source) if st else _openvino_usage(files) if format == "openvino" else _onnx_usage(files, dim)
    lines += ["## Usage", "", *usage, ""]
    if files:
        lines += ["## Files", "", "| file | what it is |", "|---|---|",
                  *[f"| `{name}` | {_file_role(name)} |" for name in files], ""]
    lines += _check_lines(checks or {}, calibrated_on)
    return "\n".join(lines).rstrip() + "\n"


def front_matter(source: ExportSource, *, format: str) -> list[str]:
    """The card's YAML header (the Hub's metadata), as lines from ``---`` to ``---``.

    It follows the Hub's conventions for sentence-similarity models: ``library_name``
    (``sentence-transformers``, or ``onnx`` for the ONNX export), ``pipeline_tag:
    sentence-similarity``, ``tags``, ``base_model`` (when it is a Hub id), ``license`` and
    ``datasets``. ``license``, ``datasets`` and ``language`` come from the ``extra`` section of
    ``training_config.json`` when given there (``save(..., extra={"license": ..., "datasets": [...]})``);
    otherwise the license is the base model's when it is a known one, and the others are left out.
    """
    base = hub_base_model(source.base_model)
    extra = source.config.get("extra") if isinstance(source.config.get("extra"), Mapping) else {}
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "refinery-quaterion", "quaterion"]
    if format == "onnx":
        tags += ["onnx", "fastembed"]
    elif format == "openvino":
        tags += ["openvino"]
    library = {"sentence-transformers": "sentence-transformers", "onnx": "onnx"}.get(format, format)
    lines = ["---", f"library_name: {library}",
             "pipeline_tag: sentence-similarity", "tags:", *[f"- {tag}" for tag in tags]]
    if base:
        lines.append(f"base_model: {base}")
    license_ = extra.get("license") or _BASE_LICENSES.get(base or "")
    if license_:
        lines.append(f"license: {license_}")
    for key in ("datasets", "language"):
        values = extra.get(key)
        values = [values] if isinstance(values, str) else list(values or [])
        if values:
            lines += [f"{key}:", *[f"- {value}" for value in values]]
    return [*lines, "---"]


def _check_lines(checks: Mapping[str, float], calibrated_on: str) -> list[str]:
    """The "Export check" section: the compared vectors, and what an int8 model was calibrated on."""
    measured = {name: value for name, value in checks.items() if name != CALIBRATION_CHECK}
    lines = []
    if measured:
        lines += ["Vectors of probe texts compared with the library's own `encode`: "
                  + ", ".join(f"{name} {value:.6f}" for name, value in measured.items()) + ".", ""]
    if CALIBRATION_CHECK in checks:
        count = int(checks[CALIBRATION_CHECK])
        lines += [f"The int8 model was calibrated on {count} text{'s' if count != 1 else ''} ({calibrated_on}).", ""]
    return ["## Export check", "", *lines] if lines else []


def _file_role(name: str) -> str:
    for pattern, role in _FILES:
        if name == pattern or ("/" in pattern and name.endswith(pattern) and "/" in name):
            return role
    return "a file of the tokenizer" if "token" in name or "vocab" in name or "merges" in name else "-"


def _pipeline(source: ExportSource, dim: int) -> str:
    parts = [f"transformer ({getattr(source.transformer.config, 'model_type', '?')})", f"{source.pooling} pooling"]
    if source.normalize:
        parts.append("normalize")
    head = source.head_name or type(source.head).__name__
    parts += [f"head `{head}` ({source.raw_dim} -> {dim})", "normalize"]
    return " -> ".join(parts)


def _template_lines(source: ExportSource) -> list[str]:
    if source.template is not None:
        return ["Render every record with this template (a Python format string over the record's fields) "
                "before embedding it -- the model was trained on texts made this way, so other texts give "
                "worse vectors:", "", "```text", source.template, "```", "",
                "Missing fields were rendered as empty strings."]
    ref = source.template_ref or "unknown"
    return [f"Records were rendered as text by the Python function `{ref}`; render records the same way "
            "before embedding them."]


def _training_lines(config: Mapping[str, Any]) -> list[str]:
    model = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    training = config.get("training") if isinstance(config.get("training"), Mapping) else {}
    extra = config.get("extra") if isinstance(config.get("extra"), Mapping) else {}
    rows = [(label, model[key]) for key, label in _MODEL_KEYS if model.get(key) not in (None, {}, "")]
    merged = {**extra, **training}
    rows += [(label, merged[key]) for key, label in _TRAINING_KEYS if merged.get(key) is not None]
    weights = _saved_weights(training)
    if weights is not None:
        rows.append(("weights saved", weights))
    if config.get("created"):
        rows.append(("trained", config["created"]))
    versions = config.get("versions") if isinstance(config.get("versions"), Mapping) else {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)))
    if not rows:
        return []
    out = ["## Training", "", "| setting | value |", "|---|---|"]
    out += [f"| {label} | {_cell(value)} |" for label, value in rows]
    return [*out, ""]


def _saved_weights(training: Mapping[str, Any]) -> str | None:
    """Which epoch's weights the model folder holds, from its training summary; ``None`` if unknown.

    ``best epoch`` and ``best score`` describe the validation history; unless the best epoch's
    weights were restored at the end (``restored_best``) or it was the last epoch, the folder
    holds the last epoch's weights, and the card has to say so.
    """
    restored, best, epochs = training.get("restored_best"), training.get("best_epoch"), training.get("epochs")
    if restored is None or epochs is None:
        return None
    monitor = training.get("monitor") or "the validation score"
    if restored:
        return f"those of the best epoch ({best} by {monitor}), restored after the last epoch ({epochs})"
    if best is None:
        return f"those of the last epoch ({epochs})"
    if best == epochs:
        return f"those of the last epoch ({epochs}), which is also the best by {monitor}"
    return (f"those of the last epoch ({epochs}), not of the best epoch ({best}): the best weights were not "
            "restored, so the best score is not this model's")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value).replace("|", "\\|")


def _st_usage(source: ExportSource) -> list[str]:
    render = (f"texts = [{source.template!r}.format(**record) for record in records]"
              if source.template is not None else "texts = [render(record) for record in records]")
    return ["```python", "from sentence_transformers import SentenceTransformer", "",
            'model = SentenceTransformer("path/to/this/folder")  # or the Hub id it was pushed to',
            render, "vectors = model.encode(texts)  # unit length: cosine = dot product", "```"]


def _onnx_usage(files: Sequence[str], dim: int) -> list[str]:
    int8 = ""
    if "model_int8.onnx" in files:
        int8 = " (`model_int8.onnx`: the same model with int8 weights, faster on CPU and slightly less exact)"
    return ["Needs only `onnxruntime`, `tokenizers` and `numpy`. Inputs `input_ids` and `attention_mask` (int64, "
            "padded batch), output `sentence_embedding`" + int8 + "; `tokenizer.json` truncates and pads each "
            "batch to its longest text:", "",
            "```python", "import numpy as np, onnxruntime as ort", "from tokenizers import Tokenizer", "",
            'tokenizer = Tokenizer.from_file("tokenizer.json")',
            'session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])',
            "batch = tokenizer.encode_batch(texts)  # texts rendered with the template above",
            'feed = {"input_ids": np.array([e.ids for e in batch], dtype=np.int64),',
            '        "attention_mask": np.array([e.attention_mask for e in batch], dtype=np.int64)}',
            'vectors = session.run(["sentence_embedding"], feed)[0]', "```", "",
            "With [FastEmbed](https://github.com/qdrant/fastembed) (0.9 or later), through its custom-model API:", "",
            "```python", "from fastembed import TextEmbedding",
            "from fastembed.common.model_description import ModelSource, PoolingType", "",
            'TextEmbedding.add_custom_model(model="local/refinery-quaterion", pooling=PoolingType.DISABLED,',
            '                               normalization=False, sources=ModelSource(hf="local/refinery-quaterion"),',
            f'                               dim={dim}, model_file="model.onnx", output_name="sentence_embedding")',
            'model = TextEmbedding("local/refinery-quaterion", specific_model_path="path/to/this/folder")',
            "vectors = list(model.embed(texts))", "```"]


def _openvino_usage(files: Sequence[str]) -> list[str]:
    int8 = " (or `model_int8.xml`: int8, faster on CPU, slightly less exact)" if "model_int8.xml" in files else ""
    return [f"Needs only `openvino`, `tokenizers` and `numpy`: `serve.py` loads `model.xml`{int8} and embeds "
            "texts as unit-length vectors.", "", "```python", "from serve import embed", "",
            'vectors = embed(["a text to embed", "another one"])  # (2, dim) float32, unit length', "```"]
