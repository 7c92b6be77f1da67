from __future__ import annotations

import torch
import torch.nn.functional as F

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.ops import aligned_cosine
from textdml.registry import LOSSES


@LOSSES.register("mega_batch_margin")
class MegaBatchMarginLoss(BaseLoss):
    """MegaBatch margin: each anchor's hardest in-batch negative must stay below a margin.

    Every anchor is pulled towards its positive until their cosine reaches ``positive_margin``, and
    pushed from its hardest negative in the (mega) batch, the most similar reference row of another
    label, until that cosine falls below ``negative_margin``. Large batches find harder negatives;
    use ``training.grad_cache`` to grow them beyond memory (sentence-transformers' mini-batched mode).

    Formula: ``L = mean_i [relu(m_pos - cos(a_i, p_i)) + relu(max_{n != i} cos(a_i, r_n) - m_neg)]``.

    Args:
        positive_margin: the cosine a positive pair should reach.
        negative_margin: the cosine the hardest negative should stay under.

    Inputs:
        Pairs (the other anchors' positives are the negatives), triplets (hard negatives join the
        search), or labelled rows (with or without ``ref_embeddings``). With several positives per
        anchor, the least similar one is used.

    Requirements:
        Large batches (the "mega batch" of the paper); a no-duplicates sampler for pairs.

    References:
        Wieting & Gimpel, "ParaNMT-50M: Pushing the Limits of Paraphrastic Sentence Embeddings with
        Millions of Machine Translations", ACL 2018; sentence-transformers' ``MegaBatchMarginLoss``.

    Example:
        >>> import torch
        >>> loss = MegaBatchMarginLoss()
        >>> anchors, positives = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss(anchors, ref_embeddings=positives).shape
        torch.Size([])
    """

    citation = """@inproceedings{wieting-gimpel-2018-paranmt,
  title={ParaNMT-50M: Pushing the Limits of Paraphrastic Sentence Embeddings with Millions of Machine Translations},
  author={Wieting, John and Gimpel, Kevin},
  booktitle={Proceedings of the 56th Annual Meeting of the Association for Computational Linguistics},
  year={2018}
}"""

    def __init__(self, positive_margin: float = 0.8, negative_margin: float = 0.3):
        super().__init__()
        self.positive_margin = positive_margin
        self.negative_margin = negative_margin

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        same = labels[:, None] == ref_labels[None, :]  # (N, M): positives, and a row itself (never a negative)
        positive = same.clone().fill_diagonal_(False) if same_set else same
        # A row has a negative unless every ref row carries its label: O(N + M) from the label range.
        low, high = torch.aminmax(ref_labels)
        usable = positive.any(dim=1) & ((labels != low) | (labels != high))
        usable_rows = int(usable.sum())
        if not usable_rows:
            return self.empty_loss(embeddings, "no anchor has both a positive and a negative in the batch")
        with torch.no_grad():
            # Which ref rows are hardest: ranking a row's refs needs only the refs normalised. The
            # two chosen cosines are then recomputed with a graph, so the backward touches 2N rows,
            # not the (N, M) matrix (same value and gradient; at exact ties the gradient goes to
            # one of the tied rows, as sentence-transformers' max, not split between them).
            sim = embeddings @ F.normalize(ref_embeddings, dim=-1).T  # (N, M)
            hardest_positive = torch.where(positive, sim, float("inf")).min(dim=1).indices  # (N,)
            hardest_negative = sim.masked_fill_(same, float("-inf")).max(dim=1).indices  # (N,)
        chosen = F.embedding(torch.stack([hardest_positive, hardest_negative]), ref_embeddings)  # (2, N, D)
        cosines = aligned_cosine(embeddings, chosen)  # (2, N)
        losses = F.relu(self.positive_margin - cosines[0]) + F.relu(cosines[1] - self.negative_margin)
        # Every row usable (the usual batch): a plain mean, without the boolean gather.
        return losses.mean() if usable_rows == len(losses) else losses[usable].mean()
