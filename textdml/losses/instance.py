from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


def first_row_of_label(labels: torch.Tensor, ref_labels: torch.Tensor) -> torch.Tensor:
    """For each label, the first row of ``ref_labels`` that carries it -> (N,); -1 where none does.

    Sorting the labels costs O((N + M) log M), where comparing every label with every ref label
    costs O(N M).
    """
    if len(ref_labels) == 0:
        return torch.full_like(labels, -1, dtype=torch.long)
    values, inverse = torch.unique(ref_labels, return_inverse=True)  # values sorted
    rows = torch.arange(len(ref_labels), device=ref_labels.device)
    first = torch.full_like(values, len(ref_labels), dtype=torch.long).scatter_reduce_(0, inverse, rows, "amin")
    if labels is ref_labels:
        return first[inverse]
    slot = torch.searchsorted(values, labels).clamp_max(len(values) - 1)
    return torch.where(values[slot] == labels, first[slot], -1)


@LOSSES.register("instance")
class InstanceLoss(BaseLoss):
    """Instance loss of Zheng et al.: every instance is its own class, classified among the batch.

    Each row is classified over the reference rows by a softmax of scaled cosines, and its class
    is its instance: the first reference row of its label. In the paper's layout the batch is an
    image of each instance followed by its captions (labels ``0..C-1`` then ``0..C-1``), so each
    image classifies itself and each caption picks its image among all images and captions; with
    pairs and ``ref_embeddings`` each anchor picks its own positive among all reference rows.

    Formula: ``L_i = -log( e^{gamma cos(x_i, r_t(i))} / sum_j e^{gamma cos(x_i, r_j)} )``, ``t(i)``
    the first reference row with the label of row i.

    Args:
        gamma: the scale on the cosines (the inverse of a softmax temperature; 64 as
            pytorch-metric-learning).
        reduction: ``mean`` over the rows, ``sum``, ``none`` or ``mean_nonzero``.

    Inputs:
        Labelled rows (instance ids), pairs (each anchor's own positive is its class) or
        triplets. Without ``ref_embeddings`` the batch is classified among itself, its own row
        included, as the paper's code.

    Requirements:
        The first row of each instance acts as its class vector: put one row of each instance
        first (the paper's image-then-captions batch), or give the class rows as
        ``ref_embeddings``. A row whose label is not among the reference rows is skipped.

    Conventions:
        Matches pytorch-metric-learning's InstanceLoss, which takes the label's rank among the
        batch's sorted unique labels as the target column: that is the first row of the label
        exactly when the batch starts with one row of every instance in sorted order (the
        paper's layout, or distinct labels ``0..N-1``); otherwise PML's target is an unrelated
        row, and this one is the instance's row.

    References:
        Zheng, Zheng, Garrett, Yang, Xu, Shen, "Dual-Path Convolutional Image-Text Embeddings with
        Instance Loss", ACM TOMM 2020. Code: https://github.com/layumi/Image-Text-Embedding

    Example:
        >>> import torch
        >>> loss = InstanceLoss(gamma=64)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"))
    citation = """@article{zheng2020dual,
  title={Dual-Path Convolutional Image-Text Embeddings with Instance Loss},
  author={Zheng, Zhedong and Zheng, Liang and Garrett, Michael and Yang, Yi and Xu, Mingliang and Shen, Yi-Dong},
  journal={ACM Transactions on Multimedia Computing, Communications, and Applications},
  year={2020}
}"""

    def __init__(self, gamma: float = 64.0, reduction: Reduction = "mean"):
        super().__init__()
        if gamma <= 0:
            raise ValueError(f"InstanceLoss: gamma must be > 0, got {gamma}")
        self.gamma = gamma
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
        if len(embeddings) == 0:
            return self.empty_loss(embeddings, "the batch is empty")
        target = first_row_of_label(labels, ref_labels)  # (N,)
        ref = F.normalize(ref_embeddings, dim=1)
        if same_set:  # every label is among the rows themselves: each row has its target
            x = ref
        else:
            has_target = target >= 0
            if not has_target.any():
                return self.empty_loss(embeddings, "no row's label is among the reference rows")
            if not has_target.all():
                embeddings, target = embeddings[has_target], target[has_target]
            x = F.normalize(embeddings, dim=1)
        logits = self.gamma * (x @ ref.T)  # (N, M)
        if self.reduction == "mean":  # the fused mean: one pass fewer forward and backward
            return F.cross_entropy(logits, target)
        return reduce_losses(F.cross_entropy(logits, target, reduction="none"), self.reduction, embeddings)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, reduction={self.reduction!r}"
