"""The regularizer contract: a penalty on a matrix of rows, added to a loss.

``forward(rows) -> scalar``: ``rows`` (R, D) is a batch of embeddings (an *embedding regularizer*)
or a loss's class vectors, one per row (a *weight regularizer*: ArcFace's class weights, proxies,
SoftTriple centres). Each regularizer says which of the two it applies to and carries its own
``weight``, the factor on its term in the total loss.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn

from textdml.distances.base import upcast

Target = Literal["embeddings", "weights"]


class BaseRegularizer(nn.Module):
    """Base class: float32 maths, the ``weight`` factor and the mean over rows.

    Args:
        weight: the factor on this term in the total loss (PML's ``embedding_reg_weight`` /
            ``weight_reg_weight``).
    """

    #: What the penalty is defined on: embeddings, class weights, or both.
    applies_to: ClassVar[tuple[Target, ...]] = ("embeddings", "weights")
    #: BibTeX for the model card.
    citation: ClassVar[str | None] = None

    def __init__(self, weight: float = 1.0):
        super().__init__()
        if weight < 0:
            raise ValueError(f"{type(self).__name__}: weight must be >= 0, got {weight}")
        self.weight = weight

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if rows.ndim != 2:
            raise ValueError(f"{type(self).__name__}: rows must be (R, D), got shape {tuple(rows.shape)}")
        return self.weight * self.compute_penalty(upcast(rows))

    def compute_penalty(self, rows: torch.Tensor) -> torch.Tensor:
        """The penalty (a scalar, before ``weight``) on float32 or float64 rows."""
        raise NotImplementedError

    def bind(self, loss: nn.Module) -> None:
        """Called once when attached to ``loss`` (to read settings such as the centres per class)."""

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


def as_regularizer(spec: BaseRegularizer | dict[str, Any] | str, where: str) -> BaseRegularizer:
    """A regularizer object from an instance, a registry name or a ``{name: ..., **kwargs}`` mapping."""
    from textdml.registry import REGULARIZERS, did_you_mean, import_target

    if isinstance(spec, BaseRegularizer):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or ("name" in spec) == ("target" in spec):
        raise ValueError(f"{where} must be a regularizer, a registry name or a mapping with 'name' "
                         f"(one of {', '.join(REGULARIZERS.names())}), got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "target")}
    if "target" in spec:
        cls = import_target(spec["target"], f"{where}.target")
        if not (isinstance(cls, type) and issubclass(cls, BaseRegularizer)):  # checked before anything is called
            raise ValueError(f"{where}.target {spec['target']!r} is not a BaseRegularizer subclass; name a subclass "
                             "of textdml.regularizers.base.BaseRegularizer")
    elif spec["name"] not in REGULARIZERS:
        raise ValueError(f"{where}: unknown regularizer {spec['name']!r}: "
                         f"{did_you_mean(str(spec['name']), REGULARIZERS.names())}")
    else:
        cls = REGULARIZERS.get(spec["name"])
    try:
        regularizer = cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{where}: cannot build regularizer {spec.get('name') or spec.get('target')!r} "
                         f"with {kwargs}: {err}") from err
    if not isinstance(regularizer, BaseRegularizer):
        raise ValueError(f"{where}: {type(regularizer).__name__} is not a BaseRegularizer")
    return regularizer


def names_for(target: Target) -> list[str]:
    """Registry names of the regularizers that apply to ``target``."""
    from textdml.registry import REGULARIZERS

    return [name for name in REGULARIZERS.names() if target in REGULARIZERS.get(name).applies_to]


def regularizer_spec_error(spec: dict[str, Any], section: str) -> str | None:
    """What is wrong with the regularizer entries of a loss spec (unknown names), or None (for config checks)."""
    from textdml.registry import REGULARIZERS, did_you_mean

    for key in ("embedding_regularizer", "weight_regularizer"):
        value = spec.get(key)
        name = value if isinstance(value, str) else value.get("name") if isinstance(value, dict) else None
        if name is not None and name not in REGULARIZERS:
            return f"unknown {section}.{key} {name!r}: {did_you_mean(str(name), REGULARIZERS.names())}"
    return None
