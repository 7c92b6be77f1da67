from __future__ import annotations

import torch

from textdml.registry import REGULARIZERS
from textdml.regularizers.base import BaseRegularizer


@REGULARIZERS.register("zero_mean")
class ZeroMeanRegularizer(BaseRegularizer):
    """Keeps each row's components summing to zero (a zero-mean embedding, as the SNR paper asks).

    The signal-to-noise-ratio distance treats an embedding's components as a zero-mean signal;
    this penalty keeps them so.

    Formula: ``R = mean_i |sum_d x_id|``.

    Args:
        weight: the factor on this term in the total loss (0.001 in the SNR paper).

    Conventions:
        Equals pytorch-metric-learning's ``ZeroMeanRegularizer``.

    References:
        Yuan et al., "Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric Learning",
        CVPR 2019.

    Example:
        >>> import torch
        >>> ZeroMeanRegularizer()(torch.tensor([[1.0, -1.0], [1.0, 1.0]])).item()
        1.0
    """

    citation = """@inproceedings{yuan2019signal,
  title={Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric Learning},
  author={Yuan, Tongtong and Deng, Weihong and Tang, Jian and Tang, Yinan and Chen, Binghui},
  booktitle={CVPR},
  year={2019}
}"""

    def compute_penalty(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.sum(dim=1).abs().mean()
