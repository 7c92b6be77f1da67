from __future__ import annotations

import torch

from textdml.registry import REGULARIZERS
from textdml.regularizers.base import BaseRegularizer


@REGULARIZERS.register("center_invariant")
class CenterInvariantRegularizer(BaseRegularizer):
    """Center-invariant loss of Wu et al.: every class vector gets the same squared norm.

    A class with many or easy samples otherwise grows a longer weight vector and takes over
    the feature space; this penalty pulls each squared norm to their mean.

    Formula: ``R = mean_i (||w_i||^2 - mean_j ||w_j||^2)^2 / 4``.

    Args:
        weight: the factor on this term in the total loss.

    Inputs:
        Class weights (softmax-style losses: ArcFace, CosFace, NormSoftmax, ...); on embeddings
        it evens out the rows' norms the same way.

    Conventions:
        Equals pytorch-metric-learning's ``CenterInvariantRegularizer``.

    References:
        Wu et al., "Deep Face Recognition with Center Invariant Loss", ACM MM Workshops 2017.

    Example:
        >>> import torch
        >>> CenterInvariantRegularizer()(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).item()
        0.0
    """

    citation = """@inproceedings{wu2017deep,
  title={Deep Face Recognition with Center Invariant Loss},
  author={Wu, Yue and Liu, Hongfu and Li, Jun and Fu, Yun},
  booktitle={Proceedings of the Thematic Workshops of ACM Multimedia},
  year={2017}
}"""

    def compute_penalty(self, rows: torch.Tensor) -> torch.Tensor:
        squared_norms = (rows * rows).sum(dim=1)  # (R,)
        return ((squared_norms - squared_norms.mean()) ** 2).mean() / 4
