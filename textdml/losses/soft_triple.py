from __future__ import annotations

import torch
import torch.nn.functional as F

from textdml.losses._margin_softmax import CosineSoftmaxLoss
from textdml.registry import LOSSES


@LOSSES.register("soft_triple")
class SoftTripleLoss(CosineSoftmaxLoss):
    """SoftTriple: a normalised softmax with several centres per class, softly pooled.

    Each class has K centres; a row's similarity to a class is the softmax-weighted mean of its
    cosines to that class's centres (a smooth max with temperature ``gamma``), so a class can
    cover several modes. The class similarities, with a margin on the true class and scaled by
    ``la``, go through a softmax. An optional regulariser pulls a class's centres together so
    that redundant ones merge (the paper's adaptive number of centres).

    Formula: ``L = -log( e^{la (S_y - margin)} / (e^{la (S_y - margin)} + sum_{j != y} e^{la S_j}) ) + tau R``,
    ``S_c = sum_k softmax_k(cos(x, w_c^k) / gamma) cos(x, w_c^k)``,
    ``R = sum_c sum_{k < k'} sqrt(2 + 1e-5 - 2 cos(w_c^k, w_c^k')) / (C K (K - 1))``.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).
        centers_per_class: K, the centres per class (10 as the paper).
        la: the scale of the class logits (lambda, 20 as the paper).
        gamma: the temperature of the soft max over a class's centres (0.1 as the paper).
        margin: the margin on the true class similarity (0.01 as the paper).
        tau: the weight of the centre regulariser R (the paper uses 0.2; 0 turns it off and
            gives pytorch-metric-learning's loss).

    Inputs:
        Labelled rows with class ids ``0 .. num_classes - 1``. ``ref_embeddings`` / ``ref_labels``
        (rows from other devices, a second view) are used as more labelled rows.

    Requirements:
        The centres are parameters of the loss: give them an optimiser group
        (``parameter_groups``); the paper trains them with a larger learning rate.

    Conventions:
        ``gamma`` is the temperature itself (the paper's and pytorch-metric-learning's argument;
        it stores ``1 / gamma``). ``tau`` defaults to 0.2 as the paper and its code;
        pytorch-metric-learning leaves the regulariser out (``tau=0``). ``weight`` is
        ``(num_classes * centers_per_class, embedding_size)``, class-major, the transpose of
        pytorch-metric-learning's ``fc``, initialised as the paper's code (Kaiming uniform).

    References:
        Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling", ICCV 2019;
        code adapted from the equations and https://github.com/idstcv/SoftTriple. Compared with
        pytorch-metric-learning's SoftTripleLoss.

    Example:
        >>> import torch
        >>> loss = SoftTripleLoss(num_classes=3, embedding_size=8, centers_per_class=2)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    citation = """@inproceedings{qian2019softtriple,
  title={SoftTriple Loss: Deep Metric Learning Without Triplet Sampling},
  author={Qian, Qi and Shang, Lei and Sun, Baigui and Hu, Juhua and Li, Hao and Jin, Rong},
  booktitle={ICCV},
  year={2019}
}"""

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        centers_per_class: int = 10,
        la: float = 20.0,
        gamma: float = 0.1,
        margin: float = 0.01,
        tau: float = 0.2,
    ):
        super().__init__(
            num_classes, embedding_size, scale=la, centers_per_class=centers_per_class, init="kaiming_uniform"
        )
        if gamma <= 0:
            raise ValueError(f"SoftTripleLoss: gamma must be > 0, got {gamma}")
        self.la = la
        self.gamma = gamma
        self.margin = margin
        self.tau = tau

    def pool_centers(self, cos: torch.Tensor) -> torch.Tensor:
        # A smooth max over a class's centres: every centre gets a gradient, the closest most.
        # The centres go to the middle axis: a CPU softmax over a short last axis (K = 10) is
        # several times slower than one across it.
        cos = cos.transpose(1, 2).contiguous()  # (N, K, C)
        weights = F.softmax(cos / self.gamma, dim=1)
        return (weights * cos).sum(dim=1)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        return cos - self.margin

    def class_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = super().class_loss(embeddings, labels)
        if self.tau > 0 and self.centers_per_class > 1:
            loss = loss + self.tau * self.center_spread(embeddings.dtype)
        return loss

    def center_spread(self, dtype: torch.dtype) -> torch.Tensor:
        """R: the mean distance between two centres of the same class, halved (the paper's scaling)."""
        C, K = self.num_classes, self.centers_per_class
        centers = F.normalize(self.weight.to(dtype), dim=1).view(C, K, -1)
        sim = centers @ centers.transpose(1, 2)  # (C, K, K)
        upper = torch.ones(K, K, dtype=torch.bool, device=sim.device).triu(diagonal=1)
        # The 1e-5 keeps the square root differentiable when two centres coincide.
        distances = torch.sqrt(2 + 1e-5 - 2 * sim[:, upper])
        return distances.sum() / (C * K * (K - 1))
