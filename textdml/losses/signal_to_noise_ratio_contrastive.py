from __future__ import annotations

from typing import ClassVar

from textdml.distances import BaseDistance, SNRDistance, as_distance
from textdml.losses.base import Reduction
from textdml.losses.contrastive import ContrastiveLoss
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


@LOSSES.register("signal_to_noise_ratio_contrastive")
class SignalToNoiseRatioContrastiveLoss(ContrastiveLoss):
    """Contrastive loss on the signal-to-noise-ratio distance of Yuan et al.

    The pairs and margins of the contrastive loss, measured with :class:`~textdml.distances.SNRDistance`:
    a pair is close when the difference between the two rows has little variance compared with
    the anchor itself. The paper adds a zero-mean regularizer on the embeddings; attach it with
    ``embedding_regularizer=ZeroMeanRegularizer()`` (weight 0.001 in the paper).

    Formula: ``L = y * relu(d_snr - pos_margin)^power + (1 - y) * relu(margin - d_snr)^power``.

    Args:
        margin: the SNR distance a negative pair must exceed (1.0, as pytorch-metric-learning).
        pos_margin: the SNR distance below which a positive pair costs nothing.
        distance: the SNR distance (L2-normalised inputs, as pytorch-metric-learning); another
            distance is an error, as this loss is the contrastive loss on SNR.
        power: 1 as pytorch-metric-learning, 2 for the squared hinge.
        reduction: ``mean_nonzero`` (the positive and the negative terms each averaged over their
            non-zero pairs, then added, as pytorch-metric-learning), ``mean``, ``sum`` or ``none``.

    Inputs:
        Labelled rows (every pair in the batch, or those of a miner), pairs, triplets.

    Requirements:
        Several samples per class in a batch (an m-per-class sampler) for positive pairs.

    Conventions:
        Equals pytorch-metric-learning's ``SignalToNoiseRatioContrastiveLoss`` with its defaults.

    References:
        Yuan et al., "Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric Learning",
        CVPR 2019.

    Example:
        >>> import torch
        >>> loss = SignalToNoiseRatioContrastiveLoss()
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    citation = """@inproceedings{yuan2019signal,
  title={Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric Learning},
  author={Yuan, Tongtong and Deng, Weihong and Tang, Jian and Tang, Yinan and Chen, Binghui},
  booktitle={CVPR},
  year={2019}
}"""

    def __init__(
        self,
        margin: float = 1.0,
        pos_margin: float = 0.0,
        distance: BaseDistance | str | None = None,
        power: float = 1.0,
        reduction: Reduction = "mean_nonzero",
    ):
        distance = as_distance(distance, SNRDistance())
        if not isinstance(distance, SNRDistance):
            raise ValueError(
                f"SignalToNoiseRatioContrastiveLoss: distance must be 'snr', got {type(distance).__name__}; "
                "use the contrastive loss for other distances"
            )
        super().__init__(margin=margin, pos_margin=pos_margin, distance=distance, power=power, reduction=reduction)
