"""Load any saved textdml model: a dual encoder folder or a text embedder (sentence-transformers layout).

Reading a folder sits above the model classes (it picks one), so it lives here rather than in
``textdml.models.saving``, which the classes themselves import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textdml.models.saving import (  # noqa: F401
    DUAL_ENCODER_CONFIG,
    is_dual_adapter_folder,
    is_dual_encoder_folder,
    is_sparse_model_folder,
)


def load_model(name_or_path: str | Path, backend: str = "torch", backend_file: str | None = None) -> Any:
    """``DualEncoder`` when the folder holds a dual-encoder config, ``SparseEmbedder`` for a sparse
    (SPLADE) folder, else ``Embedder``.

    ``backend`` ``"onnx"`` / ``"openvino"`` encodes a text model with the file ``textdml export`` wrote
    (``backend_file`` names another one in the folder); image-text and sparse models run in torch only.
    """
    # Imported here: loading a model pulls in transformers, naming this function must not.
    dual = is_dual_adapter_folder(name_or_path) or is_dual_encoder_folder(name_or_path)
    if dual and backend != "torch":
        raise ValueError(f"model.backend={backend}: {name_or_path} is an image-text model, which textdml runs in "
                         "torch only (textdml export writes text models): set model.backend=torch")
    if is_dual_adapter_folder(name_or_path):
        from textdml.models.adapters import load_dual_adapter

        return load_dual_adapter(name_or_path)
    if is_dual_encoder_folder(name_or_path):
        from textdml.models.dual_encoder import DualEncoder

        return DualEncoder.from_pretrained(name_or_path)
    if is_sparse_model_folder(name_or_path):
        if backend != "torch":
            raise ValueError(f"model.backend={backend}: {name_or_path} is a sparse (SPLADE) model, which textdml "
                             "runs in torch only (textdml export writes dense text models): set model.backend=torch")
        from textdml.models.sparse import SparseEmbedder

        return SparseEmbedder.load(name_or_path)
    from textdml.models.embedder import Embedder

    return Embedder.from_pretrained(name_or_path, backend=backend, backend_file=backend_file)  # type: ignore[arg-type]
