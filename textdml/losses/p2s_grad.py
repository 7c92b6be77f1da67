from __future__ import annotations

import torch
import torch.nn.functional as F

from textdml.losses._margin_softmax import ClassLevelLoss
from textdml.registry import LOSSES

# A zero row has no direction: its cosines are 0 (as F.normalize gives), not 0 / 0.
NORM_EPS = 1e-12


@LOSSES.register("p2s_grad")
class P2SGradLoss(ClassLevelLoss):
    """P2SGrad of Zhang et al.: the cosine classifier's gradient without a scale or a margin to tune.

    The gradients of the margin softmax losses (CosFace, ArcFace, ...) all move an embedding
    along ``cos(theta) - target``, each with its own hyper-parameter-dependent factor. P2SGrad
    uses that direction as is: the gradient of a mean squared error between the cosines to the
    class vectors and the one-hot labels, which has no scale or margin.

    Formula: ``L = 1/(N C) sum_i sum_j (cos(x_i, W_j) - [j = y_i])^2``.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).

    Inputs:
        Labelled rows with class ids ``0 .. num_classes - 1``. ``ref_embeddings`` / ``ref_labels``
        (rows from other devices, a second view) are used as more labelled rows.

    Requirements:
        The class vectors are parameters of the loss: give them an optimiser group
        (``parameter_groups``).

    Conventions:
        ``embedding_size`` is pytorch-metric-learning's ``descriptors_dim``. ``weight`` is
        ``(num_classes, embedding_size)``, the transpose of PML's, initialised to unit rows as its. The class vectors are normalised inside the
        graph, as the original code (Xin Wang's p2sgrad.py); PML renormalises them in place and
        leaves the norm out of the graph, so its weight gradient is ours plus a radial part (the
        embedding gradient and the loss are the same).

    References:
        Zhang, Zhao, Yan, Gao, Qiao, Wang, Li, "P2SGrad: Refined Gradients for Optimizing Deep Face
        Models", CVPR 2019. Code: https://github.com/nii-yamagishilab/project-NN-Pytorch-scripts

    Example:
        >>> import torch
        >>> loss = P2SGradLoss(num_classes=3, embedding_size=8)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    citation = """@inproceedings{zhang2019p2sgrad,
  title={P2SGrad: Refined Gradients for Optimizing Deep Face Models},
  author={Zhang, Xiao and Zhao, Rui and Yan, Junjie and Gao, Mengya and Qiao, Yu and Wang, Xiaogang and Li, Hongsheng},
  booktitle={CVPR},
  year={2019}
}"""

    def __init__(self, num_classes: int, embedding_size: int):
        super().__init__(num_classes, embedding_size)
        weight = torch.empty(num_classes, embedding_size).uniform_(-1, 1)
        self.weight = torch.nn.Parameter(F.normalize(weight, dim=1))

    def class_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(embeddings.dtype)
        unit_weight = weight / weight.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)  # (C, D), small
        # Scaling the (N, C) products by 1 / |x| is cheaper than normalising the (N, D) rows.
        # (rsqrt of the squared norm: its backward is one product, a norm's is a division.)
        inv_norm = (embeddings * embeddings).sum(dim=1, keepdim=True).clamp_min(NORM_EPS**2).rsqrt()  # (N, 1)
        # Clamped as the original: a cosine past +-1 by rounding must not pull further.
        cos = (embeddings @ unit_weight.T * inv_norm).clamp(-1, 1)  # (N, C)
        # The labels were checked against num_classes already (F.one_hot would check them again).
        target = torch.zeros_like(cos).scatter_(1, labels[:, None], 1.0)
        return F.mse_loss(cos, target)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding_size={self.embedding_size}"
