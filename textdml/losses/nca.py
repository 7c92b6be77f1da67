from __future__ import annotations

from typing import ClassVar

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import PairIndices, TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.info_nce import multi_positive_cross_entropy
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


def positive_log_likelihood(logits: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row ``-log(sum of softmax(logits) over the positives)`` and the rows that have a positive.

    Computed as one softmax and a masked sum (fewer passes over the (N, M) matrix than two
    log-sum-exps); rows whose positive mass underflows to 0 take the log-sum-exp form instead, so
    no row is lost (pytorch-metric-learning drops them).
    """
    has_positive = positive.any(dim=1)
    mass = (logits.softmax(dim=1) * positive).sum(dim=1)  # (N,)
    underflow = has_positive & (mass <= 0)
    if bool(underflow.any()):
        stable, _ = multi_positive_cross_entropy(logits[underflow], positive[underflow])
        mass = mass.clone()
        mass[underflow] = torch.exp(-stable).clamp_min(torch.finfo(mass.dtype).tiny)
        losses = -mass.log()
        losses[underflow] = stable
        return losses[has_positive], has_positive
    return -mass[has_positive].log(), has_positive


def row_weights(
    indices: TupleIndices | None, num_rows: int, same_set: bool, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Per-anchor weights from a miner: how often a row is mined, relative to the most mined row.

    Without ``ref_embeddings`` every index points at a batch row, so positives and negatives count
    too; with them only the anchors do (as pytorch-metric-learning's ``convert_to_weights``).
    """
    weights = torch.ones(num_rows, dtype=dtype, device=device)
    if indices is None or len(indices) == 0:
        return weights
    if isinstance(indices, PairIndices):
        anchors, others = [indices.anchor_pos, indices.anchor_neg], [indices.positive, indices.negative]
    else:
        anchors, others = [indices.anchor], [indices.positive, indices.negative]
    rows = torch.cat(anchors + others if same_set else anchors)
    counts = torch.bincount(rows, minlength=num_rows).to(dtype)
    return counts / counts.max()


@LOSSES.register("nca")
class NCALoss(BaseLoss):
    """Neighbourhood Components Analysis: maximise the chance that a soft nearest neighbour has the same class.

    Each anchor picks a neighbour among the other rows with a softmax over negative squared
    distances; the loss is minus the log of the probability that the pick shares the anchor's
    label. It is a leave-one-out k-NN classifier made differentiable.

    Formula: ``L_i = -log( sum_{j in P(i)} exp(-scale * d_ij) / sum_{k != i} exp(-scale * d_ik) )``.

    Args:
        softmax_scale: multiplies the logits (an inverse temperature, named as pytorch-metric-learning).
        distance: squared euclidean on L2-normalised embeddings by default, as the paper and
            pytorch-metric-learning; a similarity is used as it is (not negated).

    Inputs:
        Labelled rows (or pairs / triplets through their labels). A miner's tuples do not pick
        pairs: they weight each anchor by how often its row was mined, relative to the most mined
        row (rows never mined get 0), as pytorch-metric-learning.

    Requirements:
        Rows without a positive in the batch are skipped; an m-per-class sampler keeps them rare.

    Conventions:
        The log of the positive probability is computed as a difference of log-sum-exps, so a
        row whose positives are all very far keeps a large finite loss where pytorch-metric-learning
        (which takes ``log`` of the summed softmax) drops the row once the sum underflows to 0.

    References:
        Goldberger, Roweis, Hinton, Salakhutdinov, "Neighbourhood Components Analysis", NeurIPS 2004.

    Example:
        >>> import torch
        >>> loss = NCALoss(softmax_scale=1.0)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(accepts_indices=True)
    citation = """@inproceedings{goldberger2004neighbourhood,
  title={Neighbourhood Components Analysis},
  author={Goldberger, Jacob and Roweis, Sam and Hinton, Geoffrey and Salakhutdinov, Ruslan},
  booktitle={NeurIPS},
  year={2004}
}"""

    def __init__(self, softmax_scale: float = 1.0, distance: BaseDistance | str | None = None):
        super().__init__()
        self.softmax_scale = softmax_scale
        self.distance = as_distance(distance, LpDistance(squared=True))

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        if bool((labels == labels[0]).all()) and bool((ref_labels == labels[0]).all()):  # O(N), not O(N*M)
            return self.empty_loss(embeddings, "every pair is positive (one class)")
        values = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        # One elementwise pass: scale and, for distances, negate.
        logits = values * (self.softmax_scale if self.distance.higher_is_closer else -self.softmax_scale)
        positive = labels[:, None] == ref_labels[None, :]  # (N, M)
        if same_set:
            # A row is never its own neighbour (in place: both tensors are fresh).
            logits.fill_diagonal_(float("-inf"))
            positive.fill_diagonal_(False)
        losses, has_positive = positive_log_likelihood(logits, positive)
        if losses.numel() == 0:
            return self.empty_loss(embeddings, "no anchor has a positive in the batch")
        weights = row_weights(indices, len(embeddings), same_set, losses.dtype, losses.device)
        return (losses * weights[has_positive]).mean()
