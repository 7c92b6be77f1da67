from __future__ import annotations

import torch
from torch import nn

# Biases and norm weights are not decayed (the usual BERT fine-tuning practice).
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def create_optimizer(task: nn.Module, lr: float, weight_decay: float, loss_lr: float | None = None,
                     model_lrs: dict[str, float | None] | None = None) -> torch.optim.AdamW:
    """AdamW with the encoder in decay / no-decay groups and the loss's own parameters in their own
    group(s) at ``loss_lr`` (proxies and class weights usually want a much larger rate).

    A model with its own ``parameter_groups`` (a dual encoder: a rate per tower and for the logit
    scale, given in ``model_lrs``) lays out its groups itself.
    """
    loss = getattr(task, "loss", None)
    loss_params = {id(p) for p in loss.parameters()} if loss is not None else set()
    model = getattr(task, "embedder", None)
    if model is not None and hasattr(model, "parameter_groups"):
        groups = [{"weight_decay": weight_decay, **g} for g in model.parameter_groups(lr, **(model_lrs or {}))]
    else:
        decay, no_decay = [], []
        for name, param in task.named_parameters():
            if not param.requires_grad or id(param) in loss_params:
                continue
            (no_decay if any(n in name for n in NO_DECAY) else decay).append(param)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if loss is not None and loss_params:
        for group in loss.parameter_groups(loss_lr if loss_lr is not None else lr):
            groups.append({"weight_decay": 0.0, **group})
    fused = torch.cuda.is_available() and all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, fused=fused or None)
