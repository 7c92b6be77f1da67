"""Miners: pick informative tuples under no_grad and return named index dataclasses."""

from textdml.miners.base import BaseMiner, PairIndices, TripletIndices, all_pairs, all_triplets, to_pairs, to_triplets

__all__ = ["BaseMiner", "PairIndices", "TripletIndices", "all_pairs", "all_triplets", "to_pairs", "to_triplets"]
