from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.distributed import gather_for_loss, world_size
from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.clip import attach_logit_parameter, check_two_towers, logit_multiplier
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES

SIGLIP_LOGIT_SCALE = math.log(10.0)  # the paper's init: a multiplier of 10


def sigmoid_pair_loss_sum(
    embeddings: torch.Tensor,
    ref_embeddings: torch.Tensor,
    labels: torch.Tensor,
    ref_labels: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    distance: BaseDistance,
) -> torch.Tensor:
    """``sum_ij -log sigmoid(z_ij (scale * s_ij + bias))`` over one block; inputs already normalised."""
    sim = distance.compute_matrix(embeddings, ref_embeddings)  # (N, M)
    if not distance.higher_is_closer:
        sim = -sim
    logits = scale * sim + bias
    sign = 2.0 * (labels[:, None] == ref_labels[None, :]).to(logits.dtype) - 1.0  # +1 positive, -1 negative
    return -F.logsigmoid(sign * logits).sum()


@LOSSES.register("siglip")
class SigLipLoss(BaseLoss):
    """SigLIP's pairwise sigmoid loss: every image-text pair is its own binary "match or not" decision.

    Each pair's cosine similarity, times a learned multiplier ``exp(logit_scale)`` plus a learned
    bias, is the logit of a sigmoid classifier: matching pairs are pushed up, every other pair down.
    There is no softmax over the batch, so no row needs to see the whole batch at once: the loss
    can run block by block over the texts (``chunk_size``), in memory O(N x chunk).

    Formula: ``L = -(1/N) sum_i sum_j log sigmoid( z_ij (exp(logit_scale) s_ij + logit_bias) )``, ``z_ij = +1`` for a matching pair, ``-1`` otherwise.

    Conventions:
        ``logit_scale`` is stored as a log (init ``log 10``) and ``logit_bias`` is added to the
        logits (init -10), as in the paper, big_vision and open_clip; the multiplier is capped at
        ``max_logit_scale``. The sum over pairs is divided by the number of images N (open_clip and
        big_vision), not by the number of pairs. The loss L2-normalises its inputs. With ``labels``,
        rows with equal labels are positives (e.g. duplicate captions: both images match both
        copies). A batch of one pair is not degenerate: its single positive still trains.

    Args:
        logit_scale: the log multiplier; a ``nn.Parameter`` (the model's) is shared, a float creates
            the loss's own learnable parameter.
        logit_bias: the logit bias; shared or own, as ``logit_scale``.
        max_logit_scale: cap on ``exp(logit_scale)``; None for no cap.
        chunk_size: compare the images with this many texts at a time and recompute each block in
            backward (activation checkpointing): memory O(N x chunk_size) instead of O(N x M), for
            one more matrix product per block. None computes the whole matrix at once.
        gather: under ``torch.distributed``, compare this device's images with every device's texts
            (all-gathered with gradient, as open_clip's ``dist_impl="gather"``); the trainer then
            does not gather again. Combine with ``chunk_size`` (e.g. the per-device batch) so that
            the logits stay one block at a time, like open_clip's neighbour exchange. No effect on
            one process.
        distance: the similarity (cosine by default).

    Inputs:
        Image-text pairs: ``embeddings`` are the image embeddings (N, D), ``ref_embeddings`` the text
        embeddings (M >= N, D), ``labels=None`` pairs image i with text i; or ``labels`` and
        ``ref_labels`` where equal labels are positives.

    Requirements:
        None beyond pairs; works with small batches too. Start from ``logit_bias=-10`` so that the
        many negatives do not dominate the first steps.

    References:
        Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023.
        Code adapted from: open_clip ``src/open_clip/loss.py`` (``SigLipLoss``) and big_vision.

    Example:
        >>> import torch
        >>> loss = SigLipLoss(chunk_size=2)
        >>> images, texts = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss(images, ref_embeddings=texts).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("image_text",))
    citation = """@inproceedings{zhai2023sigmoid,
  title={Sigmoid Loss for Language Image Pre-Training},
  author={Zhai, Xiaohua and Mustafa, Basil and Kolesnikov, Alexander and Beyer, Lucas},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision},
  year={2023}
}"""

    logit_scale: nn.Parameter
    logit_bias: nn.Parameter

    def __init__(
        self,
        logit_scale: nn.Parameter | float = SIGLIP_LOGIT_SCALE,
        logit_bias: nn.Parameter | float = -10.0,
        max_logit_scale: float | None = 100.0,
        chunk_size: int | None = None,
        gather: bool = False,
        distance: BaseDistance | str | None = None,
    ):
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        if max_logit_scale is not None and max_logit_scale <= 0:
            raise ValueError(f"max_logit_scale must be > 0 or None, got {max_logit_scale}")
        attach_logit_parameter(self, "logit_scale", logit_scale)
        attach_logit_parameter(self, "logit_bias", logit_bias)
        self.max_logit_scale = max_logit_scale
        self.chunk_size = chunk_size
        self.gather = gather
        # The loss gathers across devices itself: the trainer must not gather a second time.
        self.needs = dataclasses.replace(self.needs, gathers=not gather)
        self.distance = as_distance(distance, CosineSimilarityDistance())

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        indices: TupleIndices | None = None,
    ) -> torch.Tensor:
        if self.gather and world_size() > 1 and ref_embeddings is not None and indices is None:
            # This device's images against every device's texts; pair labels are offset per rank.
            return super().forward(**gather_for_loss(embeddings, labels, ref_embeddings, ref_labels))
        return super().forward(embeddings, labels, ref_embeddings=ref_embeddings, ref_labels=ref_labels, indices=indices)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        check_two_towers(self, same_set)
        if len(embeddings) == 0:
            keep = 0.0 * (self.logit_scale.sum() + self.logit_bias.sum())
            return self.empty_loss(embeddings, "the batch is empty") + keep
        dtype = embeddings.dtype
        scale = logit_multiplier(self.logit_scale, self.max_logit_scale, dtype)
        bias = self.logit_bias.to(dtype)
        embeddings = self.distance.maybe_normalize(embeddings)
        ref_embeddings = self.distance.maybe_normalize(ref_embeddings)
        chunk = self.chunk_size
        if chunk is None or chunk >= len(ref_embeddings):
            total = sigmoid_pair_loss_sum(embeddings, ref_embeddings, labels, ref_labels, scale, bias, self.distance)
        else:
            total = sum(
                checkpoint(sigmoid_pair_loss_sum, embeddings, ref_embeddings[start : start + chunk], labels,
                           ref_labels[start : start + chunk], scale, bias, self.distance, use_reentrant=False)
                for start in range(0, len(ref_embeddings), chunk)
            )
        return total / len(embeddings)

    def extra_repr(self) -> str:
        return (f"logit_scale={self.logit_scale.detach().cpu().tolist()}, "
                f"logit_bias={self.logit_bias.detach().cpu().tolist()}, chunk_size={self.chunk_size}, "
                f"gather={self.gather}")
