"""Moved to ``textdml.training.tasks.teacher``; this path is kept for one release."""

from textdml.training.tasks.teacher import (
    PACKAGED_MODELS,
    FrozenTeacher,
    TeacherTask,
    gathered_guided_loss,
    resolve_packaged_model,
    teacher_for,
    teacher_loss,
)

__all__ = ["PACKAGED_MODELS", "FrozenTeacher", "TeacherTask", "gathered_guided_loss", "resolve_packaged_model",
           "teacher_for", "teacher_loss"]
