"""What ``fit`` feeds quaterion: the training records as similarity samples, with their weights.

`training_records` reads the records, label ids and weights of a dataset (weights from its
``weights`` property, e.g. `refinery_quaterion.data.dataset.RefineryExportDataset.weights`; 1.0 when
it has none) and applies the ``min_weight`` floor. `GroupSamples` and `PairSamples` serve them
to quaterion's loaders; with weights, the samples carry a ``weight`` and the loaders of
`loader_class` put a ``weights`` tensor next to ``groups`` (or ``pairs``) in each batch's
labels, which quaterion passes to the loss as ``weights=`` (see `refinery_quaterion.model._losses`
for why the weights go into the loss).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from refinery_quaterion import _compat  # noqa: F401  (quaterion shims: before quaterion is imported)
from refinery_quaterion.errors import MISSING, Fix, SettingError

# isort: split
import numpy as np
import torch
from quaterion.dataset import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    SimilarityGroupSample,
    SimilarityPairSample,
)
from torch.utils.data import Dataset

__all__ = ["GroupSamples", "PairSamples", "TrainingRecords", "loader_class", "training_records"]


@dataclasses.dataclass
class WeightedGroupSample(SimilarityGroupSample):
    """A ``SimilarityGroupSample`` with the record's training weight."""

    weight: float = 1.0


@dataclasses.dataclass
class WeightedPairSample(SimilarityPairSample):
    """A ``SimilarityPairSample`` with the pair's training weight (the product of its records' weights)."""

    weight: float = 1.0


def _weights(batch: list[Any]) -> torch.Tensor:
    """The ``weight`` of each sample of a batch (1.0 for samples without one)."""
    return torch.tensor([getattr(s, "weight", 1.0) for s in batch], dtype=torch.float32)


class _WithWeights:
    """Mixin for a quaterion data loader: the batch labels also hold ``weights`` (one per sample)."""

    @classmethod
    def collate_labels(cls, batch: list[Any]) -> dict[str, torch.Tensor]:
        """The loader's own labels of a batch, plus ``weights``."""
        labels = super().collate_labels(batch)  # type: ignore[misc]
        labels["weights"] = _weights(batch)
        return labels


class WeightedGroupDataLoader(_WithWeights, GroupSimilarityDataLoader):
    """quaterion's group loader whose batch labels (``groups``) also hold ``weights``."""


class WeightedPairsDataLoader(_WithWeights, PairsSimilarityDataLoader):
    """quaterion's pairs loader whose batch labels (``pairs``, ``labels``, ``subgroups``) also hold ``weights``."""


def loader_class(*, pairs: bool, weighted: bool) -> type:
    """The quaterion data loader class for group or pair samples, with or without weights."""
    if pairs:
        return WeightedPairsDataLoader if weighted else PairsSimilarityDataLoader
    return WeightedGroupDataLoader if weighted else GroupSimilarityDataLoader


@dataclasses.dataclass
class TrainingRecords:
    """The records of a dataset as ``fit`` uses them.

    Attributes:
        objects: The records (what the encoder renders), in order.
        groups: Their label ids.
        weights: Their weights (1.0 where the dataset has none).
        dropped: How many records the ``min_weight`` floor dropped.
    """

    objects: list[Any]
    groups: np.ndarray
    weights: np.ndarray
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.objects)


def training_records(dataset: Dataset, name: str, *, min_weight: float = 0.0) -> TrainingRecords:
    """The records, label ids and weights of ``dataset``, without those weighing less than ``min_weight``.

    Raises:
        TypeError: If ``dataset`` is not sized or does not yield ``SimilarityGroupSample`` s.
        ValueError: If it is empty, its weights are not one non-negative number per record, or
            the floor drops every record.
    """
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a sized dataset (e.g. RefineryExportDataset)") from None
    if size == 0:
        raise ValueError(f"{name} is empty")
    records = getattr(dataset, "records", None)
    groups = getattr(dataset, "groups", None)
    if isinstance(records, list) and groups is not None and len(records) == size:
        objects, ids = list(records), np.asarray(groups, dtype=np.int64)
    else:
        objects, collected = [], []
        for i in range(size):
            sample = dataset[i]
            if not isinstance(sample, SimilarityGroupSample):
                raise TypeError(f"{name} item {i} is a {type(sample).__name__}; expected SimilarityGroupSample "
                                "(use RefineryExportDataset)")
            objects.append(sample.obj)
            collected.append(int(sample.group))
        ids = np.asarray(collected, dtype=np.int64)
    weights = _weights_of(dataset, name, size)
    if min_weight > 0:
        keep = weights >= min_weight
        if not keep.any():
            raise SettingError(f"{{min_weight}} drops all {size} records of {name} (highest weight "
                               f"{weights.max():.3g})", settings={"min_weight": min_weight},
                               fixes=(Fix("min_weight", MISSING, "with a lower value"),))
        if not keep.all():
            index = np.flatnonzero(keep)
            return TrainingRecords([objects[i] for i in index], ids[index], weights[index],
                                   dropped=int(size - len(index)))
    return TrainingRecords(objects, ids, weights)


def _weights_of(dataset: Dataset, name: str, size: int) -> np.ndarray:
    raw = getattr(dataset, "weights", None)
    if raw is None:
        return np.ones(size, dtype=np.float64)
    weights = np.asarray(raw, dtype=np.float64)
    if weights.shape != (size,) or not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"{name}.weights must hold one finite number >= 0 per record ({size}), got shape "
                         f"{weights.shape}" + ("" if weights.shape != (size,) else " with negative or NaN values"))
    return weights


class GroupSamples(Dataset):
    """``SimilarityGroupSample`` s of records (``WeightedGroupSample`` s when ``weights`` are given)."""

    def __init__(self, objects: Sequence[Any], groups: np.ndarray, weights: np.ndarray | None = None):
        self.objects = objects
        self.groups = groups
        self.weights = weights

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, index: int) -> SimilarityGroupSample:
        if self.weights is None:
            return SimilarityGroupSample(obj=self.objects[index], group=int(self.groups[index]))
        return WeightedGroupSample(obj=self.objects[index], group=int(self.groups[index]),
                                   weight=float(self.weights[index]))


class PairSamples(Dataset):
    """Positive pairs (two records of the same label) for pair losses, one per record that has a partner.

    With ``weights``, a pair weighs the product of its two records' weights (both labels must be
    right for the pair to be a true positive).

    Raises:
        ValueError: If no label has two records.
    """

    def __init__(self, objects: Sequence[Any], groups: np.ndarray, seed: int, weights: np.ndarray | None = None):
        rng = np.random.default_rng(seed)
        members = {int(group): np.flatnonzero(groups == group) for group in np.unique(groups)}
        self.pairs: list[SimilarityPairSample] = []
        for i, group in enumerate(groups):
            same = members[int(group)]
            if len(same) < 2:
                continue
            j = i
            while j == i:
                j = int(rng.choice(same))
            if weights is None:
                self.pairs.append(SimilarityPairSample(obj_a=objects[i], obj_b=objects[j], score=1.0,
                                                       subgroup=int(group)))
            else:
                self.pairs.append(WeightedPairSample(obj_a=objects[i], obj_b=objects[j], score=1.0,
                                                     subgroup=int(group), weight=float(weights[i] * weights[j])))
        if not self.pairs:
            raise ValueError("a pair loss needs at least two records with the same label; every label here "
                             "has a single record")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> SimilarityPairSample:
        return self.pairs[index]
