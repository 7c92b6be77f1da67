from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


@LOSSES.register("denoising_auto_encoder")
class DenoisingAutoEncoderLoss(BaseLoss):
    """TSDAE: rebuild a sentence from the embedding of a damaged copy of it.

    Unsupervised: the collator deletes words at random (``deletion_ratio``) from each sentence;
    the model embeds what is left, and a decoder, which sees only that one vector through
    cross-attention, must reproduce the original sentence token by token. The bottleneck forces
    the embedding to carry the sentence's meaning.

    Formula: ``L = -mean_t log p_dec(x_t | x_<t, e(noise(x)))`` over the non-padding target tokens.

    Args:
        deletion_ratio: the share of words deleted from the encoder's input (0.6 as the paper).
        tie_encoder_decoder: share the decoder's weights with the encoder (the paper's default:
            the decoder adds only cross-attention and the LM head).
        decoder: a separate decoder model (a causal LM; needs ``tie_encoder_decoder=false``).

    Inputs:
        Plain sentences (one ``anchor`` column). In Python: ``loss(embeddings,
        decoder=..., target_features=tokenised originals)``; the task passes both.

    Requirements:
        An encoder with a causal-LM form (BERT-like models), or a separate decoder; CLS pooling
        is the paper's choice (``model.pooling=cls``).

    References:
        Wang, Reimers & Gurevych, "TSDAE: Using Transformer-based Sequential Denoising Auto-Encoder
        for Unsupervised Sentence Embedding Learning", Findings of EMNLP 2021;
        sentence-transformers' ``DenoisingAutoEncoderLoss``.

    Example:
        >>> DenoisingAutoEncoderLoss(deletion_ratio=0.6).needs.decoder
        True
    """

    needs: ClassVar[LossNeeds] = LossNeeds(
        input_kinds=("texts",),
        gathers=False,  # one sentence at a time
        # The task builds the decoder (``textdml.training.tasks.denoising``) and passes it in.
        decoder=True,
    )
    citation = """@inproceedings{wang-2021-TSDAE,
  title={TSDAE: Using Transformer-based Sequential Denoising Auto-Encoder for Unsupervised Sentence Embedding Learning},
  author={Wang, Kexin and Reimers, Nils and Gurevych, Iryna},
  booktitle={Findings of the Association for Computational Linguistics: EMNLP 2021},
  year={2021}
}"""

    def __init__(self, deletion_ratio: float = 0.6, tie_encoder_decoder: bool = True, decoder: str | None = None):
        super().__init__()
        if not 0.0 <= deletion_ratio < 1.0:
            raise ValueError(f"deletion_ratio must be in [0, 1), got {deletion_ratio}")
        # The collator deletes the words (seeded per run) and the task builds the decoder.
        self.needs = dataclasses.replace(self.needs, deletion_ratio=deletion_ratio,
                                         tie_encoder_decoder=tie_encoder_decoder)
        self.decoder = decoder

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        indices: TupleIndices | None = None,
        decoder: Any = None,
        target_features: dict[str, torch.Tensor] | None = None,
        pad_token_id: int | None = None,
    ) -> torch.Tensor:
        if decoder is None or target_features is None:
            raise ValueError("DenoisingAutoEncoderLoss needs decoder= and target_features= (the tokenised original "
                             "sentences); the task passes both when training on plain sentences")
        if ref_embeddings is not None or indices is not None:
            raise ValueError("DenoisingAutoEncoderLoss takes one embedding per sentence, no ref set or tuples")
        target = target_features["input_ids"].to(embeddings.device)  # (N, L)
        if len(target) != len(embeddings):
            raise ValueError(f"{len(embeddings)} embeddings but {len(target)} target sentences")
        if pad_token_id is None:
            pad_token_id = getattr(decoder.config, "pad_token_id", None)
        hidden = embeddings[:, None].to(next(decoder.parameters()).dtype)  # (N, 1, D): one vector to attend to
        logits = decoder(input_ids=target[:, :-1], encoder_hidden_states=hidden,
                         encoder_attention_mask=torch.ones(len(target), 1, device=target.device, dtype=torch.long),
                         use_cache=False).logits  # (N, L - 1, V)
        next_tokens = target[:, 1:]
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), next_tokens.reshape(-1),
                               ignore_index=-100 if pad_token_id is None else pad_token_id)
