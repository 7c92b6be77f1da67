from __future__ import annotations

import torch
import torch.nn.functional as F

from textdml.registry import REGULARIZERS
from textdml.regularizers.base import BaseRegularizer


@REGULARIZERS.register("regular_face")
class RegularFaceRegularizer(BaseRegularizer):
    """RegularFace of Zhao et al.: spreads class vectors apart by penalising each one's closest neighbour.

    For every class vector, the cosine to the most similar other one; their mean is the penalty,
    so training pushes the closest pairs of classes apart (inter-class separability).

    Formula: ``R = mean_i max_{j != i} cos(w_i, w_j)``.

    Args:
        weight: the factor on this term in the total loss.

    Inputs:
        Class weights (with ArcFace, CosFace, SphereFace, ...); on embeddings it spreads the
        batch's rows the same way.

    Conventions:
        Equals pytorch-metric-learning's ``RegularFaceRegularizer``. A single row has no
        neighbour: the penalty is 0.

    References:
        Zhao et al., "RegularFace: Deep Face Recognition via Exclusive Regularization", CVPR 2019.
        Code: http://kaizhao.net/regularface

    Example:
        >>> import torch
        >>> RegularFaceRegularizer()(torch.eye(3)).item()
        0.0
    """

    citation = """@inproceedings{zhao2019regularface,
  title={RegularFace: Deep Face Recognition via Exclusive Regularization},
  author={Zhao, Kai and Xu, Jingyi and Cheng, Ming-Ming},
  booktitle={CVPR},
  year={2019}
}"""

    def compute_penalty(self, rows: torch.Tensor) -> torch.Tensor:
        if len(rows) < 2:
            return rows.sum() * 0.0
        unit = F.normalize(rows, dim=1)
        cos = unit @ unit.T  # (R, R)
        # The max's gradient reaches only the closest neighbour, as the paper's exclusive term.
        off_diagonal = cos.masked_fill(torch.eye(len(rows), dtype=torch.bool, device=rows.device), float("-inf"))
        return off_diagonal.max(dim=1).values.mean()
