from __future__ import annotations

import torch

from textdml.losses._margin_softmax import CosineSoftmaxLoss
from textdml.registry import LOSSES


@LOSSES.register("cos_face")
class CosFaceLoss(CosineSoftmaxLoss):
    """CosFace (large margin cosine loss): a normalised softmax with an additive cosine margin.

    Embeddings and class weights are L2-normalised, the target-class cosine is lowered by a
    margin m and every logit is multiplied by a fixed scale s; a row is only classified with
    confidence when its class cosine beats every other by m.

    Formula: ``L = -log( e^{s (cos(theta_y) - m)} / (e^{s (cos(theta_y) - m)} + sum_{j != y} e^{s cos(theta_j)}) )``.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).
        margin: the cosine margin m.
        scale: the logit scale s (the inverse of a softmax temperature).

    Inputs:
        Labelled rows with class ids ``0 .. num_classes - 1``. ``ref_embeddings`` / ``ref_labels``
        (rows from other devices, a second view) are used as more labelled rows.

    Requirements:
        The class weights are parameters of the loss: give them an optimiser group
        (``parameter_groups``), usually with a larger learning rate than the encoder.

    Conventions:
        ``weight`` is ``(num_classes, embedding_size)``, the transpose of pytorch-metric-learning's
        ``W``; the defaults (m=0.35, s=64) are the paper's and its.

    References:
        Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018.
        Compared with pytorch-metric-learning's CosFaceLoss.

    Example:
        >>> import torch
        >>> loss = CosFaceLoss(num_classes=3, embedding_size=8)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    citation = """@inproceedings{wang2018cosface,
  title={CosFace: Large Margin Cosine Loss for Deep Face Recognition},
  author={Wang, Hao and Wang, Yitong and Zhou, Zheng and Ji, Xing and Gong, Dihong and Zhou, Jingchao and Li, Zhifeng and Liu, Wei},
  booktitle={CVPR},
  year={2018}
}"""

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.35, scale: float = 64.0):
        super().__init__(num_classes, embedding_size, scale=scale)
        self.margin = margin

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        return cos - self.margin
