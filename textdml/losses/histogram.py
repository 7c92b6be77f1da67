from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from textdml.indices import TupleIndices, label_masks, to_triplets
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


def similarity_density(sim: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Linear-interpolation histogram of similarities in [-1, 1] on ``n_bins + 1`` nodes, summing to 1.

    Each value splits its unit mass between the two nodes around it, in proportion to how close
    it is to each, so the histogram is differentiable in the values.
    """
    delta = 2.0 / n_bins
    position = (sim.clamp(-1.0, 1.0) + 1) / delta  # in node units, [0, n_bins]
    # The node index only selects where the mass goes; the gradient flows through the share.
    lower = position.detach().floor().clamp_max(n_bins - 1).long()
    upper_share = position - lower
    density = sim.new_zeros(n_bins + 1)
    density.scatter_add_(0, lower, 1 - upper_share)
    density.scatter_add_(0, lower + 1, upper_share)
    return density / len(sim)


@LOSSES.register("histogram")
class HistogramLoss(BaseLoss):
    """Histogram loss of Ustinova and Lempitsky: the probability that a negative pair looks closer than a positive one.

    The cosine similarities of the positive pairs and of the negative pairs are each estimated as
    a histogram (linear interpolation onto ``n_bins + 1`` nodes over [-1, 1]). The loss is the
    overlap of the two distributions: the chance that a random negative pair is more similar
    than a random positive pair. It has one parameter, the bin count, and no margin to tune.

    Formula: ``L = sum_r h-_r Phi+_r`` with ``h-`` the negative pairs' histogram and ``Phi+`` the
    cumulative histogram of the positive pairs.

    Args:
        n_bins: histogram intervals over [-1, 1] (100 as pytorch-metric-learning).
        delta: the node spacing ``2 / n_bins``, instead of ``n_bins`` (pytorch-metric-learning
            takes either).

    Inputs:
        Labelled rows, pairs or triplets (pairs from their labels), or the tuples of a miner.
        Without ``ref_embeddings`` each unordered pair counts once; with it, every (anchor, ref)
        pair counts.

    Requirements:
        Several rows per class in a batch (an m-per-class sampler), for positive pairs.

    Conventions:
        Cosine similarity, as the paper. Matches pytorch-metric-learning's HistogramLoss, which
        builds the pairs from the batch's triplets: without a miner this drops the negative pairs
        between two rows that both have no positive; here every negative pair counts (equal when
        every class has two rows). A similarity of exactly 1 goes to the last node (PML indexes
        past its histogram there).
        Across devices the loss is a per-device estimate: this device's anchors against
        every device's rows, not one statistic over the whole global batch.

    References:
        Ustinova and Lempitsky, "Learning Deep Embeddings with Histogram Loss", NeurIPS 2016.
        Code: https://github.com/madkn/HistogramLoss

    Example:
        >>> import torch
        >>> loss = HistogramLoss(n_bins=100)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    citation = """@inproceedings{ustinova2016learning,
  title={Learning Deep Embeddings with Histogram Loss},
  author={Ustinova, Evgeniya and Lempitsky, Victor},
  booktitle={NeurIPS},
  year={2016}
}"""

    def __init__(self, n_bins: int | None = None, delta: float | None = None):
        super().__init__()
        if delta is not None:
            if delta <= 0 or not math.isclose(2 / delta, round(2 / delta)):
                raise ValueError(f"HistogramLoss: delta must divide 2 into whole bins (2 / n_bins), got {delta}")
            if n_bins is not None and not math.isclose(delta, 2 / n_bins):
                raise ValueError(
                    f"HistogramLoss: n_bins={n_bins} and delta={delta} disagree; give one of them (delta = 2 / n_bins)"
                )
            n_bins = round(2 / delta)
        n_bins = 100 if n_bins is None else n_bins
        if int(n_bins) != n_bins or n_bins < 1:
            raise ValueError(f"HistogramLoss: n_bins must be an integer >= 1, got {n_bins}")
        self.n_bins = int(n_bins)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        x = F.normalize(embeddings, dim=1)
        sim = x @ (x if same_set else F.normalize(ref_embeddings, dim=1)).T  # (N, M)
        pos_sim, neg_sim = self.pair_similarities(sim, labels, None if same_set else ref_labels, indices)
        if len(pos_sim) == 0 or len(neg_sim) == 0:
            return self.empty_loss(embeddings, "the batch needs both a positive and a negative pair")
        pos_cumulative = similarity_density(pos_sim, self.n_bins).cumsum(dim=0)
        return (similarity_density(neg_sim, self.n_bins) * pos_cumulative).sum()

    def pair_similarities(
        self, sim: torch.Tensor, labels: torch.Tensor, ref_labels: torch.Tensor | None, indices: TupleIndices | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The similarities of the positive and of the negative pairs, each pair once."""
        same_set = ref_labels is None
        if indices is None:
            positive, negative = label_masks(labels, ref_labels)
            if same_set:  # (i, j) and (j, i) are one pair
                upper = torch.ones_like(positive).triu_(diagonal=1)
                positive, negative = positive & upper, negative & upper
            return sim[positive], sim[negative]
        # Mined tuples, as PML: their triplets' (anchor, positive) and (anchor, negative) pairs.
        triplets = to_triplets(indices, labels, ref_labels)
        return (
            unique_pair_values(sim, triplets.anchor, triplets.positive, same_set),
            unique_pair_values(sim, triplets.anchor, triplets.negative, same_set),
        )

    def extra_repr(self) -> str:
        return f"n_bins={self.n_bins}"


def unique_pair_values(sim: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, unordered: bool) -> torch.Tensor:
    """``sim[rows, cols]`` with repeated pairs once; ``unordered``: (i, j) and (j, i) are one pair."""
    if len(rows) == 0:
        return sim.new_zeros(0)
    pairs = torch.stack([rows, cols])
    if unordered:
        pairs = pairs.sort(dim=0).values
    rows, cols = torch.unique(pairs, dim=1)
    return sim[rows, cols]
