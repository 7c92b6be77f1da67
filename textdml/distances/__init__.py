"""Distances and similarities: each returns an (Nq, Nr) matrix and says ``higher_is_closer``."""

from textdml.distances.base import BaseDistance
from textdml.distances.cosine_similarity import CosineSimilarityDistance
from textdml.distances.dot_product import DotProductDistance
from textdml.distances.lp import LpDistance
from textdml.distances.mahalanobis import MahalanobisDistance
from textdml.distances.snr import SNRDistance

__all__ = ["as_distance", "BaseDistance", "CosineSimilarityDistance", "DotProductDistance", "LpDistance", "MahalanobisDistance", "SNRDistance"]


def as_distance(distance: "BaseDistance | str | None", default: "BaseDistance") -> "BaseDistance":
    """Accept a distance object, a registry name (``"lp"``, ``"cosine_similarity"``) or None."""
    if distance is None:
        return default
    if isinstance(distance, str):
        from textdml.registry import DISTANCES

        return DISTANCES.build(name=distance)
    if not isinstance(distance, BaseDistance):
        raise TypeError(f"distance must be a BaseDistance or a registry name, got {type(distance).__name__}")
    return distance
