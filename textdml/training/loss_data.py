"""What a loss asks of the training data beyond its columns, checked once before training starts."""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from textdml.training.scores import check_score_column, takes_scores


def fit_data_to_loss(loss: Any, data: Any, seed: int = 0) -> None:
    """Check a score column against the loss's range; keep raw texts for a teacher; add input noise.

    Args:
        loss: the built loss.
        data: the ``TrainingData`` of the loop (dataset, roles, collator).
        seed: the run's seed (input noise of denoising losses).
    """
    roles = data.roles
    if takes_scores(loss) and roles.kind == "scores" and isinstance(data.dataset, Dataset):
        check_score_column(data.dataset[roles.score], roles.score, loss)
    role = getattr(loss, "teacher_role", None)
    if role is not None and getattr(loss, role, None) is None and getattr(loss, "takes_teacher_scores", False) \
            and roles.score is None:
        raise ValueError(f"{type(loss).__name__} learns from a teacher: name it with loss.{role}=<folder or Hub id>, "
                         "or give the triplets a 'score' column with the teacher's precomputed scores")
    if role is not None and getattr(loss, role, None) is not None and hasattr(data.collator, "keep_texts"):
        # The teacher has its own tokenizer: it embeds the raw texts of each role.
        data.collator.keep_texts = True
    if getattr(loss, "deletion_ratio", None) is not None and hasattr(data.collator, "deletion_ratio"):
        # Denoising (TSDAE): the collator deletes words from what the encoder sees, seeded per run.
        data.collator.deletion_ratio = loss.deletion_ratio
        data.collator.noise_rng.seed(seed)
