"""The sparse (SPLADE) text encoder: a masked-LM's logits -> log(1 + ReLU) -> max over tokens.

Each text becomes a vector over the tokenizer's vocabulary whose few non-zero weights say which
terms (its own words and expansions the MLM head predicts) it matches on; two vectors score by dot
product. It saves in sentence-transformers' ``SparseEncoder`` layout (``MLMTransformer`` +
``SpladePooling``), so ``SparseEncoder(path)`` loads a textdml model and gives the same vectors,
and it reads folders sentence-transformers saved (its 5.x ``MLMTransformer`` layout and its 6.x
``Transformer(transformer_task="fill-mask")`` one).

A checkpoint without an MLM head (all-MiniLM-L6-v2 is a plain ``BertModel``) becomes a masked LM
built from its config: the encoder weights load, the decoder is tied to the word embeddings (so
the vocabulary projection starts meaningful) and only the head's small transform layer starts
fresh, which lets a sentence embedder start a SPLADE model offline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from textdml.hub.layout import MODEL_CARD, MODULES, SENTENCE_BERT_CONFIG, ST_CONFIG, TEXTDML_CONFIG
from textdml.models.embedder import (
    default_max_seq_length,
    package_versions,
    read_textdml_config,
    resolve_model_folder,
    write_json,
)
from textdml.models.encoding import as_text_list, pad_token_lists, run_token_sorted
from textdml.models.folder_checks import check_weights
from textdml.models.identity import WeightsHashCache
from textdml.models.sparse_layout import FolderLayout, sparse_layout

logger = logging.getLogger(__name__)

SparseKind = Literal["query", "document"]
PoolingStrategy = Literal["max", "sum"]
Activation = Literal["relu", "log1p_relu"]

# The module types written to modules.json: sentence-transformers 5.x names, which 6.x still loads
# (its deprecated-import table maps them), so the folder loads in both.
ST_MLM_TRANSFORMER = "sentence_transformers.sparse_encoder.models.MLMTransformer"
ST_SPLADE_POOLING = "sentence_transformers.sparse_encoder.models.SpladePooling"
SPLADE_POOLING_DIR = "1_SpladePooling"


class SparseEmbedder(nn.Module):
    """SPLADE encoder around any Hugging Face masked language model.

    ``forward`` gives ``(B, V)`` weights, ``V`` the vocabulary size: ``log(1 + relu(logits))``
    (``log1p_relu`` applies ``log1p`` twice), masked by attention, pooled over tokens by max
    (SPLADE v2+) or sum (SPLADE v1).

    Args:
        transformer: the masked LM (``AutoModelForMaskedLM``), returning ``logits (B, L, V)``.
        tokenizer: its tokenizer; its vocabulary names the vector dimensions.
        pooling_strategy: ``"max"`` (default) or ``"sum"`` over tokens.
        activation: ``"relu"`` (default) or ``"log1p_relu"``.
        max_seq_length: longer texts are truncated.
        name: the path or Hub id it came from (payloads, identity, model cards).
        prompts: texts put before the input by kind (``{"query": ..., "document": ...}``), as in
            sentence-transformers' ``encode_query`` / ``encode_document``.
        default_prompt_name: the prompt used when a kind has none (sentence-transformers' key).

    Example:
        >>> # model = SparseEmbedder.load("runs/splade/final")
        >>> # [(ids, weights)] = model.encode_sparse(["a cat"], kind="query")
    """

    similarity = "dot"
    normalize = False

    def __init__(
        self,
        transformer: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        pooling_strategy: PoolingStrategy = "max",
        activation: Activation = "relu",
        max_seq_length: int = 256,
        name: str | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
    ):
        super().__init__()
        if pooling_strategy not in ("max", "sum"):
            raise ValueError(f"pooling_strategy must be 'max' or 'sum', got {pooling_strategy!r}")
        if activation not in ("relu", "log1p_relu"):
            raise ValueError(f"activation must be 'relu' or 'log1p_relu', got {activation!r}")
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.pooling_strategy = pooling_strategy
        self.activation = activation
        self.max_seq_length = max_seq_length
        self.name = name or getattr(transformer.config, "_name_or_path", None) or "textdml-sparse-model"
        self.prompts: dict[str, str] = {key: value for key, value in (prompts or {}).items() if value}
        self.default_prompt_name = default_prompt_name if default_prompt_name in self.prompts else None
        self.source: str | None = None  # the folder a fine-tuned model was loaded from, when `name` is its base
        self._weights_hash = WeightsHashCache()
        self._vocabulary_id: str | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path_or_id: str | os.PathLike, device: str | torch.device | None = None) -> SparseEmbedder:
        """Load a sparse model: a ``SparseEncoder`` folder (saved by textdml or sentence-transformers),
        a plain Hugging Face masked LM, or a Hub id of either (downloaded through the usual HF code).

        A dense sentence-transformers folder is refused (its vectors are not sparse ones): start a
        sparse model from it with :meth:`from_encoder` (``model.kind: sparse`` in a recipe).
        """
        folder = resolve_model_folder(str(path_or_id))
        layout = sparse_layout(folder)
        if layout.kind == "dense":
            raise ValueError(
                f"{path_or_id} holds a dense embedding model ({layout.description}), not a sparse (SPLADE) one: pass "
                "a sparse model folder (modules.json with MLMTransformer + SpladePooling, e.g. a textdml run's final/ "
                "trained with model.kind: sparse), or start a sparse model from this encoder with "
                f"SparseEmbedder.from_encoder({str(path_or_id)!r}) / model.kind: sparse")
        if layout.kind == "image_text":
            raise ValueError(f"{path_or_id} holds an image-text model, not a sparse text model: pass a sparse model "
                             "folder (modules.json with MLMTransformer + SpladePooling)")
        model = cls._from_folder(folder, layout, str(path_or_id)).eval()  # as transformers' from_pretrained
        return model.to(device) if device is not None else model

    @classmethod
    def from_encoder(cls, name_or_path: str | os.PathLike, *, max_seq_length: int | None = None,
                     pooling_strategy: PoolingStrategy = "max", activation: Activation = "relu",
                     prompts: dict[str, str] | None = None) -> SparseEmbedder:
        """A sparse model to train, starting from any text encoder: a sparse folder (trained further),
        a dense sentence-transformers folder (its transformer), a plain Hugging Face model or a Hub id.

        ``prompts`` replace saved ones; the pooling and activation apply to a new model only.
        """
        folder = resolve_model_folder(str(name_or_path))
        layout = sparse_layout(folder)
        if layout.kind == "image_text":
            raise ValueError(f"{name_or_path} holds an image-text model: a sparse model starts from a text encoder "
                             "(a Hugging Face model, a sentence-transformers folder or a sparse model folder)")
        if layout.kind == "sparse":
            model = cls._from_folder(folder, layout, str(name_or_path))
        else:  # dense sentence-transformers folder or plain Hugging Face model: only its encoder is kept
            transformer_dir = layout.transformer_dir
            check_weights(transformer_dir)
            transformer = load_masked_lm(transformer_dir)
            tokenizer = AutoTokenizer.from_pretrained(transformer_dir)
            model = cls(transformer, tokenizer, pooling_strategy=pooling_strategy, activation=activation,
                        max_seq_length=layout.max_seq_length or default_max_seq_length(transformer, tokenizer),
                        name=str(name_or_path))
        if max_seq_length is not None:
            model.max_seq_length = max_seq_length
        if prompts is not None:
            model.prompts = {key: value for key, value in prompts.items() if value}
            model.default_prompt_name = None
        return model.eval()

    @classmethod
    def _from_folder(cls, folder: Path, layout: FolderLayout, name: str) -> SparseEmbedder:
        check_weights(layout.transformer_dir)
        transformer = load_masked_lm(layout.transformer_dir)
        tokenizer = AutoTokenizer.from_pretrained(layout.transformer_dir)
        prompts, default_prompt_name = read_prompts(folder)
        saved = read_textdml_config(folder)
        model = cls(transformer, tokenizer, pooling_strategy=layout.pooling_strategy, activation=layout.activation,
                    max_seq_length=layout.max_seq_length or default_max_seq_length(transformer, tokenizer),
                    name=saved.get("name") or name, prompts=prompts, default_prompt_name=default_prompt_name)
        if saved.get("name") and saved["name"] != name:
            model.source = name
        if saved.get("weights_sha256"):  # the hash stored at save names these weights while they are untouched
            model._weights_hash.trust(model.state_dict(), saved["weights_sha256"])
        return model

    # ------------------------------------------------------------------ sizes and identity
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def vocab_size(self) -> int:
        """The vector size: the MLM head's output size (the tokenizer's vocabulary, padded as the model is)."""
        return int(self.transformer.get_output_embeddings().weight.shape[0])

    embedding_dim = vocab_size  # what model_identity and SupportsEncode read

    def get_embedding_dimension(self) -> int:
        return self.vocab_size

    def vocabulary_id(self) -> str:
        """SHA-256 of the tokenizer's vocabulary (token -> id, in id order): dimension i means the same
        token for two models exactly when their ids agree, so a collection can refuse another vocabulary."""
        if self._vocabulary_id is None:
            vocab = sorted(self.tokenizer.get_vocab().items(), key=lambda item: (item[1], item[0]))
            payload = json.dumps(vocab, ensure_ascii=False, separators=(",", ":")).encode()
            self._vocabulary_id = hashlib.sha256(payload).hexdigest()
        return self._vocabulary_id

    def weights_sha256(self) -> str:
        """A hash of every weight (cached; any change to a weight makes it hash again)."""
        return self._weights_hash.get(self.state_dict())

    def identity(self) -> dict[str, str]:
        """What a collection stores to recognise the model: the dense models' ``model_name`` and
        ``weights_sha256`` (so ``textdml.models.identity.model_identity`` works unchanged), plus
        ``kind: sparse`` and the vocabulary hash."""
        return {"model_name": self.name, "weights_sha256": self.weights_sha256(), "kind": "sparse",
                "vocabulary_id": self.vocabulary_id()}

    # ------------------------------------------------------------------ forward / encode
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise with dynamic padding to the longest text (truncated at ``max_seq_length``)."""
        if not texts:
            return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_seq_length,
                                       return_tensors="pt"))
        return pad_token_lists(self.tokenizer(texts, truncation=True, max_length=self.max_seq_length), self.tokenizer)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised inputs -> sparse weights ``(B, V)``, all >= 0."""
        inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        logits = self.transformer(**inputs, return_dict=True).logits  # (B, L, V)
        mask = features["attention_mask"].unsqueeze(-1).to(logits.dtype)  # (B, L, 1)
        weights = torch.log1p(torch.relu(logits * mask))  # padding gives 0, which never wins a max of values >= 0
        if self.activation == "log1p_relu":
            weights = torch.log1p(weights)
        return weights.amax(dim=1) if self.pooling_strategy == "max" else weights.sum(dim=1)  # (B, V)

    def prompt_for(self, kind: SparseKind) -> str:
        """The prompt of ``kind`` ("query" or "document"), else the default prompt, else ""."""
        if kind not in ("query", "document"):
            raise ValueError(f"kind must be 'query' or 'document', got {kind!r}")
        if kind in self.prompts:
            return self.prompts[kind]
        return self.prompts.get(self.default_prompt_name, "") if self.default_prompt_name else ""

    role_prompt = prompt_for  # the name the dense Embedder's callers (training data, mining) use

    def encode(self, texts: str | list[str], *, kind: SparseKind = "document", batch_size: int = 32,
               show_progress_bar: bool | None = False, convert_to: Literal["numpy", "torch"] = "numpy",
               **_: Any) -> np.ndarray | torch.Tensor:
        """Dense ``(N, V)`` weights (mostly zeros) for inference: eval mode, no grad, input order kept."""
        texts, single = as_text_list(texts)
        prefix = self.prompt_for(kind)
        if prefix:
            texts = [prefix + text for text in texts]

        def embed(features: dict[str, torch.Tensor]) -> torch.Tensor:
            return self({k: v.to(self.device) for k, v in features.items()})

        weights = run_token_sorted(self, texts, self.tokenizer, self.max_seq_length, embed, batch_size,
                                   show_progress_bar, "Encoding (sparse)", self.vocab_size)
        if single:
            weights = weights[0]
        return weights.cpu().numpy() if convert_to == "numpy" else weights

    def encode_sparse(self, texts: list[str], *, kind: SparseKind = "document", batch_size: int = 32,
                      show_progress_bar: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: ``(token ids int64 ascending, weights float32 > 0)``, what a sparse index stores."""
        out: list[tuple[np.ndarray, np.ndarray]] = []
        # Chunks of texts keep the dense (chunk, V) block small: 30k floats a row.
        chunk = max(batch_size, 256)
        for start in range(0, len(texts), chunk):
            weights = self.encode(list(texts[start : start + chunk]), kind=kind, batch_size=batch_size,
                                  show_progress_bar=show_progress_bar, convert_to="torch")
            for row in weights:
                ids = torch.nonzero(row > 0, as_tuple=True)[0]  # ascending
                out.append((ids.cpu().numpy().astype(np.int64), row[ids].cpu().numpy().astype(np.float32)))
        return out

    def encode_query(self, texts: str | list[str], **kwargs: Any) -> np.ndarray | torch.Tensor:
        return self.encode(texts, kind="query", **kwargs)

    def encode_document(self, texts: str | list[str], **kwargs: Any) -> np.ndarray | torch.Tensor:
        return self.encode(texts, kind="document", **kwargs)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in backward: less memory, about a third more compute."""
        kwargs = {"use_reentrant": False}
        if hasattr(self.transformer, "activation_checkpointing_enable"):  # transformers >= 5.2
            self.transformer.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    # ------------------------------------------------------------------ saving
    def save(self, folder: str | os.PathLike, model_card: str | None = None) -> Path:
        """Write sentence-transformers' ``SparseEncoder`` layout (``SparseEncoder(folder)`` loads it)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_json(folder / MODULES, [
            {"idx": 0, "name": "0", "path": "", "type": ST_MLM_TRANSFORMER},
            {"idx": 1, "name": "1", "path": SPLADE_POOLING_DIR, "type": ST_SPLADE_POOLING},
        ])
        write_json(folder / SPLADE_POOLING_DIR / "config.json", {
            "pooling_strategy": self.pooling_strategy, "activation_function": self.activation,
            "embedding_dimension": self.vocab_size})
        write_json(folder / SENTENCE_BERT_CONFIG, {"max_seq_length": self.max_seq_length, "do_lower_case": False})
        write_json(folder / ST_CONFIG, {
            "model_type": "SparseEncoder", "__version__": package_versions(),
            "prompts": {"query": "", "document": "", **self.prompts},
            "default_prompt_name": self.default_prompt_name, "similarity_fn_name": "dot"})
        write_json(folder / TEXTDML_CONFIG, {"name": self.name, "kind": "sparse", "similarity": "dot",
                                             "weights_sha256": self.weights_sha256(),
                                             "vocabulary_id": self.vocabulary_id(),
                                             "textdml_version": package_versions()["textdml"]})
        if model_card is not None:
            (folder / MODEL_CARD).write_text(model_card)
        return folder

    def save_pretrained(self, folder: str | os.PathLike, model_card: str | None = None) -> Path:
        """:meth:`save` under the name ``textdml.models.saving.save_model`` calls."""
        return self.save(folder, model_card=model_card)


# ---------------------------------------------------------------------- helpers
def load_masked_lm(folder: Path) -> PreTrainedModel:
    """``AutoModelForMaskedLM`` from ``folder``; a checkpoint without an MLM head gets one built from its
    config, decoder tied to the word embeddings, its transform layer fresh (said in a log line)."""
    transformer, info = AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        head_prefixes = tuple(f"{name}." for name, _ in transformer.named_children()
                              if name != transformer.base_model_prefix)
        encoder_missing = [key for key in missing if not key.startswith(head_prefixes)]
        if encoder_missing:
            raise ValueError(f"{folder}: the encoder weights {encoder_missing[:5]} are missing from the checkpoint, "
                             "so it is not the model its config.json describes; save or copy the model again")
        logger.info("%s has no masked-LM head: its decoder is tied to the word embeddings and the head's transform "
                    "layer starts fresh (%s)", folder, ", ".join(missing))
    return transformer


def read_prompts(folder: Path) -> tuple[dict[str, str], str | None]:
    st_file = folder / ST_CONFIG
    if not st_file.exists():
        return {}, None
    config = json.loads(st_file.read_text())
    return dict(config.get("prompts") or {}), config.get("default_prompt_name")
