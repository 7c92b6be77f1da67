"""``textdml export``: a saved text model -> its sentence-transformers folder + an ONNX / OpenVINO file.

The encoder goes through torch's own ONNX exporter (``torch.onnx.export``, the ``torch.export``
path with dynamic batch and sequence sizes); int8 is onnxruntime's dynamic quantization
(``quantize_dynamic``, per-channel weights) for ONNX, and NNCF's int8 weight compression for
OpenVINO, whose model comes from the ONNX file through ``openvino.convert_model``. No graph is
written by hand. (``optimum``, which sentence-transformers' own export uses, does not install beside
transformers 5: optimum-onnx needs transformers < 4.58 and optimum-intel < 5.6.)
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from textdml.export.layout import BACKEND_FILES, FORMATS, INSTALL_HINT, QUANTIZATIONS, backend_file, write_manifest

logger = logging.getLogger(__name__)

COMMAND = "textdml export"
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Above this many bytes of weights the ONNX file keeps them beside itself (protobuf's 2 GB limit).
SINGLE_FILE_LIMIT = 1_500_000_000


def check_export_request(format: str | None, quantize: str | None) -> str:
    """The format to write: ``format``, or ``onnx`` when neither it nor ``quantize`` is given."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"--quantize {quantize!r} is not supported; choose among {', '.join(QUANTIZATIONS)}")
    if format is None:
        if quantize is not None:  # int8 means two different things in the two runtimes: no silent pick
            raise ValueError(f"--quantize {quantize} needs --format: onnx (onnxruntime dynamic int8) or openvino "
                             "(OpenVINO with int8 weights)")
        return "onnx"
    if format not in FORMATS:
        raise ValueError(f"--format {format!r} is not supported; choose among {', '.join(FORMATS)}")
    return format


def required_packages(format: str, quantize: str | None) -> list[str]:
    packages = ["onnx", "onnxscript", "onnxruntime"] if format == "onnx" else ["onnx", "onnxscript", "openvino"]
    if format == "openvino" and quantize:
        packages.append("nncf")
    return packages


def check_packages(format: str, quantize: str | None) -> None:
    import importlib.util

    missing = [name for name in required_packages(format, quantize) if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"textdml export --format {format}{' --quantize ' + quantize if quantize else ''} needs "
                          f"{', '.join(missing)}, not installed: {INSTALL_HINT}")


def export_model(model: str | Path, output: str | Path, format: str | None = None, quantize: str | None = None,
                 *, force: bool = False) -> Path:
    """Write ``model`` (a saved text model folder or Hub id) to ``output`` for ``format``.

    ``output`` gets the sentence-transformers folder of the model (weights, tokenizer, pooling,
    normalisation, prompts) and ``onnx/model.onnx`` or ``openvino/openvino_model.xml``; with
    ``quantize="int8"`` also ``onnx/model_qint8_quantized.onnx`` / ``openvino/openvino_model_qint8_quantized.xml``.
    ``SentenceTransformer(output, backend=format)`` loads the float file (``model_kwargs={"file_name": ...}``
    the int8 one); ``textdml`` with ``model.backend=<format>`` loads the file the export wrote last
    (``textdml_export.json`` names it). ``output`` must be new, empty, or an earlier export nobody
    changed since; ``force`` replaces whatever is there.

    Example:
        >>> # export_model("runs/x/final", "runs/x/onnx-int8", format="onnx", quantize="int8")
    """
    from textdml.outputs import check_apart, check_replaceable, seal_output_folder, start_output_folder

    format = check_export_request(format, quantize)
    check_packages(format, quantize)
    out = Path(output)
    if Path(model).exists():
        check_apart(out, Path(model), "export folder", "model folder")
    replace = {"command": COMMAND, "force": force, "instead": "name a new folder with --output"}
    check_replaceable(out, **replace)  # before the slow load; the folder is replaced only after it
    embedder = load_text_model(model)
    embedder.save_pretrained(start_output_folder(out, **replace))
    onnx_file = out / BACKEND_FILES["onnx"][0] / BACKEND_FILES["onnx"][1]
    if format == "onnx":
        export_onnx(out, onnx_file, embedder.max_seq_length)
        if quantize:
            quantize_onnx(onnx_file, out / backend_file("onnx", quantize))
    else:
        with tempfile.TemporaryDirectory(prefix="textdml-export-") as scratch:
            export_onnx(out, Path(scratch) / "model.onnx", embedder.max_seq_length)
            write_openvino(Path(scratch) / "model.onnx", out, quantize)
    manifest = write_manifest(out, format, quantize, str(model))
    seal_output_folder(out)
    logger.info("exported %s to %s (%s)", model, out / manifest["file"], format + (f", {quantize}" if quantize else ""))
    return out


def load_text_model(model: str | Path) -> Any:
    """The torch model to export; an image-text model is refused, naming its towers, before it loads."""
    from textdml.models.loading import load_model
    from textdml.models.saving import is_dual_adapter_folder, is_dual_encoder_folder

    if is_dual_encoder_folder(model) or is_dual_adapter_folder(model):
        raise ValueError(f"{model} is an image-text model: textdml export writes text models only. Neither tower is "
                         "exported (the image tower has no sentence-transformers backend layout; the text tower alone "
                         "would lose the projection into the shared space): encode it with model.backend=torch")
    return load_model(model)


def export_onnx(folder: Path, path: Path, max_seq_length: int) -> None:
    """The encoder saved in ``folder`` -> an ONNX file with inputs named as its tokenizer's and
    ``last_hidden_state`` out, batch and sequence sizes dynamic (what sentence-transformers reads)."""
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    accepted = inspect.signature(encoder.forward).parameters
    names = [name for name in TOKEN_INPUTS if name in accepted and (name in tokenizer.model_input_names
                                                                    or name == "attention_mask")]
    # Two rows of different lengths, padded: neither size may be 1, or the exporter fixes it.
    sample = tokenizer(["an example sentence, long enough to give the exporter several tokens", "a short one"],
                       padding=True, truncation=True, max_length=max_seq_length, return_tensors="pt")
    sample.setdefault("token_type_ids", torch.zeros_like(sample["input_ids"]))
    batch = torch.export.Dim("batch_size")
    sequence = torch.export.Dim("sequence_length", max=max(max_seq_length, sample["input_ids"].shape[1]))
    weight_bytes = sum(p.numel() * p.element_size() for p in encoder.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter prints its progress and warns about its own internals (axis renaming, tracing).
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(TokenEmbeddings(encoder, names), tuple(sample[name] for name in names), str(path),
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_shapes={name: {0: batch, 1: sequence} if name in names else None for name in TOKEN_INPUTS},
                          dynamo=True,
                          external_data=weight_bytes > SINGLE_FILE_LIMIT)


class TokenEmbeddings(nn.Module):
    """The encoder with its inputs in the file's order, returning its token embeddings only."""

    def __init__(self, encoder: nn.Module, names: list[str]):
        super().__init__()
        self.encoder = encoder
        self.names = names

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.encoder(**{name: given[name] for name in self.names}).last_hidden_state  # (B, L, H)


def quantize_onnx(source: Path, target: Path) -> None:
    """onnxruntime's dynamic int8: weights per output channel (per-tensor scales lose ~3x more cosine on
    MiniLM), activations quantized per batch at run time; matrix products only."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It warns on the root logger to pre-process the model first; its pre-processing (symbolic shape
    # inference) does not complete on torch.export graphs, so the advice cannot be followed here.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    finally:
        logging.disable(previous)


def write_openvino(onnx_file: Path, out: Path, quantize: str | None) -> None:
    """OpenVINO's model of the ONNX file (float32 weights kept), and with ``quantize`` its int8-weight copy."""
    import openvino as ov

    ov_model = ov.convert_model(str(onnx_file))
    ov.save_model(ov_model, str(out / backend_file("openvino", None)), compress_to_fp16=False)
    if quantize:
        import nncf

        nncf_logger = logging.getLogger("nncf")
        level = nncf_logger.level
        nncf_logger.setLevel(logging.WARNING)  # its bit-width table is logged at INFO
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # ... and its progress bar printed
                # The float model is saved already: compressing it in place is fine.
                compressed = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        finally:
            nncf_logger.setLevel(level)
        ov.save_model(compressed, str(out / backend_file("openvino", quantize)), compress_to_fp16=False)
