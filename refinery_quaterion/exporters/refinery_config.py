"""How `refinery_quaterion.exporters.refinery_project.to_refinery` writes a model's vectors into a refinery project.

Refinery stores an attribute embedding the way its embedder computes it: the model's vectors
reduced by a PCA to **64** dimensions (``n_components = 64`` in refinery-embedder for every
``ON_ATTRIBUTE`` embedding of a project with at least 64 records, bag-of-characters and
tf-idf excepted). Its active learners fit on exactly those stored tensors, and its neural
search compares them by Euclidean distance. `ToRefineryConfig.dimension` therefore defaults to
`REFINERY_DIMENSION`; ``"full"`` keeps the fine-tuned vectors as they are.

This module imports no torch.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from refinery_quaterion.data.config import StageConfig, is_int, is_number

__all__ = ["REFINERY_DIMENSION", "ToRefineryConfig"]

REFINERY_DIMENSION = 64
"""The dimension refinery stores attribute embeddings in (its embedder's PCA ``n_components``)."""


@dataclasses.dataclass(frozen=True)
class ToRefineryConfig(StageConfig):
    """What `to_refinery` adds to a refinery project snapshot.

    Attributes:
        attribute: The attribute refinery files the embedding under (its name starts with
            it); ``None``: the only field of the model's text template. The vectors are always
            the model's own: each record rendered with the template it was trained on.
        dimension: ``64`` (default, what refinery stores): the vectors reduced by a PCA fitted
            on the project's records, then scaled to unit length, so refinery's Euclidean
            neural search ranks as cosine does; another whole number reduces to that many
            dimensions; ``"full"``: the fine-tuned vectors unchanged (unit length). A project
            with no more records (or a model with no more dimensions) than asked keeps the
            full vectors, as refinery does.
        model_name: The model part of the embedding's name
            ``{attribute}-classification-huggingface-{model_name}``; ``None``:
            ``refinery-quaterion-{model folder name}``. Give the model's Hub id after
            `push_to_hub` to name the same model in both routes.
        suspects: Also add a static data slice of the records whose label the fine-tuned
            neighbourhood contradicts (snapshots only).
        task: Classification task whose labels the slice checks; ``None``: the only one.
        suspects_k: Neighbours looked at per labeled record.
        suspects_majority: Share of the neighbours that must agree on another label.
        suspects_limit: Most records in the slice (the highest disagreement first); refinery
            refuses static slices of more than 10,000 records in its UI.
        id_column: For a UI or SDK export written as Parquet: the column holding the record
            ids; ``None``: ``id`` or ``record_id`` when the export has one, else the row number.
        batch_size: Texts per forward pass.

    Raises:
        ValueError: For a value out of range.
        TypeError: For a value of the wrong type.
    """

    attribute: str | None = None
    dimension: int | Literal["full"] = REFINERY_DIMENSION
    model_name: str | None = None
    suspects: bool = False
    task: str | None = None
    suspects_k: int = 10
    suspects_majority: float = 0.7
    suspects_limit: int = 10_000
    id_column: str | None = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("attribute", "model_name", "task", "id_column"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise TypeError(f"{name} must be a non-empty string or None, got {value!r}")
        if self.dimension != "full" and (not is_int(self.dimension) or self.dimension < 2):
            raise ValueError(f"dimension must be 'full' or a whole number >= 2, got {self.dimension!r}")
        if not isinstance(self.suspects, bool):
            raise TypeError(f"suspects must be True or False, got {self.suspects!r}")
        if not is_int(self.suspects_k) or self.suspects_k < 1:
            raise ValueError(f"suspects_k must be a whole number >= 1, got {self.suspects_k!r}")
        if not is_number(self.suspects_majority) or not 0.5 < self.suspects_majority <= 1:
            raise ValueError(f"suspects_majority must be above 0.5 and at most 1, got {self.suspects_majority!r}")
        if not is_int(self.suspects_limit) or self.suspects_limit < 1:
            raise ValueError(f"suspects_limit must be a whole number >= 1, got {self.suspects_limit!r}")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {self.batch_size!r}")
        if self.model_name is not None and any(c.isspace() for c in self.model_name):
            raise ValueError(f"model_name must have no spaces (it becomes part of the embedding's name), "
                             f"got {self.model_name!r}")
