"""The encoder as one ONNX graph: transformer, pooling, normalisation and an optional head.

`EmbeddingGraph` is the torch module that the ONNX encoder backends and the ``onnx`` export
format trace; `export_graph` writes it with the TorchScript-based ``torch.onnx.export(...,
dynamo=False)`` (the dynamo exporter needs ``onnxscript``), opset
`refinery_quaterion.model.runtime.ONNX_OPSET`, inputs ``input_ids`` and ``attention_mask``
(int64, dynamic batch and sequence axes) and the output ``sentence_embedding`` (float32).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from refinery_quaterion.model.runtime import INPUTS, ONNX_OPSET, OUTPUT, pool_tokens

__all__ = ["INPUTS", "OUTPUT", "EmbeddingGraph", "export_graph"]



class EmbeddingGraph(torch.nn.Module):
    """Transformer + pooling + normalisation + head as one module (what ``model.onnx`` holds).

    Without ``head`` and with ``final_normalize=False`` it computes the raw encoder vectors
    (what an ONNX encoder backend needs).

    Args:
        transformer: The Hugging Face encoder.
        pooling: ``"mean"`` or ``"cls"``.
        normalize: L2-normalise the pooled vector (the encoder's own normalisation).
        head: A module applied to the pooled vectors (the exports pass the trained head as
            dense layers); none by default.
        final_normalize: L2-normalise the output.
    """

    def __init__(self, transformer: Any, pooling: str, normalize: bool, head: torch.nn.Module | None = None,
                 final_normalize: bool = True):
        super().__init__()
        self.transformer = transformer
        self.pooling = pooling
        self.normalize = normalize
        self.final_normalize = final_normalize
        device = next(transformer.parameters(), torch.empty(0)).device
        self.head = (head if head is not None else torch.nn.Sequential()).to(device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embeddings of a padded batch of token ids, ``(batch, dim)`` float32."""
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out = self.head(pool_tokens(hidden, attention_mask, self.pooling, self.normalize).float())
        return F.normalize(out, p=2, dim=1) if self.final_normalize else out


def export_graph(graph: torch.nn.Module, path: Path, input_ids: np.ndarray, attention_mask: np.ndarray,
                 *, opset: int = ONNX_OPSET) -> None:
    """Write ``graph`` as ONNX with dynamic batch and sequence axes.

    Args:
        graph: An `EmbeddingGraph` (or any module ``(input_ids, attention_mask) -> (batch, d)``).
        path: Target ``.onnx`` file.
        input_ids: Sample batch to trace with; it should contain padding, so that the masking
            path is traced.
        attention_mask: Its mask.
        opset: ONNX opset version.
    """
    modes = [(module, module.training) for module in graph.modules()]  # restored exactly afterwards
    graph.eval()
    device = next(graph.parameters(), torch.empty(0)).device
    sample = (torch.from_numpy(np.asarray(input_ids, dtype=np.int64)).to(device),
              torch.from_numpy(np.asarray(attention_mask, dtype=np.int64)).to(device))
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, sample, str(path), dynamo=False, opset_version=opset, input_names=list(INPUTS),
                              output_names=[OUTPUT], dynamic_axes={**axes, OUTPUT: {0: "batch"}},
                              do_constant_folding=True)
    finally:
        for module, training in modes:
            module.training = training
