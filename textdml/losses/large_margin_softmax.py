from __future__ import annotations

import torch

from textdml.losses._margin_softmax import CosineSoftmaxLoss, large_margin_cosine
from textdml.registry import LOSSES


@LOSSES.register("large_margin_softmax")
class LargeMarginSoftmaxLoss(CosineSoftmaxLoss):
    """Large-Margin Softmax (L-Softmax): a softmax classifier whose target angle is multiplied by m.

    The logit of class j is ``||W_j|| ||x|| cos(theta_j)``; for the true class the angle is
    multiplied by an integer margin m, so a row is only classified with confidence when it is m
    times closer in angle to its class than to any other. Neither the embeddings nor the class
    weights are normalised: their norms scale the logits.

    Formula: ``L = -log( e^{s ||W_y|| ||x|| psi(theta_y)} / (e^{s ||W_y|| ||x|| psi(theta_y)} + sum_{j != y} e^{s ||W_j|| ||x|| cos(theta_j)}) )``,
    ``psi(theta) = (-1)^k cos(m theta) - 2k`` for ``theta in [k pi / m, (k + 1) pi / m]``.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).
        margin: the integer angle multiplier m (the paper uses 2 to 4; 1 is a plain softmax).
        scale: a constant factor on every logit.

    Inputs:
        Labelled rows with class ids ``0 .. num_classes - 1``. ``ref_embeddings`` / ``ref_labels``
        (rows from other devices, a second view) are used as more labelled rows.

    Requirements:
        The class weights are parameters of the loss: give them an optimiser group
        (``parameter_groups``). The paper anneals from a plain softmax to L-Softmax for stable
        training; this loss applies the full margin from the first step.

    Conventions:
        ``cos(m theta)`` is computed with the Chebyshev recurrence (the same polynomial as the
        paper's Eq. 7). ``weight`` is ``(num_classes, embedding_size)``, the transpose of
        pytorch-metric-learning's ``W``; the defaults (m=4, scale=1, N(0, 1) init) are its defaults.

    References:
        Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", ICML 2016.
        Code adapted from the equations; compared with pytorch-metric-learning's LargeMarginSoftmaxLoss.

    Example:
        >>> import torch
        >>> loss = LargeMarginSoftmaxLoss(num_classes=3, embedding_size=8, margin=2)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    citation = """@inproceedings{liu2016large,
  title={Large-Margin Softmax Loss for Convolutional Neural Networks},
  author={Liu, Weiyang and Wen, Yandong and Yu, Zhiding and Yang, Meng},
  booktitle={ICML},
  year={2016}
}"""

    def __init__(self, num_classes: int, embedding_size: int, margin: int = 4, scale: float = 1.0):
        super().__init__(num_classes, embedding_size, scale=scale)
        if int(margin) != margin or margin < 1:
            raise ValueError(f"{type(self).__name__}: margin must be an integer >= 1, got {margin}")
        self.margin = int(margin)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        return large_margin_cosine(cos, self.margin)

    def scale_logits(self, logits: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        weight_norms = self.weight.to(embeddings.dtype).norm(dim=1)  # (C,)
        return logits * embeddings.norm(dim=1, keepdim=True) * weight_norms * self.scale
