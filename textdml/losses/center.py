from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from textdml.losses._margin_softmax import ClassLevelLoss
from textdml.registry import LOSSES


@LOSSES.register("center")
class CenterLoss(ClassLevelLoss):
    """Center loss with softmax: a linear classifier plus a pull of every row toward its class centre.

    The softmax term separates the classes; the centre term makes each class compact by pulling
    its rows toward a learned centre. Both the classifier and the centres are parameters of the
    loss, the centres with their own learning rate.

    Formula: ``L = -log softmax(W x + b)_y + lambda_c * 1/2 ||x - c_y||^2``, averaged over rows.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).
        lambda_c: the weight of the centre term (0.003 as the paper's face experiments).
        center_lr: the learning rate of the centres (``None``: the loss learning rate).

    Inputs:
        Labelled rows with class ids ``0 .. num_classes - 1``. ``ref_embeddings`` / ``ref_labels``
        (rows from other devices, a second view) are used as more labelled rows.

    Requirements:
        The classifier and the centres are parameters of the loss: ``parameter_groups(lr)`` gives
        the classifier at ``lr`` and the centres at ``center_lr``.

    Conventions:
        The centres are an ``nn.Parameter`` trained by the optimiser (as most modern code), not by
        the paper's rule ``c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)``, where
        ``n_j`` is the number of rows of class j in the batch. The gradient of the centre term on
        ``c_j`` is ``lambda_c / B * sum_{i: y_i = j} (c_j - x_i)`` for a batch of B rows, so one
        SGD step with ``center_lr = alpha * B / (lambda_c * (1 + n_j))`` is the paper's update
        (the paper uses alpha = 0.5). Both terms are means over the batch rather than the paper's
        sums, which leaves their ratio, and so ``lambda_c``, unchanged. The centres start at the
        origin: they move to their class means, while a random start would pull rows toward
        arbitrary far points. ``classifier`` is an ``nn.Linear`` with a bias, as the paper's
        softmax layer.

    References:
        Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition",
        ECCV 2016.

    Example:
        >>> import torch
        >>> loss = CenterLoss(num_classes=3, embedding_size=8, center_lr=0.5)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
        >>> [group["lr"] for group in loss.parameter_groups(1e-3)]
        [0.001, 0.5]
    """

    citation = """@inproceedings{wen2016discriminative,
  title={A Discriminative Feature Learning Approach for Deep Face Recognition},
  author={Wen, Yandong and Zhang, Kaipeng and Li, Zhifeng and Qiao, Yu},
  booktitle={ECCV},
  year={2016}
}"""

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        lambda_c: float = 0.003,
        center_lr: float | None = None,
    ):
        super().__init__(num_classes, embedding_size)
        if lambda_c < 0:
            raise ValueError(f"CenterLoss: lambda_c must be >= 0, got {lambda_c}")
        self.lambda_c = lambda_c
        self.center_lr = center_lr
        self.classifier = nn.Linear(embedding_size, num_classes)
        self.centers = nn.Parameter(torch.zeros(num_classes, embedding_size))

    def class_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dtype = embeddings.dtype
        logits = F.linear(embeddings, self.classifier.weight.to(dtype), self.classifier.bias.to(dtype))  # (N, C)
        softmax_term = F.cross_entropy(logits, labels)
        offsets = embeddings - self.centers.to(dtype)[labels]  # (N, D)
        center_term = 0.5 * offsets.pow(2).sum(dim=1).mean()
        return softmax_term + self.lambda_c * center_term

    def parameter_groups(self, lr: float) -> list[dict]:
        """The classifier at ``lr``, the centres at ``center_lr`` (``lr`` when it is ``None``)."""
        center_lr = lr if self.center_lr is None else self.center_lr
        groups = [
            {"params": [p for p in self.classifier.parameters() if p.requires_grad], "lr": lr},
            {"params": [self.centers] if self.centers.requires_grad else [], "lr": center_lr},
        ]
        return [group for group in groups if group["params"]]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, lambda_c={self.lambda_c}, center_lr={self.center_lr}"
