"""Smaller students from a teacher: keep some of a transformer's layers (distillation initialisation)."""

from __future__ import annotations

from torch import nn


def encoder_layers(transformer: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The module holding the stack of transformer blocks, its attribute name, and the stack."""
    for module in transformer.modules():
        for name in ("layer", "layers", "block"):
            stack = getattr(module, name, None)
            if isinstance(stack, nn.ModuleList) and len(stack) > 0:
                return module, name, stack
    raise ValueError(f"{type(transformer).__name__} has no list of transformer layers (layer / layers / block) to thin")


def keep_layers(transformer: nn.Module, num_layers: int) -> list[int]:
    """Keep ``num_layers`` layers spread evenly over the stack (first and last included), in place.

    A model with no more layers than that keeps all of them. Returns the kept layer indices. The
    config's layer count follows, so the saved model reloads with the same depth.
    """
    if num_layers < 1:
        raise ValueError(f"model.num_layers must be >= 1, got {num_layers}")
    parent, name, stack = encoder_layers(transformer)
    total = len(stack)
    if num_layers >= total:
        return list(range(total))
    if num_layers == 1:
        kept = [0]
    else:
        kept = sorted({round(i * (total - 1) / (num_layers - 1)) for i in range(num_layers)})
    setattr(parent, name, nn.ModuleList([stack[i] for i in kept]))
    config = getattr(transformer, "config", None)
    if config is not None and hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = len(kept)
    return kept
