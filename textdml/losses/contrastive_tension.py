from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.info_nce import multi_positive_cross_entropy
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import mined_pair_masks
from textdml.registry import LOSSES


@LOSSES.register("contrastive_tension")
class ContrastiveTensionLoss(BaseLoss):
    """Contrastive tension: two copies of the model must agree on a sentence and disagree on others.

    Unsupervised: the task trains a twin of the model (a copy made at the start, trained beside
    it, never saved) and embeds every sentence with both. A sentence's two embeddings are a
    positive pair; other sentences of the batch are negatives. Only the model itself is saved.

    Formula (in-batch, default): ``L = (CE(s * cos(t_i, m_j), i) + CE over columns) / 2`` with
    ``t`` the twin's, ``m`` the model's embeddings and ``s`` a learnable scale; the original form
    (``in_batch_negatives=False``) is ``sum BCE(sigmoid(t_i . m_j), [same sentence])`` over the pairs.

    Args:
        in_batch_negatives: cross-entropy over the batch (sentence-transformers'
            ``ContrastiveTensionLossInBatchNegatives``); False: binary cross-entropy on dot products
            (``ContrastiveTensionLoss``; the pairs are every pair of the batch, or mined ``indices``).
        scale: the initial inverse temperature of the in-batch form.
        learn_scale: learn the scale (stored as a log, as the reference code).

    Inputs:
        Plain sentences (one ``anchor`` column): ``embeddings`` the twin's, ``ref_embeddings`` the
        model's, rows with equal labels (equal texts) are positives.

    Requirements:
        Unlabelled in-domain sentences; a batch without duplicate sentences.

    References:
        Carlsson et al., "Semantic Re-tuning with Contrastive Tension", ICLR 2021;
        sentence-transformers' ``ContrastiveTensionLoss(InBatchNegatives)``.

    Example:
        >>> import torch
        >>> loss = ContrastiveTensionLoss()
        >>> twin, model, labels = torch.randn(4, 8), torch.randn(4, 8), torch.arange(4)
        >>> loss(twin, labels, ref_embeddings=model, ref_labels=labels).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(
        input_kinds=("texts",),
        accepts_indices=True,
        # The task trains a copy of the model beside it and passes its embeddings as ``embeddings``.
        twin=True,
    )
    citation = """@inproceedings{carlsson2021semantic,
  title={Semantic Re-tuning with Contrastive Tension},
  author={Carlsson, Fredrik and Cuba Gyllensten, Amaru and Gogoulou, Evangelia and Hellqvist, Erik Ylip{\\"a}{\\"a} and Sahlgren, Magnus},
  booktitle={International Conference on Learning Representations},
  year={2021}
}"""

    def __init__(self, in_batch_negatives: bool = True, scale: float = 20.0, learn_scale: bool = True):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.in_batch_negatives = in_batch_negatives
        self.needs = dataclasses.replace(self.needs, symmetric=in_batch_negatives)
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("logit_scale", log_scale)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        if same_set:
            raise ValueError("ContrastiveTensionLoss compares the twin's embeddings (embeddings) with the model's "
                             "(ref_embeddings): pass both")
        if not self.in_batch_negatives:
            return self.binary_loss(embeddings, labels, ref_embeddings, ref_labels, indices)
        if indices is not None:
            raise ValueError("ContrastiveTensionLoss(in_batch_negatives=True) does not take mined tuples")
        logits = F.normalize(embeddings, dim=-1) @ F.normalize(ref_embeddings, dim=-1).T * self.logit_scale.exp()
        if len(labels) > 1 and torch.equal(labels, ref_labels) and len(labels.unique()) == len(labels):
            # Every sentence once (the usual batch): sentence i's only positive is row / column i, so
            # each direction is plain cross-entropy, one log-sum-exp instead of the multi-positive two.
            rows = torch.arange(len(labels), device=labels.device)
            loss = F.cross_entropy(logits, rows)
            return (loss + F.cross_entropy(logits.T, rows)) / 2 if self.needs.symmetric else loss
        positive = labels[:, None] == ref_labels[None, :]  # (N, M)
        if bool(positive.all()):
            return self.empty_loss(embeddings, "every sentence of the batch is the same: there is no negative")
        losses, _ = multi_positive_cross_entropy(logits, positive)
        if losses.numel() == 0:
            return self.empty_loss(embeddings, "no sentence has its own pair in the batch")
        loss = losses.mean()
        if self.needs.symmetric:
            backward, _ = multi_positive_cross_entropy(logits.T, positive.T)
            loss = (loss + backward.mean()) / 2
        return loss

    def binary_loss(self, embeddings: torch.Tensor, labels: torch.Tensor, ref_embeddings: torch.Tensor,
                    ref_labels: torch.Tensor, indices: TupleIndices | None) -> torch.Tensor:
        """Summed binary cross-entropy of ``sigmoid(dot)`` on positive (1) and negative (0) pairs."""
        logits = embeddings @ ref_embeddings.T  # (N, M)
        positive, negative = mined_pair_masks(indices, labels, ref_labels, tuple(logits.shape))
        if not positive.any() and not negative.any():
            return self.empty_loss(embeddings, "no pair to score")
        targets = positive.to(logits.dtype)
        terms = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return terms[positive | negative].sum()
