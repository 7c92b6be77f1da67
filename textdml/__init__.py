"""textdml: deep metric learning for sentence and image-text embeddings.

The public API, importable from the package itself::

    from textdml import Embedder, Trainer, TrainingConfig, losses

Names are resolved on first use (module ``__getattr__``), so ``import textdml`` does not import
torch, transformers or qdrant-client until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it. Submodules (losses, miners, ...) map to themselves.
_EXPORTS: dict[str, str] = {
    # models
    "Embedder": "textdml.models.embedder",
    "DualEncoder": "textdml.models.dual_encoder",
    "create_dual_encoder": "textdml.models.dual_encoder",
    "load_model": "textdml.models.loading",
    "export_model": "textdml.export.writer",
    # training
    "train": "textdml.training.trainer",
    "TrainResult": "textdml.training.loop",
    "Trainer": "textdml.training.trainer",
    # configs
    "RunConfig": "textdml.config",
    "ModelConfig": "textdml.config",
    "DataConfig": "textdml.config",
    "EvalConfig": "textdml.config",
    "TrainingConfig": "textdml.config",
    "IndexConfig": "textdml.config",
    "ConfigError": "textdml.errors",
    "load_run_config": "textdml.config",
    # evaluation
    "InformationRetrievalEvaluator": "textdml.evaluation.retrieval",
    "LabelledRetrievalEvaluator": "textdml.evaluation.build",
    "build_evaluator": "textdml.evaluation.build",
    # mining
    "mine_hard_negatives": "textdml.mining.hard_negatives",
    # Qdrant
    "open_client": "textdml.index.qdrant",
    "index_documents": "textdml.index.qdrant",
    "search": "textdml.index.qdrant",
    # component catalogues
    "losses": "textdml.losses",
    "miners": "textdml.miners",
    "distances": "textdml.distances",
    "evaluation": "textdml.evaluation",
}

# Written out (not derived from _EXPORTS) so linters and IDEs read it; a test keeps the two equal.
__all__ = [
    "__version__",
    "Embedder", "DualEncoder", "create_dual_encoder", "load_model", "export_model",
    "train", "TrainResult", "Trainer",
    "RunConfig", "ModelConfig", "DataConfig", "EvalConfig", "TrainingConfig", "IndexConfig", "ConfigError",
    "load_run_config",
    "InformationRetrievalEvaluator", "LabelledRetrievalEvaluator", "build_evaluator",
    "mine_hard_negatives",
    "open_client", "index_documents", "search",
    "losses", "miners", "distances", "evaluation",
]

if TYPE_CHECKING:  # static tools see the real names; nothing is imported at run time
    from textdml import distances, evaluation, losses, miners
    from textdml.config import (
        DataConfig,
        EvalConfig,
        IndexConfig,
        ModelConfig,
        RunConfig,
        TrainingConfig,
        load_run_config,
    )
    from textdml.errors import ConfigError
    from textdml.evaluation.build import LabelledRetrievalEvaluator, build_evaluator
    from textdml.evaluation.retrieval import InformationRetrievalEvaluator
    from textdml.export.writer import export_model
    from textdml.index.qdrant import index_documents, open_client, search
    from textdml.mining.hard_negatives import mine_hard_negatives
    from textdml.models.dual_encoder import DualEncoder, create_dual_encoder
    from textdml.models.embedder import Embedder
    from textdml.models.loading import load_model
    from textdml.training.loop import TrainResult
    from textdml.training.trainer import Trainer, train


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'textdml' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"textdml.{name}" else getattr(module, name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
