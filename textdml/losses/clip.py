from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.info_nce import multi_positive_cross_entropy
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES

# log(1 / 0.07): CLIP's initial temperature of 0.07, as a log multiplier.
CLIP_LOGIT_SCALE = math.log(1 / 0.07)


def attach_logit_parameter(loss: nn.Module, name: str, value: nn.Parameter | float) -> None:
    """Give ``loss`` the learnable scalar ``name``: its own for a float, the model's for a Parameter.

    A model's Parameter is borrowed, not registered: the model saves it and the optimiser gets it
    from the model's groups, so it is neither saved twice nor put in two optimiser groups.
    """
    if isinstance(value, nn.Parameter):
        # Writing to __dict__ skips nn.Module's registration; attribute access still finds it.
        loss.__dict__[name] = value
    else:
        setattr(loss, name, nn.Parameter(torch.tensor(float(value))))


def logit_multiplier(logit_scale: torch.Tensor, max_logit_scale: float | None, dtype: torch.dtype) -> torch.Tensor:
    """``exp(logit_scale)``, capped at ``max_logit_scale`` (the cap's gradient is zero, as open_clip's clamp)."""
    log_scale = logit_scale.to(dtype)
    if max_logit_scale is not None:
        log_scale = log_scale.clamp(max=math.log(max_logit_scale))
    return log_scale.exp()


def check_two_towers(loss: BaseLoss, same_set: bool) -> None:
    if same_set:
        raise ValueError(
            f"{type(loss).__name__} compares two towers: pass the image embeddings as `embeddings` and the text "
            "embeddings as `ref_embeddings`"
        )


@LOSSES.register("clip")
class ClipLoss(BaseLoss):
    """CLIP's contrastive loss: each image picks its caption among the batch's texts, and each text its image.

    Image and text embeddings are compared by cosine similarity times a learned multiplier
    ``exp(logit_scale)``; a softmax cross-entropy over the texts (image -> text) and one over the
    images (text -> image) are averaged. Every other pair in the batch is a negative.

    Formula: ``L = 1/2 [ mean_i -log( sum_{j in P(i)} e^{t s_ij} / sum_j e^{t s_ij} ) + mean_j -log( sum_{i in P(j)} e^{t s_ij} / sum_i e^{t s_ij} ) ]``, ``t = exp(logit_scale)``.

    Conventions:
        ``logit_scale`` is stored as a log, as in open_clip and Hugging Face (``log(1 / 0.07)``
        means a multiplier of about 14.3); the multiplier is capped at ``max_logit_scale`` (100, as
        open_clip's training clamp). The loss L2-normalises its inputs (cosine similarity), so
        raw tower outputs and normalised ones give the same value. With ``labels`` (e.g. caption
        ids), rows with equal labels are all positives of each other (multi-positive softmax):
        two images with the same caption each count that caption, and every copy of it, as a
        positive instead of a negative. Text rows past the images (extra texts) only act as
        negatives of the image -> text direction; text rows with no matching image are left out of
        the text -> image direction.

    Args:
        logit_scale: the log multiplier. A ``nn.Parameter`` (the model's ``DualEncoder.logit_scale``)
            is shared: the model learns and saves it. A float creates the loss's own learnable
            parameter.
        max_logit_scale: cap on the multiplier ``exp(logit_scale)``; None for no cap.
        symmetric: average both directions (CLIP). False keeps image -> text only.
        distance: the similarity (cosine by default; ``dot_product`` for raw inner products).

    Inputs:
        Image-text pairs: ``embeddings`` are the image embeddings (N, D), ``ref_embeddings`` the text
        embeddings (M >= N, D), and ``labels=None`` pairs image i with text i. Or ``labels`` and
        ``ref_labels`` (caption or class ids): equal labels are positives.

    Requirements:
        Large batches: every other caption is a negative. Across devices, the trainer gathers every
        device's rows (``textdml.distributed.compute_local_loss`` runs the two directions as two
        gathered calls).

    References:
        Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021.
        Code adapted from: open_clip ``src/open_clip/loss.py`` (``ClipLoss``).

    Example:
        >>> import torch
        >>> loss = ClipLoss()
        >>> images, texts = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss(images, ref_embeddings=texts).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("image_text",))
    citation = """@inproceedings{radford2021learning,
  title={Learning Transferable Visual Models From Natural Language Supervision},
  author={Radford, Alec and Kim, Jong Wook and Hallacy, Chris and Ramesh, Aditya and Goh, Gabriel and Agarwal, Sandhini and Sastry, Girish and Askell, Amanda and Mishkin, Pamela and Clark, Jack and Krueger, Gretchen and Sutskever, Ilya},
  booktitle={International Conference on Machine Learning},
  year={2021}
}"""

    logit_scale: nn.Parameter

    def __init__(
        self,
        logit_scale: nn.Parameter | float = CLIP_LOGIT_SCALE,
        max_logit_scale: float | None = 100.0,
        symmetric: bool = True,
        distance: BaseDistance | str | None = None,
    ):
        super().__init__()
        if max_logit_scale is not None and max_logit_scale <= 0:
            raise ValueError(f"max_logit_scale must be > 0 or None, got {max_logit_scale}")
        attach_logit_parameter(self, "logit_scale", logit_scale)
        self.max_logit_scale = max_logit_scale
        self.needs = dataclasses.replace(self.needs, symmetric=symmetric)
        self.distance = as_distance(distance, CosineSimilarityDistance())

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
        # Keep the logit scale in the graph even for an empty batch (DDP expects its gradient).
        keep_scale = 0.0 * self.logit_scale.sum()
        if len(embeddings) == 0:
            return self.empty_loss(embeddings, "the batch is empty") + keep_scale
        sim = self.distance(embeddings, ref_embeddings)  # (N, M)
        if not self.distance.higher_is_closer:
            sim = -sim
        logits = logit_multiplier(self.logit_scale, self.max_logit_scale, sim.dtype) * sim
        positive = labels[:, None] == ref_labels[None, :]  # (N, M)
        if positive.all():
            return self.empty_loss(embeddings, "every text is a positive of every image: there is no negative") + keep_scale
        image_to_text, _ = multi_positive_cross_entropy(logits, positive)
        if image_to_text.numel() == 0:
            return self.empty_loss(embeddings, "no image has a matching text in the batch") + keep_scale
        if not self.needs.symmetric:
            return image_to_text.mean()
        text_to_image, _ = multi_positive_cross_entropy(logits.T, positive.T)
        return (image_to_text.mean() + text_to_image.mean()) / 2

    def extra_repr(self) -> str:
        return f"logit_scale={self.logit_scale.detach().cpu().tolist()}, max_logit_scale={self.max_logit_scale}"
