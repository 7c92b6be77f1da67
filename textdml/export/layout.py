"""Where an exported folder keeps its backend files, and the manifest naming the one textdml loads.

The names are those sentence-transformers reads: ``onnx/model.onnx`` and
``openvino/openvino_model.xml`` by default, a quantized file by ``model_kwargs={"file_name": ...}``
(its own int8 exports are named ``model_qint8_<...>.onnx`` the same way). ``textdml_export.json``
records the format, the quantization, the file that ``model.backend`` loads by default and its
SHA-256, which stands for the weights in the model's identity (the vectors a collection holds).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

Format = Literal["onnx", "openvino"]
Quantization = Literal["int8"]
FORMATS: tuple[str, ...] = ("onnx", "openvino")
QUANTIZATIONS: tuple[str, ...] = ("int8",)
BACKENDS: tuple[str, ...] = ("torch", *FORMATS)

MANIFEST = "textdml_export.json"
# Format -> (subfolder, float32 file, int8 file): sentence-transformers' folder and file names.
BACKEND_FILES: dict[str, tuple[str, str, str]] = {
    "onnx": ("onnx", "model.onnx", "model_qint8_quantized.onnx"),
    "openvino": ("openvino", "openvino_model.xml", "openvino_model_qint8_quantized.xml"),
}
INSTALL_HINT = "pip install 'textdml[export]'"


def backend_file(format: str, quantize: str | None) -> str:
    """The file an export writes, relative to its folder, e.g. ``onnx/model_qint8_quantized.onnx``."""
    folder, float_file, int8_file = BACKEND_FILES[format]
    return f"{folder}/{int8_file if quantize else float_file}"


def file_sha256(path: Path) -> str:
    """SHA-256 of a backend file, with its OpenVINO weights (``.bin``) or ONNX external data beside it."""
    digest = hashlib.sha256()
    companions = [path.with_suffix(".bin"), path.with_name(path.name + "_data"), path.with_name(path.name + ".data")]
    for part in [path, *[p for p in companions if p.exists()]]:
        with part.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, format: str, quantize: str | None, source: str) -> dict[str, Any]:
    import textdml

    file = backend_file(format, quantize)
    manifest = {"format": format, "quantize": quantize, "file": file, "sha256": file_sha256(folder / file),
                "source": source, "textdml_version": textdml.__version__}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The export manifest of ``folder`` ({} for a folder textdml did not export)."""
    file = Path(folder) / MANIFEST
    if not file.exists():
        return {}
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON ({err}): export the model again with `textdml export`") from err
    return manifest if isinstance(manifest, dict) else {}
