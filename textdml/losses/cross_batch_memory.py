from __future__ import annotations

from typing import Any, ClassVar

import torch

from textdml.indices import PairIndices, TripletIndices, TupleIndices, all_pairs
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.miners.base import BaseMiner
from textdml.registry import LOSSES, MINERS


def drop_self_comparisons(indices: TupleIndices, slots: torch.Tensor) -> TupleIndices:
    """Remove the tuples whose positive is the anchor's own copy in the memory (``slots[anchor]``)."""
    if isinstance(indices, PairIndices):
        keep = indices.positive != slots[indices.anchor_pos]
        return PairIndices(indices.anchor_pos[keep], indices.positive[keep], indices.anchor_neg, indices.negative)
    keep = indices.positive != slots[indices.anchor]
    return TripletIndices(indices.anchor[keep], indices.positive[keep], indices.negative[keep])


@LOSSES.register("cross_batch_memory")
class CrossBatchMemory(BaseLoss):
    """Cross-batch memory (XBM): a pair/tuple loss against a queue of embeddings from past batches.

    Embeddings drift slowly once training settles, so those of the last few thousand samples are
    still good references. Each call enqueues the batch (detached) into a FIFO memory of
    ``memory_size`` rows, then computes the wrapped loss with the batch as anchors and the whole
    memory, the batch included, as references: every anchor sees ``memory_size`` candidates
    instead of one batch. A row is never its own positive. Gradients flow through the anchors
    only; the memory is a constant.

    Formula: ``L = loss(batch, labels, ref=memory, ref_labels=memory_labels, indices=miner(batch, memory))``.

    Args:
        loss: a pair/tuple loss that takes mined tuples (contrastive, triplet, multi-similarity,
            NT-Xent, SupCon, ...), as an object or a config dict (``{"name": "contrastive"}``).
        embedding_size: the embedding dimension ``D``.
        memory_size: how many past rows the queue keeps (the paper uses several thousand).
        miner: optional miner run on (batch, memory); every pair is used without one. An object
            or a config dict.

    Inputs:
        Labelled rows. The queue is saved in ``state_dict`` (buffers), so a checkpoint resumes it;
        ``reset_queue()`` empties it.

    Requirements:
        Labels must name the same item across batches (class ids, not in-batch positions), and
        a batch may not exceed ``memory_size`` rows. Start it once embeddings stop moving fast
        (the paper warms up without memory for a few thousand steps).

    Conventions:
        As pytorch-metric-learning: the batch is enqueued before the loss, so it is compared with
        itself too. Miners and losses get the memory as ``ref_embeddings``; indices passed to
        ``forward`` are not accepted (give the miner to the wrapper). The memory is stored in
        float32 whatever the input precision.

    References:
        Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020.
        Code: https://github.com/MalongTech/research-xbm

    Example:
        >>> import torch
        >>> from textdml.losses.contrastive import ContrastiveLoss
        >>> loss = CrossBatchMemory(ContrastiveLoss(), embedding_size=8, memory_size=32)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(
        input_kinds=("labelled",),
        gathers=False,  # the memory queue already spans batches; gathering would mix devices into it
    )
    citation = """@inproceedings{wang2020cross,
  title={Cross-Batch Memory for Embedding Learning},
  author={Wang, Xun and Zhang, Haozhi and Huang, Weilin and Scott, Matthew R},
  booktitle={CVPR},
  year={2020}
}"""

    embedding_memory: torch.Tensor
    label_memory: torch.Tensor
    queue_index: torch.Tensor
    queue_count: torch.Tensor

    def __init__(
        self,
        loss: BaseLoss | dict[str, Any],
        embedding_size: int,
        memory_size: int = 1024,
        miner: BaseMiner | dict[str, Any] | None = None,
    ):
        super().__init__()
        self.loss = LOSSES.build(**loss) if isinstance(loss, dict) else loss
        self.miner = MINERS.build(**miner) if isinstance(miner, dict) else miner
        if not isinstance(self.loss, BaseLoss):
            raise TypeError(f"CrossBatchMemory wraps a BaseLoss, got {type(self.loss).__name__}")
        if not self.loss.needs.accepts_indices:
            raise ValueError(
                f"CrossBatchMemory needs a pair/tuple loss that takes mined tuples (to skip a row's own "
                f"copy in the memory); {type(self.loss).__name__} does not"
            )
        if embedding_size < 1 or memory_size < 1:
            raise ValueError(f"embedding_size and memory_size must be >= 1, got {embedding_size}, {memory_size}")
        self.embedding_size = embedding_size
        self.memory_size = memory_size
        self.register_buffer("embedding_memory", torch.zeros(memory_size, embedding_size))
        self.register_buffer("label_memory", torch.zeros(memory_size, dtype=torch.long))
        # Next slot to write and number of filled slots: buffers too, so a checkpoint resumes the queue.
        self.register_buffer("queue_index", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_count", torch.zeros((), dtype=torch.long))

    def reset_queue(self) -> None:
        """Empty the memory (e.g. when the encoder changes so much that old embeddings are stale)."""
        self.embedding_memory.zero_()
        self.label_memory.zero_()
        self.queue_index.zero_()
        self.queue_count.zero_()

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        indices: TupleIndices | None = None,
    ) -> torch.Tensor:
        if labels is None:
            raise ValueError("CrossBatchMemory needs labels that name the same item across batches")
        if ref_embeddings is not None or ref_labels is not None:
            raise ValueError("CrossBatchMemory supplies its own references (the memory); pass no ref_embeddings")
        if indices is not None:
            raise ValueError("CrossBatchMemory mines against its memory: give the miner to CrossBatchMemory(miner=...)")
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_size:
            raise ValueError(f"embeddings must be (N, {self.embedding_size}), got shape {tuple(embeddings.shape)}")
        if len(embeddings) > self.memory_size:
            raise ValueError(f"a batch of {len(embeddings)} rows does not fit a memory of {self.memory_size}")
        return super().forward(embeddings, labels)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        slots = self.enqueue(embeddings, labels)
        return self.loss_against_memory(embeddings, labels, slots)

    @torch.no_grad()
    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Write the batch over the oldest rows and return the memory slot of each row."""
        if self.embedding_memory.device != embeddings.device:
            # Move the queue only: moving the wrapped loss would detach its parameters from the optimiser.
            for name in ("embedding_memory", "label_memory", "queue_index", "queue_count"):
                setattr(self, name, getattr(self, name).to(embeddings.device))
        slots = (self.queue_index + torch.arange(len(embeddings), device=embeddings.device)) % self.memory_size
        self.embedding_memory[slots] = embeddings.detach().to(self.embedding_memory.dtype)
        self.label_memory[slots] = labels.long()
        self.queue_index.copy_((self.queue_index + len(embeddings)) % self.memory_size)
        self.queue_count.add_(len(embeddings)).clamp_(max=self.memory_size)
        return slots

    def loss_against_memory(self, embeddings: torch.Tensor, labels: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """The wrapped loss of the batch against the filled part of the memory (slots in the batch)."""
        # Until the queue wraps around, the filled slots are the first queue_count ones.
        count = int(self.queue_count)
        memory = self.embedding_memory[:count].to(embeddings.dtype)  # (M, D)
        memory_labels = self.label_memory[:count]  # (M,)
        if self.miner is None:
            mined = all_pairs(labels, memory_labels)
        else:
            mined = self.miner(embeddings, labels, memory, memory_labels)
        mined = drop_self_comparisons(mined, slots)
        return self.loss(embeddings, labels, ref_embeddings=memory, ref_labels=memory_labels, indices=mined)

    def parameter_groups(self, lr: float) -> list[dict]:
        return self.loss.parameter_groups(lr)

    def extra_repr(self) -> str:
        return f"embedding_size={self.embedding_size}, memory_size={self.memory_size}"
