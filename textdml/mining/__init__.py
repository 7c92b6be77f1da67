"""Hard negatives mined by search, for retriever training.

The names below are imported on first use, so ``textdml.mining.settings`` (read by config
validation) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CollectionSearcher": "textdml.mining.search",
    "CorpusSearcher": "textdml.mining.search",
    "ExactSearcher": "textdml.mining.search",
    "MiningSettings": "textdml.mining.settings",
    "Searcher": "textdml.mining.search",
    "mine_hard_negatives": "textdml.mining.hard_negatives",
    "mining_documents": "textdml.mining.hard_negatives",
    "open_collection_searcher": "textdml.mining.collection_search",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'textdml.mining' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
