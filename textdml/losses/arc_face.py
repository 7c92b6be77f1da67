from __future__ import annotations

import math

import torch

from textdml.losses._margin_softmax import CosineSoftmaxLoss, angle_of
from textdml.registry import LOSSES


@LOSSES.register("arc_face")
class ArcFaceLoss(CosineSoftmaxLoss):
    """ArcFace (additive angular margin), optionally with K sub-centres per class.

    Embeddings and class weights are L2-normalised and the angle to the true class is enlarged
    by a margin m before the cosine is taken, so a row must be m radians closer to its class than
    the decision boundary. With ``sub_centers=K`` each class has K weight vectors and a row is
    compared with the closest one (Sub-center ArcFace), which lets noisy or multi-modal classes
    spread over several centres.

    Formula: ``L = -log( e^{s cos(theta_y + m)} / (e^{s cos(theta_y + m)} + sum_{j != y} e^{s cos(theta_j)}) )``,
    ``cos(theta_j) = max_k cos(x, W_{j,k})``.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).
        margin: the additive angular margin m, in radians (0.5 as the paper).
        scale: the logit scale s (the inverse of a softmax temperature).
        sub_centers: K, weight vectors per class (1 is plain ArcFace; the Sub-center paper uses 3).

    Inputs:
        Labelled rows with class ids ``0 .. num_classes - 1``. ``ref_embeddings`` / ``ref_labels``
        (rows from other devices, a second view) are used as more labelled rows.

    Requirements:
        The class weights are parameters of the loss: give them an optimiser group
        (``parameter_groups``), usually with a larger learning rate than the encoder.

    Conventions:
        ``margin`` is in radians (the paper's unit); pytorch-metric-learning takes degrees
        (its 28.6 is ``math.radians(28.6) = 0.499``). Past ``theta_y > pi - m``, where
        ``cos(theta_y + m)`` would rise again, the target logit is ``cos(theta_y) - m sin(m)``
        (as the reference code and pytorch-metric-learning) to keep it decreasing. ``weight`` is
        ``(num_classes * sub_centers, embedding_size)``, class-major, the transpose of
        pytorch-metric-learning's ``W``. The Sub-center paper's second stage (drop outliers far
        from the dominant sub-centre, then keep one centre) is not part of the loss.

    References:
        Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019.
        Deng et al., "Sub-center ArcFace: Boosting Face Recognition by Large-scale Noisy Web
        Faces", ECCV 2020. Compared with pytorch-metric-learning's ArcFaceLoss and
        SubCenterArcFaceLoss.

    Example:
        >>> import torch
        >>> loss = ArcFaceLoss(num_classes=3, embedding_size=8, sub_centers=2)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    citation = """@inproceedings{deng2019arcface,
  title={ArcFace: Additive Angular Margin Loss for Deep Face Recognition},
  author={Deng, Jiankang and Guo, Jia and Xue, Niannan and Zafeiriou, Stefanos},
  booktitle={CVPR},
  year={2019}
}
@inproceedings{deng2020subcenter,
  title={Sub-center ArcFace: Boosting Face Recognition by Large-scale Noisy Web Faces},
  author={Deng, Jiankang and Guo, Jia and Liu, Tongliang and Gong, Mingming and Zafeiriou, Stefanos},
  booktitle={ECCV},
  year={2020}
}"""

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margin: float = 0.5,
        scale: float = 64.0,
        sub_centers: int = 1,
    ):
        super().__init__(num_classes, embedding_size, scale=scale, centers_per_class=sub_centers)
        if not 0 <= margin < math.pi:
            raise ValueError(f"{type(self).__name__}: margin is in radians and must be in [0, pi), got {margin}")
        self.margin = margin
        self.sub_centers = sub_centers

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        theta = angle_of(cos)
        # cos(theta + m) stops decreasing past theta = pi - m; continue it with a linear penalty.
        fallback = cos - self.margin * math.sin(self.margin)
        return torch.where(theta <= math.pi - self.margin, torch.cos(theta + self.margin), fallback)
