"""GradCache parity: cached mini-batches give the loss and parameter gradients of the plain path."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from textdml.losses.info_nce import InfoNCELoss
from textdml.training.grad_cache import RngState, cached_backward, split_features

BATCH, VOCAB = 7, 100


class MeanPooledBert(nn.Module):
    """A tiny BERT with mean pooling over real tokens; dropout stays on in train mode."""

    def __init__(self) -> None:
        super().__init__()
        config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=32,
                            hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
        self.bert = BertModel(config, add_pooling_layer=False)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = self.bert(**features).last_hidden_state  # (B, L, H)
        mask = features["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        return (tokens * mask).sum(1) / mask.sum(1).clamp_min(1)


@pytest.fixture(scope="session")
def base_model() -> MeanPooledBert:
    torch.manual_seed(0)
    return MeanPooledBert()


@pytest.fixture
def model(base_model: MeanPooledBert) -> MeanPooledBert:
    return copy.deepcopy(base_model).train()


def random_features(seed: int, max_length: int = 10) -> dict[str, torch.Tensor]:
    """A right-padded batch with lengths 2..max_length."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, max_length + 1, (BATCH,), generator=generator)
    input_ids = torch.randint(1, VOCAB, (BATCH, max_length), generator=generator)
    attention_mask = (torch.arange(max_length)[None, :] < lengths[:, None]).long()
    return {"input_ids": input_ids * attention_mask, "attention_mask": attention_mask}


ROLES = [random_features(1), random_features(2), random_features(3, max_length=8)]  # anchor, positive, negative
LOSS = InfoNCELoss(temperature=0.05)


def info_nce(embeddings: list[torch.Tensor]) -> torch.Tensor:
    return LOSS(embeddings[0], ref_embeddings=torch.cat(embeddings[1:]))


def role_chunks(mini_batch_size: int) -> list[list[dict[str, torch.Tensor]]]:
    return [split_features(features, mini_batch_size) for features in ROLES]


def plain_backward(model: nn.Module, chunks: list[list[dict]], loss_fn=info_nce) -> torch.Tensor:
    """The reference: embed the same mini-batches with a graph, in the same order, one backward."""
    embeddings = [torch.cat([model(chunk) for chunk in role]) for role in chunks]
    loss = loss_fn(embeddings)
    loss.backward()
    return loss.detach()


def gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], scale: float = 1.0) -> None:
    assert actual.keys() == expected.keys() and len(actual) > 0
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name] * scale, atol=1e-5, rtol=1e-4, msg=name)


def test_dropout_is_on(model: MeanPooledBert) -> None:
    # Otherwise the parity tests below would not exercise the RNG replay.
    features = ROLES[0]
    assert not torch.allclose(model(features), model(features))


@pytest.mark.parametrize("mini_batch_size", [2, 3, BATCH])  # 2 and 3 do not divide 7
def test_cached_matches_plain_with_dropout(model: MeanPooledBert, mini_batch_size: int) -> None:
    chunks = role_chunks(mini_batch_size)
    plain_model = copy.deepcopy(model)
    torch.manual_seed(1234)
    expected_loss = plain_backward(plain_model, chunks)
    after_plain = torch.rand(3)
    torch.manual_seed(1234)
    loss = cached_backward(model, chunks, info_nce)
    torch.testing.assert_close(loss, expected_loss)
    assert not loss.requires_grad
    assert_same_gradients(gradients(model), gradients(plain_model))
    # The global RNG continues as after the plain path: replays do not consume it.
    torch.testing.assert_close(torch.rand(3), after_plain)


@pytest.mark.parametrize("mini_batch_size", [4])
def test_cached_matches_one_full_batch_without_dropout(model: MeanPooledBert, mini_batch_size: int) -> None:
    model.eval()  # no dropout: the chunking itself must not change anything
    full_model = copy.deepcopy(model)
    expected_loss = plain_backward(full_model, [[features] for features in ROLES])
    loss = cached_backward(model, role_chunks(mini_batch_size), info_nce)
    torch.testing.assert_close(loss, expected_loss, atol=1e-5, rtol=1e-5)
    assert_same_gradients(gradients(model), gradients(full_model))


def test_loss_parameters_get_their_gradient(model: MeanPooledBert) -> None:
    plain_model, chunks = copy.deepcopy(model), role_chunks(4)
    scales = [torch.tensor(2.0, requires_grad=True) for _ in range(2)]

    def scaled_loss(scale: torch.Tensor):
        return lambda embeddings: info_nce([embeddings[0] * scale, *embeddings[1:]])

    torch.manual_seed(5)
    plain_backward(plain_model, chunks, scaled_loss(scales[0]))
    torch.manual_seed(5)
    cached_backward(model, chunks, scaled_loss(scales[1]))
    torch.testing.assert_close(scales[1].grad, scales[0].grad)
    assert_same_gradients(gradients(model), gradients(plain_model))


def test_gradients_accumulate_like_backward(model: MeanPooledBert) -> None:
    chunks = role_chunks(4)
    once = copy.deepcopy(model)
    torch.manual_seed(7)
    cached_backward(once, chunks, info_nce)
    for _ in range(2):
        torch.manual_seed(7)
        cached_backward(model, chunks, info_nce)
    assert_same_gradients(gradients(model), gradients(once), scale=2.0)


def test_custom_backward_scales_every_gradient(model: MeanPooledBert) -> None:
    chunks, plain_model = role_chunks(4), copy.deepcopy(model)
    torch.manual_seed(8)
    plain_backward(plain_model, chunks)
    torch.manual_seed(8)
    cached_backward(model, chunks, info_nce, backward=lambda loss: (loss * 4).backward())  # a loss scaler
    assert_same_gradients(gradients(model), gradients(plain_model), scale=4.0)


def test_no_sync_wraps_every_mini_batch_but_the_last(model: MeanPooledBert) -> None:
    entered = []

    @contextmanager
    def no_sync():
        entered.append(True)
        yield

    chunks = role_chunks(4)  # 3 roles x 2 mini-batches
    cached_backward(model, chunks, info_nce, no_sync=no_sync)
    assert len(entered) == sum(len(role) for role in chunks) - 1


def test_rng_state_replays_dropout() -> None:
    state = RngState.capture()
    first = torch.rand(4)
    with state.replay():
        replayed = torch.rand(4)
    torch.testing.assert_close(replayed, first)
    assert not torch.equal(torch.rand(4), first)


def test_split_features_trims_trailing_padding() -> None:
    features = {"input_ids": torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0], [8, 9, 9, 9]]),
                "attention_mask": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])}
    first, second = split_features(features, 2)
    assert first["input_ids"].tolist() == [[5, 6], [7, 0]] and first["attention_mask"].shape == (2, 2)
    assert second["input_ids"].tolist() == [[8, 9, 9, 9]]
    left_padded = {"input_ids": torch.tensor([[0, 5]]), "attention_mask": torch.tensor([[0, 1]])}
    assert split_features(left_padded, 1)[0]["input_ids"].shape == (1, 2)
    assert split_features(features, 2, trim_padding=False)[0]["input_ids"].shape == (2, 4)


def test_rejects_empty_roles() -> None:
    with pytest.raises(ValueError, match="at least one mini-batch"):
        cached_backward(nn.Identity(), [[torch.ones(1, 2)], []], lambda e: e[0].sum())
    with pytest.raises(ValueError, match="mini_batch_size"):
        split_features(ROLES[0], 0)
