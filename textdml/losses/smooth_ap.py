from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import mined_pair_masks
from textdml.registry import LOSSES


@LOSSES.register("smooth_ap")
class SmoothAPLoss(BaseLoss):
    """Smooth-AP of Brown et al.: average precision with the ranking's step function made a sigmoid.

    AP counts, for each positive, how many rows rank above it among the positives and among all
    rows. Smooth-AP replaces the indicator "row j is more similar than row p" with
    ``sigmoid((s_j - s_p) / temperature)``, so the whole ranking has a gradient; a low
    temperature is a sharp, close approximation of AP.

    Formula: ``AP_i = 1/|P_i| sum_{p in P_i} (1 + sum_{j in P_i, j != p} sig((s_ij - s_ip)/t)) / (1 + sum_{j in R_i, j != p} sig((s_ij - s_ip)/t))``, ``L = mean_i (1 - AP_i)``,
    with ``P_i`` the anchor's positives and ``R_i`` every row it ranks.

    Args:
        temperature: the sigmoid temperature ``t`` (0.01 in the paper and pytorch-metric-learning).
        include_self: without ``ref_embeddings`` or tuples, let each anchor rank itself too, as
            its own first positive: the paper's code and pytorch-metric-learning do this. The
            default leaves the anchor out of its own list, as every other loss of the catalogue.
        reduction: ``mean`` over the anchors with a positive, ``sum``, ``none`` or ``mean_nonzero``.

    Inputs:
        Labelled rows, pairs or triplets (pairs from their labels), in any order and with any
        class sizes. ``ref_embeddings`` are the lists each anchor ranks. Tuples from a miner (or
        the trainer, across devices) restrict each anchor's list to its tuples' rows (PML instead
        weights each anchor by how often it appears in them).

    Requirements:
        Several rows per class in a batch (an m-per-class sampler).

    Conventions:
        Cosine similarity, as the paper. pytorch-metric-learning 2.9's SmoothAPLoss reshapes the
        batch into blocks and is right only for labels sorted into equal-size classes, with as
        many classes as rows per class (it refuses unequal sizes and scores other layouts
        against the wrong rows); this one handles any labels and equals it, with
        ``include_self=True``, where its layout holds.
        The cost is O(N K M) for K the most positives of an anchor, not PML's O(N^3).

    References:
        Brown, Xie, Kalogeiton, Zisserman, "Smooth-AP: Smoothing the Path Towards Large-Scale
        Image Retrieval", ECCV 2020. Code: https://github.com/Andrew-Brown1/Smooth_AP

    Example:
        >>> import torch
        >>> loss = SmoothAPLoss(temperature=0.01)
        >>> loss(torch.randn(6, 8), torch.tensor([2, 0, 1, 0, 2, 1])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    #: At most this many (anchor, positive, ranked row) comparisons are held at once (float32: 128 MB).
    max_block_elements: int = 2**25
    citation = """@inproceedings{brown2020smooth,
  title={Smooth-AP: Smoothing the Path Towards Large-Scale Image Retrieval},
  author={Brown, Andrew and Xie, Weidi and Kalogeiton, Vicky and Zisserman, Andrew},
  booktitle={ECCV},
  year={2020}
}"""

    def __init__(self, temperature: float = 0.01, include_self: bool = False, reduction: Reduction = "mean"):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"SmoothAPLoss: temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.include_self = include_self
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
        if indices is not None:  # the tuples' pairs are the lists (the trainer's, across devices)
            shape = (len(embeddings), len(ref_embeddings))
            positive, negative = mined_pair_masks(indices, labels, None if same_set else ref_labels, shape)
            ranked = positive | negative  # (N, M): the rows each anchor ranks
        else:
            positive = labels[:, None] == ref_labels[None, :]  # (N, M)
            ranked = torch.ones_like(positive)
            if same_set and not self.include_self:
                positive.fill_diagonal_(False)
                ranked.fill_diagonal_(False)
        num_positives = positive.sum(dim=1)  # (N,)
        has_positive = num_positives > 0
        if not has_positive.any():
            return self.empty_loss(embeddings, "no anchor has a positive")
        if not (has_positive & (ranked & ~positive).any(dim=1)).any():  # all rankings all positives: AP is 1
            return self.empty_loss(embeddings, "no anchor has both a positive and a negative")
        if not has_positive.all():
            embeddings, positive, ranked, num_positives = (
                t[has_positive] for t in (embeddings, positive, ranked, num_positives)
            )
        x = F.normalize(embeddings, dim=1)
        ref = F.normalize(ref_embeddings, dim=1)
        sim = x @ ref.T  # (N, M)
        k = int(num_positives.max())
        # The (rows, K, M) comparisons are built a block of anchors at a time, so that a batch
        # with a large class (K near M) stays within a fixed memory budget.
        rows = max(1, self.max_block_elements // (k * sim.shape[1]))
        ap = torch.cat(
            [
                self.average_precision(
                    sim[i : i + rows], positive[i : i + rows], ranked[i : i + rows], num_positives[i : i + rows]
                )
                for i in range(0, len(sim), rows)
            ]
        )
        return reduce_losses(1 - ap, self.reduction, embeddings)

    def average_precision(
        self, sim: torch.Tensor, positive: torch.Tensor, ranked: torch.Tensor, num_positives: torch.Tensor
    ) -> torch.Tensor:
        """Smooth AP of each anchor (row) of ``sim`` (n, M), whose positives and ranked rows are masks."""
        # Each anchor's positive columns first (stable sort), padded to the largest count K.
        k = int(num_positives.max())
        pos_columns = positive.to(torch.uint8).argsort(dim=1, descending=True, stable=True)[:, :k]  # (n, K)
        pos_valid = torch.arange(k, device=sim.device)[None, :] < num_positives[:, None]  # (n, K)
        pos_sim = sim.gather(1, pos_columns)  # (n, K)
        # above[i, p, j] ~ "row j ranks above positive p of anchor i".
        above = torch.sigmoid((sim[:, None, :] - pos_sim[:, :, None]) / self.temperature)  # (n, K, M)
        counts = torch.stack([ranked, ranked & positive], dim=2).to(sim.dtype)  # (n, M, 2)
        # Column j == p is counted by both sums as sigmoid(0) = 1/2 exactly (with a zero
        # gradient): adding 1/2, not 1, leaves a positive out of its own rank.
        rank_all, rank_pos = (0.5 + torch.bmm(above, counts)).unbind(dim=2)  # (n, K) each
        return torch.where(pos_valid, rank_pos / rank_all, 0.0).sum(dim=1) / num_positives

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, include_self={self.include_self}, reduction={self.reduction!r}"
