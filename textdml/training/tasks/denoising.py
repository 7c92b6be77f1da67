"""The denoising task (TSDAE): a decoder owned by the task and tied to the encoder.

The collator deletes words from what the encoder sees (``needs.deletion_ratio``, seeded per run);
the decoder rebuilds the original sentence from the embedding.

Built from the encoder's own architecture as a causal LM with cross-attention; with tying (the
TSDAE default) every decoder weight that has an encoder twin (embeddings, self-attention, feed
forward) *is* the encoder's parameter, so the decoder adds only its cross-attention and LM head.
The decoder is trained with the model and kept in checkpoints, but never saved with the model.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from textdml.losses.needs import LossNeeds, loss_needs
from textdml.training.tasks.embedding import EmbeddingTask
from textdml.training.tasks.prepare import add_input_noise


class DenoisingTask(EmbeddingTask):
    """The text task of losses whose needs ask for a ``decoder``: encode the noisy text, decode the original."""

    def __init__(self, embedder: nn.Module, loss: Any, miner: Any = None, teacher: Any = None):
        super().__init__(embedder, loss, miner, teacher)
        self.decoder = decoder_for(loss, embedder)

    @classmethod
    def serves(cls, needs: LossNeeds, teacher: Any = None) -> bool:
        return needs.decoder

    def prepare_data(self, data: Any, seed: int) -> None:
        """Score ranges, and the collator's word deletion (the encoder's noisy input)."""
        super().prepare_data(data, seed)
        add_input_noise(self.needs, data, seed)

    def loss_from_embeddings(self, batch: dict[str, Any], embeddings: torch.Tensor) -> torch.Tensor:
        if "targets" not in batch:
            raise ValueError(f"{type(self.loss).__name__} needs the original sentences as batch['targets']: set "
                             "the collator's deletion_ratio (the trainer does it from loss.deletion_ratio)")
        anchors = batch["inputs"].split(embeddings)[0]
        return self.loss(anchors, decoder=self.decoder, target_features=batch["targets"],
                         pad_token_id=self.embedder.tokenizer.pad_token_id)


def decoder_for(loss: Any, embedder: Any) -> nn.Module | None:
    """A decoder for a loss that asks for one (``needs.decoder``), else None."""
    needs = loss_needs(loss)
    if not needs.decoder:
        return None
    from transformers import AutoModelForCausalLM

    encoder = embedder.transformer
    name = getattr(loss, "decoder", None)  # a separate decoder model the loss names
    if name is not None:
        if needs.tie_encoder_decoder:
            raise ValueError("loss.decoder names a separate decoder, which cannot be tied to the encoder: set "
                             "loss.tie_encoder_decoder=false (or drop loss.decoder to decode with the encoder's "
                             "own architecture)")
        return AutoModelForCausalLM.from_pretrained(name, is_decoder=True, add_cross_attention=True)
    config = copy.deepcopy(encoder.config)
    config.is_decoder, config.add_cross_attention = True, True
    try:
        decoder = AutoModelForCausalLM.from_config(config)
    except ValueError as err:
        raise ValueError(f"{type(encoder).__name__} has no causal-LM form to decode with ({err}); set "
                         "loss.decoder=<a decoder model> with loss.tie_encoder_decoder=false") from err
    base = getattr(decoder, decoder.base_model_prefix)
    base.load_state_dict(encoder.state_dict(), strict=False)  # a copy for the weights left untied
    if needs.tie_encoder_decoder:
        tie_to_encoder(base, encoder)
        decoder.tie_weights()  # the LM head follows the (now shared) word embeddings
    return decoder


def tie_to_encoder(decoder_base: nn.Module, encoder: nn.Module) -> int:
    """Make every decoder parameter with an encoder namesake of the same shape that very parameter."""
    encoder_params = dict(encoder.named_parameters())
    modules = dict(decoder_base.named_modules())
    tied = 0
    for name, param in list(decoder_base.named_parameters()):
        shared = encoder_params.get(name)
        if shared is None or shared.shape != param.shape:
            continue
        module_name, _, attr = name.rpartition(".")
        setattr(modules[module_name], attr, shared)
        tied += 1
    if tied == 0:
        raise ValueError(f"no weight of {type(decoder_base).__name__} matches the encoder's: cannot tie them")
    return tied
