from __future__ import annotations

import random

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import DenoisingAutoEncoderLoss as STDenoisingAutoEncoderLoss

from textdml.data.noise import delete_words
from textdml.losses.denoising_auto_encoder import DenoisingAutoEncoderLoss
from textdml.models import Embedder
from textdml.training.decoder import decoder_for

SENTENCES = ["the cat sat on the warm mat", "a river runs to the sea", "bread and cheese for lunch today"]


def test_word_deletion_keeps_order_and_at_least_one_word():
    rng = random.Random(0)
    for text in SENTENCES:
        noisy = delete_words(text, 0.6, rng).split()
        words = text.split()
        assert 1 <= len(noisy) <= len(words)
        positions = [words.index(w) for w in noisy]
        assert positions == sorted(positions)
    with pytest.raises(ValueError, match="deletion ratio"):
        delete_words("a b", 1.5, rng)


def test_the_tied_decoder_shares_the_encoder_weights(tiny_model_dir):
    embedder = Embedder.from_pretrained(tiny_model_dir)
    decoder = decoder_for(DenoisingAutoEncoderLoss(), embedder)
    encoder = dict(embedder.transformer.named_parameters())
    base = dict(decoder.bert.named_parameters())
    assert base["embeddings.word_embeddings.weight"] is encoder["embeddings.word_embeddings.weight"]
    assert base["encoder.layer.0.attention.self.query.weight"] is encoder["encoder.layer.0.attention.self.query.weight"]
    assert decoder.get_output_embeddings().weight is encoder["embeddings.word_embeddings.weight"]
    own = [n for n in base if n not in encoder]
    assert own and all("crossattention" in n for n in own)
    untied = decoder_for(DenoisingAutoEncoderLoss(tie_encoder_decoder=False), embedder)
    assert untied.bert.embeddings.word_embeddings.weight is not encoder["embeddings.word_embeddings.weight"]


def naive_reconstruction(decoder, embeddings, target, pad):
    """Token by token: -log p(next token) averaged over the non-padding targets."""
    logits = decoder(input_ids=target[:, :-1], encoder_hidden_states=embeddings[:, None]).logits
    terms = []
    for i in range(len(target)):
        for t in range(target.shape[1] - 1):
            if target[i, t + 1] != pad:
                terms.append(-torch.log_softmax(logits[i, t], dim=-1)[target[i, t + 1]])
    return torch.stack(terms).mean()


def test_matches_a_naive_token_loop(tiny_model_dir):
    embedder = Embedder.from_pretrained(tiny_model_dir).eval()
    decoder = decoder_for(DenoisingAutoEncoderLoss(), embedder).eval()
    target = embedder.tokenize(SENTENCES)
    embeddings = embedder(embedder.tokenize(["cat mat", "river sea", "bread lunch"]))
    pad = embedder.tokenizer.pad_token_id
    ours = DenoisingAutoEncoderLoss()(embeddings, decoder=decoder, target_features=target, pad_token_id=pad)
    torch.testing.assert_close(ours, naive_reconstruction(decoder, embeddings, target["input_ids"], pad))


def test_matches_sentence_transformers(tiny_model_dir):
    torch.manual_seed(0)
    st_model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    st_model.max_seq_length = 64
    st_loss = STDenoisingAutoEncoderLoss(st_model, tie_encoder_decoder=True)
    st_model.eval(), st_loss.decoder.eval()
    embedder = Embedder.from_pretrained(tiny_model_dir).eval()
    decoder = decoder_for(DenoisingAutoEncoderLoss(), embedder).eval()
    decoder.load_state_dict(st_loss.decoder.state_dict())  # same cross-attention initialisation
    source = st_model.tokenize(["cat mat", "river sea", "bread lunch"])
    target = st_model.tokenize(SENTENCES)
    theirs = st_loss([dict(source), dict(target)], None)
    embeddings = embedder(embedder.tokenize(["cat mat", "river sea", "bread lunch"]))
    ours = DenoisingAutoEncoderLoss()(embeddings, decoder=decoder, target_features=target,
                                      pad_token_id=embedder.tokenizer.pad_token_id)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    ours.backward()
    theirs.backward()
    name = "bert.encoder.layer.0.crossattention.self.query.weight"
    ours_grad = dict(decoder.named_parameters())[name].grad
    theirs_grad = dict(st_loss.decoder.named_parameters())[name].grad
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-3, atol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="deletion_ratio"):
        DenoisingAutoEncoderLoss(deletion_ratio=1.0)
    with pytest.raises(ValueError, match="needs decoder= and target_features="):
        DenoisingAutoEncoderLoss()(torch.randn(2, 4))
