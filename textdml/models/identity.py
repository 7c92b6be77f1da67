"""Model identity: a hash of the weights, so stored vectors name the exact model that wrote them."""

from __future__ import annotations

import hashlib

import torch


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name and raw bytes, in name order (any dtype, any device)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(state_dict.items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
