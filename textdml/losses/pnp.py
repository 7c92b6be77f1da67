from __future__ import annotations

from typing import ClassVar, Literal

import torch

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.indices import TupleIndices, label_masks
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES

PNPVariant = Literal["Ds", "Dq", "Iu", "Ib", "O"]
VARIANTS: tuple[str, ...] = ("Ds", "Dq", "Iu", "Ib", "O")
# The sigmoid's argument is clipped here, as the reference code: beyond it the step is flat.
SIGMOID_CLIP = 50.0


@LOSSES.register("pnp")
class PNPLoss(BaseLoss):
    """Positive-negative-positive (PNP) loss of Li et al.: fewer negatives ranked above each positive.

    For each anchor and each of its positives, a smoothed count of the negatives more similar to
    the anchor than that positive (a sigmoid step with temperature ``anneal``). A variant turns
    the count into a penalty; the default ``O`` uses it as it is, the paper's best (``Dq``)
    rewards the positives that already rank first, ``Ds`` / ``Iu`` / ``Ib`` decrease or increase
    the gradient as the count grows.

    Formula: ``L = mean_i 1/|P_i| sum_{p in P_i} f(R_ip)``, ``R_ip = sum_{n in N_i} sigmoid((s_in - s_ip) / anneal)``;
    ``f``: O ``R``, Ds ``log(1 + R)``, Dq ``1 - 1/(1 + R)^alpha`` (1 minus the mean), Iu ``(1 + R) log(1 + R)``, Ib ``(bR - log(1 + bR)) / b^2``.

    Args:
        b: the slope of the ``Ib`` variant.
        alpha: the power of the ``Dq`` variant.
        anneal: the sigmoid temperature (smaller: closer to a hard count).
        variant: ``O``, ``Ds``, ``Dq``, ``Iu`` or ``Ib``.
        distance: cosine similarity (the loss ranks by similarity).

    Inputs:
        Labelled rows: each anchor ranks the whole batch (or the reference set).

    Requirements:
        Several samples per class in a batch (an m-per-class sampler): anchors without a positive
        do not count.

    Conventions:
        Equals pytorch-metric-learning's ``PNPLoss`` without a reference set, where, as there,
        each anchor with a positive also counts itself as a positive (similarity 1, the first
        place). With ``ref_embeddings`` (which PML does not take) the positives are the
        reference rows of the anchor's label. Only (anchor, positive, reference row) triples are
        formed, not PML's (N, N, N) tensor.

    References:
        Li et al., "Rethinking the Optimization of Average Precision: Only Penalizing Negative
        Instances before Positive Ones is Enough", AAAI 2022. Code:
        https://github.com/interestingzhuo/PNPloss

    Example:
        >>> import torch
        >>> loss = PNPLoss(variant="Dq")
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"))
    citation = """@inproceedings{li2022rethinking,
  title={Rethinking the Optimization of Average Precision: Only Penalizing Negative Instances before Positive Ones is Enough},
  author={Li, Zhuo and Min, Weiqing and Song, Jiajun and Zhu, Yaohui and Kang, Liping and Wei, Xiaoming and Wei, Xiaolin and Jiang, Shuqiang},
  booktitle={AAAI},
  year={2022}
}"""

    def __init__(
        self,
        b: float = 2.0,
        alpha: float = 1.0,
        anneal: float = 0.01,
        variant: PNPVariant = "O",
        distance: BaseDistance | str | None = None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"PNPLoss: variant={variant!r}; use one of {', '.join(VARIANTS)}")
        if anneal <= 0:
            raise ValueError(f"PNPLoss: anneal must be > 0, got {anneal}")
        self.distance = as_distance(distance, CosineSimilarityDistance())
        if not self.distance.higher_is_closer:
            raise ValueError(f"PNPLoss ranks by similarity; {type(self.distance).__name__} is a distance. "
                             "Use distance='cosine_similarity'")
        self.b = b
        self.alpha = alpha
        self.anneal = anneal
        self.variant = variant

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        positive, negative = label_masks(labels, None if same_set else ref_labels)
        has_positive = positive.any(dim=1)  # (N,)
        if not has_positive.any():
            return self.empty_loss(embeddings, "no anchor has a positive (use an m-per-class sampler)")
        if not (has_positive & negative.any(dim=1)).any():  # nothing can rank before a positive
            return self.empty_loss(embeddings, "no anchor has both a positive and a negative")
        if same_set:
            # As the reference code: an anchor with a positive is itself a positive (the first place).
            positive = positive | torch.diag(has_positive)
        sim = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        anchors, positives = torch.where(positive)  # (K,) each, one per (anchor, positive) pair
        anchor_sim = sim[anchors]  # (K, M): the anchor's similarity to every reference row
        step = torch.sigmoid(((anchor_sim - sim[anchors, positives, None]) / self.anneal)
                             .clamp(-SIGMOID_CLIP, SIGMOID_CLIP))
        rank = torch.where(negative[anchors], step, 0.0).sum(dim=1)  # (K,) negatives before the positive
        penalty = self.penalty(rank)
        per_anchor = torch.zeros(len(embeddings), dtype=penalty.dtype, device=penalty.device)
        per_anchor = per_anchor.index_add(0, anchors, penalty) / positive.sum(dim=1).clamp_min(1)
        loss = per_anchor[has_positive].mean()
        return 1 - loss if self.variant == "Dq" else loss

    def penalty(self, rank: torch.Tensor) -> torch.Tensor:
        if self.variant == "Ds":
            return torch.log1p(rank)
        if self.variant == "Dq":
            return 1 / (1 + rank) ** self.alpha
        if self.variant == "Iu":
            return (1 + rank) * torch.log1p(rank)
        if self.variant == "Ib":
            return (self.b * rank - torch.log1p(self.b * rank)) / self.b**2
        return rank

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, anneal={self.anneal}, alpha={self.alpha}, b={self.b}"
