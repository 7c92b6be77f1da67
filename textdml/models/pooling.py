"""Token embeddings -> one sentence embedding.

The modes and their saved configuration follow sentence-transformers' ``Pooling`` module so that a
saved textdml model loads there unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from textdml.registry import did_you_mean

PoolingMode = Literal["mean", "cls", "max", "last_token", "weighted_mean"]

# Our mode name -> the boolean key sentence-transformers writes in 1_Pooling/config.json.
ST_POOLING_KEYS: dict[str, str] = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "last_token": "pooling_mode_lasttoken",
    "weighted_mean": "pooling_mode_weightedmean_tokens",
}
# sentence-transformers >= 6 writes one "pooling_mode" string.
ST_POOLING_NAMES: dict[str, str] = {"mean": "mean", "cls": "cls", "max": "max", "lasttoken": "last_token",
                                    "weightedmean": "weighted_mean"}


class Pooling(nn.Module):
    """Pool token embeddings ``(B, L, H)`` with an attention mask ``(B, L)`` into ``(B, H)``.

    Args:
        mode: ``mean`` (average of real tokens), ``cls`` (first token), ``max`` (max over real
            tokens), ``last_token`` (the last real token, for decoder models; works with left or
            right padding), ``weighted_mean`` (position-weighted mean, as SGPT).
        dimension: hidden size H (stored in the saved config).
    """

    def __init__(self, mode: PoolingMode = "mean", dimension: int | None = None):
        super().__init__()
        if mode not in ST_POOLING_KEYS:
            raise ValueError(f"unknown pooling {mode!r}: {did_you_mean(mode, list(ST_POOLING_KEYS))}")
        self.mode = mode
        self.dimension = dimension

    def forward(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)  # (B, L, 1)
        if self.mode == "cls":
            return token_embeddings[:, 0]
        if self.mode == "max":
            masked = token_embeddings.masked_fill(mask == 0, torch.finfo(token_embeddings.dtype).min)
            return masked.max(dim=1).values
        if self.mode == "last_token":
            # The position of the last real token, whichever side the padding is on.
            positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
            last = (attention_mask * positions).argmax(dim=1)  # (B,)
            return token_embeddings[torch.arange(len(last), device=last.device), last]
        if self.mode == "weighted_mean":
            weights = torch.arange(1, mask.shape[1] + 1, device=mask.device, dtype=mask.dtype)[None, :, None]
            mask = mask * weights
        summed = (token_embeddings * mask).sum(dim=1)
        return summed / mask.sum(dim=1).clamp_min(1e-9)

    def st_config(self) -> dict:
        """The ``1_Pooling/config.json`` sentence-transformers reads (classic boolean keys)."""
        config: dict = {"word_embedding_dimension": self.dimension}
        for mode, key in ST_POOLING_KEYS.items():
            config[key] = mode == self.mode
        config["pooling_mode_mean_sqrt_len_tokens"] = False
        config["include_prompt"] = True
        return config

    @classmethod
    def from_st_config(cls, config: dict) -> Pooling:
        """Read either the classic boolean keys or the newer ``pooling_mode`` string."""
        dimension = config.get("word_embedding_dimension", config.get("embedding_dimension"))
        if "pooling_mode" in config:
            name = config["pooling_mode"]
            if name not in ST_POOLING_NAMES:
                raise ValueError(f"pooling mode {name!r} in the saved config is not supported by textdml")
            return cls(ST_POOLING_NAMES[name], dimension)
        chosen = [mode for mode, key in ST_POOLING_KEYS.items() if config.get(key)]
        if config.get("pooling_mode_mean_sqrt_len_tokens"):
            raise ValueError("pooling mode 'mean_sqrt_len_tokens' in the saved config is not supported by textdml")
        if len(chosen) != 1:
            raise ValueError(f"the saved pooling config must select exactly one mode, found {chosen or 'none'}")
        return cls(chosen[0], dimension)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, dimension={self.dimension}"

