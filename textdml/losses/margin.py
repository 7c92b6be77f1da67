from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import TupleIndices, to_triplets
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


@LOSSES.register("margin")
class MarginLoss(BaseLoss):
    """Margin loss of "Sampling Matters": positives inside a boundary ``beta``, negatives outside it.

    Instead of comparing a positive with a negative (triplet loss), every pair is compared with a
    boundary ``beta``: a positive pair must be at least ``margin`` closer than ``beta``, a negative
    pair at least ``margin`` farther. ``beta`` can be learnt, once for all classes or one per class,
    and ``nu`` pulls it down so that the boundary tightens as training goes.

    Formula: ``L = relu(d(a, p) - beta + margin) + relu(beta - d(a, n) + margin) + nu * beta``.

    Args:
        margin: the gap each pair must keep from the boundary ``beta`` (``alpha`` in the paper).
        nu: weight of the ``beta`` regulariser (only used with ``learn_beta``).
        beta: initial boundary between positive and negative distances.
        learn_beta: make ``beta`` a parameter; ``parameter_groups`` then gives it its own learning
            rate (the paper trains it with a larger one than the network).
        num_classes: one ``beta`` per class (labels must then be class indices below
            ``num_classes``); ``None`` for one global ``beta``.
        distance: euclidean on L2-normalised embeddings by default; with a similarity the roles
            flip (``s(a, p)`` must exceed ``beta`` by ``margin``).
        reduction: ``mean_nonzero`` (divide by the number of active pair terms, as the paper and
            pytorch-metric-learning), ``mean`` (by the number of pair terms), ``sum`` or ``none``
            (one value per triplet).

    Inputs:
        Labelled rows (every valid triplet in the batch), pairs, triplets, or a miner's output
        (the paper uses distance-weighted sampling).

    Requirements:
        At least two samples of some class per batch (an m-per-class sampler).

    Conventions:
        Each triplet contributes its positive and its negative pair term, so with
        ``reduction="mean_nonzero"`` the sum is divided by the number of non-zero pair terms, as
        pytorch-metric-learning's DivisorReducer. The regulariser follows pytorch-metric-learning
        too: ``nu * beta`` once for a global ``beta``; ``nu * beta[y_a]`` per triplet, divided like
        the margin terms, for per-class betas.

    References:
        Wu, Manmatha, Smola, Krähenbühl, "Sampling Matters in Deep Embedding Learning", ICCV 2017.

    Example:
        >>> import torch
        >>> loss = MarginLoss(margin=0.2, learn_beta=True, num_classes=3)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(accepts_indices=True)
    citation = """@inproceedings{wu2017sampling,
  title={Sampling Matters in Deep Embedding Learning},
  author={Wu, Chao-Yuan and Manmatha, R. and Smola, Alexander J. and Kr{\\"a}henb{\\"u}hl, Philipp},
  booktitle={ICCV},
  year={2017}
}"""

    beta: torch.Tensor

    def __init__(
        self,
        margin: float = 0.2,
        nu: float = 0.0,
        beta: float = 1.2,
        learn_beta: bool = False,
        num_classes: int | None = None,
        distance: BaseDistance | str | None = None,
        reduction: Reduction = "mean_nonzero",
    ):
        super().__init__()
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.margin = margin
        self.nu = nu
        self.learn_beta = learn_beta
        self.num_classes = num_classes
        self.distance = as_distance(distance, LpDistance())
        self.reduction = reduction
        initial_beta = torch.full((num_classes or 1,), float(beta))
        # A fixed beta is a buffer, so that it follows .to(device) but never reaches an optimiser.
        if learn_beta:
            self.beta = nn.Parameter(initial_beta)
        else:
            self.register_buffer("beta", initial_beta)

    def beta_per_anchor(self, anchor_labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The boundary of each triplet: the global one, or the one of the anchor's class."""
        beta = self.beta.to(dtype)
        if self.num_classes is None:
            return beta.expand(len(anchor_labels))
        if anchor_labels.min() < 0 or anchor_labels.max() >= self.num_classes:
            raise ValueError(
                f"{type(self).__name__} with num_classes={self.num_classes} needs labels in "
                f"[0, {self.num_classes}), got labels in [{anchor_labels.min()}, {anchor_labels.max()}]"
            )
        return beta[anchor_labels]

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        triplets = to_triplets(indices, labels, None if same_set else ref_labels)
        if len(triplets) == 0:
            return self.empty_loss(embeddings, "the batch has no (anchor, positive, negative) triplet")
        beta = self.beta_per_anchor(labels[triplets.anchor], embeddings.dtype)  # (T,)
        dist = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        ap, an = dist[triplets.anchor, triplets.positive], dist[triplets.anchor, triplets.negative]
        # distance.margin(x, y) is how much closer x is than y: the positive must beat beta, beta the negative.
        pos_losses = (self.distance.margin(beta, ap) + self.margin).clamp_min(0)  # (T,)
        neg_losses = (self.distance.margin(an, beta) + self.margin).clamp_min(0)  # (T,)
        if self.reduction == "none":
            return pos_losses + neg_losses + (self.nu * beta if self.learn_beta else 0.0)
        pair_terms = torch.cat([pos_losses, neg_losses])
        loss = reduce_losses(pair_terms, self.reduction, embeddings)
        if self.learn_beta:
            loss = loss + self.beta_regulariser(beta, self.divisor(pair_terms))
        return loss

    def divisor(self, pair_terms: torch.Tensor) -> torch.Tensor:
        """What ``reduce_losses`` divides the sum of the pair terms by."""
        if self.reduction == "mean_nonzero":
            return (pair_terms > 0).sum()
        if self.reduction == "mean":
            return torch.tensor(pair_terms.numel(), device=pair_terms.device)
        return torch.tensor(1, device=pair_terms.device)

    def beta_regulariser(self, beta: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
        if self.num_classes is None:
            return self.nu * beta[0]
        # Per-class betas are charged per triplet, and nothing is charged when no term is active.
        return torch.where(divisor > 0, self.nu * beta.sum() / divisor.clamp_min(1), beta.sum() * 0.0)
