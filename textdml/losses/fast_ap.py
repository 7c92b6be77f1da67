from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import mined_pair_masks
from textdml.registry import LOSSES

# Squared euclidean distances between unit vectors lie in [0, 4].
MAX_DISTANCE = 4.0


def soft_histogram(dist: torch.Tensor, weights: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Per-row triangular-kernel histogram of ``dist`` (N, M) in [0, 4] -> (N, num_bins + 1).

    Each distance adds ``1 - |d - c_k| / delta`` to the two bin centres ``c_k`` around it (the
    only centres where that is positive), weighted by ``weights`` (N, M). Scattering into two
    bins costs O(N M), where evaluating every kernel costs O(N M bins).
    """
    delta = MAX_DISTANCE / num_bins
    position = dist.clamp(0.0, MAX_DISTANCE) / delta  # (N, M) in bin units
    # The bin index only selects a centre; the gradient flows through the fraction.
    lower = position.detach().floor().clamp_max(num_bins - 1).long()
    upper_share = position - lower  # in [0, 1]: the weight of the upper centre
    hist = dist.new_zeros(len(dist), num_bins + 1)
    hist.scatter_add_(1, lower, weights * (1 - upper_share))
    hist.scatter_add_(1, lower + 1, weights * upper_share)
    return hist


@LOSSES.register("fast_ap")
class FastAPLoss(BaseLoss):
    """FastAP of Cakir et al.: average precision of each anchor's ranking, through distance histograms.

    Each anchor ranks its reference rows by distance. Average precision needs sorting, which has
    no gradient; FastAP bins the distances into a soft histogram (a triangular kernel over
    ``num_bins`` intervals of the squared euclidean distance between unit vectors, [0, 4]) and
    computes the AP of that binned ranking in closed form, so one pass trains the whole list.

    Formula: ``FastAP_i = 1/|P_i| sum_k h+_k H+_k / H_k``, ``L = mean_i (1 - FastAP_i)``, with
    ``h+`` the positives' histogram, ``H+`` its cumulative sum and ``H`` that of all rows.

    Args:
        num_bins: histogram intervals over [0, 4] (10 in the paper and pytorch-metric-learning).
        reduction: ``mean`` over the anchors with a positive, ``sum``, ``none`` or ``mean_nonzero``.

    Inputs:
        Labelled rows, pairs or triplets (pairs from their labels). ``ref_embeddings`` are the
        lists each anchor ranks (no self-match is left out there). Tuples from a miner (or the
        trainer, across devices) restrict each anchor's list to its tuples' rows.

    Requirements:
        Several rows per class in a batch (an m-per-class sampler); large batches help, since
        each anchor's list is the batch.

    Conventions:
        Matches pytorch-metric-learning's FastAPLoss, whose distance is squared euclidean on
        L2-normalised embeddings. Anchors without a positive are skipped. Mined tuples choose
        the pairs, as for every pair loss here; PML instead weights each anchor by how often it
        appears in them.

    References:
        Cakir, He, Xia, Kulis, Sclaroff, "Deep Metric Learning to Rank", CVPR 2019.
        Code: https://github.com/kunhe/FastAP-metric-learning

    Example:
        >>> import torch
        >>> loss = FastAPLoss(num_bins=10)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    citation = """@inproceedings{cakir2019deep,
  title={Deep Metric Learning to Rank},
  author={Cakir, Fatih and He, Kun and Xia, Xide and Kulis, Brian and Sclaroff, Stan},
  booktitle={CVPR},
  year={2019}
}"""

    def __init__(self, num_bins: int = 10, reduction: Reduction = "mean"):
        super().__init__()
        if int(num_bins) != num_bins or num_bins < 1:
            raise ValueError(f"FastAPLoss: num_bins must be an integer >= 1, got {num_bins}")
        self.num_bins = int(num_bins)
        self.reduction = reduction

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        shape = (len(embeddings), len(ref_embeddings))
        positive, negative = mined_pair_masks(indices, labels, None if same_set else ref_labels, shape)  # (N, M)
        num_positives = positive.sum(dim=1)  # (N,)
        has_positive = num_positives > 0
        if not has_positive.any():
            return self.empty_loss(embeddings, "no anchor has a positive")
        if not (has_positive & negative.any(dim=1)).any():  # every ranking is all positives: AP is 1
            return self.empty_loss(embeddings, "no anchor has both a positive and a negative")
        x = F.normalize(embeddings, dim=1)
        ref = x if same_set else F.normalize(ref_embeddings, dim=1)
        dist = (2 - 2 * x @ ref.T).clamp_min(0)  # (N, M) squared euclidean between unit vectors
        pos_hist = soft_histogram(dist, positive.to(dist.dtype), self.num_bins)  # (N, bins + 1)
        all_hist = soft_histogram(dist, (positive | negative).to(dist.dtype), self.num_bins)
        pos_cumulative = pos_hist.cumsum(dim=1)
        all_cumulative = all_hist.cumsum(dim=1)
        product = pos_hist * pos_cumulative
        # Bins before an anchor's first row are 0 / 0: they add nothing (the gradient stays finite).
        filled = product > 0
        precision = torch.where(filled, product / all_cumulative.masked_fill(~filled, 1.0), 0.0)
        fast_ap = precision.sum(dim=1)[has_positive] / num_positives[has_positive]
        return reduce_losses(1 - fast_ap, self.reduction, embeddings)

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, reduction={self.reduction!r}"
