"""Batched inference helpers: the prepared-ahead path against the plain one."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from textdml.models.encoding import run_batches, run_length_sorted


def test_preparing_ahead_in_a_thread_matches_the_plain_path_in_order():
    module = nn.Linear(1, 1)
    items = [f"text {i} " + "x" * (i % 7) for i in range(23)]
    threads = set()

    def prepare(batch):
        threads.add(threading.current_thread().name)
        return torch.tensor([[float(len(text))] for text in batch])

    def embed(inputs):
        return inputs * 2

    plain = run_batches(module, items, lambda batch: embed(prepare(batch)), 4, False, "", 1)
    ahead = run_batches(module, items, embed, 4, False, "", 1, prepare=prepare)
    assert torch.equal(ahead, plain) and ahead[:, 0].tolist() == [2.0 * len(t) for t in items]
    assert any(name.startswith("textdml-prepare") for name in threads)
    sorted_ahead = run_length_sorted(module, items, embed, 4, False, "", 1, prepare=prepare)
    assert torch.equal(sorted_ahead, plain)  # input order restored
    assert run_batches(module, [], embed, 4, False, "", 1, prepare=prepare).shape == (0, 1)


def test_an_error_while_preparing_reaches_the_caller_and_restores_training_mode():
    module = nn.Linear(1, 1).train()

    def prepare(batch):
        if "bad" in batch:
            raise FileNotFoundError("image 'bad' does not exist")
        return torch.ones(len(batch), 1)

    with pytest.raises(FileNotFoundError, match="'bad' does not exist"):
        run_batches(module, ["a", "b", "c", "bad"], lambda x: x, 2, False, "", 1, prepare=prepare)
    assert module.training
