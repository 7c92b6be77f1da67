from __future__ import annotations

import dataclasses

from textdml.losses.gist_embed import GISTEmbedLoss, MarginStrategy
from textdml.registry import LOSSES


@LOSSES.register("cached_gist_embed")
class CachedGISTEmbedLoss(GISTEmbedLoss):
    """GISTEmbed with GradCache: a large batch (many in-batch negatives) at the memory of a small one.

    The same loss as :class:`GISTEmbedLoss`; the trainer embeds the batch in mini-batches of
    ``mini_batch_size`` without a graph, computes the loss (and the guide's embeddings) once on
    the whole batch, then backpropagates mini-batch by mini-batch (``textdml.training.grad_cache``),
    so the gradient is the full-batch one. Equivalent to ``gist_embed`` with
    ``training.grad_cache=true``.

    Args:
        mini_batch_size: rows embedded at once (memory); the batch size sets the negatives.
        guide, temperature, margin_strategy, margin, contrast_anchors, contrast_positives: as
            :class:`GISTEmbedLoss`.

    References:
        Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", 2021
        (GradCache); sentence-transformers' ``CachedGISTEmbedLoss``.

    Example:
        >>> CachedGISTEmbedLoss(mini_batch_size=16).needs.mini_batch_size
        16
    """

    def __init__(self, guide: str | None = None, temperature: float = 0.01, margin_strategy: MarginStrategy = "absolute",
                 margin: float = 0.0, contrast_anchors: bool = True, contrast_positives: bool = True,
                 mini_batch_size: int = 32):
        super().__init__(guide, temperature, margin_strategy, margin, contrast_anchors, contrast_positives)
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        # The task's GradCache runs with the loss's own mini-batch size.
        self.needs = dataclasses.replace(self.needs, mini_batch_size=mini_batch_size)
