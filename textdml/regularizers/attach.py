"""Attach embedding and weight regularizers to any loss of the catalogue (as PML's mixins allow).

Every loss takes ``embedding_regularizer=`` and ``weight_regularizer=`` (see
``BaseLoss.__init_subclass__``): the regularizers become sub-modules of the loss, and a forward
hook adds their terms to the loss value, so the loss's own ``forward`` stays as it is (also for
losses that override it, such as ``multiple_losses`` and ``cross_batch_memory``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from textdml.regularizers.base import BaseRegularizer, as_regularizer, names_for

RegularizerSpec = BaseRegularizer | dict[str, Any] | str | None
# Examples for the error message; a loss has class weights when ``class_weights()`` returns them.
LOSSES_WITH_WEIGHTS = "arc_face, cos_face, sphere_face, large_margin_softmax, norm_softmax, proxy_nca, proxy_anchor, " \
                      "soft_triple"


def with_regularizer_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a loss's ``__init__`` so that it also takes ``embedding_regularizer`` / ``weight_regularizer``."""
    signature = inspect.signature(init)
    # Already wrapped, or a loss that handles the arguments itself.
    if getattr(init, "_takes_regularizers", False) or {"embedding_regularizer", "weight_regularizer"} & set(
            signature.parameters):
        return init

    @functools.wraps(init)
    def __init__(self: nn.Module, *args: Any, embedding_regularizer: RegularizerSpec = None,
                 weight_regularizer: RegularizerSpec = None, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        attach_regularizers(self, embedding_regularizer, weight_regularizer)

    parameters = list(signature.parameters.values())
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation="RegularizerSpec")
             for name in ("embedding_regularizer", "weight_regularizer")]
    # Keyword-only parameters go before a **kwargs, if the loss has one.
    cut = len(parameters) - (1 if parameters and parameters[-1].kind is inspect.Parameter.VAR_KEYWORD else 0)
    __init__.__signature__ = signature.replace(parameters=parameters[:cut] + extra + parameters[cut:])  # type: ignore[attr-defined]
    __init__._takes_regularizers = True  # type: ignore[attr-defined]
    return __init__


def attach_regularizers(loss: nn.Module, embedding_regularizer: RegularizerSpec = None,
                        weight_regularizer: RegularizerSpec = None) -> None:
    """Set ``loss.embedding_regularizer`` / ``loss.weight_regularizer``, checking that they apply."""
    name = type(loss).__name__
    embedding = None if embedding_regularizer is None else as_regularizer(embedding_regularizer,
                                                                           f"{name}: embedding_regularizer")
    weight = None if weight_regularizer is None else as_regularizer(weight_regularizer, f"{name}: weight_regularizer")
    if embedding is not None:
        if not loss.needs.embedding_regularizer:
            raise ValueError(f"{name} holds its own terms on the embeddings and takes no embedding_regularizer")
        if "embeddings" not in embedding.applies_to:
            raise ValueError(f"{name}: {type(embedding).__name__} applies to class weights only, not embeddings; "
                             f"embedding_regularizer takes one of: {', '.join(names_for('embeddings'))}")
    if weight is not None:
        class_weights = getattr(loss, "class_weights", lambda: None)()
        if class_weights is None:
            raise ValueError(
                f"{name} has no class weights, so weight_regularizer does not apply (it is for losses with "
                f"class vectors: {LOSSES_WITH_WEIGHTS}). On {name} use embedding_regularizer with one of: "
                f"{', '.join(names_for('embeddings'))}"
            )
        if "weights" not in weight.applies_to:
            raise ValueError(f"{name}: {type(weight).__name__} does not apply to class weights; weight_regularizer "
                             f"takes one of: {', '.join(names_for('weights'))}")
        weight.bind(loss)
    loss.embedding_regularizer = embedding
    loss.weight_regularizer = weight
    hooked = any(hook is add_regularization for hook in loss._forward_hooks.values())
    if (embedding is not None or weight is not None) and not hooked:
        loss.register_forward_hook(add_regularization, with_kwargs=True)


def add_regularization(loss: nn.Module, args: tuple, kwargs: dict[str, Any], value: torch.Tensor) -> torch.Tensor:
    """Forward hook: the loss value plus its regularizers' terms."""
    embedding, weight = loss.embedding_regularizer, loss.weight_regularizer
    if embedding is None and weight is None:
        return value
    if value.ndim != 0:
        raise ValueError(f"{type(loss).__name__}: regularizers add to a reduced loss; reduction='none' gives "
                         f"per-tuple losses of shape {tuple(value.shape)}")
    if embedding is not None:
        embeddings = args[0] if args else kwargs["embeddings"]
        value = value + embedding(embeddings)
    if weight is not None:
        value = value + weight(loss.class_weights())
    return value


def loss_citations(loss: nn.Module) -> list[str]:
    """BibTeX of the loss and of the regularizers attached to it (for the model card), without repeats."""
    found = [getattr(loss, "citation", None)]
    found += [getattr(getattr(loss, name, None), "citation", None) for name in ("embedding_regularizer", "weight_regularizer")]
    return list(dict.fromkeys(c for c in found if c))
