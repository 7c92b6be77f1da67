"""Miners: pick informative tuples under no_grad and return named index dataclasses."""

from textdml.indices import PairIndices, TripletIndices, all_pairs, all_triplets, to_pairs, to_triplets
from textdml.miners.angular import AngularMiner
from textdml.miners.base import BaseMiner
from textdml.miners.batch_all import BatchAllMiner
from textdml.miners.batch_easy_hard import BatchEasyHardMiner
from textdml.miners.batch_hard import BatchHardMiner
from textdml.miners.distance_weighted import DistanceWeightedMiner
from textdml.miners.hdc import HDCMiner
from textdml.miners.maximum_loss import MaximumLossMiner
from textdml.miners.multi_similarity import MultiSimilarityMiner
from textdml.miners.pair_margin import PairMarginMiner
from textdml.miners.triplet_margin import TripletMarginMiner
from textdml.miners.uniform_histogram import UniformHistogramMiner

__all__ = [
    "AngularMiner",
    "BaseMiner",
    "BatchAllMiner",
    "BatchEasyHardMiner",
    "BatchHardMiner",
    "DistanceWeightedMiner",
    "HDCMiner",
    "MaximumLossMiner",
    "MultiSimilarityMiner",
    "PairIndices",
    "PairMarginMiner",
    "TripletIndices",
    "TripletMarginMiner",
    "UniformHistogramMiner",
    "all_pairs",
    "all_triplets",
    "to_pairs",
    "to_triplets",
]
