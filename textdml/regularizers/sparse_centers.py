from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from textdml.registry import REGULARIZERS
from textdml.regularizers.base import BaseRegularizer


@REGULARIZERS.register("sparse_centers")
class SparseCentersRegularizer(BaseRegularizer):
    """SoftTriple's centre regularizer: a class's centres merge where one is enough.

    Each class has ``centers_per_class`` centres (rows ``c * K .. c * K + K - 1``); the penalty
    is the mean euclidean distance between the unit centres of one class, so training merges
    redundant centres and keeps only the modes the data needs.

    Formula: ``R = sum_c sum_{t < s} sqrt(2 + eps - 2 cos(w_ct, w_cs)) / (C K (K - 1))``.

    Args:
        num_classes: the number of classes C; read from the loss (``num_classes``) when None.
        centers_per_class: the centres per class K (> 1); read from the loss when None.
        weight: the factor on this term in the total loss (``tau``, 0.2 in the paper).

    Inputs:
        Class weights with several centres per class, class-major (SoftTriple, sub-centre
        ArcFace). Not for embeddings.

    Conventions:
        Equals pytorch-metric-learning's ``SparseCentersRegularizer`` (with ``eps`` the dtype's
        smallest normal number, and the cosine clipped at 1).

    References:
        Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling", ICCV 2019.

    Example:
        >>> import torch
        >>> reg = SparseCentersRegularizer(num_classes=2, centers_per_class=2)
        >>> round(reg(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])).item(), 4)
        0.3536
    """

    applies_to = ("weights",)
    citation = """@inproceedings{qian2019softtriple,
  title={SoftTriple Loss: Deep Metric Learning Without Triplet Sampling},
  author={Qian, Qi and Shang, Lei and Sun, Baigui and Hu, Juhua and Li, Hao and Jin, Rong},
  booktitle={ICCV},
  year={2019}
}"""

    def __init__(self, num_classes: int | None = None, centers_per_class: int | None = None, weight: float = 1.0):
        super().__init__(weight)
        self.num_classes = num_classes
        self.centers_per_class = centers_per_class
        self.check_sizes()

    def check_sizes(self) -> None:
        if self.centers_per_class is not None and self.centers_per_class < 2:
            raise ValueError(f"SparseCentersRegularizer: centers_per_class must be > 1 (one centre has nothing "
                             f"to merge with), got {self.centers_per_class}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"SparseCentersRegularizer: num_classes must be >= 1, got {self.num_classes}")

    def bind(self, loss: nn.Module) -> None:
        for name in ("num_classes", "centers_per_class"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(loss, name, None))
        if self.num_classes is None or self.centers_per_class is None:
            raise ValueError(f"SparseCentersRegularizer: {type(loss).__name__} has no num_classes / "
                             "centers_per_class; pass them to the regularizer")
        self.check_sizes()

    def compute_penalty(self, rows: torch.Tensor) -> torch.Tensor:
        if self.num_classes is None or self.centers_per_class is None:
            raise ValueError("SparseCentersRegularizer needs num_classes and centers_per_class (or a loss to read "
                             "them from)")
        classes, k = self.num_classes, self.centers_per_class
        if len(rows) != classes * k:
            raise ValueError(f"SparseCentersRegularizer: expected {classes} x {k} = {classes * k} centres, "
                             f"got {len(rows)} rows")
        unit = F.normalize(rows, dim=1).view(classes, k, -1)
        cos = unit @ unit.transpose(1, 2)  # (C, K, K): each class's centres against each other
        t, s = torch.triu_indices(k, k, offset=1, device=rows.device)
        pair_cos = cos[:, t, s]  # (C, K (K - 1) / 2)
        tiny = torch.finfo(rows.dtype).tiny
        distances = torch.sqrt(2.0 + tiny - torch.clamp(2.0 * pair_cos, max=2.0))
        return distances.sum() / (2 * pair_cos.numel())

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, centers_per_class={self.centers_per_class}, " + super().extra_repr()
