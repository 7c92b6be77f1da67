from __future__ import annotations

from textdml.losses._margin_softmax import CosineSoftmaxLoss
from textdml.registry import LOSSES


@LOSSES.register("norm_softmax")
class NormSoftmaxLoss(CosineSoftmaxLoss):
    """NormSoftmax: a softmax classifier on cosines, with a temperature (classification as DML).

    Embeddings and class weights (proxies) are L2-normalised and the cosines, divided by a
    temperature, go through a softmax over all classes. Zhai and Wu show that this plain
    normalised classifier is a strong metric-learning baseline; the low temperature is what
    makes it work.

    Formula: ``L = -log( e^{cos(x, W_y) / t} / sum_j e^{cos(x, W_j) / t} )``.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).
        temperature: the softmax temperature ``t`` (0.05 as the paper).

    Inputs:
        Labelled rows with class ids ``0 .. num_classes - 1``. ``ref_embeddings`` / ``ref_labels``
        (rows from other devices, a second view) are used as more labelled rows.

    Requirements:
        The class weights are parameters of the loss: give them an optimiser group
        (``parameter_groups``); the paper trains them with a larger learning rate.

    Conventions:
        ``weight`` is ``(num_classes, embedding_size)``, the transpose of pytorch-metric-learning's
        ``W``; the temperature default is its and the paper's.

    References:
        Zhai and Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019
        (arXiv 2018). Compared with pytorch-metric-learning's NormalizedSoftmaxLoss.

    Example:
        >>> import torch
        >>> loss = NormSoftmaxLoss(num_classes=3, embedding_size=8)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    citation = """@inproceedings{zhai2018classification,
  title={Classification is a Strong Baseline for Deep Metric Learning},
  author={Zhai, Andrew and Wu, Hao-Yu},
  booktitle={BMVC},
  year={2019}
}"""

    def __init__(self, num_classes: int, embedding_size: int, temperature: float = 0.05):
        if temperature <= 0:
            raise ValueError(f"NormSoftmaxLoss: temperature must be > 0, got {temperature}")
        super().__init__(num_classes, embedding_size, scale=1.0 / temperature)
        self.temperature = temperature
