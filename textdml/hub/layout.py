"""The file names of a saved model folder, in one place, and the test of whether a folder holds a model.

Three layouts are written: a text model in the sentence-transformers layout (``modules.json``), an
image-text dual encoder (``textdml_dual_encoder.json``) and a dual encoder's adapter save
(``textdml_dual_adapter.json``); a text model's adapter save is the first with PEFT adapter files.
The names live here, beside the push that uploads such a folder, rather than in ``textdml.models``
(``textdml.models.saving`` re-exports them): ``hub/push.py`` pushes a folder without importing the
models, whose save and push import it.
"""

from __future__ import annotations

import os
from pathlib import Path

# A text model (sentence-transformers layout).
MODULES = "modules.json"
ST_CONFIG = "config_sentence_transformers.json"
SENTENCE_BERT_CONFIG = "sentence_bert_config.json"
TEXTDML_CONFIG = "textdml_config.json"
# An image-text model: its towers, projection and logit parameters; the head's weights.
DUAL_ENCODER_CONFIG = "textdml_dual_encoder.json"
DUAL_ENCODER_HEAD = "dual_encoder_head.safetensors"
TOWER_CONFIG = "tower_config.json"
TOWER_WEIGHTS = "tower.safetensors"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
# Adapter saves: PEFT's own files (a text model), textdml's description of an image-text base.
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# An image-text model's adapter save: the base to rebuild, the adapter settings, and (in
# ADAPTER_WEIGHTS) every weight that trained: adapters, projections, logit scale, unfrozen towers.
DUAL_ADAPTER_CONFIG = "textdml_dual_adapter.json"
MODEL_CARD = "README.md"

# One of these at a folder's top level says it holds a saved model.
MODEL_MARKERS = (MODULES, DUAL_ENCODER_CONFIG, DUAL_ADAPTER_CONFIG)


def is_saved_model(folder: str | os.PathLike) -> bool:
    """True for a folder holding a text model, a dual encoder or a dual encoder's adapter save."""
    return any((Path(folder) / marker).exists() for marker in MODEL_MARKERS)


def is_adapter_save(folder: str | os.PathLike) -> bool:
    """A text model's PEFT adapter or an image-text model's adapter save (not a full model)."""
    folder = Path(folder)
    return (folder / ADAPTER_CONFIG).exists() or (folder / DUAL_ADAPTER_CONFIG).exists()


# A sparse (SPLADE) text model: sentence-transformers' SparseEncoder layout, an MLM transformer then
# SpladePooling in modules.json, and ``model_type: SparseEncoder`` in config_sentence_transformers.json.
SPARSE_MODEL_TYPE = "SparseEncoder"
SPLADE_POOLING = "SpladePooling"


def is_sparse_model_folder(folder: str | os.PathLike) -> bool:
    """True for a folder holding a sparse (SPLADE) model in the ``SparseEncoder`` layout (textdml's or
    sentence-transformers' own save)."""
    import json

    folder = Path(folder)
    st_config, modules = folder / ST_CONFIG, folder / MODULES
    try:
        if st_config.exists() and json.loads(st_config.read_text()).get("model_type") == SPARSE_MODEL_TYPE:
            return True
        return modules.exists() and any(str(module.get("type", "")).endswith(SPLADE_POOLING)
                                        for module in json.loads(modules.read_text()))
    except (json.JSONDecodeError, AttributeError, TypeError):
        return False  # an unreadable file is reported by the loader that reads it, with its name
