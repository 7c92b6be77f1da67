from __future__ import annotations

import torch
import torch.nn.functional as F

from textdml.losses._scored import ScoredPairLoss
from textdml.registry import LOSSES


def angle_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|cos(a, b) + sin-term(a, b)|`` of L2-normalised rows (AnglE's complex-space similarity).

    Dimension ``k`` and ``k + D/2`` form the real and imaginary part of one complex number; the
    sine term is the imaginary part of the normalised complex product. An odd ``D`` is padded with
    a zero, as the reference code does.
    """
    if a.shape[-1] % 2:
        a, b = F.pad(a, (0, 1)), F.pad(b, (0, 1))
    # cos + sin = (a . b + a_im . b_re - a_re . b_im) / (|a| |b|) = a . (b + turned b) / (|a| |b|) with
    # turned b = (-b_im, b_re): one dot product of the raw rows, divided by the norms (F.normalize's
    # eps), as aligned_cosine does: no normalised copies to write and backpropagate through.
    b_re, b_im = b.chunk(2, dim=-1)
    turned = torch.cat([b_re - b_im, b_im + b_re], dim=-1)  # (N, D) b plus b turned by 90 degrees
    norms = torch.linalg.vector_norm(a, dim=-1).clamp_min(1e-12) * torch.linalg.vector_norm(b, dim=-1).clamp_min(1e-12)
    return ((a * turned).sum(dim=-1) / norms).abs()


@LOSSES.register("angle")
class AnglELoss(ScoredPairLoss):
    """AnglE: CoSENT's ranking objective on an angle difference in complex space.

    The cosine saturates near +-1, where its gradient vanishes; AnglE ranks pairs by a similarity
    built from the angle between the two embeddings read as complex vectors, which keeps a
    gradient there. Pairs are ranked against their gold scores exactly as in CoSENT.

    Formula: ``L = log(1 + sum_{(i, j): y_i > y_j} exp(scale * (s(a_j, b_j) - s(a_i, b_i))))`` with
    ``s = |cos + sin-term|`` (see :func:`angle_similarity`).

    Args:
        scale: the inverse temperature (default 20).
        score_range: the range gold scores must lie in ([-1, 1] by default, as sentence-transformers asks).

    Inputs:
        Scored pairs (columns ``anchor, positive, score``), as :class:`~textdml.losses.cosent.CoSENTLoss`.

    Requirements:
        Use it beside an in-batch-negatives loss (``multiple_losses`` with ``info_nce``), as the paper.

    References:
        Li & Li, "AoE: Angle-optimized Embeddings for Semantic Textual Similarity", ACL 2024
        (arXiv 2309.12871); the sign convention of the authors' code (github.com/SeanLee97/AnglE),
        as sentence-transformers' ``AnglELoss`` (same value and gradient).

    Example:
        >>> import torch
        >>> loss = AnglELoss()
        >>> first, second = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss(first, torch.tensor([0.9, 0.1, 0.5, 0.3]), ref_embeddings=second).shape
        torch.Size([])
    """

    range_reason = "the range sentence-transformers documents for AnglE's gold scores"
    citation = """@inproceedings{li-li-2024-aoe,
  title={AoE: Angle-optimized Embeddings for Semantic Textual Similarity},
  author={Li, Xianming and Li, Jing},
  booktitle={Proceedings of the 62nd Annual Meeting of the Association for Computational Linguistics},
  year={2024}
}"""

    def pair_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return angle_similarity(a, b)
