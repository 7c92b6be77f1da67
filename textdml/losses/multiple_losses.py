from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.miners.base import BaseMiner
from textdml.registry import LOSSES, MINERS


def component_name(loss: BaseLoss) -> str:
    """A short logging name: the registry name for a library loss (file stem), else the class name."""
    cls = type(loss)
    if cls.__module__.startswith("textdml.losses."):
        return cls.__module__.rsplit(".", 1)[-1]
    return cls.__name__


def unique_names(names: list[str]) -> list[str]:
    """Suffix repeated names with their position: ``["triplet", "triplet"] -> ["triplet_0", "triplet_1"]``."""
    return [f"{name}_{i}" if names.count(name) > 1 else name for i, name in enumerate(names)]


@LOSSES.register("multiple_losses")
class MultipleLosses(BaseLoss):
    """A weighted sum of losses on the same embeddings, each with an optional miner of its own.

    Typical uses: a metric loss plus a classification loss, or a tuple loss on mined hard
    triplets plus a softmax loss on the whole batch. The value of each loss in the last call is
    kept in ``last_components`` for logging.

    Formula: ``L = sum_k w_k * L_k(embeddings, labels, indices_k)``.

    Args:
        losses: the losses, as objects or config dicts (``{"name": "triplet", "margin": 0.1}``).
        weights: one weight per loss (all 1 by default).
        miners: one entry per loss: a miner (object or config dict) or ``None`` for a loss that
            sees the whole batch.

    Inputs:
        What every sub-loss accepts (``input_kinds`` is their intersection). ``indices`` given to
        ``forward`` (a miner outside this wrapper) go to the sub-losses that take tuples and have
        no miner of their own; the others ignore them.

    Conventions:
        ``last_components`` holds the unweighted value of each loss, keyed by its registry name
        (``triplet``, ``multi_similarity``; suffixed with its position when repeated).
        pytorch-metric-learning's MultipleLosses refuses outside indices when it has miners;
        here each loss's own miner takes precedence.

    Example:
        >>> import torch
        >>> from textdml.losses.contrastive import ContrastiveLoss
        >>> from textdml.losses.triplet import TripletLoss
        >>> loss = MultipleLosses([TripletLoss(), ContrastiveLoss()], weights=[1.0, 0.5])
        >>> value = loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2]))
        >>> sorted(loss.last_components)
        ['contrastive', 'triplet']
    """

    needs: ClassVar[LossNeeds] = LossNeeds(accepts_indices=True)

    def __init__(
        self,
        losses: Sequence[BaseLoss | dict[str, Any]],
        weights: Sequence[float] | None = None,
        miners: Sequence[BaseMiner | dict[str, Any] | None] | None = None,
    ):
        super().__init__()
        built = [LOSSES.build(**loss) if isinstance(loss, dict) else loss for loss in losses]
        if not built:
            raise ValueError("MultipleLosses needs at least one loss")
        for loss in built:
            if not isinstance(loss, BaseLoss):
                raise TypeError(f"MultipleLosses takes BaseLoss objects, got {type(loss).__name__}")
        weights = [1.0] * len(built) if weights is None else [float(w) for w in weights]
        miners = [None] * len(built) if miners is None else list(miners)
        if len(weights) != len(built) or len(miners) != len(built):
            raise ValueError(f"{len(built)} losses but {len(weights)} weights and {len(miners)} miners")
        for loss, miner in zip(built, miners, strict=True):
            if miner is not None and not loss.needs.accepts_indices:
                raise ValueError(f"{type(loss).__name__} does not take mined tuples; give it no miner")
        names = unique_names([component_name(loss) for loss in built])
        self.losses = nn.ModuleDict(dict(zip(names, built, strict=True)))
        self.weights = dict(zip(names, weights, strict=True))
        self.miners = nn.ModuleDict(
            {
                name: MINERS.build(**m) if isinstance(m, dict) else m
                for name, m in zip(names, miners, strict=True)
                if m is not None
            }
        )
        # The wrapper trains on what every sub-loss can train on; the model card cites them all.
        kinds = tuple(kind for kind in built[0].needs.input_kinds if all(kind in loss.needs.input_kinds for loss in built))
        self.needs = dataclasses.replace(self.needs, input_kinds=kinds)
        self.citation = "\n\n".join(loss.citation for loss in built if loss.citation) or None
        self._last_components: dict[str, torch.Tensor] = {}

    @property
    def last_components(self) -> dict[str, float]:
        """The unweighted value of each loss in the last call (read here, so logging pays the device sync)."""
        return {name: float(value) for name, value in self._last_components.items()}

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        indices: TupleIndices | None = None,
    ) -> torch.Tensor:
        if indices is not None and not any(self.takes_outside_indices(name) for name in self.losses):
            raise ValueError("MultipleLosses: no sub-loss takes mined tuples without a miner of its own")
        total = embeddings.new_zeros((), dtype=torch.float32)
        components = {}
        for name, loss in self.losses.items():
            if name in self.miners:
                loss_indices = self.mine(name, embeddings, labels, ref_embeddings, ref_labels)
            else:
                loss_indices = indices if self.takes_outside_indices(name) else None
            value = loss(embeddings, labels, ref_embeddings=ref_embeddings, ref_labels=ref_labels, indices=loss_indices)
            components[name] = value.detach()
            total = total + self.weights[name] * value
        self._last_components = components
        return total

    def takes_outside_indices(self, name: str) -> bool:
        return self.losses[name].needs.accepts_indices and name not in self.miners

    def mine(
        self,
        name: str,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None,
        ref_embeddings: torch.Tensor | None,
        ref_labels: torch.Tensor | None,
    ) -> TupleIndices:
        # Pairs by position (labels=None) become labels here, as the losses resolve them.
        labels, ref_labels = self.resolve_labels(embeddings, labels, ref_embeddings, ref_labels)
        return self.miners[name](embeddings, labels, ref_embeddings, ref_labels)

    def parameter_groups(self, lr: float) -> list[dict]:
        return [group for loss in self.losses.values() for group in loss.parameter_groups(lr)]
