from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from textdml.indices import TupleIndices
from textdml.losses._teacher import TeacherLoss
from textdml.losses.info_nce import multi_positive_cross_entropy
from textdml.losses.needs import LossNeeds
from textdml.miners.base import upcast
from textdml.registry import LOSSES

MarginStrategy = Literal["absolute", "relative"]


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


@LOSSES.register("gist_embed")
class GISTEmbedLoss(TeacherLoss):
    """GISTEmbed: in-batch negatives, minus the ones a guide model says are really positives.

    InfoNCE over in-batch candidates (other anchors' positives, hard negatives, and optionally the
    other anchors and the other positives), where any candidate the frozen guide finds more similar
    to the anchor than the anchor's own positive is dropped as a likely false negative.

    Formula: ``L = -log( exp(s(a_i, p_i) / t) / sum_{c kept} exp(s(a_i, c) / t) )``, a candidate
    ``c`` kept unless ``g(a_i, c) > g(a_i, p_i) - margin`` (``g`` the guide's cosine).

    Args:
        guide: the guide model (a folder or Hub id), loaded and run by the task.
        temperature: softmax temperature (0.01 as sentence-transformers).
        margin_strategy: ``absolute`` (threshold ``g - margin``) or ``relative`` (``g - |g| * margin``).
        margin: how far below the positive's guide similarity a candidate still counts as a negative.
        contrast_anchors: also contrast each anchor with the other anchors.
        contrast_positives: also contrast each anchor's positive with the other positives.

    Inputs:
        Pairs or triplets: ``embeddings`` the anchors, ``ref_embeddings`` the positives (rows
        ``[0, num_positives)``; anchor ``i``'s own positive at ``positive_offset + i``) then the hard
        negatives, and the guide's embeddings of the same texts (``teacher_embeddings``,
        ``teacher_ref_embeddings``). With labels, rows sharing a label (equal texts) are extra
        positives, never negatives. Across devices the task gathers every device's positives and
        negatives (and their guide rows) and sets ``positive_offset``; ``anchor_pool`` (every
        device's anchors, with ``teacher_anchor_pool`` and ``anchor_pool_labels``) makes the
        anchor-anchor block span the devices too, so the loss equals the single-process one.

    Requirements:
        A guide that is good at the task (often a larger model); a no-duplicates sampler still helps.

    References:
        Solatorio, "GISTEmbed: Guided In-sample Selection of Training Negatives for Text Embedding
        Fine-tuning", 2024 (arXiv 2402.16829); sentence-transformers' ``GISTEmbedLoss`` (same value
        and gradient on batches without duplicate texts).

    Example:
        >>> import torch
        >>> loss = GISTEmbedLoss()
        >>> anchors, positives = torch.randn(4, 8), torch.randn(4, 8)
        >>> guide_a, guide_p = torch.randn(4, 16), torch.randn(4, 16)
        >>> loss(anchors, ref_embeddings=positives, teacher_embeddings=guide_a, teacher_ref_embeddings=guide_p).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets"), teacher_role="guide")
    citation = """@misc{solatorio2024gistembed,
  title={GISTEmbed: Guided In-sample Selection of Training Negatives for Text Embedding Fine-tuning},
  author={Solatorio, Aivin V.},
  year={2024},
  eprint={2402.16829},
  archivePrefix={arXiv}
}"""

    def __init__(self, guide: str | None = None, temperature: float = 0.01, margin_strategy: MarginStrategy = "absolute",
                 margin: float = 0.0, contrast_anchors: bool = True, contrast_positives: bool = True):
        super().__init__(guide)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if margin_strategy not in ("absolute", "relative"):
            raise ValueError(f"margin_strategy must be 'absolute' or 'relative', got {margin_strategy!r}")
        self.guide = guide
        self.temperature = temperature
        self.margin_strategy: MarginStrategy = margin_strategy
        self.margin = margin
        self.contrast_anchors = contrast_anchors
        self.contrast_positives = contrast_positives

    def false_negatives(self, guide_sim: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        """Candidates the guide scores above the positive's similarity (less the margin)."""
        if self.margin_strategy == "absolute":
            return guide_sim > threshold - self.margin
        return guide_sim > threshold - threshold.abs() * self.margin

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        indices: TupleIndices | None = None,
        teacher_embeddings: torch.Tensor | None = None,
        teacher_ref_embeddings: torch.Tensor | None = None,
        positive_offset: int = 0,
        num_positives: int | None = None,
        anchor_pool: torch.Tensor | None = None,
        teacher_anchor_pool: torch.Tensor | None = None,
        anchor_pool_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        name = type(self).__name__
        if ref_embeddings is None:
            raise ValueError(f"{name} needs ref_embeddings: the positives (then any hard negatives)")
        self.check_shapes(embeddings, ref_embeddings)
        if indices is not None:
            raise ValueError(f"{name} does not take mined tuples; the guide picks the negatives")
        guide_anchors, guide_ref = self.teacher_inputs(embeddings, teacher_embeddings, ref_embeddings,
                                                       teacher_ref_embeddings)
        anchors, ref = upcast(embeddings), upcast(ref_embeddings)
        n, device = len(anchors), anchors.device
        num_positives = n if num_positives is None else num_positives
        if not 0 <= positive_offset <= num_positives - n or num_positives > len(ref):
            raise ValueError(f"{name}: {n} anchors with positives at rows {positive_offset}..{positive_offset + n - 1} "
                             f"do not fit {num_positives} positives among {len(ref)} ref rows")
        if (labels is None) != (ref_labels is None):
            raise ValueError(f"{name}: give labels and ref_labels together (or neither, to pair rows by position)")
        own = torch.arange(n, device=device) + positive_offset  # (N,) each anchor's own positive row
        if labels is None:
            labels = own
            ref_labels = torch.cat([torch.arange(num_positives, device=device),
                                    -1 - torch.arange(len(ref) - num_positives, device=device)])
        labels, ref_labels = labels.to(device), ref_labels.to(device)  # type: ignore[union-attr]
        rows = torch.arange(n, device=device)

        guide_sim = cosine_matrix(guide_anchors, guide_ref)  # (N, M)
        threshold = guide_sim[rows, own][:, None]  # (N, 1) the guide's similarity of each own positive
        positive = labels[:, None] == ref_labels[None, :]  # (N, M)
        positive[rows, own] = True
        blocks = [cosine_matrix(anchors, ref).masked_fill(self.false_negatives(guide_sim, threshold) & ~positive,
                                                          float("-inf"))]
        targets = [positive]
        if self.contrast_anchors:
            # The anchors to contrast with: this batch's, or every device's (anchor i at positive_offset + i).
            if anchor_pool is None:
                pool, guide_pool, pool_labels, own_anchor = anchors, guide_anchors, labels, rows
            else:
                pool, own_anchor = upcast(anchor_pool), own
                guide_pool = upcast(teacher_anchor_pool.detach()).to(device)  # type: ignore[union-attr]
                pool_labels = (torch.arange(len(pool), device=device) if anchor_pool_labels is None
                               else anchor_pool_labels.to(device))
            same_anchor = labels[:, None] == pool_labels[None, :]
            same_anchor[rows, own_anchor] = True
            dropped = self.false_negatives(cosine_matrix(guide_anchors, guide_pool), threshold) | same_anchor
            blocks.append(cosine_matrix(anchors, pool).masked_fill(dropped, float("-inf")))
            targets.append(torch.zeros_like(dropped))
        if self.contrast_positives:
            own_positive, guide_own = ref[own], guide_ref[own]
            same = labels[:, None] == ref_labels[None, :num_positives]
            same[rows, own] = True
            dropped = self.false_negatives(cosine_matrix(guide_own, guide_ref[:num_positives]), threshold) | same
            blocks.append(cosine_matrix(own_positive, ref[:num_positives]).masked_fill(dropped, float("-inf")))
            targets.append(torch.zeros_like(dropped))
        logits = torch.cat(blocks, dim=1) / self.temperature
        losses, _ = multi_positive_cross_entropy(logits, torch.cat(targets, dim=1))
        return losses.mean()
