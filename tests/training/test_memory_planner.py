from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from textdml.training.memory_planner import (
    MiniBatchPlan,
    default_forward,
    estimate_memory,
    fit_mini_batch,
    line_through,
    plan_mini_batch,
)

MiB, GiB = 2**20, 2**30


@pytest.fixture(scope="session")
def base_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, attn_implementation="eager")
    return BertModel(config)


@pytest.fixture
def bert(base_bert: BertModel) -> BertModel:
    return copy.deepcopy(base_bert)


def saved_activation_bytes(model: nn.Module, batch_size: int, seq_length: int) -> int:
    """What autograd really keeps for backward (parameters excluded, shared storage counted once)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        default_forward(model.train(), batch_size, seq_length, torch.device("cpu"))
    return sum(storages.values())


def test_plan_is_monotonic_in_memory_and_never_below_one(bert: BertModel) -> None:
    memories = [1, 64 * 1024, MiB, 16 * MiB, 256 * MiB, 4 * GiB, 80 * GiB]
    sizes = [plan_mini_batch(bert, 64, memory).mini_batch_size for memory in memories]
    assert sizes == sorted(sizes)
    assert sizes[0] == 1 and sizes[-1] > sizes[3] > 1


def test_longer_sequences_give_smaller_mini_batches(bert: BertModel) -> None:
    sizes = [plan_mini_batch(bert, length, 256 * MiB).mini_batch_size for length in (16, 64, 128)]
    assert sizes[0] > sizes[1] > sizes[2] >= 1
    # Per-role lengths: the longest role is planned for.
    assert plan_mini_batch(bert, [16, 128], 256 * MiB).mini_batch_size == sizes[2]


def test_estimate_bounds_what_autograd_saves(bert: BertModel) -> None:
    for seq_length in (16, 64):
        measured = (saved_activation_bytes(bert, 4, seq_length) - saved_activation_bytes(bert, 2, seq_length)) / 2
        _, per_row = estimate_memory(bert, seq_length, None)
        assert measured <= per_row <= 1.2 * measured


def test_checkpointing_and_half_precision_fit_more_rows(bert: BertModel) -> None:
    base = plan_mini_batch(bert, 128, 64 * MiB).mini_batch_size
    assert plan_mini_batch(bert, 128, 64 * MiB, activation_dtype=torch.bfloat16).mini_batch_size > base
    getattr(bert, "activation_checkpointing_enable", bert.gradient_checkpointing_enable)()
    assert plan_mini_batch(bert, 128, 64 * MiB).mini_batch_size > base


def test_fixed_memory_counts_weights_gradients_and_optimiser(bert: BertModel) -> None:
    params = sum(p.numel() for p in bert.parameters())
    plan = plan_mini_batch(bert, 32, GiB, optimizer_bytes_per_param=8)
    assert plan.fixed_bytes == params * (4 + 4 + 8)
    assert plan_mini_batch(bert, 32, GiB, optimizer_bytes_per_param=0).fixed_bytes == params * 8


def test_embedder_like_wrappers_are_found(bert: BertModel) -> None:
    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = bert

        def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.transformer(**features).last_hidden_state.mean(1)

    wrapped = Wrapped()
    assert plan_mini_batch(wrapped, 64, GiB) == plan_mini_batch(bert, 64, GiB)
    assert default_forward(wrapped, 2, 8, torch.device("cpu")).shape == (2, 32)


def test_plan_reports_negatives_and_a_summary(bert: BertModel) -> None:
    plan = plan_mini_batch(bert, 64, 16 * MiB, max_mini_batch=8)
    assert plan.mini_batch_size == 8 and plan.method == "estimated"
    assert plan.effective_negatives(per_device_batch=32, world_size=4) == 127
    assert plan.effective_negatives(per_device_batch=32, world_size=4, refs_per_anchor=2) == 255
    assert plan.mini_batches(32) == 4 and plan.mini_batches(5) == 1
    assert "mini-batch of 8 rows of 64 tokens" in plan.summary and "estimated" in plan.summary


def test_line_through_two_probes() -> None:
    fixed, per_row = line_through((2, 4), (1_000 + 2 * 300, 1_000 + 4 * 300))
    assert (fixed, per_row) == (1_000, 300)
    assert fit_mini_batch(fixed, per_row, 4_000) == 10
    assert fit_mini_batch(fixed, per_row, 10) == 1  # never below one row
    assert line_through((2, 4), (500, 500))[1] == 1.0  # equal peaks: a row still costs something
    with pytest.raises(ValueError, match="must grow"):
        line_through((4, 2), (1, 2))


def test_rejects_unplannable_inputs(bert: BertModel) -> None:
    with pytest.raises(ValueError, match="device_memory_bytes"):
        plan_mini_batch(bert, 64)
    with pytest.raises(ValueError, match="no Hugging Face config"):
        plan_mini_batch(nn.Linear(3, 3), 64, GiB)
    with pytest.raises(ValueError, match="headroom"):
        plan_mini_batch(bert, 64, GiB, headroom=1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_measured_plan_on_cuda(bert: BertModel) -> None:
    model = bert.cuda()
    plans = [plan_mini_batch(model, 128, memory) for memory in (256 * MiB, GiB, 4 * GiB)]
    assert all(isinstance(p, MiniBatchPlan) and p.method == "measured" for p in plans)
    sizes = [p.mini_batch_size for p in plans]
    assert sizes == sorted(sizes) and sizes[0] >= 1
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_attention_keeps_no_probabilities(autocast: bool) -> None:
    # SDPA without attention dropout runs a fused kernel on the CPU (on CUDA also with dropout): the
    # (s, s) probabilities are recomputed in backward, so counting them overestimated 2-4x.
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=256, attn_implementation="sdpa",
                                 attention_probs_dropout_prob=0.0))
    dtype = torch.bfloat16 if autocast else None
    for seq_length in (64, 128):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            measured = (saved_activation_bytes(model, 4, seq_length) - saved_activation_bytes(model, 2, seq_length)) / 2
        _, per_row = estimate_memory(model, seq_length, dtype)
        assert 0.95 * measured <= per_row <= 1.2 * measured, (seq_length, per_row / measured)


def test_eager_attention_under_autocast_is_bounded(bert: BertModel) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        measured = (saved_activation_bytes(bert, 4, 64) - saved_activation_bytes(bert, 2, 64)) / 2
    _, per_row = estimate_memory(bert, 64, torch.bfloat16)
    assert 0.95 * measured <= per_row <= 1.2 * measured
