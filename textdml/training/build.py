"""Config dicts -> loss, miner and embedder objects."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from textdml.config import ModelConfig
from textdml.models.embedder import Embedder
from textdml.registry import DISTANCES, LOSSES, MINERS, Registry, did_you_mean, import_component_class

# Argument names whose dict values are themselves components of a registry.
NESTED = {"loss": LOSSES, "losses": LOSSES, "miner": MINERS, "miners": MINERS, "distance": DISTANCES}
# Arguments the trainer fills from the model and the data (logit_scale / logit_bias: a dual
# encoder's own parameters, shared with CLIP / SigLIP losses so that the model saves them).
AUTO_ARGUMENTS = ("embedding_size", "num_classes", "logit_scale", "logit_bias")
CONFIG_ONLY_KEYS = ("name", "target", "lr")


def build_component(spec: dict[str, Any], registry: Registry, section: str, auto: dict[str, Any] | None = None) -> Any:
    """Build ``{name|target: ..., **kwargs}``; nested components and auto arguments are filled in."""
    spec = dict(spec)
    cls = import_component_class(spec["target"], section) if "target" in spec else registry.get(spec["name"])
    kwargs = {k: v for k, v in spec.items() if k not in CONFIG_ONLY_KEYS}
    kwargs = {key: build_nested(key, value, section, auto) for key, value in kwargs.items()}
    parameters = inspect.signature(cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key in kwargs:
        if key not in parameters and not accepts_any:
            valid = [p for p in parameters if p not in ("self",)]
            raise ValueError(f"{section} {spec.get('name') or spec.get('target')!r} has no argument {key!r}: "
                             f"{did_you_mean(key, valid)}")
    for key in AUTO_ARGUMENTS:
        if key in parameters and key not in kwargs and auto and auto.get(key) is not None:
            kwargs[key] = auto[key]
    missing = [p.name for p in parameters.values() if p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs]
    if missing:
        raise ValueError(f"{section} {spec.get('name') or spec.get('target')!r} needs {missing} "
                         "(labelled data fills num_classes; the model fills embedding_size)")
    return cls(**kwargs)


def build_nested(key: str, value: Any, section: str, auto: dict[str, Any] | None) -> Any:
    if key not in NESTED:
        return value
    if isinstance(value, dict) and ("name" in value or "target" in value):
        return build_component(value, NESTED[key], f"{section}.{key}", auto)
    if isinstance(value, list):
        return [build_nested(key, item, section, auto) for item in value]
    return value


def build_loss(spec: dict[str, Any], embedding_size: int | None = None, num_classes: int | None = None,
               model: Any = None) -> Any:
    auto = {"embedding_size": embedding_size, "num_classes": num_classes,
            "logit_scale": getattr(model, "logit_scale", None), "logit_bias": getattr(model, "logit_bias", None)}
    from textdml.losses.pml_adapter import adapt_loss

    return adapt_loss(build_component(spec, LOSSES, "loss", auto))  # a PML loss takes the textdml contract


def build_miner(spec: dict[str, Any] | None) -> Any:
    from textdml.miners.pml_adapter import adapt_miner

    return None if spec is None else adapt_miner(build_component(spec, MINERS, "miner"))


def create_model(config: ModelConfig) -> Any:
    """An ``Embedder`` (text), a ``DualEncoder`` (image + text) or a ``SparseEmbedder`` (sparse), as the
    model config says."""
    if config.kind == "sparse":
        return create_sparse_model(config)
    if config.kind == "text":
        if config.dual is not None:
            raise ValueError("model.dual is set but model.kind is 'text': set model.kind=dual")
        return create_embedder(config)
    from textdml.models.dual_encoder import DualEncoder, create_dual_encoder

    model = create_dual_encoder(config.dual) if config.dual is not None else DualEncoder.from_pretrained(config.name_or_path)
    if config.lora is not None:
        from textdml.models.adapters import add_adapters

        add_adapters(model, config.lora)
        # What an adapter save needs to rebuild the base (training.save_adapter).
        model.base_spec = {"dual": config.dual} if config.dual is not None else {"name_or_path": config.name_or_path}
    return model


def create_embedder(config: ModelConfig) -> Embedder:
    embedder = Embedder.from_pretrained(  # which warns about trust_remote_code's files
        config.name_or_path, pooling=config.pooling, normalize=config.normalize,
        max_seq_length=config.max_seq_length, dense_dim=config.dense_dim, similarity=config.similarity,
        trust_remote_code=config.trust_remote_code, dtype=getattr(torch, config.dtype) if config.dtype else None,
        prompts=config.prompts, backend=config.backend, backend_file=config.backend_file,
    )
    if config.num_layers:
        from textdml.models.layers import keep_layers

        keep_layers(embedder.transformer, config.num_layers)
    if config.gradient_checkpointing:
        embedder.enable_gradient_checkpointing()
    if config.lora is not None:
        from textdml.models.adapters import add_adapters

        add_adapters(embedder, config.lora)
    return embedder


def create_sparse_model(config: ModelConfig) -> Any:
    """A SPLADE model to train, started from ``config.name_or_path`` (any text encoder or sparse model)."""
    from textdml.models.sparse import SparseEmbedder

    model = SparseEmbedder.from_encoder(config.name_or_path, max_seq_length=config.max_seq_length,
                                        prompts=config.prompts)
    if config.dtype:
        model = model.to(getattr(torch, config.dtype))
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model
