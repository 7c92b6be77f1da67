from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


@LOSSES.register("vicreg")
class VICRegLoss(BaseLoss):
    """VICReg of Bardes, Ponce and LeCun: two views agree, and each keeps variance and decorrelated dimensions.

    Self-supervised, without negatives: the invariance term pulls the two views of a row
    together; the variance term keeps every dimension's standard deviation (over the batch) at
    1 or more, so the embeddings cannot collapse; the covariance term pushes the off-diagonal
    covariances to 0, so the dimensions carry different information.

    Formula: ``L = lambda * mean (z - z')^2 + mu * [v(z) + v(z')] / 2 + nu * [c(z) + c(z')]``,
    ``v(z) = mean_d relu(1 - sqrt(var_d(z) + eps))``, ``c(z) = sum_{d != e} cov_de(z)^2 / D``.

    Args:
        invariance_lambda: weight of the invariance term (25 in the paper).
        variance_mu: weight of the variance term (25 in the paper).
        covariance_v: weight of the covariance term (1 in the paper).
        eps: added to the variance under the square root.

    Inputs:
        Pairs by position: ``embeddings`` is one view, ``ref_embeddings`` the other (same number
        of rows), with ``labels=None`` or the pair labels ``labels == ref_labels``.

    Requirements:
        A batch of two rows or more (the variance and covariance are over the batch); a large
        batch as in the paper. The statistics are per device (not gathered).

    Conventions:
        Equals pytorch-metric-learning's ``VICRegLoss``. As there, no distance and no embedding
        regularizer apply (the loss holds its own).

    References:
        Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
        Self-Supervised Learning", ICLR 2022. Code: https://github.com/facebookresearch/vicreg

    Example:
        >>> import torch
        >>> loss = VICRegLoss()
        >>> loss(torch.randn(8, 4), ref_embeddings=torch.randn(8, 4)).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(
        input_kinds=("pairs",),
        # Batch statistics: gathering other devices' second views would not match the local first views.
        gathers=False,
        # The loss holds its own variance and covariance terms (as PML, which refuses one too).
        embedding_regularizer=False,
    )
    citation = """@inproceedings{bardes2022vicreg,
  title={VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning},
  author={Bardes, Adrien and Ponce, Jean and LeCun, Yann},
  booktitle={ICLR},
  year={2022}
}"""

    def __init__(
        self,
        invariance_lambda: float = 25.0,
        variance_mu: float = 25.0,
        covariance_v: float = 1.0,
        eps: float = 1e-4,
    ):
        super().__init__()
        self.invariance_lambda = invariance_lambda
        self.variance_mu = variance_mu
        self.covariance_v = covariance_v
        self.eps = eps

    def resolve_labels(self, embeddings, labels, ref_embeddings, ref_labels):  # type: ignore[no-untyped-def]
        name = type(self).__name__
        if ref_embeddings is None:
            raise ValueError(f"{name} needs two views: pass the second one as ref_embeddings")
        if len(ref_embeddings) != len(embeddings):
            raise ValueError(f"{name} needs one second view per row: {len(embeddings)} embeddings but "
                             f"{len(ref_embeddings)} ref_embeddings (drop the hard-negative columns)")
        if labels is not None and (ref_labels is None or not torch.equal(labels.to(ref_labels.device), ref_labels)):
            raise ValueError(f"{name} takes no class labels: row i of embeddings and of ref_embeddings are two views "
                             "of one item (call it with labels=None)")
        return super().resolve_labels(embeddings, labels, ref_embeddings, ref_labels)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        if len(embeddings) < 2:
            return self.empty_loss(embeddings, "a batch of one row has no variance")
        invariance = (embeddings - ref_embeddings).pow(2).mean()
        variance = (self.variance_term(embeddings) + self.variance_term(ref_embeddings)) / 2
        covariance = self.covariance_term(embeddings) + self.covariance_term(ref_embeddings)
        return self.invariance_lambda * invariance + self.variance_mu * variance + self.covariance_v * covariance

    def variance_term(self, z: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - torch.sqrt(z.var(dim=0) + self.eps)).mean()

    @staticmethod
    def covariance_term(z: torch.Tensor) -> torch.Tensor:
        n, dim = z.shape
        centred = z - z.mean(dim=0)
        cov = centred.T @ centred / (n - 1)  # (D, D)
        # Sum of squares off the diagonal: all of them minus the diagonal's.
        return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / dim

    def extra_repr(self) -> str:
        return (f"invariance_lambda={self.invariance_lambda}, variance_mu={self.variance_mu}, "
                f"covariance_v={self.covariance_v}, eps={self.eps}")
