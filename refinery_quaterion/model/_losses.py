"""Loss classes of our own, built by the registry in `refinery_quaterion.model.components` (imports torch).

**Per-record weights.** ``FitConfig(sample_weighting="confidence")`` lets weak labels count by
their confidence (manual labels 1.0). quaterion's losses take no weights, so the losses that
can be weighted exactly are subclassed here with an optional ``weights`` argument:

* ``arcface`` and ``softmax`` are a cross-entropy per record over the classes, so a record's
  weight scales its own term;
* ``multiple_negatives_ranking`` is a cross-entropy per anchor over the in-batch positives, so
  a pair's weight (the product of its two records' weights) scales the anchor's term.

The batch loss is the weighted mean ``sum(w * loss) / sum(w)`` (as torch's ``cross_entropy``
does with class weights), which with all weights 1.0 is exactly the unweighted loss, so
exports without confidences train as before. A record of weight 0 contributes nothing, not
even a gradient.

Why weights in the loss rather than a confidence-proportional sampler in the data loader: a
sampler draws with replacement, so batches repeat records and the outcome depends on the
draws, while a weight in the loss is exact and deterministic; it keeps one epoch one pass over
the data; and it leaves the loaders, quaterion's caches and the pair building untouched. The
in-batch mining losses (``triplet``, ``online_contrastive``, ``circle``, ``fast_ap``) have no
per-record term to scale -- a record enters through mined pairs and triplets -- so they take no
weights, and ``fit`` refuses ``sample_weighting="confidence"`` with them.
"""

from __future__ import annotations

from typing import Any

from refinery_quaterion import _compat  # noqa: F401  (quaterion shims: before quaterion is imported)

# isort: split
import torch
import torch.nn.functional as F
from quaterion.distances import Distance
from quaterion.loss import ArcFaceLoss, MultipleNegativesRankingLoss, SoftmaxLoss
from quaterion.loss.arcface_loss import l2_norm
from torch import LongTensor, Tensor

__all__ = ["GroupAwareMNRLoss", "WeightedArcFaceLoss", "WeightedSoftmaxLoss", "weighted_mean"]


def weighted_mean(losses: Tensor, weights: Tensor | None) -> Tensor:
    """``sum(weights * losses) / sum(weights)``, or the plain mean without weights.

    A batch whose weights are all zero gives a loss of 0 (with a zero gradient), not NaN.

    Raises:
        ValueError: If ``weights`` does not have one value per loss term.
    """
    if weights is None:
        return losses.mean()
    weights = weights.to(device=losses.device, dtype=losses.dtype).reshape(-1)
    if weights.shape[0] != losses.shape[0]:
        raise ValueError(f"got {weights.shape[0]} weights for {losses.shape[0]} loss terms; expected one per term")
    return (losses * weights).sum() / weights.sum().clamp_min(torch.finfo(losses.dtype).tiny)


class WeightedArcFaceLoss(ArcFaceLoss):
    """quaterion's ``ArcFaceLoss`` with optional per-record ``weights`` (the same loss without them).

    Args:
        embedding_size: Size of the embeddings.
        num_groups: Number of labels.
        scale: Scale of the logits.
        margin: Additive angular margin of the true class.
    """

    def forward(self, embeddings: Tensor, groups: LongTensor, weights: Tensor | None = None) -> Tensor:
        """The loss of a batch: the (weighted) mean of each record's cross-entropy.

        Args:
            embeddings: ``(batch, dim)`` output of the head.
            groups: ``(batch,)`` label ids.
            weights: ``(batch,)`` non-negative weights, or ``None`` for equal weights.
        """
        embeddings = l2_norm(embeddings, 1)
        kernel_norm = l2_norm(self.kernel, 0)
        cos_theta = torch.mm(embeddings, kernel_norm).clamp(-1, 1)
        index = torch.where(groups != -1)[0]
        m_hot = torch.zeros(index.size()[0], cos_theta.size()[1], device=cos_theta.device)
        m_hot.scatter_(1, groups[index, None], self.margin)
        cos_theta.acos_()
        cos_theta[index] += m_hot
        cos_theta.cos_().mul_(self.scale)
        if weights is None:
            return F.cross_entropy(cos_theta, groups)
        return weighted_mean(F.cross_entropy(cos_theta, groups, reduction="none"), weights)


class WeightedSoftmaxLoss(SoftmaxLoss):
    """quaterion's ``SoftmaxLoss`` with optional per-record ``weights`` (the same loss without them).

    Args:
        embedding_size: Size of the embeddings.
        num_groups: Number of labels.
        temperature: Divides the logits.
    """

    def forward(self, embeddings: Tensor, groups: LongTensor, weights: Tensor | None = None) -> Tensor:
        """The loss of a batch: the (weighted) mean of each record's cross-entropy.

        Args:
            embeddings: ``(batch, dim)`` output of the head.
            groups: ``(batch,)`` label ids.
            weights: ``(batch,)`` non-negative weights, or ``None`` for equal weights.
        """
        logits = torch.mm(embeddings, self.kernel) / self.temperature
        if weights is None:
            return F.cross_entropy(logits, groups)
        return weighted_mean(F.cross_entropy(logits, groups, reduction="none"), weights)


class GroupAwareMNRLoss(MultipleNegativesRankingLoss):
    """Multiple negatives ranking loss that can skip in-batch negatives of the anchor's group.

    Also fixes quaterion 0.1.35's ``get_config_dict``, which calls itself forever, and takes
    optional per-pair ``weights``.

    Args:
        scale: Factor of the similarities before the softmax.
        distance_metric_name: quaterion ``Distance``.
        symmetric: Also score positives against anchors.
        mask_same_group: Do not count other pairs of the anchor's label as negatives.
    """

    def __init__(self, scale: float = 20.0, distance_metric_name: Distance = Distance.COSINE,
                 symmetric: bool = False, mask_same_group: bool = True):
        super().__init__(scale=scale, distance_metric_name=distance_metric_name, symmetric=symmetric)
        self.mask_same_group = mask_same_group

    def get_config_dict(self) -> dict[str, Any]:
        """The loss settings (JSON-serialisable)."""
        distance = getattr(self.distance_metric_name, "value", self.distance_metric_name)
        return {"distance_metric_name": str(distance), "scale": self._scale, "symmetric": self._symmetric,
                "mask_same_group": self.mask_same_group}

    def forward(self, embeddings: Tensor, pairs: Tensor, labels: Tensor, subgroups: Tensor,
                weights: Tensor | None = None, **kwargs: Any) -> Tensor:
        """Cross-entropy of each anchor against all positives of the batch.

        Args:
            embeddings: Anchors first, then their positives.
            pairs: ``(pairs, 2)`` offsets of anchor and positive in ``embeddings``.
            labels: Pair scores (all 1: positive pairs).
            subgroups: Label id of each embedding.
            weights: ``(pairs,)`` non-negative weights of the pairs, or ``None`` for equal weights.
            **kwargs: Ignored (quaterion passes every collated label).
        """
        if not self.mask_same_group and weights is None:
            return super().forward(embeddings, pairs, labels, subgroups, **kwargs)
        anchors = embeddings[pairs[:, 0]]
        positives = embeddings[pairs[:, 1]]
        logits = self.distance_metric.similarity_matrix(anchors, positives) * self._scale
        n = logits.size(0)
        targets = torch.arange(n, device=logits.device)
        if self.mask_same_group:
            groups_a = subgroups[pairs[:, 0]].to(logits.device)
            groups_b = subgroups[pairs[:, 1]].to(logits.device)
            diagonal = torch.eye(n, dtype=torch.bool, device=logits.device)
            same = (groups_a[:, None] == groups_b[None, :]) & ~diagonal
            logits = logits.masked_fill(same, float("-inf"))
        loss = weighted_mean(F.cross_entropy(logits, targets, reduction="none"), weights)
        if self._symmetric:
            loss = (loss + weighted_mean(F.cross_entropy(logits.transpose(0, 1), targets, reduction="none"),
                                         weights)) / 2
        return loss
