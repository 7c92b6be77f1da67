"""Shared maths of the classification and proxy losses (the losses that own one vector per class).

- ``ClassLevelLoss``: labelled rows only, class ids checked against ``num_classes``, reference
  rows (other devices, a second view) treated as more labelled rows.
- ``CosineSoftmaxLoss``: cross-entropy over scaled cosines to the class vectors, with a margin on
  the target class; L-Softmax, SphereFace, CosFace, ArcFace, NormSoftmax, ProxyNCA and SoftTriple
  differ only in the margin, the scale and how several centres of a class are pooled.
- ``new_class_weights``, ``cosine_to_rows``, ``angle_of``, ``multiple_angle_cosine``,
  ``large_margin_cosine``: the small pieces the losses share.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds

WeightInit = Literal["normal", "kaiming_normal", "kaiming_uniform"]

# Cosines are clamped this far inside [-1, 1] before acos: acos has an infinite slope at +-1, and
# an embedding lying exactly on its class vector must not give a NaN gradient.
ACOS_EPS = 1e-7


def new_class_weights(rows: int, embedding_size: int, init: WeightInit = "normal") -> nn.Parameter:
    """A ``(rows, embedding_size)`` parameter of class vectors (proxies, class weights, centres).

    The inits follow the papers' code (and pytorch-metric-learning's defaults): ``normal`` is
    N(0, 1); ``kaiming_normal`` is N(0, std=sqrt(2 / rows)) (Proxy-Anchor); ``kaiming_uniform`` is
    U(-1/sqrt(rows), 1/sqrt(rows)) (SoftTriple). Only the direction of a row matters to a cosine
    loss, but the norm sets how fast an optimiser turns it.
    """
    weight = torch.empty(rows, embedding_size)
    if init == "normal":
        nn.init.normal_(weight)
    elif init == "kaiming_normal":
        nn.init.normal_(weight, std=math.sqrt(2.0 / rows))
    elif init == "kaiming_uniform":
        bound = 1.0 / math.sqrt(rows)
        nn.init.uniform_(weight, -bound, bound)
    else:
        raise ValueError(f"unknown init {init!r}: use 'normal', 'kaiming_normal' or 'kaiming_uniform'")
    return nn.Parameter(weight)


def cosine_to_rows(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Cosine between every embedding and every weight row -> (N, R)."""
    # The parameter follows the (float32 or float64) embeddings, whatever dtype the module was cast to.
    weight = weight.to(embeddings.dtype)
    return F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T


def angle_of(cos: torch.Tensor) -> torch.Tensor:
    """The angle in radians whose cosine is ``cos``, safe at +-1."""
    return torch.acos(cos.clamp(-1 + ACOS_EPS, 1 - ACOS_EPS))


def multiple_angle_cosine(cos: torch.Tensor, multiple: int) -> torch.Tensor:
    """``cos(m * theta)`` from ``cos(theta)`` as the Chebyshev polynomial ``T_m(cos(theta))``.

    The same polynomial as L-Softmax's multiple-angle formula (its Eq. 7), built by the recurrence
    ``T_{n+1} = 2 c T_n - T_{n-1}``; unlike ``cos(m * acos(c))`` it is smooth at ``c = +-1``.
    """
    previous, current = torch.ones_like(cos), cos
    if multiple == 0:
        return previous
    for _ in range(multiple - 1):
        previous, current = current, 2 * cos * current - previous
    return current


def large_margin_cosine(cos: torch.Tensor, margin: int) -> torch.Tensor:
    """L-Softmax's ``psi(theta) = (-1)^k cos(m theta) - 2k`` for ``theta in [k pi/m, (k+1) pi/m]``.

    ``psi`` equals ``cos(m theta)`` on ``[0, pi/m]`` and continues it as a decreasing function on
    the whole ``[0, pi]`` (used by L-Softmax and SphereFace).
    """
    with torch.no_grad():
        # The branch index only selects a piece; the gradient flows through cos(m theta).
        k = torch.floor(angle_of(cos) * margin / math.pi)
    sign = 1 - 2 * torch.remainder(k, 2)
    return sign * multiple_angle_cosine(cos, margin) - 2 * k


class ClassLevelLoss(BaseLoss):
    """Base of the losses that learn one vector (or a few) per class: labelled rows only.

    Reference rows are more labelled rows (rows gathered from other devices, a second view) and
    are concatenated to the embeddings; labels must be class ids ``0 .. num_classes - 1``.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).
    """

    needs: ClassVar[LossNeeds] = LossNeeds(
        input_kinds=("labelled",),
        gathers=False,  # class weights already see every device through DDP
    )

    def __init__(self, num_classes: int, embedding_size: int):
        super().__init__()
        if num_classes < 1 or embedding_size < 1:
            raise ValueError(
                f"{type(self).__name__}: num_classes and embedding_size must be >= 1, "
                f"got {num_classes} and {embedding_size}"
            )
        self.num_classes = num_classes
        self.embedding_size = embedding_size

    def resolve_labels(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None,
        ref_embeddings: torch.Tensor | None,
        ref_labels: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Pairing rows by position has no class ids to learn from.
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs class labels (ids 0..num_classes-1)")
        return super().resolve_labels(embeddings, labels, ref_embeddings, ref_labels)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        if not same_set:
            embeddings = torch.cat([embeddings, ref_embeddings])
            labels = torch.cat([labels, ref_labels])
        self.check_inputs(embeddings, labels)
        if len(embeddings) == 0:
            # Touch the parameters too, so that DDP sees a gradient for every one of them.
            keep_graph = sum((p.sum() for p in self.parameters()), torch.zeros((), device=embeddings.device))
            return self.empty_loss(embeddings, "the batch is empty") + keep_graph * 0.0
        return self.class_loss(embeddings, labels.long())

    def check_inputs(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        name = type(self).__name__
        if embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"{name}: embeddings have dim {embeddings.shape[1]}, expected embedding_size={self.embedding_size}"
            )
        if labels.is_floating_point():
            raise ValueError(f"{name}: labels must be integer class ids, got dtype {labels.dtype}")
        out_of_range = (labels < 0) | (labels >= self.num_classes)
        if out_of_range.any():
            label = labels[out_of_range][0].item()
            raise ValueError(
                f"{name}: label {label} is out of range for num_classes={self.num_classes} "
                f"(labels must be class ids 0..{self.num_classes - 1})"
            )

    def class_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss on all labelled rows: ``embeddings`` (N, D) float, ``labels`` (N,) valid class ids."""
        raise NotImplementedError


class CosineSoftmaxLoss(ClassLevelLoss):
    """Cross-entropy over scaled cosines to class vectors, with a margin on the target class.

    ``weight`` holds ``centers_per_class`` rows per class, class-major (row ``c * K + k``); the
    cosines to a class's centres are pooled into one class cosine (max by default). Subclasses
    choose the margin (``target_logit``) and the scaling (``scale_logits``).

    Args:
        num_classes: the number of classes.
        embedding_size: the embedding dimension.
        scale: the factor on the logits (the inverse of a softmax temperature).
        centers_per_class: centres (sub-centres) per class.
        init: how the class vectors are initialised (see ``new_class_weights``).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        scale: float,
        centers_per_class: int = 1,
        init: WeightInit = "normal",
    ):
        super().__init__(num_classes, embedding_size)
        if scale <= 0:
            raise ValueError(f"{type(self).__name__}: scale must be > 0, got {scale}")
        if centers_per_class < 1:
            raise ValueError(f"{type(self).__name__}: centres per class must be >= 1, got {centers_per_class}")
        self.scale = scale
        self.centers_per_class = centers_per_class
        self.weight = new_class_weights(num_classes * centers_per_class, embedding_size, init)

    def class_cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine of every embedding to every class -> (N, C)."""
        cos = cosine_to_rows(embeddings, self.weight)  # (N, C * K)
        if self.centers_per_class == 1:
            return cos  # nothing to pool (and a max over an axis of one is not free)
        return self.pool_centers(cos.view(len(embeddings), self.num_classes, self.centers_per_class))

    def pool_centers(self, cos: torch.Tensor) -> torch.Tensor:
        """(N, C, K) cosines to each centre -> (N, C): the closest centre (sub-center ArcFace)."""
        return cos.max(dim=2).values

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        """The margin: the target-class cosine (N,) -> the value that replaces it. No margin here."""
        return cos

    def scale_logits(self, logits: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine logits with the margin applied (N, C) -> what goes into the softmax."""
        return logits * self.scale

    def class_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.class_cosine(embeddings)  # (N, C)
        target = labels[:, None]
        with_margin = self.target_logit(cos.gather(1, target).squeeze(1))  # (N,)
        logits = cos.scatter(1, target, with_margin[:, None])
        return F.cross_entropy(self.scale_logits(logits, embeddings), labels)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, "
            f"scale={self.scale}, centers_per_class={self.centers_per_class}"
        )
