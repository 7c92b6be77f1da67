"""Export a text model to ONNX or OpenVINO (optionally int8) and encode with the exported file.

``export_model`` writes the sentence-transformers folder of the model with the backend files where
sentence-transformers' ``backend="onnx"`` / ``"openvino"`` read them; ``load_backend_encoder`` runs
such a file (onnxruntime or OpenVINO) in the place of the torch encoder, so ``model.backend`` picks
what ``textdml index / search / eval`` encode with. Both need the ``export`` extra.
"""

from __future__ import annotations

from textdml.export.layout import BACKENDS, FORMATS, QUANTIZATIONS, read_manifest
from textdml.export.runtime import BackendEncoder, load_backend_encoder
from textdml.export.writer import export_model

__all__ = ["BACKENDS", "FORMATS", "QUANTIZATIONS", "BackendEncoder", "export_model", "load_backend_encoder",
           "read_manifest"]
