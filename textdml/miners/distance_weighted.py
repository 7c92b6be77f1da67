from __future__ import annotations

import torch

from textdml.distances import LpDistance
from textdml.indices import TripletIndices, label_masks
from textdml.miners.base import BaseMiner
from textdml.registry import MINERS


@MINERS.register("distance_weighted")
class DistanceWeightedMiner(BaseMiner):
    """Samples each triplet's negative with probability inverse to the density of its distance (Wu et al.).

    On the unit sphere in D dimensions, pairwise distances concentrate near sqrt(2), so uniform
    sampling returns almost only uninformative negatives. Weighting a negative at distance ``d``
    by the inverse of that density ``q(d)`` spreads the samples evenly over distances; ``cutoff``
    caps the weight of very close negatives (noisy, high-variance gradients) and negatives beyond
    ``nonzero_loss_cutoff`` (which a margin loss ignores) are never drawn. Every positive pair of
    the batch gets one sampled negative.

    Formula: ``P(n | a) ∝ 1 / q(max(d_an, cutoff))`` with ``q(d) ∝ d^(D-2) (1 - d^2/4)^((D-3)/2)``, for ``d_an < nonzero_loss_cutoff``.

    Args:
        cutoff: distances below it are raised to it before weighting.
        nonzero_loss_cutoff: negatives at this distance or farther are never sampled.
        generator: random generator for the draws (on the embeddings' device), for reproducible mining.

    Inputs:
        Labelled rows; returns :class:`TripletIndices` (anchor, every positive, one sampled negative).

    Requirements:
        Defined on L2-normalised euclidean embeddings (the distance is fixed to that); several
        samples per class per batch (an m-per-class sampler).

    Conventions:
        pytorch-metric-learning's DistanceWeightedMiner draws positives at random too and
        normalises the log-weights by one global maximum; here every positive pair is used once
        and the maximum is taken per anchor (the same distribution, without overflow for large D).

    References:
        Wu, Manmatha, Smola, Krähenbühl, "Sampling Matters in Deep Embedding Learning", ICCV 2017,
        and its MXNet code (incubator-mxnet, example/gluon/embedding_learning).

    Example:
        >>> import torch
        >>> miner = DistanceWeightedMiner(generator=torch.Generator().manual_seed(0))
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> triplets = miner(torch.randn(8, 16), labels)
        >>> bool((labels[triplets.anchor] != labels[triplets.negative]).all())
        True
    """

    citation = """@inproceedings{wu2017sampling,
  title={Sampling Matters in Deep Embedding Learning},
  author={Wu, Chao-Yuan and Manmatha, R. and Smola, Alexander J. and Kr{\\"a}henb{\\"u}hl, Philipp},
  booktitle={ICCV},
  year={2017}
}"""

    def __init__(self, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4, generator: torch.Generator | None = None):
        super().__init__(LpDistance(p=2, squared=False, normalize_embeddings=True))
        if not 0 <= cutoff < nonzero_loss_cutoff:
            raise ValueError(f"need 0 <= cutoff < nonzero_loss_cutoff, got {cutoff} and {nonzero_loss_cutoff}")
        self.cutoff = float(cutoff)
        self.nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self.generator = generator

    def negative_probabilities(self, dist: torch.Tensor, negative: torch.Tensor, dim: int) -> torch.Tensor:
        """(N, M) sampling probabilities of each negative per anchor; an anchor with none gets a zero row.

        Args:
            dist: (N, M) euclidean distances between unit vectors.
            negative: (N, M) mask of the anchor's negatives.
            dim: the embedding dimension D.
        """
        dist = dist.clamp_min(self.cutoff)
        # log(1 / q(d)); the constant of q cancels in the normalisation.
        log_weights = (2.0 - dim) * dist.log() - ((dim - 3) / 2) * torch.log(1.0 - 0.25 * dist**2)
        allowed = negative & (dist < self.nonzero_loss_cutoff) & log_weights.isfinite()
        log_weights = log_weights.masked_fill(~allowed, float("-inf"))
        # The per-anchor maximum keeps exp() in range however large D is.
        row_max = log_weights.max(dim=1, keepdim=True).values
        weights = (log_weights - row_max.where(row_max.isfinite(), 0.0)).exp()
        return weights / weights.sum(dim=1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> TripletIndices:
        dist = self.distance(embeddings, ref_embeddings)  # (N, M)
        positive, negative = label_masks(labels, None if same_set else ref_labels)
        probabilities = self.negative_probabilities(dist, negative, embeddings.shape[1])
        anchor, pos = torch.where(positive & (probabilities.sum(dim=1, keepdim=True) > 0))
        if len(anchor) == 0:
            return TripletIndices(anchor, pos, pos.clone())
        neg = torch.multinomial(probabilities[anchor], 1, replacement=True, generator=self.generator).squeeze(1)
        return TripletIndices(anchor, pos, neg)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, nonzero_loss_cutoff={self.nonzero_loss_cutoff}"
