"""Embedding-health metrics of a batch: is the model learning, or failing quietly?

Logged every ``training.logging_steps`` next to the loss (keys ``health_*`` in ``metrics.jsonl``):

- ``alignment``: mean squared distance between normalised positives (Wang & Isola 2020; lower is
  better), ``uniformity``: ``log E exp(-2 |x - y|^2)`` over all pairs (lower is better, more spread).
- ``pos_sim`` / ``neg_sim`` / ``sim_gap``: mean cosine similarity of positive and negative pairs.
- ``norm``: mean embedding norm (before any normalisation the loss does).
- ``variance``: mean per-dimension variance of the normalised embeddings times the dimension:
  about 1 for embeddings spread over the sphere, near 0 when they collapse to one point.
- ``top1``: the share of anchors whose closest reference is a positive (in-batch accuracy).
- ``margin_met``: for the triplet (contrastive) loss, the share of in-batch triplets (pairs)
  that already satisfy the margin: they give zero loss and no gradient.
- ``mined``: with a miner, the share of the batch's tuples it keeps.
- ``grad_norm`` (before clipping) and ``logit_scale`` (the multiplier, when it is learnable).

References:
    Wang and Isola, "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere", ICML 2020.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from textdml.indices import PairIndices, label_masks

logger = logging.getLogger(__name__)

#: ``variance`` below this is a collapse: every embedding points the same way.
COLLAPSE_THRESHOLD = 1e-3


@dataclass
class BatchEmbeddings:
    """One batch as the loss sees it: anchors with labels, and optional reference rows."""

    embeddings: torch.Tensor  # (N, D)
    labels: torch.Tensor  # (N,)
    ref_embeddings: torch.Tensor | None = None  # (M, D)
    ref_labels: torch.Tensor | None = None  # (M,)


def embedding_health(batch: BatchEmbeddings, loss: nn.Module | None = None, miner: nn.Module | None = None,
                     max_rows: int = 256) -> dict[str, float]:
    """Health metrics of one batch of embeddings (see the module docstring for each key).

    Args:
        batch: anchors, labels and (for pairs / triplets / image-text) the reference rows.
        loss: the training loss; the triplet and contrastive losses give ``margin_met``.
        miner: the training miner; gives ``mined``.
        max_rows: anchors (and references) kept, so the cost stays small for large batches.

    Example:
        >>> import torch
        >>> x = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
        >>> h = embedding_health(BatchEmbeddings(x, torch.arange(8), x + 0.01, torch.arange(8)))
        >>> round(h["top1"], 2), h["pos_sim"] > h["neg_sim"]
        (1.0, True)
    """
    embeddings = batch.embeddings[:max_rows].detach().float()
    labels = batch.labels[:max_rows].to(embeddings.device)
    same_set = batch.ref_embeddings is None
    ref = embeddings if same_set else batch.ref_embeddings[: 2 * max_rows].detach().float()  # type: ignore[index]
    ref_labels = None if same_set else batch.ref_labels[: 2 * max_rows].to(embeddings.device)  # type: ignore[index]
    positive, negative = label_masks(labels, ref_labels)  # (N, M)
    unit, unit_ref = F.normalize(embeddings, dim=-1), F.normalize(ref, dim=-1)
    sim = unit @ unit_ref.T  # (N, M)
    rows = unit if same_set else torch.cat([unit, unit_ref])
    results: dict[str, float] = {
        "norm": embeddings.norm(dim=-1).mean().item(),
        "variance": (rows.var(dim=0, unbiased=False).mean() * rows.shape[1]).item(),
        "uniformity": uniformity(rows),
    }
    if positive.any():
        results["alignment"] = (2 - 2 * sim[positive]).clamp_min(0).mean().item()  # |x - y|^2 on the sphere
        results["pos_sim"] = sim[positive].mean().item()
    if negative.any():
        results["neg_sim"] = sim[negative].mean().item()
    if "pos_sim" in results and "neg_sim" in results:
        results["sim_gap"] = results["pos_sim"] - results["neg_sim"]
    has_positive = positive.any(dim=1)
    if has_positive.any():
        masked = sim.masked_fill(~(positive | negative), float("-inf"))
        best = masked.argmax(dim=1)
        hits = positive[torch.arange(len(sim), device=sim.device), best]
        results["top1"] = hits[has_positive].float().mean().item()
    met = margin_met(loss, embeddings, ref, positive, negative, same_set)
    if met is not None:
        results["margin_met"] = met
    if miner is not None:
        share = mined_share(miner, embeddings, labels, None if same_set else ref, ref_labels, positive, negative)
        if share is not None:
            results["mined"] = share
    return {key: round(value, 6) for key, value in results.items() if math.isfinite(value)}


def uniformity(unit: torch.Tensor, t: float = 2.0) -> float:
    """``log E exp(-t |x - y|^2)`` over distinct pairs of normalised rows (Wang & Isola 2020)."""
    if len(unit) < 2:
        return float("nan")
    return torch.pdist(unit).pow(2).mul(-t).exp().mean().log().item()


def margin_met(loss: nn.Module | None, embeddings: torch.Tensor, ref: torch.Tensor, positive: torch.Tensor,
               negative: torch.Tensor, same_set: bool) -> float | None:
    """The share of the batch's tuples whose margin is already met (zero loss, no gradient):
    (anchor, positive, negative) triplets for the triplet loss, pairs for the contrastive loss;
    None for other losses."""
    from textdml.losses.contrastive import ContrastiveLoss
    from textdml.losses.triplet import TripletLoss

    if isinstance(loss, ContrastiveLoss):
        with torch.no_grad():
            dist = loss.as_distance_values(loss.distance(embeddings, None if same_set else ref))  # (N, M)
        met = int((dist[positive] <= loss.pos_margin).sum() + (dist[negative] >= loss.margin).sum())
        total = int(positive.sum() + negative.sum())
        return met / total if total else None
    if not isinstance(loss, TripletLoss):
        return None
    with torch.no_grad():
        dist = loss.distance(embeddings, None if same_set else ref)  # (N, M)
    met, total = 0, 0
    # (rows, P, Q) for every positive p and negative q of each anchor, a few anchors at a time.
    step = max(1, 2**22 // max(1, dist.shape[1] ** 2))
    for start in range(0, len(dist), step):
        part = dist[start : start + step]
        triplets = positive[start : start + step, :, None] & negative[start : start + step, None, :]
        violation = loss.distance.margin(part[:, None, :].expand_as(triplets), part[:, :, None].expand_as(triplets))
        met += int((violation[triplets] + loss.margin <= 0).sum())
        total += int(triplets.sum())
    return met / total if total else None


def mined_share(miner: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor, ref: torch.Tensor | None,
                ref_labels: torch.Tensor | None, positive: torch.Tensor, negative: torch.Tensor) -> float | None:
    """The share of the batch's pairs (or triplets) that the miner keeps."""
    with torch.no_grad():
        indices = miner(embeddings, labels, ref, ref_labels)
    if isinstance(indices, PairIndices):
        total = int(positive.sum() + negative.sum())
    else:
        total = int((positive.sum(dim=1) * negative.sum(dim=1)).sum())
    return len(indices) / total if total else None


def learnable_logit_scale(*modules: nn.Module) -> float | None:
    """``exp(logit_scale)`` of the first module holding a trainable one (a dual encoder, CLIP loss)."""
    for module in modules:
        scale = getattr(module, "logit_scale", None)
        if isinstance(scale, torch.Tensor) and scale.requires_grad and scale.numel() == 1:
            return float(scale.detach().float().exp())
    return None


def embed_batch(task: nn.Module, batch: dict[str, Any], chunk_rows: int = 256) -> BatchEmbeddings:
    """The embeddings of a collated training batch, arranged as the task's loss receives them.

    Rows go through the model ``chunk_rows`` at a time, so a GradCache-sized batch (far more rows
    than fit one forward) is measured in bounded memory.
    """
    from textdml.training.grad_cache import split_features

    model = task.embedder
    device = next(model.parameters()).device

    def embed(fn: Any, features: dict[str, torch.Tensor]) -> torch.Tensor:
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        return torch.cat([fn(chunk) for chunk in split_features(features, chunk_rows)])

    labels = batch.get("labels")
    if "image" in batch:  # ImageTextTask: images are anchors, captions the references
        images = torch.cat([model.embed_images(p.to(device)) for p in batch["image"].split(chunk_rows)])
        if "text" not in batch:
            return BatchEmbeddings(images, labels)
        return BatchEmbeddings(images, labels, embed(model.embed_texts, batch["text"]), batch["ref_labels"])
    inputs = batch["inputs"]
    roles = inputs.split(torch.cat([embed(model, block) for block in inputs.blocks]))
    if len(roles) == 1:
        return BatchEmbeddings(roles[0], labels)
    if "pair_labels" in batch:  # scored pairs: a negative pair's reference gets a label no anchor has
        ids = torch.arange(len(roles[0]))
        ref_labels = torch.where(batch["pair_labels"].cpu() > 0.5, ids, -(ids + 1))
        return BatchEmbeddings(roles[0], ids, roles[1], ref_labels)
    return BatchEmbeddings(roles[0], labels, torch.cat(roles[1:]), batch["ref_labels"])


class HealthMonitor:
    """Measures a training batch's embedding health at logging time, in eval mode and without grad.

    Eval mode draws no dropout masks, so measuring leaves the training RNG (and the run) unchanged.

    Args:
        task: the (unwrapped) ``EmbeddingTask`` or ``ImageTextTask``.
        embed: whether to embed the batch (False under FSDP / DeepSpeed, whose shards cannot run a
            forward on one process): then only ``grad_norm`` and ``logit_scale`` are logged.
        collapse_threshold: ``variance`` below this logs a collapse warning with the step.
    """

    def __init__(self, task: nn.Module, embed: bool = True, collapse_threshold: float = COLLAPSE_THRESHOLD):
        self.task = task
        self.embed = embed
        self.collapse_threshold = collapse_threshold
        self.collapsed_at: int | None = None

    def measure(self, batch: dict[str, Any], step: int, grad_norm: torch.Tensor | float | None = None) -> dict[str, float]:
        """``{"health_<metric>": value}`` for ``batch`` at ``step``."""
        results: dict[str, float] = {}
        if self.embed:
            model = self.task.embedder
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    results = embedding_health(embed_batch(self.task, batch), self.task.loss, self.task.miner)
            finally:
                model.train(was_training)
        if grad_norm is not None:
            results["grad_norm"] = round(float(grad_norm), 6)
        scale = learnable_logit_scale(self.task.embedder, self.task.loss)
        if scale is not None:
            results["logit_scale"] = round(scale, 6)
        variance = results.get("variance")
        if variance is not None and variance < self.collapse_threshold and self.collapsed_at is None:
            self.collapsed_at = step
            logger.warning("embedding collapse at step %d: the per-dimension variance of the embeddings is %.2e "
                           "(below %.0e), so every text gets almost the same vector; lower training.learning_rate, "
                           "check the loss temperature / margin, or add negatives", step, variance,
                           self.collapse_threshold)
        return {f"health_{key}": value for key, value in results.items()}
