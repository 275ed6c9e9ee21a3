"""The ``sentence-transformers`` export format: a folder ``SentenceTransformer(out)`` loads.

Written by hand in the layout of the models on the Hugging Face Hub (``modules.json``,
``sentence_bert_config.json``, ``1_Pooling/config.json``, ``N_Dense/`` with ``config.json``,
``model.safetensors`` and ``pytorch_model.bin``), so exporting needs no sentence-transformers.
The folder loads without this library or quaterion installed, in sentence-transformers 2.2.2 and
3.0.1 (the versions refinery's embedder pins) and in today's release. For 2.2.2 it keeps to
what that release reads: module types under ``sentence_transformers.models``, a Pooling config
with only its five keys, Dense configs with only its four keys and the Dense weights also as
``pytorch_model.bin`` (2.2.2 reads no safetensors there; later releases prefer
``model.safetensors``); ``config_sentence_transformers.json`` names 2.2.2 as the layout's
version, so no release warns that the folder is newer than itself:

Transformer -> Pooling (the model's pooling) -> Normalize (if the encoder normalises) ->
the head as ``Dense`` modules (affine heads folded into one, identity activation) -> Normalize.
The final Normalize makes the vectors unit length, so Euclidean distance (refinery's neural
search) ranks like cosine similarity.

`write_sentence_transformers` is registered as the ``"sentence-transformers"`` format in
`refinery_quaterion.exporters.formats`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from refinery_quaterion.exporters._files import write_json
from refinery_quaterion.exporters._hf import export_config, min_cosine, probe_texts, save_transformer
from refinery_quaterion.exporters.formats import ExportSettings
from refinery_quaterion.exporters.heads import ACTIVATIONS, IDENTITY, DenseLayer, head_layers
from refinery_quaterion.exporters.source import ExportSource, ModelExportError
from refinery_quaterion.model.pretrained import quiet_transformers

__all__ = ["write_sentence_transformers"]

_TYPES = {
    "Transformer": "sentence_transformers.models.Transformer",
    "Pooling": "sentence_transformers.models.Pooling",
    "Normalize": "sentence_transformers.models.Normalize",
    "Dense": "sentence_transformers.models.Dense",
}
MIN_COSINE = 0.9999
LAYOUT_VERSION = "2.2.2"
"""The oldest sentence-transformers release the folder's layout is written for."""


def write_sentence_transformers(source: ExportSource, folder: Path, settings: ExportSettings) -> dict[str, float]:
    """Write the sentence-transformers folder into the empty ``folder``.

    Args:
        source: The model, read by `read_model`.
        folder: Empty output folder.
        settings: Export settings (``check``: load the folder with sentence-transformers, when
            installed, and compare its vectors with the library's on probe texts).

    Returns:
        ``{"min_cosine": ...}`` when checked, else ``{}``.

    Raises:
        ModelExportError: If the head cannot be written as ``Dense`` modules, or the check fails.
    """
    layers = head_layers(source.head, label=source.head_label)
    save_transformer(source, folder)
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": source.max_length, "do_lower_case": False})
    modules = [("", "Transformer"), ("1_Pooling", "Pooling")]
    (folder / "1_Pooling").mkdir()
    write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": source.raw_dim,
        "pooling_mode_cls_token": source.pooling == "cls",
        "pooling_mode_mean_tokens": source.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    if source.normalize:
        modules.append((f"{len(modules)}_Normalize", "Normalize"))
    for layer in layers:
        path = f"{len(modules)}_Dense"
        _write_dense(folder / path, layer)
        modules.append((path, "Dense"))
    if modules[-1][1] != "Normalize":
        modules.append((f"{len(modules)}_Normalize", "Normalize"))
    for path, kind in modules:
        if kind == "Normalize":  # a folder with a file: 3.x looks the module's folder up, and git keeps it
            (folder / path).mkdir()
            write_json(folder / path / "config.json", {})
    write_json(folder / "modules.json", [
        {"idx": i, "name": str(i), "path": path, "type": _TYPES[kind]} for i, (path, kind) in enumerate(modules)
    ])
    write_json(folder / "config_sentence_transformers.json", {
        "__version__": _versions(),
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    dim = layers[-1].out_features if layers else source.raw_dim
    write_json(folder / "refinery_export.json", export_config(
        source, "sentence-transformers", dim, modules=[kind for _, kind in modules]))
    if settings.check and importlib.util.find_spec("sentence_transformers") is not None:
        return {"min_cosine": _check(source, folder)}
    return {}


def _write_dense(folder: Path, layer: DenseLayer) -> None:
    import torch
    from safetensors.numpy import save_file

    folder.mkdir()
    write_json(folder / "config.json", {
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "bias": True,
        "activation_function": ACTIVATIONS[layer.activation] if layer.activation else IDENTITY,
    })
    weights = {"linear.weight": np.ascontiguousarray(layer.weight, dtype=np.float32),
               "linear.bias": np.ascontiguousarray(layer.bias, dtype=np.float32)}
    save_file(weights, str(folder / "model.safetensors"))
    torch.save({name: torch.from_numpy(array) for name, array in weights.items()}, folder / "pytorch_model.bin")


def _versions() -> dict[str, Any]:
    """``__version__`` of ``config_sentence_transformers.json``: the layout's release, the installed others.

    sentence-transformers only compares its own entry with the running release (and warns when the
    folder's is newer), so it names `LAYOUT_VERSION`, the release whose layout the folder follows.
    """
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"sentence_transformers": LAYOUT_VERSION}
    for key, package in (("transformers", "transformers"), ("pytorch", "torch")):
        try:
            out[key] = version(package)
        except PackageNotFoundError:
            continue
    return out


def _check(source: ExportSource, folder: Path) -> float:
    from sentence_transformers import SentenceTransformer

    texts = probe_texts(source)
    with quiet_transformers():
        model = SentenceTransformer(str(folder), device="cpu")
    exported = model.encode(texts, convert_to_numpy=True)
    cosine = min_cosine(exported, source.encode(texts))
    if cosine < MIN_COSINE:
        raise ModelExportError(f"the exported sentence-transformers model differs from the library's encode "
                               f"(min cosine {cosine:.6f} < {MIN_COSINE} on {len(texts)} probe texts)")
    return cosine

