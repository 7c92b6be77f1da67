"""An exported encoder file run by onnxruntime or OpenVINO in the place of the torch encoder.

``Embedder.from_pretrained(folder, backend="onnx")`` puts a :class:`BackendEncoder` where the
``AutoModel`` would be: it takes the tokenised batch and returns the token embeddings, and the
embedder's own pooling, projection and normalisation follow, so the vectors are those of the torch
model up to the export's rounding (or the int8 quantization's). It holds no torch weights: it
encodes, it does not train or save.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from textdml.export.layout import BACKEND_FILES, INSTALL_HINT, file_sha256, read_manifest

OUTPUT_NAME = "last_hidden_state"


def import_backend_package(name: str, purpose: str) -> Any:
    """``import name``, or an ImportError that names the extra to install."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(f"{purpose} needs the {name} package, which is not installed: {INSTALL_HINT}") from err


class BackendEncoder(nn.Module):
    """Token embeddings ``(B, L, H)`` from an ONNX (onnxruntime) or OpenVINO file.

    Args:
        run: numpy inputs by name -> the token embeddings as a numpy array.
        input_names: the inputs the file takes (``input_ids``, ``attention_mask``, maybe ``token_type_ids``).
        config: the encoder's Hugging Face config (``hidden_size`` sizes the pooling).
        backend: ``"onnx"`` or ``"openvino"``.
        file: the file it runs.
        sha256: the file's hash: it stands for the encoder's weights in the model's identity.
    """

    def __init__(self, run: Callable[[dict[str, np.ndarray]], np.ndarray], input_names: list[str], config: Any,
                 backend: str, file: Path, sha256: str):
        super().__init__()
        self.run = run
        self.input_names = input_names
        self.config = config
        self.backend = backend
        self.file = file
        self.backend_sha256 = sha256

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, return_dict: bool = True, **_: Any) -> BaseModelOutput:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if attention_mask is None:
            given["attention_mask"] = torch.ones_like(input_ids)
        if token_type_ids is None:  # a tokenizer without segment ids: one segment, as the torch model assumes
            given["token_type_ids"] = torch.zeros_like(input_ids)
        feeds = {name: given[name].detach().cpu().numpy().astype(np.int64, copy=False) for name in self.input_names}
        hidden = torch.from_numpy(np.ascontiguousarray(self.run(feeds), dtype=np.float32))  # (B, L, H)
        return BaseModelOutput(last_hidden_state=hidden.to(input_ids.device))

    def save_pretrained(self, *_: Any, **__: Any) -> None:
        raise ValueError(f"this model encodes through the exported file {self.file} ({self.backend}), which holds no "
                         "torch weights to save: load the model with model.backend=torch to save or train it")

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}, file={str(self.file)!r}"


def choose_backend_file(folder: Path, backend: str, file_name: str | None = None) -> Path:
    """The file ``backend`` runs: ``file_name`` when given, else the one the export manifest names,
    else sentence-transformers' default (``onnx/model.onnx``, ``openvino/openvino_model.xml``)."""
    if backend not in BACKEND_FILES:
        raise ValueError(f"model.backend={backend!r} is not an exported format; choose among {sorted(BACKEND_FILES)}")
    manifest = read_manifest(folder)
    subfolder, default_file, _ = BACKEND_FILES[backend]
    if file_name is None:
        file_name = manifest["file"] if manifest.get("format") == backend else f"{subfolder}/{default_file}"
    path = folder / file_name
    if not path.is_file():
        pattern = "*.onnx" if backend == "onnx" else "openvino*.xml"
        found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob(pattern))
        raise FileNotFoundError(
            f"model.backend={backend}: {str(folder)!r} has no {file_name}"
            + (f" (its {backend} files: {', '.join(found)}; name one with model.backend_file)" if found else
               f"; export it first: textdml export {folder} --format {backend} --output NEW_FOLDER, and pass "
               "NEW_FOLDER as the model"))
    return path


def load_backend_encoder(folder: str | Path, backend: str, file_name: str | None = None) -> BackendEncoder:
    """The exported encoder of a sentence-transformers ``folder`` (written by ``textdml export``), run by
    onnxruntime (``backend="onnx"``) or OpenVINO (``backend="openvino"``) on the CPU."""
    from transformers import AutoConfig

    folder = Path(folder)
    path = choose_backend_file(folder, backend, file_name)
    manifest = read_manifest(folder)
    sha256 = manifest["sha256"] if manifest.get("file") == path.relative_to(folder).as_posix() else file_sha256(path)
    config = AutoConfig.from_pretrained(folder)
    if backend == "onnx":
        run, input_names = onnx_runner(path)
    else:
        run, input_names = openvino_runner(path)
    return BackendEncoder(run, input_names, config, backend, path, sha256)


def onnx_runner(path: Path) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], list[str]]:
    ort = import_backend_package("onnxruntime", "model.backend=onnx")
    session = ort.InferenceSession(str(path), providers=ort.get_available_providers())
    outputs = [output.name for output in session.get_outputs()]
    output = OUTPUT_NAME if OUTPUT_NAME in outputs else outputs[0]
    return (lambda feeds: session.run([output], feeds)[0]), [i.name for i in session.get_inputs()]


def openvino_runner(path: Path) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], list[str]]:
    ov = import_backend_package("openvino", "model.backend=openvino")
    compiled = ov.Core().compile_model(str(path), "CPU")
    names = [port.get_any_name() for port in compiled.outputs]
    output = compiled.outputs[names.index(OUTPUT_NAME)] if OUTPUT_NAME in names else compiled.outputs[0]
    request = compiled.create_infer_request()
    return (lambda feeds: request.infer(feeds)[output]), [port.get_any_name() for port in compiled.inputs]
