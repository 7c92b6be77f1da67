"""How the shared loss contract (tests/losses/test_contract.py) builds and feeds each registered loss.

A loss is covered by registering it: :func:`case_for` builds any loss whose constructor needs no
argument, or only ``num_classes`` / ``embedding_size``, on labelled rows. A loss that needs more
(another loss to wrap, a paired layout, a deliberate stop-gradient) gets an entry in ``SPECIAL``
with the reason beside it. The per-loss test files keep only what is specific to that loss.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from textdml.losses.base import BaseLoss
from textdml.registry import LOSSES

NUM_CLASSES = 4
DIM = 6
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])  # every class present, unequal class sizes
REF_LABELS = torch.tensor([0, 1, 1, 2, 3, 3, 2])

Layout = Literal["labelled", "pairs", "scored"]
Degenerate = Literal["one_class", "no_positive", "one_pair"]


@dataclass(frozen=True)
class LossCase:
    """One registered loss as the contract sees it."""

    name: str
    build: Callable[..., BaseLoss]  # keyword overrides (e.g. reduction="sum") -> a fresh loss
    # "labelled": embeddings + labels (pairs of a batch share a label); "pairs": anchors + ref rows
    # paired by position, labels=None (CLIP, SigLIP, InfoNCE).
    layout: Layout = "labelled"
    # Whether torch.autograd.gradcheck applies; False where the loss stops gradients on purpose
    # (the reason is in SPECIAL, and the loss's own file checks its gradient another way).
    gradcheck: bool = True
    # Batches with nothing to learn that must warn (DegenerateBatchWarning) and give a zero loss.
    warns_on: tuple[Degenerate, ...] = ("one_class", "no_positive")
    # Class vectors the direction test pulls the embeddings towards (class-level losses).
    class_vectors: Callable[[BaseLoss], list[torch.Tensor]] | None = None
    # Keywords that make the loss a plain mean over its terms (not mean_nonzero): the direction
    # test and the 2-process comparison need a value that moves with every term.
    mean_kwargs: dict[str, Any] = field(default_factory=dict)
    # False for a loss that brings its own reference rows (a memory): ref_embeddings is an error.
    takes_ref: bool = True
    # Reference rows per anchor in the "pairs" layout: 1 (its positive), 2 (and a hard negative).
    ref_rows_per_anchor: int = 1
    # Inputs beyond embeddings / labels / ref (a teacher's or guide's embeddings of the same texts),
    # built from the batch: what the task passes such a loss in training.
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Whether "closer positives lower the loss" applies (not to a loss that learns a teacher's
    # geometry, or ranks graded scores: their own tests check what they learn).
    direction: bool = True
    # False for a loss that needs a model part the contract cannot fake (TSDAE's decoder): only
    # registration, construction and state round trips are checked here, the rest in its file.
    generic: bool = True
    # False for a statistic over all pairs of the batch (a histogram, a variance): across devices
    # each device computes it over its anchors' pairs, an estimate, not the global value.
    exact_across_devices: bool = True
    # Further constructor settings that take another code path (a distance, a variant, the binary
    # form): the direction, dtype and gradient checks run under each of them as well as under the defaults.
    variants: tuple[dict[str, Any], ...] = ()


def needs_classes(cls: type) -> bool:
    return "num_classes" in inspect.signature(cls.__init__).parameters and "embedding_size" in inspect.signature(
        cls.__init__
    ).parameters


def class_weight(loss: BaseLoss) -> list[torch.Tensor]:
    return [loss.weight]


def default_case(name: str) -> LossCase:
    cls = LOSSES.get(name)
    params = inspect.signature(cls.__init__).parameters
    if needs_classes(cls):
        def build(**overrides: Any) -> BaseLoss:
            return cls(num_classes=NUM_CLASSES, embedding_size=DIM, **overrides)

        return LossCase(name, build, warns_on=(), class_vectors=class_weight)
    mean = {"reduction": "mean"} if "reduction" in params else {}
    return LossCase(name, lambda **overrides: cls(**overrides), mean_kwargs=mean)


def cross_batch_memory(**overrides: Any) -> BaseLoss:
    from textdml.losses.contrastive import ContrastiveLoss
    from textdml.losses.cross_batch_memory import CrossBatchMemory

    return CrossBatchMemory(ContrastiveLoss(), embedding_size=DIM, memory_size=16, **overrides)


def multiple_losses(**overrides: Any) -> BaseLoss:
    from textdml.losses.contrastive import ContrastiveLoss
    from textdml.losses.multi_similarity import MultiSimilarityLoss
    from textdml.losses.multiple_losses import MultipleLosses

    return MultipleLosses([ContrastiveLoss(**overrides), MultiSimilarityLoss()], weights=[1.0, 0.5])


def matryoshka(**overrides: Any) -> BaseLoss:
    from textdml.losses.contrastive import ContrastiveLoss
    from textdml.losses.matryoshka import MatryoshkaLoss

    return MatryoshkaLoss(ContrastiveLoss(**overrides), dimensions=[DIM, 4, 2], weights=[1.0, 0.5, 0.25])


def center_vectors(loss: BaseLoss) -> list[torch.Tensor]:
    return [loss.centers, loss.classifier.weight]


def class_major(loss: BaseLoss) -> list[torch.Tensor]:
    return [loss.weight]  # (C * K, D), class-major: filled per class with repeat_interleave


SPECIAL: dict[str, dict[str, Any]] = {
    # Wrappers: built around a loss of the catalogue.
    # The memory is state: every call enqueues (so no gradcheck) and it is the reference set.
    "cross_batch_memory": dict(build=cross_batch_memory, warns_on=(), gradcheck=False, takes_ref=False,
                               mean_kwargs={}),
    "matryoshka": dict(build=matryoshka, mean_kwargs={"reduction": "mean"}, warns_on=()),
    "multiple_losses": dict(build=multiple_losses, mean_kwargs={"reduction": "mean"}, warns_on=()),
    # Positive pairs alone, or negative pairs alone, still carry a loss: nothing is degenerate.
    "contrastive": dict(warns_on=(), variants=({"power": 1.0, "reduction": "mean_nonzero"},)),
    "intra_pair_variance": dict(warns_on=(), exact_across_devices=False, variants=({"distance": "lp"},)),
    "histogram": dict(exact_across_devices=False),
    # Rows are instances: one class is a batch of one instance (still a softmax over it), all
    # distinct labels are N instances, the paper's layout.
    "instance": dict(warns_on=()),
    # Self-supervised on two views of the same rows (by position); its variance and covariance
    # terms are statistics of each device's batch (as the paper's code).
    "vicreg": dict(layout="pairs", warns_on=(), exact_across_devices=False),
    # Positive pairs alone, or negative pairs alone, still carry these losses.
    "ranked_list": dict(warns_on=()),
    "signal_to_noise_ratio_contrastive": dict(warns_on=()),
    # A mean over the pairs that pay the margin, per device (documented in the loss).
    "threshold_consistent_margin": dict(warns_on=(), exact_across_devices=False),
    # The CDF histogram is state updated by every call (so no gradcheck), and per device.
    "dynamic_soft_margin": dict(gradcheck=False, exact_across_devices=False),
    "multi_similarity": dict(warns_on=(), variants=({"distance": "lp"},)),
    "ntxent": dict(variants=({"distance": "lp"},)),
    "supervised_contrastive": dict(variants=({"distance": "lp"},)),
    "pnp": dict(variants=tuple({"variant": variant} for variant in ("Ds", "Dq", "Iu", "Ib"))),
    # Pairs by position: anchor i with ref i; there is no "one class" batch.
    "clip": dict(layout="pairs", warns_on=("one_pair",)),
    "siglip": dict(layout="pairs", warns_on=()),  # sigmoid per pair: one pair still has a positive term
    "info_nce": dict(layout="pairs", warns_on=("one_pair",), variants=({"symmetric": True},)),
    # The pair weights are constants by definition (the paper's stop-gradient); test_circle.py
    # checks the gradient against finite differences with the weights frozen.
    "circle": dict(gradcheck=False),
    "center": dict(class_vectors=center_vectors),
    # The default margin (0.05) is met by every triplet of the contract's batches.
    "triplet": dict(mean_kwargs={"reduction": "mean", "margin": 1.0}, variants=({"swap": True},)),
    "soft_triple": dict(class_vectors=class_major),
}


def teacher_rows(batch: dict[str, Any]) -> dict[str, Any]:
    """A frozen teacher's (or guide's) embeddings of the batch's texts: fixed rows of the same shapes."""
    extra = {"teacher_embeddings": randn(*batch["embeddings"].shape, seed=41, dtype=batch["embeddings"].dtype)}
    if batch.get("ref_embeddings") is not None:
        extra["teacher_ref_embeddings"] = randn(*batch["ref_embeddings"].shape, seed=42,
                                                dtype=batch["ref_embeddings"].dtype)
    return extra


def guide_rows(batch: dict[str, Any]) -> dict[str, Any]:
    """A guide that agrees with the student (GISTEmbed keeps every in-batch negative it ranks below)."""
    extra = {"teacher_embeddings": batch["embeddings"].detach()}
    if batch.get("ref_embeddings") is not None:
        extra["teacher_ref_embeddings"] = batch["ref_embeddings"].detach()
    return extra


TEACHER = dict(layout="pairs", extra=teacher_rows, direction=False, warns_on=(), exact_across_devices=False)
SPECIAL.update({
    # Graded pairs: (embeddings[i], ref_embeddings[i]) with a score each, ranked by score.
    "cosent": dict(layout="scored", direction=False, warns_on=()),
    "angle": dict(layout="scored", direction=False, warns_on=()),
    # Distillation: the teacher's embeddings come with the batch; queries then positives and
    # one negative per query for the losses that compare candidates.
    "mse": TEACHER,
    "margin_mse": {**TEACHER, "ref_rows_per_anchor": 2},
    "distill_kl_div": {**TEACHER, "ref_rows_per_anchor": 2},
    # The guide's embeddings come with the batch (here: the student's own, so it filters nothing).
    "gist_embed": dict(layout="pairs", extra=guide_rows, warns_on=()),
    "cached_gist_embed": dict(layout="pairs", extra=guide_rows, warns_on=()),
    # Unsupervised: the twin's embeddings of sentences against the model's, paired by position.
    "contrastive_tension": dict(layout="pairs", warns_on=("one_pair",), variants=({"in_batch_negatives": False},)),
    "denoising_auto_encoder": dict(generic=False, gradcheck=False, warns_on=()),
    # SPLADE: InfoNCE / MarginMSE by dot product plus FLOPS, a statistic of each device's batch (as
    # sentence-transformers: no gathering across devices). One pair still pays FLOPS: not a zero loss.
    "sparse_info_nce": dict(layout="pairs", warns_on=(), exact_across_devices=False),
    "sparse_margin_mse": {**TEACHER, "ref_rows_per_anchor": 2},
})


def case_for(name: str) -> LossCase:
    case = default_case(name)
    special = SPECIAL.get(name, {})
    return LossCase(**{**case.__dict__, **special})


def catalogue_names() -> list[str]:
    """The registered losses of textdml itself (tests may register throwaway ones)."""
    return [name for name in LOSSES.names() if LOSSES.get(name).__module__.startswith("textdml.losses.")]


def all_cases() -> list[LossCase]:
    return [case_for(name) for name in catalogue_names()]


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def inputs(case: LossCase, dtype: torch.dtype = torch.float32, seed: int = 0, n: int = 8) -> dict[str, Any]:
    """A batch in the case's layout, leaves requiring grad."""
    if case.layout in ("pairs", "scored"):
        half = n // 2
        anchors = randn(half, DIM, seed=seed, dtype=dtype)
        ref = anchors.repeat(case.ref_rows_per_anchor, 1) + 0.5 * randn(half * case.ref_rows_per_anchor, DIM,
                                                                        seed=seed + 1, dtype=dtype)
        batch = {"embeddings": anchors.requires_grad_(), "ref_embeddings": ref.requires_grad_()}
        if case.layout == "scored":
            batch["labels"] = torch.linspace(-0.9, 0.9, half, dtype=dtype)  # graded scores in [-1, 1]
        return with_extra(case, batch)
    labels = LABELS[:n] if n <= len(LABELS) else torch.arange(n) % NUM_CLASSES
    return with_extra(case, {"embeddings": randn(n, DIM, seed=seed, dtype=dtype).requires_grad_(), "labels": labels})


def with_extra(case: LossCase, batch: dict[str, Any]) -> dict[str, Any]:
    return {**batch, **case.extra(batch)} if case.extra is not None else batch


def leaves(batch: dict[str, Any]) -> list[torch.Tensor]:
    return [v for k, v in batch.items() if k in ("embeddings", "ref_embeddings") and v is not None]


def spread(case: LossCase, loss: BaseLoss, noise_scale: float, seed: int = 0) -> dict[str, Any]:
    """A batch whose positives sit ``noise_scale`` apart: smaller means an easier, lower-loss batch."""
    if case.layout == "pairs":
        anchors = randn(4, DIM, seed=seed)
        ref = anchors.repeat(case.ref_rows_per_anchor, 1) + noise_scale * randn(4 * case.ref_rows_per_anchor, DIM,
                                                                                seed=seed + 1)
        return with_extra(case, {"embeddings": anchors, "ref_embeddings": ref})
    # A regular simplex: the classes as far apart as they can be, so "closer positives" is the
    # only thing that changes between two calls.
    centres = 3 * (torch.eye(NUM_CLASSES, DIM) - torch.eye(NUM_CLASSES, DIM).mean(0))
    if case.class_vectors is not None:
        with torch.no_grad():
            for vectors in case.class_vectors(loss):
                vectors.copy_(centres.repeat_interleave(len(vectors) // NUM_CLASSES, dim=0))
    return {"embeddings": centres[LABELS] + noise_scale * randn(len(LABELS), DIM, seed=seed + 3), "labels": LABELS}
