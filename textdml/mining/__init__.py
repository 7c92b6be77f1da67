"""Hard negatives mined by search, for retriever training."""

from textdml.mining.hard_negatives import ExactSearcher, MiningSettings, Searcher, mine_hard_negatives

__all__ = ["ExactSearcher", "MiningSettings", "Searcher", "mine_hard_negatives"]
