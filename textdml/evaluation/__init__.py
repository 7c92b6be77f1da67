"""Evaluators: retrieval metrics, pair metrics, zero-shot; each is called with a model and returns metrics."""

from textdml.evaluation.retrieval import InformationRetrievalEvaluator, compute_metrics, format_table

__all__ = ["InformationRetrievalEvaluator", "compute_metrics", "format_table"]
