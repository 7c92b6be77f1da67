from __future__ import annotations

import torch

from textdml.registry import REGULARIZERS
from textdml.regularizers.base import BaseRegularizer


@REGULARIZERS.register("lp")
class LpRegularizer(BaseRegularizer):
    """Penalises large rows: the mean Lp norm (to a power) of the embeddings or class weights.

    Formula: ``R = mean_i ||x_i||_p^power``.

    Args:
        p: the norm order (2: euclidean).
        power: the power on each norm (1 as pytorch-metric-learning, 2 for weight decay's square).
        weight: the factor on this term in the total loss.

    Conventions:
        Equals pytorch-metric-learning's ``LpRegularizer``.

    References:
        The usual L2 penalty; as an embedding regularizer e.g. in Sohn, "Improved Deep Metric
        Learning with Multi-class N-pair Loss Objective", NeurIPS 2016.

    Example:
        >>> import torch
        >>> LpRegularizer()(torch.tensor([[3.0, 4.0]])).item()
        5.0
    """

    citation = """@inproceedings{sohn2016improved,
  title={Improved Deep Metric Learning with Multi-class N-pair Loss Objective},
  author={Sohn, Kihyuk},
  booktitle={NeurIPS},
  year={2016}
}"""

    def __init__(self, p: float = 2.0, power: float = 1.0, weight: float = 1.0):
        super().__init__(weight)
        self.p = p
        self.power = power

    def compute_penalty(self, rows: torch.Tensor) -> torch.Tensor:
        norms = torch.linalg.vector_norm(rows, ord=self.p, dim=1)  # (R,)
        return (norms if self.power == 1 else norms**self.power).mean()

    def extra_repr(self) -> str:
        return f"p={self.p}, power={self.power}, " + super().extra_repr()
