from __future__ import annotations

import torch

from textdml.registry import REGULARIZERS
from textdml.regularizers.base import BaseRegularizer


@REGULARIZERS.register("flops")
class FlopsRegularizer(BaseRegularizer):
    """FLOPS: the squared mean activation of each dimension, summed, so that few dimensions stay active.

    A sparse (SPLADE) vector costs a search one multiply per dimension it shares with another, so the
    expected cost of a dot product between two batch rows is ``sum_j P(j active)^2``; FLOPS is its
    smooth stand-in, and spreads the active dimensions over the vocabulary instead of reusing the
    same few in every row.

    Formula: ``R = sum_j (mean_i |x_ij|)^2`` (SPLADE weights are >= 0, so ``|x|`` is ``x``).

    Args:
        threshold: when set, rows with at most ``threshold`` non-zeros are left out (zeroed, still
            counted in the mean), as "FLOPS with l0 masking": a row sparse enough is not pushed further.
        weight: the factor on this term in the total loss (SPLADE's lambda).

    Conventions:
        Equals sentence-transformers' ``FlopsLoss`` (``threshold`` included).

    References:
        Paria et al., "Minimizing FLOPs to Learn Efficient Sparse Representations", ICLR 2020
        (arXiv 2004.05665); Formal et al., "SPLADE", SIGIR 2021; l0 masking: arXiv 2504.14839.

    Example:
        >>> import torch
        >>> FlopsRegularizer()(torch.tensor([[1.0, 0.0], [1.0, 2.0]])).item()  # 1^2 + 1^2
        2.0
    """

    applies_to = ("embeddings",)
    citation = """@inproceedings{paria2020minimizing,
  title={Minimizing FLOPs to Learn Efficient Sparse Representations},
  author={Paria, Biswajit and Yeh, Chih-Kuan and Yen, Ian E. H. and Xu, Ning and Ravikumar, Pradeep and P{\\'o}czos, Barnab{\\'a}s},
  booktitle={ICLR},
  year={2020}
}"""

    def __init__(self, threshold: int | None = None, weight: float = 1.0):
        super().__init__(weight)
        if threshold is not None and threshold < 0:
            raise ValueError(f"FlopsRegularizer: threshold must be >= 0 (a count of non-zeros), got {threshold}")
        self.threshold = threshold

    def compute_penalty(self, rows: torch.Tensor) -> torch.Tensor:
        if self.threshold is not None:
            active = (rows != 0).sum(dim=1)  # (R,)
            rows = rows * (active > self.threshold).to(rows.dtype).unsqueeze(1)
        # |x| with the gradient of x at 0 (abs() has 0 there): on SPLADE's non-negative weights the
        # gradient is sentence-transformers' (it takes x as it is), on signed rows this is still FLOPS.
        magnitudes = torch.where(rows < 0, -rows, rows)
        return magnitudes.mean(dim=0).pow(2).sum()

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, " + super().extra_repr()
