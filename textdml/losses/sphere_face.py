from __future__ import annotations

import torch

from textdml.losses.large_margin_softmax import LargeMarginSoftmaxLoss
from textdml.registry import LOSSES


@LOSSES.register("sphere_face")
class SphereFaceLoss(LargeMarginSoftmaxLoss):
    """SphereFace (A-Softmax): L-Softmax with unit-norm class weights, a purely angular margin.

    The class weights are normalised, so the decision between classes depends on angles only; the
    target angle is multiplied by the integer margin m and the logits are scaled by the
    embedding's norm.

    Formula: ``L = -log( e^{s ||x|| psi(theta_y)} / (e^{s ||x|| psi(theta_y)} + sum_{j != y} e^{s ||x|| cos(theta_j)}) )``,
    ``psi(theta) = (-1)^k cos(m theta) - 2k`` for ``theta in [k pi / m, (k + 1) pi / m]``.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).
        margin: the integer angle multiplier m (the paper's default is 4).
        scale: a constant factor on every logit.

    Inputs:
        Labelled rows with class ids ``0 .. num_classes - 1``. ``ref_embeddings`` / ``ref_labels``
        (rows from other devices, a second view) are used as more labelled rows.

    Requirements:
        The class weights are parameters of the loss: give them an optimiser group
        (``parameter_groups``). The paper anneals from a plain softmax (lambda schedule) for
        stable training; this loss, as pytorch-metric-learning's, applies the full margin at once.

    Conventions:
        ``weight`` is ``(num_classes, embedding_size)``, the transpose of pytorch-metric-learning's
        ``W``; the defaults (m=4, scale=1) are its defaults.

    References:
        Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", CVPR 2017.
        Compared with pytorch-metric-learning's SphereFaceLoss.

    Example:
        >>> import torch
        >>> loss = SphereFaceLoss(num_classes=3, embedding_size=8)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    citation = """@inproceedings{liu2017sphereface,
  title={SphereFace: Deep Hypersphere Embedding for Face Recognition},
  author={Liu, Weiyang and Wen, Yandong and Yu, Zhiding and Li, Ming and Raj, Bhiksha and Song, Le},
  booktitle={CVPR},
  year={2017}
}"""

    def scale_logits(self, logits: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        # The only difference from L-Softmax: the class weights' norms are left out (unit weights).
        return logits * embeddings.norm(dim=1, keepdim=True) * self.scale
