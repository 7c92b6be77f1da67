"""What a loss asks of the training data beyond its columns, checked once before training starts.

Each task's ``prepare_data`` calls the steps of its objective; ``fit_data_to_loss`` runs them all
(the entry point before tasks existed, kept for one release).
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from textdml.losses.needs import LossNeeds, loss_needs
from textdml.training.tasks.scores import check_score_column


def check_scores(loss: Any, needs: LossNeeds, data: Any) -> None:
    """Every score of the training column lies in the loss's range (named row otherwise)."""
    roles = data.roles
    if needs.takes_scores and roles.kind == "scores" and isinstance(data.dataset, Dataset):
        check_score_column(data.dataset[roles.score], roles.score, loss)


def keep_texts_for_teacher(loss: Any, needs: LossNeeds, data: Any) -> None:
    """A teacher model embeds the raw texts (its own tokenizer); without one, the data brings its scores."""
    role = needs.teacher_role
    if role is None:
        return
    if getattr(loss, role, None) is None:  # the model the loss names under its role (e.g. loss.teacher)
        if needs.takes_teacher_scores and data.roles.score is None:
            raise ValueError(f"{type(loss).__name__} learns from a teacher: name it with loss.{role}=<folder or Hub id>, "
                             "or give the triplets a 'score' column with the teacher's precomputed scores")
    elif hasattr(data.collator, "keep_texts"):
        data.collator.keep_texts = True


def add_input_noise(needs: LossNeeds, data: Any, seed: int) -> None:
    """Denoising (TSDAE): the collator deletes words from what the encoder sees, seeded per run."""
    if needs.deletion_ratio is not None and hasattr(data.collator, "deletion_ratio"):
        data.collator.deletion_ratio = needs.deletion_ratio
        data.collator.noise_rng.seed(seed)


def fit_data_to_loss(loss: Any, data: Any, seed: int = 0) -> None:
    """Check a score column against the loss's range; keep raw texts for a teacher; add input noise.

    Args:
        loss: the built loss.
        data: the ``TrainingData`` of the run (dataset, roles, collator).
        seed: the run's seed (input noise of denoising losses).
    """
    needs = loss_needs(loss)
    check_scores(loss, needs, data)
    keep_texts_for_teacher(loss, needs, data)
    add_input_noise(needs, data, seed)
