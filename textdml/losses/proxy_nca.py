from __future__ import annotations

import torch

from textdml.losses._margin_softmax import CosineSoftmaxLoss
from textdml.registry import LOSSES


@LOSSES.register("proxy_nca")
class ProxyNCALoss(CosineSoftmaxLoss):
    """ProxyNCA: NCA against one learned proxy per class instead of the other samples.

    Each row is softly assigned to the proxies by a softmax over negative squared euclidean
    distances between the L2-normalised row and proxies; the loss is the negative log
    probability of its class's proxy. Proxies stand in for whole classes, so no sampling of
    pairs or triplets is needed.

    Formula: ``L = -log( e^{-s ||x - p_y||^2} / sum_j e^{-s ||x - p_j||^2} )`` with ``x``, ``p`` unit-norm.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).
        softmax_scale: ``s``, the factor on the squared distances. With unit vectors
            ``||x - p||^2 = 2 - 2 cos``, so this is NormSoftmax with temperature ``1 / (2 s)``;
            ProxyNCA++ (Teh et al. 2020) finds a low temperature (``s`` around 9) much better.

    Inputs:
        Labelled rows with class ids ``0 .. num_classes - 1``. ``ref_embeddings`` / ``ref_labels``
        (rows from other devices, a second view) are used as more labelled rows.

    Requirements:
        The proxies are parameters of the loss: give them an optimiser group
        (``parameter_groups``); the paper trains them with a larger learning rate.

    Conventions:
        The class's own proxy is in the denominator (as pytorch-metric-learning and ProxyNCA++),
        not left out as in the paper's Eq. 1, which keeps the loss bounded below. Unlike
        pytorch-metric-learning, rows whose probability underflows to 0 are kept (the log-softmax
        is computed stably). ``weight`` holds the proxies, ``(num_classes, embedding_size)`` like
        pytorch-metric-learning's ``proxies``; ``softmax_scale=1`` is its default.

    References:
        Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies", ICCV 2017.
        Teh, DeVries, Taylor, "ProxyNCA++: Revisiting and Revitalizing Proxy Neighborhood
        Component Analysis", ECCV 2020. Compared with pytorch-metric-learning's ProxyNCALoss.

    Example:
        >>> import torch
        >>> loss = ProxyNCALoss(num_classes=3, embedding_size=8, softmax_scale=9)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    citation = """@inproceedings{movshovitz2017no,
  title={No Fuss Distance Metric Learning using Proxies},
  author={Movshovitz-Attias, Yair and Toshev, Alexander and Leung, Thomas K. and Ioffe, Sergey and Singh, Saurabh},
  booktitle={ICCV},
  year={2017}
}"""

    def __init__(self, num_classes: int, embedding_size: int, softmax_scale: float = 1.0):
        super().__init__(num_classes, embedding_size, scale=softmax_scale)
        self.softmax_scale = softmax_scale

    def scale_logits(self, logits: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        squared_distance = 2 - 2 * logits  # ||x - p||^2 for unit vectors
        return -self.softmax_scale * squared_distance
