"""Confidence-aware training: record weights reach the loss, weight 0 changes nothing, a floor drops records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from refinery_quaterion import FitConfig, ModelConfig
from refinery_quaterion.data.dataset import RefineryExportDataset
from refinery_quaterion.model._losses import GroupAwareMNRLoss, WeightedArcFaceLoss, WeightedSoftmaxLoss, weighted_mean
from refinery_quaterion.model.components import LOSSES
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training.fit import fit


def frame_of(dataset: RefineryExportDataset, weight: float) -> pd.DataFrame:
    return pd.DataFrame(dataset.records).assign(weight=weight)


def conflicting(dataset: RefineryExportDataset, n: int, weight: float) -> pd.DataFrame:
    """``n`` records of ``dataset`` again, each with the next label (so they contradict the originals)."""
    names = dataset.label_map.names
    rows = pd.DataFrame(dataset.records[:n])
    rows["label"] = [names[(names.index(label) + 1) % len(names)] for label in rows["label"]]
    return rows.assign(weight=weight)


def head_after(tiny_model_dir: Path, frame: pd.DataFrame, label_map, **settings) -> dict[str, torch.Tensor]:
    dataset = RefineryExportDataset(frame, template="{text}", label_map=label_map)
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, lr=0.05, num_groups=len(label_map)))
    fit(model, dataset, None, FitConfig(epochs=4, batch_size=512, progress=False, **settings))  # one batch per epoch
    return {k: v.clone() for k, v in model.model.head.state_dict().items()}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_zero_weight_records_cannot_change_the_trained_head(tiny_model_dir: Path, synthetic_split) -> None:
    train, _ = synthetic_split
    base = frame_of(train, 1.0)
    with_zero = pd.concat([base, conflicting(train, 60, 0.0)], ignore_index=True)
    with_one = pd.concat([base, conflicting(train, 60, 1.0)], ignore_index=True)

    reference = head_after(tiny_model_dir, base, train.label_map, sample_weighting="confidence")
    same = head_after(tiny_model_dir, with_zero, train.label_map, sample_weighting="confidence")
    assert max_difference(reference, same) < 1e-5
    # controls: the same records do change the head when they count
    assert max_difference(reference, head_after(tiny_model_dir, with_one, train.label_map,
                                                sample_weighting="confidence")) > 1e-3
    assert max_difference(reference, head_after(tiny_model_dir, with_zero, train.label_map,
                                                sample_weighting="none")) > 1e-3


@pytest.mark.parametrize("memory_cache", [True, False])
def test_the_dataset_weights_reach_the_loss(memory_cache: bool, tiny_model_dir: Path, synthetic_split,
                                            monkeypatch) -> None:
    train, _ = synthetic_split
    weights = np.round(np.linspace(0.3, 1.0, len(train)), 4)
    dataset = RefineryExportDataset(frame_of(train, 1.0).assign(weight=weights), template="{text}")
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, memory_cache=memory_cache))
    seen: list[np.ndarray] = []
    original = WeightedArcFaceLoss.forward

    def spy(self, embeddings, groups, weights=None):
        seen.append(weights.numpy().copy())
        return original(self, embeddings, groups, weights)

    monkeypatch.setattr(WeightedArcFaceLoss, "forward", spy)
    fit(model, dataset, None, FitConfig(epochs=2, batch_size=64, progress=False, sample_weighting="confidence"))
    first_epoch = np.concatenate(seen[: len(seen) // 2])
    np.testing.assert_allclose(np.sort(first_epoch), np.sort(weights), rtol=1e-6)


def test_a_loss_without_weights_is_refused_and_the_floor_drops_records(tiny_model_dir: Path, synthetic_split) -> None:
    train, _ = synthetic_split
    weights = np.where(np.arange(len(train)) % 3 == 0, 0.4, 0.9)
    dataset = RefineryExportDataset(frame_of(train, 1.0).assign(weight=weights), template="{text}")
    with pytest.raises(ValueError, match=r"\(softmax, arcface, multiple_negatives_ranking\); loss 'triplet' does not"):
        fit(DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, loss="triplet")), dataset, None,
            FitConfig(sample_weighting="confidence"))
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, loss="triplet"))
    result = fit(model, dataset, None, FitConfig(epochs=1, batch_size=64, progress=False, min_weight=0.5))
    dropped = int((weights < 0.5).sum())
    assert result.dropped_records == dropped and model.training_summary["train_records"] == len(train) - dropped
    assert "below min_weight left out" in str(result)
    with pytest.raises(ValueError, match=r"min_weight=0.95 drops all 150 records of train_dataset"):
        fit(model, dataset, None, FitConfig(min_weight=0.95))
    assert LOSSES.weighted() == ["softmax", "arcface", "multiple_negatives_ranking"]


def test_auto_weighting_weighs_by_confidence_only_when_there_is_something_to_weigh(
    tiny_model_dir: Path, synthetic_split
) -> None:
    train, _ = synthetic_split
    base = frame_of(train, 1.0)
    with_zero = pd.concat([base, conflicting(train, 60, 0.0)], ignore_index=True)
    # the default ("auto") weighs these records by confidence: the zero-weight ones change nothing
    assert max_difference(head_after(tiny_model_dir, base, train.label_map),
                          head_after(tiny_model_dir, with_zero, train.label_map)) < 1e-5
    # every weight 1.0 (an export without confidences): exactly the unweighted training
    assert max_difference(head_after(tiny_model_dir, base, train.label_map),
                          head_after(tiny_model_dir, base, train.label_map, sample_weighting="none")) == 0

    weights = np.where(np.arange(len(train)) % 3 == 0, 0.4, 0.9)
    varied = RefineryExportDataset(frame_of(train, 1.0).assign(weight=weights), template="{text}")
    resolved = {}
    for loss in ("arcface", "triplet"):  # triplet takes no weights: "auto" trains it unweighted, without an error
        model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, loss=loss))
        fit(model, varied, None, FitConfig(epochs=1, batch_size=64, progress=False))
        resolved[loss] = (model.fit_config.sample_weighting, model.training_summary["sample_weighting"])
    assert resolved == {"arcface": ("auto", "confidence"), "triplet": ("auto", "none")}


def test_a_weighted_pair_loss_trains(tiny_model_dir: Path, synthetic_split) -> None:
    train, val = synthetic_split
    dataset = RefineryExportDataset(frame_of(train, 0.5), template="{text}")
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, loss="multiple_negatives_ranking"))
    result = fit(model, dataset, val,
                 FitConfig(epochs=1, batch_size=32, progress=False, sample_weighting="confidence"))
    assert result.epochs == 1 and np.isfinite(result.last_train_loss)


# -- the loss classes ---------------------------------------------------------------------


def test_weighted_mean() -> None:
    losses = torch.tensor([1.0, 2.0, 4.0])
    assert weighted_mean(losses, None) == pytest.approx(7 / 3)
    assert weighted_mean(losses, torch.tensor([1.0, 0.0, 0.5])) == pytest.approx(3 / 1.5)
    assert weighted_mean(losses, torch.zeros(3)) == 0  # not NaN
    with pytest.raises(ValueError, match="got 2 weights for 3 loss terms"):
        weighted_mean(losses, torch.ones(2))


@pytest.mark.parametrize("cls", [WeightedArcFaceLoss, WeightedSoftmaxLoss])
def test_class_losses_weight_each_record(cls: type) -> None:
    from quaterion.loss import ArcFaceLoss, SoftmaxLoss

    torch.manual_seed(0)
    loss = cls(embedding_size=8, num_groups=3)
    plain = {WeightedArcFaceLoss: ArcFaceLoss, WeightedSoftmaxLoss: SoftmaxLoss}[cls](embedding_size=8, num_groups=3)
    plain.load_state_dict(loss.state_dict())
    embeddings = torch.randn(6, 8, requires_grad=True)
    groups = torch.tensor([0, 1, 2, 0, 1, 2])
    expected = plain(embeddings, groups).item()
    assert loss(embeddings, groups).item() == pytest.approx(expected)
    assert loss(embeddings, groups, torch.ones(6)).item() == pytest.approx(expected, rel=1e-5)
    weights = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.25])
    value = loss(embeddings, groups, weights)
    each = torch.stack([plain(embeddings[i : i + 1], groups[i : i + 1]) for i in range(6)]).detach()
    assert value.item() == pytest.approx(float((each * weights).sum() / weights.sum()), rel=1e-5)
    value.backward()
    assert embeddings.grad[[1, 4]].abs().max() == 0  # weight 0: no gradient at all
    assert embeddings.grad[[0, 2, 3, 5]].abs().sum(dim=1).min() > 0


def test_the_pair_loss_weights_each_anchor() -> None:
    torch.manual_seed(0)
    loss = GroupAwareMNRLoss(mask_same_group=False)
    embeddings = torch.randn(8, 5)
    pairs = torch.tensor([[0, 4], [1, 5], [2, 6], [3, 7]])
    labels, subgroups = torch.ones(4), torch.tensor([0.0, 1, 2, 3, 0, 1, 2, 3])
    unweighted = loss(embeddings, pairs, labels, subgroups)
    assert float(loss(embeddings, pairs, labels, subgroups, weights=torch.ones(4))) == pytest.approx(float(unweighted))
    only_first = loss(embeddings, pairs, labels, subgroups, weights=torch.tensor([1.0, 0, 0, 0]))
    assert float(only_first) != pytest.approx(float(unweighted))
